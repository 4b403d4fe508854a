"""Rehearsal for users: the offline demo, `dspy-run rehearse` timelines and verdicts, and explain's worst case."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.loader import load_policy_text
from runner.plan import chain_plan
from runner.rehearsal.session import rehearsal

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "true", **(env or {})},
    )


def test_demo_runs_offline_and_shows_the_five_scenarios():
    """`dspy-run --policy policies/demo.yaml` needs no key or network, exits 0 and shows each of the seed's scenarios."""
    env = {k: "" for k in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    done = _cli("--policy", "policies/demo.yaml", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "answer='Paris'  [ok, served by primary]" in out  # success on the first attempt
    assert "rejected the input before any call (empty_input); nothing was sent" in out  # empty input
    assert "served by fallback[0]" in out and "timeout" in out  # hang degraded to the fallback
    assert "context: operation=predict attempt=1 model=rehearsal/demo timestamp=" in out  # error context
    assert "examples/invalid-policy.yaml:6:3: unknown key `max_atempts`" in out  # invalid policy refused
    assert "7/7 scenarios behaved as expected" in out
    assert "Traceback" not in done.stderr


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


POLICY = """
    model: {name: openai/gpt-4o-mini, api_key_env: SOME_KEY_NOT_SET}
    retry:
      max_attempts: 3
      retry_on: [rate_limit, timeout, server, transport]
      backoff: {base_ms: 20, multiplier: 2, max_ms: 200, jitter: 0.1}
      max_retry_after_ms: 500
    timeouts: {attempt_ms: 150}
    fallbacks:
      - on: [context_window]
        model: {name: openai/gpt-4o, api_key_env: SOME_KEY_NOT_SET}
      - on: [quota_exceeded, server, timeout, transport, rate_limit]
        response: "fallback answer"
"""

# kind -> (script, expected outcomes per attempt, expected status, words the verdict must hold)
CASES = {
    "rate_limit": (
        [{"do": "rate_limit", "retry_after_ms": 120, "times": 2}, {"do": "ok"}],
        ["rate_limit", "rate_limit", "ok"], "ok", ["retried rate_limit 2 times honouring Retry-After"],
    ),
    "quota": ([{"do": "quota", "times": "forever"}], ["quota_exceeded"], "fallback", ["never retried quota_exceeded"]),
    "auth": ([{"do": "auth", "times": "forever"}], ["auth"], "error", ["never retried auth", "ended in error (auth)"]),
    "context_window": (
        [{"do": "context_window"}, {"do": "ok"}], ["context_window", "ok"], "fallback",
        ["fell back to openai/gpt-4o (fallback[0]) on context_window"],
    ),
    "server_error": (
        [{"do": "server_error", "status": 503, "times": "forever"}], ["server"] * 3, "fallback",
        ["retried server 2 times", "gave up on server after 3 attempts"],
    ),
    "hang": ([{"do": "hang", "times": "forever"}], ["timeout"] * 3, "fallback", ["retried timeout 2 times"]),
    "trickle": ([{"do": "trickle", "interval_ms": 20, "times": "forever"}], ["timeout"] * 3, "fallback", ["gave up on timeout"]),
    "drop": ([{"do": "drop", "times": "forever"}], ["transport"] * 3, "fallback", ["retried transport 2 times"]),
    "empty": ([{"do": "empty", "times": "forever"}], ["empty_response"], "error", ["never retried empty_response"]),
    "unparseable": ([{"do": "unparseable", "times": "forever"}], ["parse_error"], "error", ["never retried parse_error"]),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_rehearse_gives_the_timeline_and_verdict_the_policy_implies(tmp_path, kind):
    """For each fault kind, rehearse's record, verdict and the provider's request count agree with the policy."""
    script, outcomes, status, words = CASES[kind]
    policy = _write(tmp_path, "p.yaml", POLICY)
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps(script))  # JSON is YAML: the script file format
    done = _cli("rehearse", "--policy", str(policy), "--script", str(faults), "--input", "question=hi", "--json")
    assert done.returncode == (1 if status == "error" else 0), done.stderr
    report = json.loads(done.stdout)
    record = report["record"]
    assert [a["outcome"] for a in record["attempts"]] == outcomes
    assert record["status"] == status
    assert report["requests_seen"] == len(outcomes) and report["mismatch"] is None
    for word in words:
        assert word in report["verdict"]
    if kind == "rate_limit":
        assert all(a["wait_ms"] >= 120 for a in record["attempts"][:2])  # Retry-After never undercut


def test_rehearse_prints_a_readable_timeline_and_scales_time(tmp_path):
    """Without --json, rehearse prints each attempt with its start time, says the speed factor, and the verdict."""
    policy = _write(tmp_path, "p.yaml", POLICY)
    faults = _write(tmp_path, "f.yaml", "- {do: rate_limit, retry_after_ms: 300}\n- {do: ok}\n")
    done = _cli("rehearse", "--policy", str(policy), "--script", str(faults), "--speed", "10")
    assert done.returncode == 0, done.stderr
    assert "times scaled down 10x" in done.stdout
    lines = done.stdout.splitlines()
    assert any("primary" in l and "attempt 1  rate_limit" in l and "then waited 3" in l for l in lines)
    assert "verdict: retried rate_limit 1 time honouring Retry-After" in done.stdout
    assert "provider saw 2 request(s), as the record says" in done.stdout


def test_rehearse_refuses_a_bad_script_in_one_line(tmp_path):
    """A script with an unknown step kind is refused with exit 2, one line, no traceback."""
    policy = _write(tmp_path, "p.yaml", POLICY)
    faults = _write(tmp_path, "f.yaml", "- {do: rate_limited}\n")
    done = _cli("rehearse", "--policy", str(policy), "--script", str(faults))
    assert done.returncode == 2
    assert "did you mean 'rate_limit'" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


class _MaxJitter(random.Random):
    """Draws every jittered wait at the top of its range."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.mark.parametrize("total_ms", [None, 400])
def test_explain_worst_case_equals_the_longest_rehearsal(total_ms):
    """With every attempt hanging and jitter at its maximum, a rehearsal takes what explain calls the worst case."""
    text = textwrap.dedent(
        f"""
        model: {{name: openai/gpt-4o-mini}}
        retry:
          max_attempts: 3
          retry_on: [timeout]
          backoff: {{base_ms: 20, multiplier: 2, max_ms: 200, jitter: 0.5}}
        timeouts: {{attempt_ms: 60, total_ms: {total_ms if total_ms else 'null'}}}
        fallbacks:
          - on: [timeout]
            model: {{name: openai/gpt-4o}}
          - response: "sorry"
        """
    )
    policy = load_policy_text(text)
    worst = chain_plan(policy).worst_case_s
    with rehearsal(policy, every_model=True, script=[{"do": "hang", "times": "forever"}], rng=_MaxJitter()) as (provider, executor):
        executor.run(question="warm-up")  # DSPy's first call is slower: time a warm run
        provider.reset()
        result = executor.run(question="hi")
        seen = provider.count
    assert result.served_by == "fallback[1]"
    elapsed_s = result.elapsed_ms / 1000
    assert worst <= elapsed_s <= worst + 0.08, (worst, elapsed_s)
    if total_ms is None:
        assert seen == 6 == chain_plan(policy).worst_case_calls


def test_rehearse_refuses_a_meaningless_speed_or_log_level_without_a_traceback(tmp_path):
    """--speed nan, inf, or so small that every wait lasts hours, and an unknown --log-level, exit 2 before anything runs."""
    policy = _write(tmp_path, "p.yaml", POLICY)
    for args in (["--speed", "nan"], ["--speed", "inf"], ["--speed", "1e-300"], ["--log-level", "loud"]):
        done = _cli("rehearse", "--policy", str(policy), *args)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr and done.stdout == ""


def test_rehearse_inputs_file_and_script_latency_follow_the_batch_rules_and_the_speed(tmp_path):
    """--inputs ignores keys that are not input fields (as a batch does), and --speed divides the script file's latency_ms too."""
    policy = _write(tmp_path, "p.yaml", "model: {name: openai/m}\nretry: {max_attempts: 1}\ntimeouts: {attempt_ms: 3000}\n")
    faults = _write(tmp_path, "f.yaml", "script: [{do: ok}]\nlatency_ms: 1000\n")  # scaled: 100 ms in a 300 ms deadline
    inputs = _write(tmp_path, "in.jsonl", '{"id": 7, "question": "q", "expected": "an evaluation answer"}\n')
    done = _cli("rehearse", "--policy", str(policy), "--script", str(faults), "--inputs", str(inputs), "--speed", "10", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads(done.stdout)["record"]
    assert record["status"] == "ok" and 90 <= record["attempts"][0]["elapsed_ms"] < 300


def test_rehearse_inputs_bad_lines_get_records_and_the_rest_runs(tmp_path):
    """A bad --inputs line is rehearsed as a batch records it (an error record under its line number); the rest runs."""
    policy = _write(tmp_path, "p.yaml", "model: {name: openai/m}\nretry: {max_attempts: 1}\n")
    inputs = _write(tmp_path, "in.jsonl", '{"id": "a", "question": "q"}\nnot json\n{"question": " "}\n')
    done = _cli("rehearse", "--policy", str(policy), "--inputs", str(inputs), "--json")
    assert done.returncode == 1, done.stderr  # some input ended in an error
    reports = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["record"]["id"], r["record"]["status"]) for r in reports] == [("a", "ok"), ("2", "error"), ("3", "error")]
    assert [r["record"]["error"]["code"] for r in reports[1:]] == ["invalid_input", "empty_input"]
    assert [r["requests_seen"] for r in reports] == [1, 0, 0]
