"""The pure maths of a policy's schedule: waits, jitter bounds, worst cases.

The executor draws its waits here and ``explain`` prints the same numbers, so
what a policy promises and what it does cannot drift apart. No I/O, no clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .policy import Backoff, ModelSpec, Policy, RetrySpec


def nominal_wait_s(backoff: Backoff, failed_attempt: int) -> float:
    """The wait after attempt ``failed_attempt`` (1-based) failed: ``base * multiplier**(n-1)``, capped."""
    return min(backoff.base_s * backoff.multiplier ** (failed_attempt - 1), backoff.max_s)


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
    """One attempt of the schedule: the wait before it and its deadline."""

    attempt: int
    wait_nominal_s: float
    wait_low_s: float
    wait_high_s: float


@dataclass(frozen=True, slots=True)
class ModelPlan:
    model: ModelSpec
    label: str  # "primary" or "fallback[i]"
    steps: tuple[Step, ...]
    worst_case_s: float  # every attempt runs to its deadline, every wait at its jittered maximum


def model_plan(model: ModelSpec, label: str, retry: RetrySpec, attempt_s: float) -> ModelPlan:
    steps = []
    for n in range(1, retry.max_attempts + 1):
        if n == 1:
            steps.append(Step(1, 0.0, 0.0, 0.0))
        else:
            low, high = wait_bounds_s(retry.backoff, n - 1)
            steps.append(Step(n, nominal_wait_s(retry.backoff, n - 1), low, high))
    worst = sum(s.wait_high_s for s in steps) + attempt_s * len(steps)
    return ModelPlan(model, label, tuple(steps), worst)


def model_plans(policy: Policy) -> tuple[ModelPlan, ...]:
    """The schedule of the primary model and of every fallback model, in chain order."""
    plans = [model_plan(policy.model, "primary", policy.retry, policy.timeouts.attempt_s)]
    for step in policy.fallbacks:
        if step.model is not None:
            plans.append(model_plan(step.model, step.label, policy.retry, policy.timeouts.attempt_s))
    return tuple(plans)


def worst_case_s(policy: Policy) -> float:
    """Wall time if every model of the chain exhausts its schedule, before ``total_ms`` cuts it."""
    return sum(p.worst_case_s for p in model_plans(policy))
