"""Batch runs end to end: real worker processes, real DSPy, the rehearsal provider over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from runner.batch import BatchPlan, run_batch

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-c", "import sys; from runner.cli import main; sys.exit(main())"]

_FAULTS = [
    {"do": "rate_limit", "retry_after_ms": 2},
    {"do": "server_error"},
    {"do": "drop"},
    {"do": "unparseable"},
    {"do": "empty"},
    {"do": "garbage"},
    {"do": "quota"},
    {"do": "server_error", "status": 503},
    {"do": "context_window"},
    {"do": "auth"},
    {"do": "invalid_request"},
    {"do": "rate_limit"},
]


def _faulty_script(requests: int) -> list[dict]:
    """Every fifth request fails, cycling through the faults; the rest (and all after the script) answer ok."""
    script = []
    for n in range(requests // 5):
        script += [{"do": "ok", "times": 4}, _FAULTS[n % len(_FAULTS)]]
    return script


def _policy(tmp_path: Path, base_url: str, extra: str = "") -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"model:\n  name: openai/test-model\n  api_base: {base_url}\n"
        "retry:\n  max_attempts: 3\n  backoff: {base_ms: 1, max_ms: 4, jitter: 0.1}\n"
        "timeouts:\n  attempt_ms: 2000\n"
        "fallbacks:\n  - on: [parse_error, empty_response]\n    response: canned answer\n"
        "logging:\n  level: ERROR\n" + extra,
        encoding="utf-8",
    )
    return path


def _inputs(path: Path, count: int, start: int = 0) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(start, start + count):
            f.write(json.dumps({"question": f"question {i}?"}) + "\n")
    return path


def _records(path: Path) -> list[dict]:
    with open(path, "rb") as f:
        data = f.read()
    assert data == b"" or data.endswith(b"\n"), "every record line ends in a newline"
    return [json.loads(line) for line in data.splitlines()]


def test_2000_inputs_with_20_percent_faults_record_everything_once(tmp_path, provider):
    """2,000 inputs under assorted faults: one record per id, and the summary's counts are the records' counts."""
    provider.set_script(_faulty_script(3000))
    policy = _policy(tmp_path, provider.base_url)
    inputs = _inputs(tmp_path / "in.jsonl", 2000)
    out, summary_path = tmp_path / "out.jsonl", tmp_path / "summary.json"

    code = run_batch(policy, inputs, out, concurrency=16, workers=2, summary_json=summary_path)

    records = _records(out)
    assert sorted(int(r["id"]) for r in records) == list(range(1, 2001))
    summary = json.loads(summary_path.read_text())
    statuses = Counter(r["status"] for r in records)
    assert summary["records"] == 2000
    assert summary["by_status"] == {"ok": statuses["ok"], "fallback": statuses["fallback"], "error": statuses["error"]}
    assert summary["by_error"] == dict(Counter(r["error"]["code"] for r in records if r["status"] == "error"))
    assert summary["fallbacks"] == dict(Counter(r["served_by"] for r in records if r["status"] == "fallback"))
    attempts = sum(len(r["attempts"]) for r in records)
    assert summary["retries"] == attempts - 2000
    assert provider.count == attempts  # every attempt in the records is a request the server saw, and no other
    assert statuses["fallback"] > 0 and statuses["error"] > 0 and summary["retries"] > 0
    assert {"quota_exceeded", "auth", "context_window", "invalid_request"} <= set(summary["by_error"])
    assert summary["latency_ms"]["p50"] <= summary["latency_ms"]["p95"] <= summary["latency_ms"]["p99"]
    assert summary["this_run"] == {"skipped": 0, "written": 2000, "abandoned": 0, "repaired": None}
    assert code == 1  # some inputs ended in an error


def test_bad_lines_are_recorded_and_the_rest_runs(tmp_path, provider):
    """Not JSON, invalid UTF-8, missing and empty fields and duplicate ids each get a record; good lines (control characters included) are answered."""
    policy = _policy(tmp_path, provider.base_url)
    inputs = tmp_path / "in.jsonl"
    inputs.write_bytes(
        b'{"id": "a", "question": "first"}\n'  # 1
        b"this is not json\n"  # 2
        b'{"id": "b", "question": "caf\xe9"}\n'  # 3: Latin-1, not UTF-8
        b'{"id": "c", "question": "bell\x07 and nul\\u0000 inside"}\n'  # 4: control characters as data
        b'{"id": "d"}\n'  # 5: missing field
        b'{"id": "e", "question": "   "}\n'  # 6: empty field
        b'{"id": "a", "question": "again"}\n'  # 7: duplicate id
        b"\n"  # 8: blank, skipped
        b'{"question": "no id"}\n'  # 9
    )
    out = tmp_path / "out.jsonl"

    code = run_batch(policy, inputs, out, concurrency=4, workers=1)

    by_id = {r["id"]: r for r in _records(out)}
    assert set(by_id) == {"a", "2", "3", "c", "d", "e", "a#dup7", "9"}
    assert by_id["a"]["status"] == by_id["c"]["status"] == by_id["9"]["status"] == "ok"
    assert (by_id["2"]["error"]["code"], by_id["3"]["error"]["code"]) == ("invalid_input", "invalid_input")
    assert "line 2 (byte 33): not JSON" in by_id["2"]["error"]["message"]
    assert "line 3 (byte 50): not valid UTF-8 at byte 78 (0xe9)" in by_id["3"]["error"]["message"]
    assert by_id["d"]["error"]["code"] == "invalid_input" and "missing input field 'question'" in by_id["d"]["error"]["message"]
    assert by_id["e"]["error"]["code"] == "empty_input"
    assert "duplicate id 'a'" in by_id["a#dup7"]["error"]["message"]
    assert any("bell\x07 and nul\x00 inside" in r.user_text for r in provider.requests)
    assert provider.count == 3
    assert code == 1


def test_torn_last_line_is_repaired_and_its_input_runs_again(tmp_path, provider):
    """A torn last line is cut off, reported, and its input gets one complete record on the rerun."""
    policy = _policy(tmp_path, provider.base_url)
    inputs = _inputs(tmp_path / "in.jsonl", 5)
    out = tmp_path / "out.jsonl"
    assert run_batch(policy, inputs, out, concurrency=2, workers=1) == 0
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:3]) + lines[3][: len(lines[3]) // 2])  # records 4 and 5 lost, 4 torn
    torn_id = json.loads(lines[3])["id"]
    summary_path = tmp_path / "summary.json"

    assert run_batch(policy, inputs, out, concurrency=2, workers=1, summary_json=summary_path) == 0

    records = _records(out)
    assert sorted(r["id"] for r in records) == ["1", "2", "3", "4", "5"]
    summary = json.loads(summary_path.read_text())
    assert summary["this_run"]["skipped"] == 3 and summary["this_run"]["written"] == 2
    assert "torn last line" in summary["this_run"]["repaired"]
    assert torn_id in {r["id"] for r in records[3:]}


def test_limits_hold_across_workers(tmp_path, provider):
    """With 2 workers, the server never sees more than max_in_flight requests at once nor more than the rate."""
    provider.set_script([{"do": "ok", "delay_ms": 30, "times": "forever"}])
    policy = _policy(tmp_path, provider.base_url, "limits:\n  requests_per_second: 50\n  max_in_flight: 2\n")
    inputs = _inputs(tmp_path / "in.jsonl", 40)
    out = tmp_path / "out.jsonl"

    assert run_batch(policy, inputs, out, concurrency=8, workers=2) == 0

    requests = provider.requests
    assert len(requests) == 40
    events = sorted([(r.arrived_at, 1) for r in requests] + [(r.responded_at, -1) for r in requests])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    assert peak <= 2
    arrivals = sorted(r.arrived_at for r in requests)
    span = arrivals[-1] - arrivals[0]
    assert span >= (40 - 2) / 50 * 0.95  # 40 starts at 50/s (2 workers may start together) take at least ~0.76 s


def test_usage_errors_exit_2_and_write_nothing(tmp_path, provider):
    """A missing inputs file, a missing output folder and an invalid policy exit 2 before any request."""
    policy = _policy(tmp_path, provider.base_url)
    inputs = _inputs(tmp_path / "in.jsonl", 3)
    assert run_batch(policy, tmp_path / "missing.jsonl", tmp_path / "out.jsonl") == 2
    assert run_batch(policy, inputs, tmp_path / "no" / "out.jsonl") == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: openai/x, api_base: http://127.0.0.1:1/v1}\nretry: {max_attempts: 0}\n")
    assert run_batch(bad, inputs, tmp_path / "out.jsonl") == 2
    assert run_batch(policy, inputs, tmp_path / "out.jsonl", concurrency=0) == 2
    assert run_batch(policy, tmp_path, tmp_path / "out.jsonl") == 2
    assert run_batch(policy, inputs, tmp_path / "out.jsonl", grace_s=float("nan")) == 2
    assert run_batch(policy, inputs, tmp_path / "out.jsonl", summary_json=tmp_path) == 2
    os.link(inputs, tmp_path / "same.jsonl")  # the inputs under another name: records must never be appended to them
    assert run_batch(policy, inputs, tmp_path / "same.jsonl") == 2
    assert provider.count == 0
    assert not (tmp_path / "out.jsonl").exists() or (tmp_path / "out.jsonl").read_bytes() == b""
    assert len(_records(inputs)) == 3 and all("status" not in line for line in _records(inputs))


def test_plan_clamps_concurrency_and_never_starts_more_workers_than_max_in_flight():
    """--concurrency above one LM's 100 connections is clamped, and max_in_flight 3 with 8 workers starts 3 (each a share of 1)."""
    plan = BatchPlan.resolve(1000, 8, max_in_flight=3)
    assert (plan.workers, plan.concurrency) == (3, 100)
    assert BatchPlan.resolve(4, 2, max_in_flight=None).workers == 2


def test_inputs_from_a_pipe_run_once_each(tmp_path, provider):
    """--inputs may be a FIFO (`--inputs <(jq ...)`): it is read once, without a line count, and every line gets its record."""
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    lines = "".join(json.dumps({"question": f"q{i}"}) + "\n" for i in range(3))
    writer = threading.Thread(target=fifo.write_text, args=(lines,), daemon=True)  # blocks until the batch opens the pipe
    writer.start()
    code = run_batch(_policy(tmp_path, provider.base_url), fifo, tmp_path / "out.jsonl", workers=1, progress=True)
    assert code == 0
    writer.join(timeout=5)
    assert sorted(r["id"] for r in _records(tmp_path / "out.jsonl")) == ["1", "2", "3"] and provider.count == 3


# -- whole processes: kill -9, signals, a second writer


def _start_cli(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([*CLI, *args], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs)


def _wait_for_records(path: Path, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} did not reach {count} records within {timeout} s")


def test_kill_9_in_the_middle_then_rerun_records_each_input_once(tmp_path, provider):
    """SIGKILL of the whole process group mid-run, then the same command: exactly one record per input."""
    provider.set_script([{"do": "ok", "delay_ms": 20, "times": "forever"}])
    policy = _policy(tmp_path, provider.base_url)
    inputs = _inputs(tmp_path / "in.jsonl", 1000)
    out = tmp_path / "out.jsonl"
    args = ["--policy", str(policy), "--inputs", str(inputs), "--output", str(out), "--concurrency", "8", "--workers", "2"]

    proc = _start_cli(args)
    _wait_for_records(out, 150)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = out.read_bytes().count(b"\n")
    assert 150 <= before < 1000

    summary_path = tmp_path / "summary.json"
    rerun = _start_cli([*args, "--summary-json", str(summary_path)])
    _, stderr = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, stderr
    ids = Counter(r["id"] for r in _records(out))
    assert set(ids) == {str(i) for i in range(1, 1001)} and max(ids.values()) == 1
    this_run = json.loads(summary_path.read_text())["this_run"]
    assert this_run["skipped"] in (before, before + 1)  # +1: the kill fell between a record and its newline
    assert this_run["skipped"] + this_run["written"] == 1000
    assert "\r" not in stderr  # no progress line when stderr is not a terminal


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_within_the_grace_writes_whole_records_and_resumes(tmp_path, provider, signum, code):
    """SIGTERM/SIGINT: no new inputs, in-flight ones finish or are abandoned within the grace, exit 143/130, a rerun completes."""
    provider.set_script([{"do": "ok", "delay_ms": 100, "times": "forever"}])
    policy = _policy(tmp_path, provider.base_url)
    inputs = _inputs(tmp_path / "in.jsonl", 1000)
    out, summary_path = tmp_path / "out.jsonl", tmp_path / "summary.json"
    args = ["--policy", str(policy), "--inputs", str(inputs), "--output", str(out), "--concurrency", "8", "--workers", "2",
            "--summary-json", str(summary_path)]

    proc = _start_cli(args)
    _wait_for_records(out, 40)
    sent = time.monotonic()
    os.kill(proc.pid, signum)
    _, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 5.0 + 2.0  # the default grace, plus the margin for the last records
    assert proc.returncode == code, stderr
    assert f"interrupted by {signal.Signals(signum).name}" in stderr
    records = _records(out)
    summary = json.loads(summary_path.read_text())
    assert summary["records"] == len(records) < 1000
    assert summary["interrupted"] == signal.Signals(signum).name
    assert provider.count == len(records)  # every call in flight at the signal finished and was recorded

    provider.set_script([{"do": "ok", "times": "forever"}])
    rerun = _start_cli(args)
    _, stderr = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, stderr
    ids = Counter(r["id"] for r in _records(out))
    assert len(ids) == 1000 and max(ids.values()) == 1


def test_a_second_run_on_the_same_output_is_refused(tmp_path, provider):
    """While one run writes out.jsonl, another on the same file exits 2 instead of duplicating records."""
    provider.set_script([{"do": "ok", "delay_ms": 50, "times": "forever"}])
    policy = _policy(tmp_path, provider.base_url)
    inputs = _inputs(tmp_path / "in.jsonl", 400)
    out = tmp_path / "out.jsonl"
    args = ["--policy", str(policy), "--inputs", str(inputs), "--output", str(out), "--concurrency", "4", "--workers", "1"]
    first = _start_cli(args)
    try:
        _wait_for_records(out, 5)
        assert run_batch(policy, inputs, out) == 2
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


@pytest.mark.parametrize(
    ("grace", "signals", "code"),
    [("0.5", [signal.SIGINT], 130), ("30", [signal.SIGTERM, signal.SIGTERM], 143)],
    ids=["grace-passes", "second-signal"],
)
def test_hung_calls_are_abandoned_after_the_grace_or_a_second_signal(tmp_path, provider, grace, signals, code):
    """Calls that never answer are abandoned once --grace passes, or at once on a second signal: bounded exit, nothing half-written."""
    provider.set_script([{"do": "hang", "times": "forever"}])
    policy = _policy(tmp_path, provider.base_url)
    inputs = _inputs(tmp_path / "in.jsonl", 50)
    out, summary_path = tmp_path / "out.jsonl", tmp_path / "summary.json"
    args = ["--policy", str(policy), "--inputs", str(inputs), "--output", str(out), "--concurrency", "4", "--workers", "2",
            "--grace", grace, "--summary-json", str(summary_path)]

    proc = _start_cli(args)
    provider.wait_for_requests(8, timeout=30)
    sent = time.monotonic()
    for signum in signals:
        os.kill(proc.pid, signum)
        time.sleep(0.1)
    _, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 0.5 + 2.0 + 1.0
    assert proc.returncode == code, stderr
    assert _records(out) == []
    summary = json.loads(summary_path.read_text())
    assert summary["this_run"]["abandoned"] >= 8 and summary["this_run"]["written"] == 0


def test_progress_line_only_on_a_terminal(tmp_path, provider):
    """With stderr on a terminal the progress line is drawn; on a pipe (every other test) it is not."""
    import pty

    policy = _policy(tmp_path, provider.base_url)
    inputs = _inputs(tmp_path / "in.jsonl", 300)
    primary, secondary = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["--policy", str(policy), "--inputs", str(inputs), "--output", str(tmp_path / "out.jsonl"), "--workers", "1"]
    proc = subprocess.Popen([*CLI, *args], cwd=ROOT, env=env, stderr=secondary)
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO once the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    assert proc.wait(timeout=60) == 0
    text = seen.decode("utf-8", "replace")
    assert "/300" in text and "/s" in text and "ETA" in text
    assert "300 records in" in text


def test_a_policy_that_cannot_run_stops_the_batch_with_exit_2_and_one_line(tmp_path):
    """An unset key variable stops every worker before any call: exit 2, its one-line reason once, no traceback."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("model: {name: openai/gpt-4o-mini, api_key_env: DSPY_RUN_TEST_UNSET_KEY}\n", encoding="utf-8")
    inputs = _inputs(tmp_path / "in.jsonl", 5)
    env = {k: v for k, v in os.environ.items() if k != "DSPY_RUN_TEST_UNSET_KEY"}
    done = subprocess.run(
        [*CLI, "--policy", str(policy), "--inputs", str(inputs), "--output", str(tmp_path / "out.jsonl"), "--workers", "2"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("reads its API key from $DSPY_RUN_TEST_UNSET_KEY, which is not set") == 1
    assert "Traceback" not in done.stderr
    assert _records(tmp_path / "out.jsonl") == []  # nothing ran, nothing is recorded: a rerun after the fix runs all


def test_rehearsal_models_run_in_a_batch_offline(tmp_path):
    """A policy on `rehearsal/NAME` models runs a batch with no key and no network: each worker embeds a provider."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "model: {name: rehearsal/demo}\nrehearsal:\n  answers: [{match: 'question 3', text: three}]\nlogging: {level: ERROR}\n",
        encoding="utf-8",
    )
    inputs = _inputs(tmp_path / "in.jsonl", 20)
    code = run_batch(policy, inputs, tmp_path / "out.jsonl", concurrency=4, workers=2)
    records = {r["id"]: r for r in _records(tmp_path / "out.jsonl")}
    assert code == 0 and len(records) == 20
    assert records["4"]["output"] == {"answer": "three"}  # line 4 holds "question 3?"
    assert {r["model"] for r in records.values()} == {"rehearsal/demo"}
