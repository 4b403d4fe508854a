"""The pure maths of a policy's schedule: waits, jitter bounds, worst cases.

The executor draws its waits here and ``explain`` prints the same numbers, so
what a policy promises and what it does cannot drift apart. No I/O, no clock.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .errors import ERROR_CLASSES
from .policy import Backoff, FallbackStep, ModelSpec, Policy, RetrySpec


def nominal_wait_s(backoff: Backoff, failed_attempt: int) -> float:
    """The wait after attempt ``failed_attempt`` (1-based) failed: ``base * multiplier**(n-1)``, capped."""
    try:
        grown = backoff.base_s * backoff.multiplier ** (failed_attempt - 1)
    except OverflowError:  # e.g. multiplier 1e6 over 99 attempts: long past any cap (unless there is nothing to grow)
        grown = math.inf if backoff.base_s else 0.0
    return min(grown, backoff.max_s)


def wait_bounds_s(backoff: Backoff, failed_attempt: int) -> tuple[float, float]:
    """The range a jittered wait is drawn from: nominal x [1 - jitter, 1 + jitter]."""
    nominal = nominal_wait_s(backoff, failed_attempt)
    return nominal * (1 - backoff.jitter), nominal * (1 + backoff.jitter)


def draw_wait_s(backoff: Backoff, failed_attempt: int, rng: random.Random | None = None) -> float:
    """A jittered wait, uniform within :func:`wait_bounds_s`."""
    low, high = wait_bounds_s(backoff, failed_attempt)
    return (rng or random).uniform(low, high)


@dataclass(frozen=True, slots=True)
class Step:
    """One attempt of a model's schedule and the backoff wait before it (zero for the first)."""

    attempt: int
    wait_nominal_s: float
    wait_low_s: float
    wait_high_s: float


@dataclass(frozen=True, slots=True)
class ModelPlan:
    model: ModelSpec
    label: str  # "primary" or "fallback[i]"
    steps: tuple[Step, ...]
    worst_case_s: float
    calls: int  # billable requests in the worst case


def _retry_after_gap_s(retry: RetrySpec) -> float:
    """The longest pause a Retry-After can impose between two attempts (0 when it is not honoured)."""
    if retry.respect_retry_after and "rate_limit" in retry.retry_on:
        return retry.max_retry_after_s
    return 0.0


def model_plan(model: ModelSpec, label: str, retry: RetrySpec, attempt_s: float, json_fallback: bool) -> ModelPlan:
    """A model's schedule and its worst case.

    Between two attempts the worst gap is the larger of: the attempt running to
    its deadline then the longest jittered backoff, or an instant 429 followed
    by the longest Retry-After the policy accepts. The last attempt runs to its
    deadline.
    """
    steps = [Step(1, 0.0, 0.0, 0.0)]
    worst = attempt_s
    for n in range(2, retry.max_attempts + 1):
        low, high = wait_bounds_s(retry.backoff, n - 1)
        steps.append(Step(n, nominal_wait_s(retry.backoff, n - 1), low, high))
        worst += max(attempt_s + high, _retry_after_gap_s(retry))
    calls = retry.max_attempts * (2 if json_fallback else 1)
    return ModelPlan(model, label, tuple(steps), worst, calls)


def answers_every_failure(canned: bool, has_match: bool, on: frozenset[str]) -> bool:
    """Whether a fallback step always answers: a canned response with no ``match``, on every error class.

    The loader asks it of raw steps (to refuse the steps behind one) and
    ``explain`` of compiled ones (to mark them): one rule for both.
    """
    return canned and not has_match and on >= frozenset(ERROR_CLASSES)


def unreachable_after(always_answers: list[bool]) -> tuple[int, ...]:
    """Indexes of the steps after the first one that always answers: nothing can reach them."""
    first = next((i for i, flag in enumerate(always_answers) if flag), len(always_answers))
    return tuple(range(first + 1, len(always_answers)))


def unreachable_steps(fallbacks: tuple[FallbackStep, ...]) -> tuple[int, ...]:
    """Indexes of the compiled steps that can never run."""
    return unreachable_after([answers_every_failure(s.output is not None, s.match is not None, s.on) for s in fallbacks])


@dataclass(frozen=True, slots=True)
class ClassRoute:
    """What a policy does with one error class: retry it or not, then which fallback answers it."""

    error_class: str
    retried: bool
    answered_by: tuple[str, ...]  # fallback labels that may answer it, in order; the last one is unconditional
    ends_in_error: bool  # True when no unconditional step answers it: the input can end in an error


@dataclass(frozen=True, slots=True)
class ChainPlan:
    models: tuple[ModelPlan, ...]
    routes: tuple[ClassRoute, ...]
    unreachable: tuple[int, ...]
    worst_case_s: float  # cut to total_ms when that is shorter
    uncut_worst_case_s: float
    worst_case_calls: int
    cut_at: tuple[str, int] | None  # (model label, attempt) during which total_ms runs out in the worst case


def _routes(policy: Policy, reachable: tuple[FallbackStep, ...]) -> tuple[ClassRoute, ...]:
    routes = []
    for name in ERROR_CLASSES:
        labels, final = [], False
        for step in reachable:
            if name in step.on:
                labels.append(step.label)
                if step.match is None and step.output is not None:
                    final = True
                    break
        routes.append(ClassRoute(name, name in policy.retry.retry_on, tuple(labels), not final))
    return tuple(routes)


def chain_plan(policy: Policy) -> ChainPlan:
    """The whole chain: every reachable model's schedule, the routes of each error class, the worst case."""
    unreachable = unreachable_steps(policy.fallbacks)
    reachable = tuple(s for s in policy.fallbacks if s.index not in unreachable)
    args = (policy.retry, policy.timeouts.attempt_s, policy.program.json_fallback)
    models = [model_plan(policy.model, "primary", *args)]
    models += [model_plan(s.model, s.label, *args) for s in reachable if s.model is not None]
    uncut = sum(m.worst_case_s for m in models)
    total = policy.timeouts.total_s
    cut = total is not None and total < uncut
    cut_at = _cut_at(models, policy.retry, policy.timeouts.attempt_s, total) if cut else None
    return ChainPlan(
        models=tuple(models),
        routes=_routes(policy, reachable),
        unreachable=unreachable,
        worst_case_s=total if cut else uncut,
        uncut_worst_case_s=uncut,
        worst_case_calls=sum(m.calls for m in models),
        cut_at=cut_at,
    )


def _cut_at(models: list[ModelPlan], retry: RetrySpec, attempt_s: float, total_s: float) -> tuple[str, int]:
    """Walk the worst-case timeline to the attempt (or the wait before it) where ``total_s`` runs out."""
    elapsed = 0.0
    for plan in models:
        for step in plan.steps:
            gap = 0.0 if step.attempt == 1 else max(step.wait_high_s, _retry_after_gap_s(retry) - attempt_s)
            elapsed += gap + attempt_s
            if elapsed >= total_s:
                return plan.label, step.attempt
    return models[-1].label, models[-1].steps[-1].attempt
