"""`dspy-run --policy FILE --input ...` as a real subprocess against a rehearsal provider started by the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-c", "import sys; from runner.cli import main; sys.exit(main())"]


def dspy_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "true", **(env or {})}
    return subprocess.run([*CLI, *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60)


def write_policy(tmp_path: Path, base_url: str, extra: str = "", model: str = "openai/test-model") -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"model:\n  name: {model}\n  api_base: {base_url}\n"
        "retry:\n  max_attempts: 2\n  backoff: {base_ms: 20, max_ms: 40, jitter: 0.1}\n"
        "timeouts:\n  attempt_ms: 2000\n" + extra,
        encoding="utf-8",
    )
    return path


def test_answer_is_printed_and_exit_is_0(tmp_path, provider):
    """A plain run prints the output field on stdout, a status line on stderr, and exits 0."""
    provider.set_answers([{"match": "(?i)france", "text": "Paris"}])
    result = dspy_run("--policy", str(write_policy(tmp_path, provider.base_url)), "--input", "question=What is the capital of France?")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Paris\n"
    assert "ok, served by primary openai/test-model" in result.stderr
    assert provider.count == 1


def test_json_prints_the_result_record(tmp_path, provider):
    """--json prints exactly one record, the same shape the Python API returns."""
    provider.set_script([{"do": "rate_limit", "retry_after_ms": 30, "times": 1}, {"do": "ok"}])
    provider.set_answers([{"match": "(?i)france", "text": "Paris"}])
    result = dspy_run("--policy", str(write_policy(tmp_path, provider.base_url)), "--input", "question=France?", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["status"] == "ok" and record["output"] == {"answer": "Paris"} and record["served_by"] == "primary"
    assert [(a["attempt"], a["outcome"], a["wait_ms"]) for a in record["attempts"]] == [(1, "rate_limit", 30.0), (2, "ok", 0.0)]
    assert "Attempt 1/2 failed: rate_limit, retrying in 0.03 s [operation=predict model=openai/test-model attempt=1]" in result.stderr


def test_failed_input_exits_1_with_the_error(tmp_path, provider):
    """An input that no step answers exits 1 and says the error code and its fix."""
    provider.set_script([{"do": "auth", "times": "forever"}])
    result = dspy_run("--policy", str(write_policy(tmp_path, provider.base_url)), "--input", "question=q")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "error auth:" in result.stderr and "check the key in the environment variable" in result.stderr


def test_fallback_serving_is_logged_and_exits_0(tmp_path, provider):
    """An answer from a fallback counts as answered (exit 0), and the log says which step served."""
    provider.set_script([{"do": "server_error", "times": "forever"}])
    policy = write_policy(tmp_path, provider.base_url, "fallbacks:\n  - on: [server]\n    response: 'Sorry: {question}'\n")
    result = dspy_run("--policy", str(policy), "--input", "question=why?")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Sorry: why?\n"
    assert "answered by fallback[0] (canned response) after server" in result.stderr


def test_unknown_model_exits_2_and_sends_nothing(tmp_path, provider):
    """A model no DSPy provider serves is refused in one line, exit 2, before any request."""
    policy = write_policy(tmp_path, provider.base_url, model="nosuchprovider/model-x")
    result = dspy_run("--policy", str(policy), "--input", "question=q")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no DSPy provider serves model 'nosuchprovider/model-x'" in result.stderr
    assert "Traceback" not in result.stderr and provider.count == 0


def test_command_line_mistakes_exit_2_in_one_line(tmp_path, provider):
    """A malformed --input or a missing input is one line on stderr and exit 2, nothing sent."""
    policy = str(write_policy(tmp_path, provider.base_url))
    repeated = ["--input", "question=a", "--input", "question=b"]
    for args in (["--input", "question"], [], ["--input", "question=q", "--inputs", "in.jsonl", "--output", "o.jsonl"], repeated):
        result = dspy_run("--policy", policy, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert provider.count == 0


def test_empty_input_exits_1_without_a_request(tmp_path, provider):
    """An empty field is an empty_input record (exit 1), never sent."""
    result = dspy_run("--policy", str(write_policy(tmp_path, provider.base_url)), "--input", "question=  ", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"]["code"] == "empty_input" and provider.count == 0


def test_bytes_that_are_not_utf8_in_an_argument_are_invalid_input(tmp_path, provider):
    """An --input value with non-UTF-8 bytes (a latin-1 terminal) is refused as invalid_input before any call, not an internal error."""
    policy = str(write_policy(tmp_path, provider.base_url))
    result = dspy_run("--policy", policy, "--input", b"question=caf\xe9", "--json")
    assert result.returncode == 1 and provider.count == 0
    error = json.loads(result.stdout)["error"]
    assert (error["code"], error["operation"]) == ("invalid_input", "input") and "UTF-8" in error["message"]


def test_json_log_format_is_one_object_per_line(tmp_path, provider):
    """--log-format json writes every stderr log line as a JSON object with the attempt's context."""
    provider.set_script([{"do": "server_error", "times": 1}, {"do": "ok"}])
    result = dspy_run(
        "--policy", str(write_policy(tmp_path, provider.base_url)), "--input", "question=q", "--json", "--log-format", "json", "--log-level", "DEBUG"
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    attempt = next(line for line in lines if line["message"].startswith("Attempt 1/2 failed"))
    assert (attempt["level"], attempt["model"], attempt["attempt"], attempt["code"]) == ("WARNING", "openai/test-model", 1, "server")


def test_a_broken_dspy_install_is_one_line_and_exit_2(tmp_path, provider):
    """When `import dspy` fails, the run says so in one `dependency` line, exits 2 and sends nothing."""
    fake = tmp_path / "shadow" / "dspy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('dspy is half-installed')\n", encoding="utf-8")
    policy = write_policy(tmp_path, provider.base_url)
    result = dspy_run("--policy", str(policy), "--input", "question=q", env={"PYTHONPATH": f"{tmp_path / 'shadow'}:{ROOT}"})
    assert result.returncode == 2
    assert "cannot import DSPy (ImportError: dspy is half-installed)" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert provider.count == 0
