"""Retries over real HTTP: what the rehearsal provider sees is exactly what the policy says, on both paths."""

from __future__ import annotations

import pytest
from executor_support import make_policy, outcomes, run  # noqa: F401  (run is a fixture)

from runner.plan import wait_bounds_s

# (script kind, extra step keys, the error class the executor must report)
RETRYABLE = [
    ("rate_limit", {"retry_after_ms": 10}, "rate_limit"),
    ("server_error", {"status": 503}, "server"),
    ("drop", {}, "transport"),
    ("garbage", {}, "server"),
]
NOT_RETRYABLE = [
    ("auth", "auth"),
    ("invalid_request", "invalid_request"),
    ("unknown_model", "unknown_model"),
    ("context_window", "context_window"),
    ("quota", "quota_exceeded"),
    ("unparseable", "parse_error"),
    ("empty", "empty_response"),
]


@pytest.mark.parametrize(("kind", "extra", "code"), RETRYABLE, ids=[r[0] for r in RETRYABLE])
def test_retryable_class_is_tried_max_attempts_times(provider, run, kind, extra, code):
    """A retryable failure that never clears costs exactly max_attempts requests and ends as retry_exhausted."""
    provider.set_script([{"do": kind, "times": "forever", **extra}])
    with make_policy(provider).executor() as executor:
        result = run(executor, question="What is DSPy?")
    assert provider.count == 3
    assert outcomes(result) == [code] * 3
    assert result.status == "error" and result.error.code == "retry_exhausted"
    assert code in result.error.message


@pytest.mark.parametrize(("kind", "code"), NOT_RETRYABLE, ids=[r[0] for r in NOT_RETRYABLE])
def test_class_not_in_retry_on_is_not_retried(provider, run, kind, code):
    """A class outside retry_on ends the model after one request and is reported as itself."""
    provider.set_script([{"do": kind, "times": "forever"}])
    with make_policy(provider).executor() as executor:
        result = run(executor, question="What is DSPy?")
    assert provider.count == 1
    assert outcomes(result) == [code]
    assert result.error.code == code
    assert (result.error.model, result.error.attempt, result.error.operation) == ("openai/test-model", 1, "predict")


def test_parse_failure_is_not_re_asked_with_json_by_default(provider, run):
    """DSPy's hidden JSONAdapter re-ask is off: one unparseable answer is one request and a parse_error."""
    provider.set_script([{"do": "unparseable", "times": 1}])
    with make_policy(provider).executor() as executor:
        result = run(executor, question="What is DSPy?")
    assert provider.count == 1 and result.error.code == "parse_error"


def test_json_fallback_when_the_policy_asks_for_it(provider, run):
    """program.json_fallback: true restores the re-ask: the second request (JSON format) answers."""
    provider.set_script([{"do": "unparseable", "times": 1}])
    with make_policy(provider, program={"json_fallback": True}).executor() as executor:
        result = run(executor, question="What is DSPy?")
    assert provider.count == 2 and result.status == "ok"


def test_transient_failure_then_success_is_ok_with_history(provider, run):
    """Two 503s then an answer: status ok from the primary, and the record lists the three attempts the server saw."""
    provider.set_script([{"do": "server_error", "status": 503, "times": 2}, {"do": "ok"}])
    with make_policy(provider).executor() as executor:
        result = run(executor, question="What is the capital of France?")
    assert provider.count == 3
    assert result.status == "ok" and result.served_by == "primary" and result.model == "openai/test-model"
    assert outcomes(result) == ["server", "server", "ok"]
    assert [a.attempt for a in result.attempts] == [1, 2, 3]
    assert result.output and set(result.output) == {"answer"}


def test_waits_follow_the_backoff_within_jitter(provider, run):
    """Each wait is base*multiplier**(n-1) within the jitter band, in the record and in the gaps the server saw."""
    provider.set_script([{"do": "server_error", "times": 3}, {"do": "ok"}])
    policy = make_policy(provider, retry={"max_attempts": 4, "backoff": {"base_ms": 40, "multiplier": 2, "max_ms": 100, "jitter": 0.25}})
    with policy.executor() as executor:
        result = run(executor, question="q")
    seen = provider.requests
    assert len(seen) == 4 and result.status == "ok"
    for n in (1, 2, 3):
        low, high = wait_bounds_s(policy.retry.backoff, n)
        recorded = result.attempts[n - 1].wait_ms / 1000
        assert low <= recorded <= high, (n, recorded, low, high)
        gap = seen[n].arrived_at - seen[n - 1].responded_at
        assert low <= gap <= high + 0.05, (n, gap, low, high)  # the client's own work is the only slack
    assert high == pytest.approx(0.1 * 1.25)  # the third wait hit max_ms: the cap applies before jitter
    assert result.attempts[-1].wait_ms == 0.0


@pytest.mark.parametrize(
    ("retry_after_ms", "base_ms", "max_retry_after_ms", "expected_ms"),
    [(150, 10, 1000, 150), (0, 80, 1000, 80), (120, 10, 120, 120)],
    ids=["longer-than-the-schedule", "zero", "at-max_retry_after_ms"],
)
def test_wait_is_the_longer_of_retry_after_and_the_schedule(provider, run, retry_after_ms, base_ms, max_retry_after_ms, expected_ms):
    """A 429's Retry-After lengthens the backoff wait and never shortens it (Retry-After: 0 still waits the schedule);
    one exactly at max_retry_after_ms is honoured. Measured in the record and at the server."""
    provider.set_script([{"do": "rate_limit", "retry_after_ms": retry_after_ms, "times": 1}, {"do": "ok"}])
    policy = make_policy(provider, retry={"max_retry_after_ms": max_retry_after_ms, "backoff": {"base_ms": base_ms, "jitter": 0.0}})
    with policy.executor() as executor:
        result = run(executor, question="q")
    first, second = provider.requests
    assert result.status == "ok"
    assert result.attempts[0].wait_ms == pytest.approx(expected_ms)
    assert second.arrived_at - first.responded_at >= expected_ms / 1000


def test_retry_after_beyond_the_limit_stops_the_model_at_once(provider, run):
    """A Retry-After above max_retry_after_ms is not waited: the model stops after one request and the fallback answers."""
    provider.set_script([{"do": "rate_limit", "retry_after_ms": 5000, "times": "forever"}])
    policy = make_policy(
        provider,
        retry={"max_retry_after_ms": 1000},
        fallbacks=[{"on": ["rate_limit"], "response": "busy, try later"}],
    )
    with policy.executor() as executor:
        result = run(executor, question="q")
    assert provider.count == 1
    assert result.status == "fallback" and result.output == {"answer": "busy, try later"}
    assert result.attempts[0].wait_ms == 0.0


def test_respect_retry_after_false_keeps_the_schedule(provider, run):
    """With respect_retry_after off, the backoff schedule decides even when the provider asks for longer."""
    provider.set_script([{"do": "rate_limit", "retry_after_ms": 5000, "times": 1}, {"do": "ok"}])
    policy = make_policy(provider, retry={"respect_retry_after": False, "backoff": {"base_ms": 20, "jitter": 0.0}})
    with policy.executor() as executor:
        result = run(executor, question="q")
    assert result.status == "ok" and result.attempts[0].wait_ms == pytest.approx(20.0)


def test_retry_on_narrowed_by_the_policy(provider, run):
    """retry_on: [rate_limit] makes a 503 final after one request."""
    provider.set_script([{"do": "server_error", "times": "forever"}])
    with make_policy(provider, retry={"retry_on": ["rate_limit"]}).executor() as executor:
        result = run(executor, question="q")
    assert provider.count == 1 and result.error.code == "server"


def test_error_record_carries_the_provider_text_and_the_fix(provider):
    """The record's message is the provider's own text, then the runner's fix for that class."""
    provider.set_script([{"do": "invalid_request", "message": "Invalid value for 'temperature' (rehearsal).", "times": 1}])
    with make_policy(provider).executor() as executor:
        result = executor.run(question="q")
    assert result.error.code == "invalid_request"
    assert "Invalid value for 'temperature'" in result.error.message
    assert result.error.message.endswith("check the model's settings (temperature, max_tokens) in the policy")
