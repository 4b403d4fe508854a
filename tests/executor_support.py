"""Helpers for the executor tests: policies aimed at a rehearsal provider, sync and async runs alike."""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import pytest

from runner.loader import load_policy_text
from runner.policy import Policy

MODEL = "openai/test-model"

BASE: dict[str, Any] = {
    "retry": {"max_attempts": 3, "backoff": {"base_ms": 30, "multiplier": 2, "max_ms": 200, "jitter": 0.2}},
    "timeouts": {"attempt_ms": 2000},
    "logging": {"level": "WARNING"},
}


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def make_policy(provider: Any, **sections: Any) -> Policy:
    """A policy for MODEL at the provider, scaled to tens of milliseconds, through the real loader."""
    data = merged({"model": {"name": MODEL, "api_base": provider.base_url}, **BASE}, sections)
    return load_policy_text(json.dumps(data), source="<test policy>")


def fallback_model(provider: Any, name: str) -> dict[str, Any]:
    return {"name": name, "api_base": provider.base_url}


def run_sync(executor: Any, *args: Any, **kwargs: Any) -> Any:
    return executor.run(*args, **kwargs)


def run_async(executor: Any, *args: Any, **kwargs: Any) -> Any:
    return asyncio.run(executor.arun(*args, **kwargs))


@pytest.fixture(params=["sync", "async"])
def run(request: pytest.FixtureRequest) -> Any:
    """Runs one input through ``executor.run`` or ``executor.arun``: every behaviour must hold on both paths."""
    return run_sync if request.param == "sync" else run_async


def outcomes(result: Any) -> list[str]:
    return [a.outcome for a in result.attempts]


def warm_up(executor: Any, run: Any, provider: Any) -> None:
    """One answered call, then a clean request log: the tests that time attempts must not time DSPy's cold start.

    A fresh process's first prediction spends tens of milliseconds (more on a
    busy machine) in lazy imports and engine set-up before its request leaves,
    all inside the first attempt's deadline.
    """
    provider.set_script([{"do": "ok"}], reset_log=True)
    assert run(executor, question="warm-up").status == "ok"
    provider.reset()
    # A full garbage collection over everything a test session has piled up can pause the process for
    # tens of milliseconds in the middle of a timed attempt; collect now and leave the survivors alone.
    gc.collect()
    gc.freeze()
