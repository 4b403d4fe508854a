"""Point a policy's models at a rehearsal provider, and run inputs against it.

Two uses: the embedded provider behind ``rehearsal/NAME`` models (only those
models are redirected; real ones stay real), and ``dspy-run rehearse``, which
redirects every model of the chain so a production policy meets scripted
faults instead of its providers. The record keeps each model's real name: only
the connection changes.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable, Iterator

from ..policy import ModelSpec, Policy
from .script import Script, Step
from .server import Provider

REHEARSAL_PROVIDER = "rehearsal"


def uses_rehearsal(policy: Policy) -> bool:
    return any(model.provider == REHEARSAL_PROVIDER for model in policy.models)


def redirect(base_url: str, *, every_model: bool) -> Callable[[ModelSpec], ModelSpec]:
    """A connection hook for the executor: talk OpenAI's protocol to ``base_url`` with a placeholder key."""

    def connect(spec: ModelSpec) -> ModelSpec:
        if not every_model and spec.provider != REHEARSAL_PROVIDER:
            return spec
        bare = spec.name.split("/", 1)[-1]
        return replace(spec, name=f"openai/{bare}", api_base=base_url, api_key_env=None)

    return connect


def scaled_policy(policy: Policy, speed: float) -> Policy:
    """The same policy with every duration divided by ``speed`` (``--speed 10``: ten times faster)."""
    if speed == 1:
        return policy
    retry, timeouts = policy.retry, policy.timeouts
    backoff = replace(retry.backoff, base_s=retry.backoff.base_s / speed, max_s=retry.backoff.max_s / speed)
    return replace(
        policy,
        retry=replace(retry, backoff=backoff, max_retry_after_s=retry.max_retry_after_s / speed),
        timeouts=replace(
            timeouts,
            attempt_s=timeouts.attempt_s / speed,
            total_s=timeouts.total_s / speed if timeouts.total_s is not None else None,
        ),
    )


def scaled_script(script: Script, speed: float) -> Script:
    """The same script with its delays, Retry-Afters and trickle intervals divided by ``speed``."""
    if speed == 1:
        return script

    def step(s: Step) -> Step:
        return replace(
            s,
            delay_ms=s.delay_ms / speed,
            retry_after_ms=s.retry_after_ms / speed if s.retry_after_ms is not None else None,
            interval_ms=s.interval_ms / speed,
            duration_ms=s.duration_ms / speed if s.duration_ms is not None else None,
        )

    return Script(tuple((key, tuple(step(s) for s in steps)) for key, steps in script.lanes))


@contextmanager
def policy_executor(policy: Policy, *, limiter: Any = None) -> Iterator[Any]:
    """The policy's executor, closed after; models named ``rehearsal/NAME`` get an embedded provider of this process's own."""
    if not uses_rehearsal(policy):
        with policy.executor(limiter=limiter) as executor:
            yield executor
        return
    with rehearsal(policy, every_model=False, limiter=limiter) as (_, executor):
        yield executor


@contextmanager
def rehearsal(
    policy: Policy,
    *,
    every_model: bool,
    script: Any = None,
    answers: Any = None,
    rng: Any = None,
    limiter: Any = None,
    **provider_kwargs: Any,
) -> Iterator[tuple[Provider, Any]]:
    """A started provider and an executor whose (rehearsal or every) model talks to it; both closed after.

    ``rng`` goes to the executor's jitter draws (tests pin it to the extremes).
    """
    spec = policy.rehearsal
    if spec is not None:
        script = spec.script if script is None else script
        answers = spec.answers if answers is None else answers
        provider_kwargs.setdefault("default_answer", spec.default_answer)
    with Provider(script=script, answers=answers, **provider_kwargs) as provider:
        executor = policy.executor(connect=redirect(provider.base_url, every_model=every_model), rng=rng, limiter=limiter)
        try:
            yield provider, executor
        finally:
            executor.close()
