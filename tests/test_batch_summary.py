"""The batch summary and progress line, rendered from numbers without a terminal."""

from __future__ import annotations

from runner.summary import Progress, Summary, Tally, ThisRun, percentile, render_progress


def _rec(status, *, code=None, served_by="primary", attempts=1, elapsed=10.0):
    return {
        "id": "x",
        "status": status,
        "served_by": served_by if status != "error" else None,
        "attempts": [{"outcome": "ok"}] * attempts,
        "error": {"code": code} if code else None,
        "elapsed_ms": elapsed,
    }


def test_tally_counts_statuses_errors_retries_and_fallbacks():
    """Retries are attempts beyond the first; bad-input records add no latency sample."""
    tally = Tally()
    tally.add(_rec("ok", attempts=1, elapsed=10))
    tally.add(_rec("ok", attempts=3, elapsed=30))
    tally.add(_rec("fallback", served_by="fallback[1]", attempts=4, elapsed=50))
    tally.add(_rec("error", code="rate_limit", attempts=3, elapsed=70))
    tally.add(_rec("error", code="invalid_input", attempts=0, elapsed=0))
    assert tally.records == 5
    assert dict(tally.by_status) == {"ok": 2, "fallback": 1, "error": 2}
    assert dict(tally.by_error) == {"rate_limit": 1, "invalid_input": 1}
    assert dict(tally.fallbacks) == {"fallback[1]": 1}
    assert tally.retries == 0 + 2 + 3 + 2
    assert sorted(tally.latencies_ms) == [10, 30, 50, 70]


def test_percentile_is_nearest_rank():
    """p50/p95/p99 use the nearest-rank rule; no values gives None."""
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50, 95, 99)
    assert percentile([7], 99) == 7
    assert percentile([], 50) is None


def test_summary_data_and_text_agree():
    """The summary's dict and text carry the same counts, the percentiles and this run's part."""
    tally = Tally()
    for ms in (100, 200, 300, 400):
        tally.add(_rec("ok", elapsed=ms))
    tally.add(_rec("error", code="timeout", attempts=2, elapsed=1500))
    summary = Summary.build(tally, output="out.jsonl", wall_s=2.5, this_run=ThisRun(1, 4, 0, None), interrupted=None)
    data = summary.to_dict()
    assert data["by_status"] == {"ok": 4, "fallback": 0, "error": 1}
    assert data["by_error"] == {"timeout": 1}
    assert data["latency_ms"] == {"p50": 300.0, "p95": 1500.0, "p99": 1500.0}
    assert data["retries"] == 1 and data["records"] == 5
    text = summary.render()
    assert "5 records in out.jsonl: 4 ok, 0 fallback, 1 error" in text
    assert "errors: timeout 1" in text
    assert "p50 300 ms, p95 1.50 s" in text
    assert "this run: 4 written, 1 already recorded" in text


def test_interrupted_summary_says_how_to_resume():
    """An interrupted run's summary names the signal and the unfinished inputs."""
    summary = Summary.build(Tally(), output="o", wall_s=1, this_run=ThisRun(0, 0, 3, "repaired"), interrupted="SIGTERM")
    text = summary.render()
    assert "3 not finished" in text and "interrupted by SIGTERM" in text
    assert summary.to_dict()["latency_ms"]["p50"] is None


def test_progress_line_has_done_total_rate_counts_and_eta():
    """Rate counts this run's records only; the ETA is what remains over that rate."""
    line = render_progress(Progress(done=600, total=1000, ok=500, fallback=50, error=50, written=400, elapsed_s=4.0))
    assert line.startswith("600/1000  60%")
    assert "100.0/s" in line
    assert "ok 500 fallback 50 error 50" in line
    assert line.endswith("ETA 00:04")


def test_progress_line_without_total_or_rate():
    """Before the first record there is no rate and no ETA; without a total there is no percentage."""
    assert render_progress(Progress(0, 10, 0, 0, 0, 0, 0.0)).endswith("ETA --:--")
    assert render_progress(Progress(5, None, 5, 0, 0, 5, 1.0)).startswith("5  ")
    assert "ETA 1:00:00" in render_progress(Progress(0, 3600, 0, 0, 0, 1, 1.0))
