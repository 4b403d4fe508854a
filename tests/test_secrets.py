"""API keys never appear in any output: records, stdout, stderr, text and JSON logs at DEBUG."""

from __future__ import annotations

import io
import sys
import json

from executor_support import make_policy
from loguru import logger
from test_run_cli import dspy_run

from runner.logs import setup_logging

CANARY = "canary-7f3a9c1e-do-not-print"  # not sk-shaped: only the policy's api_key_env can mark it secret
ENV = "DSPY_RUN_CANARY_KEY"


def _echo_key_script(times: str | int = "forever") -> list[dict]:
    # The provider's auth error echoes the key it refused, as some providers do.
    return [{"do": "auth", "message": f"Incorrect API key provided: {CANARY}. Also tried sk-live-0123456789abcdef.", "times": times}]


def test_canary_is_absent_from_the_cli_outputs_and_json_debug_logs(tmp_path, provider):
    """With the key echoed back in an auth error, neither stdout (--json record) nor stderr (DEBUG, JSON logs) holds it."""
    provider.set_script(_echo_key_script())
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"model:\n  name: openai/test-model\n  api_base: {provider.base_url}\n  api_key_env: {ENV}\n"
        "fallbacks:\n  - on: [auth]\n    response: 'no access'\n",
        encoding="utf-8",
    )
    for fmt in ("json", "text"):
        result = dspy_run(
            "--policy", str(policy), "--input", "question=q", "--json", "--log-level", "DEBUG", "--log-format", fmt,
            env={ENV: CANARY},
        )
        assert result.returncode == 0, result.stderr
        assert "Attempt 1/3 failed: auth" in result.stderr  # the logs did run, at DEBUG
        for stream in (result.stdout, result.stderr):
            assert CANARY not in stream and "sk-live-0123456789abcdef" not in stream


def test_canary_is_absent_from_the_record_and_redacted_sinks_in_process(provider, monkeypatch):
    """The Python API's record and the runner's log sinks mask the key, including a DEBUG line that quotes it."""
    monkeypatch.setenv(ENV, CANARY)
    provider.set_script(_echo_key_script())
    stream = io.StringIO()
    setup_logging("DEBUG", "json", stream=stream)
    try:
        with make_policy(provider, model={"api_key_env": ENV}).executor() as executor:
            result = executor.run(question="q")
            logger.debug(f"a careless debug line quoting the key: {CANARY}")
            try:
                raise RuntimeError(f"an exception whose text holds {CANARY}")
            except RuntimeError:
                logger.exception("logged with its traceback")
    finally:
        logger.remove()
        logger.add(sys.stderr)
    assert result.error.code == "auth" and "***" in result.error.message
    assert CANARY not in result.to_json()
    logged = stream.getvalue()
    assert logged.count("\n") >= 3 and all(json.loads(line) for line in logged.splitlines())
    assert CANARY not in logged and "***" in logged


def test_local_server_without_a_key_variable_gets_a_placeholder_key(provider):
    """A policy for a local api_base may omit api_key_env: the request is sent with a placeholder, not a real key."""
    with make_policy(provider).executor() as executor:
        result = executor.run(question="q")
    assert result.status == "ok" and provider.count == 1


_ECHOING_KINDS = ["rate_limit", "quota", "auth", "context_window", "invalid_request", "unknown_model", "server_error"]


def test_canary_is_masked_under_every_error_class(provider, monkeypatch):
    """Whatever the error class, a provider message that echoes the key reaches the record masked."""
    monkeypatch.setenv(ENV, CANARY)
    script = [{"do": kind, "message": f"upstream said: key {CANARY} refused"} for kind in _ECHOING_KINDS]
    provider.set_script(script)
    policy = make_policy(provider, model={"api_key_env": ENV}, retry={"max_attempts": 1})
    codes = []
    with policy.executor() as executor:
        for _ in _ECHOING_KINDS:
            record = executor.run(question="q").to_json()
            codes.append(json.loads(record)["error"]["code"])
            assert CANARY not in record
    assert len(set(codes)) == len(_ECHOING_KINDS)  # each fault really reached its own error class


def test_canary_is_absent_from_batch_records_summary_explain_and_rehearse(tmp_path, provider):
    """Batch output, its summary (text and JSON), `explain` and `rehearse` never print the key either."""
    provider.set_script(_echo_key_script())
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"model:\n  name: openai/test-model\n  api_base: {provider.base_url}\n  api_key_env: {ENV}\n", encoding="utf-8"
    )
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"question": f"q{i}"}) + "\n" for i in range(4)), encoding="utf-8")
    out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    env = {ENV: CANARY}
    batch = dspy_run("--policy", str(policy), "--inputs", str(inputs), "--output", str(out), "--summary-json", str(summary),
                     "--workers", "1", "--log-level", "DEBUG", env=env)
    assert batch.returncode == 1, batch.stderr  # every input ended in auth
    explain = dspy_run("explain", "--policy", str(policy), env=env)
    script = tmp_path / "faults.yaml"
    script.write_text(json.dumps(_echo_key_script()), encoding="utf-8")
    rehearse = dspy_run("rehearse", "--policy", str(policy), "--script", str(script), "--json", env=env)
    assert "auth" in out.read_text() and "auth" in summary.read_text() and "auth" in rehearse.stdout
    for text in (out.read_text(), summary.read_text(), batch.stdout, batch.stderr,
                 explain.stdout, explain.stderr, rehearse.stdout, rehearse.stderr):
        assert CANARY not in text
