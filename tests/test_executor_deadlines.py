"""Hard deadlines over real HTTP: a hang or a trickle ends at attempt_ms with the socket closed; total_ms holds."""

from __future__ import annotations

import time

import pytest
from executor_support import make_policy, outcomes, run, warm_up  # noqa: F401  (run is a fixture)

ATTEMPT_MS = 200
SLACK_S = 0.05


@pytest.mark.parametrize("step", [{"do": "hang"}, {"do": "trickle", "interval_ms": 40}], ids=["hang", "trickle"])
def test_stalled_attempt_ends_at_attempt_ms_and_closes_the_socket(provider, run, step):
    """A server that never finishes (silent, or one byte every 40 ms) is cut at attempt_ms and sees the client leave."""
    policy = make_policy(provider, retry={"max_attempts": 1}, timeouts={"attempt_ms": ATTEMPT_MS})
    with policy.executor() as executor:
        warm_up(executor, run, provider)
        provider.set_script([{**step, "times": "forever"}])
        result = run(executor, question="q")
        returned_at = time.monotonic()
    assert outcomes(result) == ["timeout"] and result.error.code == "timeout"
    assert ATTEMPT_MS <= result.attempts[0].elapsed_ms <= ATTEMPT_MS + SLACK_S * 1000
    record = provider.wait_closed(0, timeout=2)
    # The server saw the request a little after the attempt began (prompt formatting, connecting).
    assert record.closed_at - record.arrived_at <= ATTEMPT_MS / 1000 + SLACK_S
    assert record.closed_at <= returned_at + 0.02  # closed when the call returned, not left open behind it


def test_trickle_is_cut_on_every_retry_and_the_next_attempt_uses_a_fresh_connection(provider, run):
    """Three trickling attempts: each cut at attempt_ms, each socket closed, three requests seen."""
    policy = make_policy(provider, retry={"max_attempts": 3, "backoff": {"base_ms": 10, "jitter": 0}}, timeouts={"attempt_ms": 150})
    with policy.executor() as executor:
        warm_up(executor, run, provider)
        provider.set_script([{"do": "trickle", "interval_ms": 30, "times": "forever"}])
        result = run(executor, question="q")
        returned_at = time.monotonic()
    assert provider.count == 3 and outcomes(result) == ["timeout"] * 3
    records = [provider.wait_closed(index, timeout=2) for index in range(3)]
    for record, after in zip(records, [*records[1:], None]):
        assert record.closed_at - record.arrived_at <= 0.150 + SLACK_S
        # closed before the next attempt was sent: no socket left trickling behind the retry
        assert record.closed_at <= (after.arrived_at if after else returned_at + 0.02)
    assert all(150 <= a.elapsed_ms <= 150 + SLACK_S * 1000 for a in result.attempts)
    assert len({r.connection for r in provider.requests}) == 3


def test_slow_answer_within_the_deadline_is_kept(provider, run):
    """An answer that takes 80 ms under a 200 ms deadline is a success, not a timeout."""
    policy = make_policy(provider, timeouts={"attempt_ms": ATTEMPT_MS})
    with policy.executor() as executor:
        warm_up(executor, run, provider)
        provider.set_script([{"do": "ok", "delay_ms": 80}])
        result = run(executor, question="q")
    assert result.status == "ok" and outcomes(result) == ["ok"]


def test_total_ms_bounds_attempts_and_waits(provider, run):
    """total_ms 300 with 200 ms hangs: the second attempt gets only what is left, and the input ends by 300 ms."""
    policy = make_policy(
        provider,
        retry={"max_attempts": 5, "backoff": {"base_ms": 20, "jitter": 0}},
        timeouts={"attempt_ms": ATTEMPT_MS, "total_ms": 300},
    )
    started = time.perf_counter()
    with policy.executor() as executor:
        warm_up(executor, run, provider)
        provider.set_script([{"do": "hang", "times": "forever"}])
        result = run(executor, question="q")
    elapsed = time.perf_counter() - started
    assert result.status == "error"
    assert 0.300 <= result.elapsed_ms / 1000 <= 0.300 + SLACK_S
    assert elapsed <= 0.300 + 0.2  # building the executor included
    assert provider.count == 2 and outcomes(result) == ["timeout", "timeout"]
    assert result.attempts[1].elapsed_ms < ATTEMPT_MS  # cut by what total_ms had left


def test_a_wait_that_would_pass_total_ms_is_not_started(provider, run):
    """A Retry-After longer than what total_ms has left ends the model at once instead of sleeping past the deadline."""
    policy = make_policy(provider, timeouts={"attempt_ms": 200, "total_ms": 300})
    with policy.executor() as executor:
        warm_up(executor, run, provider)
        provider.set_script([{"do": "rate_limit", "retry_after_ms": 500, "times": "forever"}])
        result = run(executor, question="q")
    assert provider.count == 1
    assert result.elapsed_ms < 100
    assert result.error.code == "rate_limit"


def test_total_ms_skips_fallback_models_but_not_canned_answers(provider, run):
    """Once total_ms is spent, a fallback model is skipped (no request) while a response step still answers."""
    policy = make_policy(
        provider,
        retry={"max_attempts": 1},
        timeouts={"attempt_ms": 200, "total_ms": 200},
        fallbacks=[
            {"on": ["timeout"], "model": {"name": "openai/backup-model", "api_base": provider.base_url}},
            {"on": ["timeout"], "response": "sorry"},
        ],
    )
    with policy.executor() as executor:
        warm_up(executor, run, provider)
        provider.set_script({"test-model": [{"do": "hang", "times": "forever"}], "*": [{"do": "ok"}]})
        result = run(executor, question="q")
    assert provider.count == 1
    assert result.status == "fallback" and result.served_by == "fallback[1]" and result.output == {"answer": "sorry"}


def test_total_deadline_holds_while_queueing_for_the_rate_limit(provider, run):
    """An input whose request slot (limits) would come after total_ms gives up at once with a timeout: nothing sent, no overrun."""
    policy = make_policy(
        provider,
        limits={"requests_per_second": 2},  # one start every 500 ms
        timeouts={"attempt_ms": 100, "total_ms": 150},
    )
    with policy.executor() as executor:
        assert run(executor, question="first").status == "ok"
        second = run(executor, question="second")
    assert provider.count == 1
    assert second.status == "error" and second.attempts == () and second.elapsed_ms < 150
    assert second.error.code == "timeout" and "request slot" in second.error.message
