"""The schedule maths that the executor follows and `explain` prints."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest

from runner.loader import load_policy_text
from runner.plan import chain_plan, draw_wait_s, nominal_wait_s, unreachable_steps, wait_bounds_s
from runner.policy import Backoff

BACKOFF = Backoff(base_s=1.0, multiplier=2.0, max_s=5.0, jitter=0.15)


@pytest.mark.parametrize(("failed", "expected"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (10, 5.0)])
def test_nominal_wait_grows_then_caps(failed, expected):
    """The wait after attempt n is base * multiplier**(n-1), never above max."""
    assert nominal_wait_s(BACKOFF, failed) == expected


def test_drawn_waits_stay_within_jitter_bounds():
    """Jittered waits are drawn from nominal x [1 - jitter, 1 + jitter] and use the whole range."""
    rng = random.Random(7)
    low, high = wait_bounds_s(BACKOFF, 2)
    assert (low, high) == pytest.approx((1.7, 2.3))
    draws = [draw_wait_s(BACKOFF, 2, rng) for _ in range(2000)]
    assert all(low <= d <= high for d in draws)
    assert min(draws) < 1.75 and max(draws) > 2.25


def _policy(body: str):
    return load_policy_text(textwrap.dedent(body))


PROD_LIKE = """
    model: {name: openai/gpt-4o-mini}
    retry:
      max_attempts: 3
      retry_on: [timeout, server]
      backoff: {base_ms: 100, multiplier: 2, max_ms: 1000, jitter: 0.5}
      respect_retry_after: true
    timeouts: {attempt_ms: 50, total_ms: 100000}
    fallbacks:
      - on: [context_window]
        model: {name: openai/gpt-4o}
      - match: "(?i)weather"
        response: "no weather"
      - response: "sorry"
"""


def test_worst_case_is_deadlines_plus_maximal_waits():
    """Without rate_limit in retry_on, the worst case is every attempt to its deadline plus every wait at its jittered maximum."""
    plan = chain_plan(_policy(PROD_LIKE))
    per_model = 3 * 0.050 + 0.100 * 1.5 + 0.200 * 1.5
    assert [m.label for m in plan.models] == ["primary", "fallback[0]"]
    assert plan.worst_case_s == pytest.approx(2 * per_model)
    assert plan.worst_case_calls == 6
    assert plan.cut_at is None


def test_retry_after_lengthens_the_worst_case():
    """When rate_limit is retried and Retry-After honoured, a gap may last max_retry_after_ms."""
    policy = _policy(
        """
        model: {name: openai/gpt-4o-mini}
        retry: {max_attempts: 3, retry_on: [rate_limit], max_retry_after_ms: 2000,
                backoff: {base_ms: 100, multiplier: 2, max_ms: 1000, jitter: 0}}
        timeouts: {attempt_ms: 50}
        """
    )
    assert chain_plan(policy).worst_case_s == pytest.approx(0.050 + 2 * 2.0)


def test_total_deadline_cuts_and_says_where():
    """A total_ms shorter than the schedule caps the worst case and names the attempt it falls in."""
    policy = _policy(
        """
        model: {name: openai/gpt-4o-mini}
        retry: {max_attempts: 3, retry_on: [timeout], backoff: {base_ms: 100, multiplier: 1, max_ms: 100, jitter: 0}}
        timeouts: {attempt_ms: 1000, total_ms: 2050}
        """
    )
    plan = chain_plan(policy)
    assert plan.worst_case_s == pytest.approx(2.05)
    assert plan.uncut_worst_case_s == pytest.approx(3.2)
    assert plan.cut_at == ("primary", 2)


def test_routes_follow_retry_on_and_fallback_conditions():
    """Each error class is retried or not per retry_on, then answered by the fallbacks whose `on` holds it."""
    routes = {r.error_class: r for r in chain_plan(_policy(PROD_LIKE)).routes}
    assert routes["timeout"].retried and not routes["auth"].retried
    assert routes["context_window"].answered_by == ("fallback[0]", "fallback[1]", "fallback[2]")
    assert routes["auth"].answered_by == ("fallback[1]", "fallback[2]")
    assert not routes["auth"].ends_in_error


def test_steps_after_an_unconditional_response_are_unreachable():
    """Nothing after a canned response with neither `on` nor `match` can ever run."""
    policy = _policy(
        """
        model: {name: openai/gpt-4o-mini}
        fallbacks:
          - response: "first"
        """
    )
    assert unreachable_steps(policy.fallbacks) == ()


def _explain(*args: str) -> subprocess.CompletedProcess:
    code = (
        "import sys; from runner.cli import main; rc = main(sys.argv[1:]);"
        "assert 'dspy' not in sys.modules and 'litellm' not in sys.modules, 'explain imported dspy';"
        "sys.exit(rc)"
    )
    return subprocess.run([sys.executable, "-c", code, "explain", *args], capture_output=True, text=True, timeout=60)


def test_explain_prints_the_plan_without_importing_dspy(tmp_path):
    """`dspy-run explain` shows schedules, routes and the worst case, and never imports dspy."""
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(PROD_LIKE))
    done = _explain("--policy", str(path))
    assert done.returncode == 0, done.stderr
    assert "attempt 2  after 100 ms (50 ms to 150 ms with jitter)" in done.stdout
    assert "context_window  not retried, then fallback[0] -> fallback[1] -> fallback[2]" in done.stdout
    assert "worst case per input: 1.20 s wall time, 6 billable call(s)" in done.stdout


def test_explain_json_matches_the_plan(tmp_path):
    """`explain --json` carries the same numbers as the plan, as data."""
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(PROD_LIKE))
    done = _explain("--policy", str(path), "--json")
    data = json.loads(done.stdout)
    assert data["worst_case_ms"] == pytest.approx(1200)
    assert data["models"][0]["attempts"][2]["wait_max_ms"] == pytest.approx(300)
    assert data["fallbacks"][1]["match"] == "(?i)weather"


def test_explain_refuses_an_invalid_policy_with_exit_2(tmp_path):
    """An invalid policy is refused in one line with its position, exit 2, no traceback."""
    path = tmp_path / "bad.yaml"
    path.write_text("model: {name: openai/x}\nretry: {max_atempts: 3}\n")
    done = _explain("--policy", str(path))
    assert done.returncode == 2
    assert f"{path}:2:9" in done.stderr and "max_attempts" in done.stderr
    assert "Traceback" not in done.stderr


def test_huge_multiplier_caps_instead_of_overflowing():
    """multiplier 1e6 over 100 attempts would overflow a float: the wait is the cap (or 0 with base 0), and explain works."""
    policy = load_policy_text(
        "version: 1\nmodel: {name: openai/gpt-4o-mini}\nretry:\n  max_attempts: 100\n"
        "  backoff: {base_ms: 1000, multiplier: 1000000, max_ms: 86400000}\ntimeouts: {attempt_ms: 10, total_ms: 1000}\n"
    )
    assert nominal_wait_s(policy.retry.backoff, 99) == 86400.0
    assert nominal_wait_s(replace(policy.retry.backoff, base_s=0.0), 99) == 0.0
    assert chain_plan(policy).cut_at == ("primary", 2)


def test_whole_numbers_written_as_floats_compile_to_ints():
    """`max_attempts: 3.0` is a JSON Schema integer: it compiles to int 3, so range() and explain work."""
    policy = load_policy_text(
        "version: 1\nmodel: {name: openai/gpt-4o-mini, max_tokens: 512.0}\nretry: {max_attempts: 3.0}\n"
        "limits: {max_input_chars: 100.0, max_in_flight: 4.0}\n"
    )
    counts = (policy.retry.max_attempts, policy.model.max_tokens, policy.limits.max_input_chars, policy.limits.max_in_flight)
    assert counts == (3, 512, 100, 4) and all(type(n) is int for n in counts)
    assert [s.attempt for s in chain_plan(policy).models[0].steps] == [1, 2, 3]
