"""What a long-lived executor costs per call: no DSPy history kept, no event loop on the sync path."""

from __future__ import annotations

import asyncio

import dspy
from dspy.clients.base_lm import GLOBAL_HISTORY

from executor_support import make_policy


def test_no_history_grows_on_either_path(provider):
    """After sync and async predictions, DSPy's LM, module and global histories are all still empty."""
    executor = make_policy(provider).executor()
    before = len(GLOBAL_HISTORY)
    for i in range(5):
        assert executor.run(question=f"q{i}").status == "ok"
        assert asyncio.run(executor.arun(question=f"q{i}")).status == "ok"
    runtime = executor._primary
    assert len(runtime.async_lm.history) == 0
    assert runtime.sync_lm is None or len(runtime.sync_lm.history) == 0
    assert all(len(p.history) == 0 for p in executor._program.predictors())
    assert len(GLOBAL_HISTORY) == before
    assert dspy.settings.disable_history is False  # per call only: the process's own DSPy settings are untouched
    executor.close()


def test_sync_run_never_starts_an_event_loop_for_a_native_model(provider, monkeypatch):
    """run() on a natively routed model answers, retries and times out without asyncio (the cheap sync path)."""
    import runner.executor as executor_module

    def no_loop(*args, **kwargs):
        raise AssertionError("the sync path started an event loop")

    monkeypatch.setattr(executor_module.asyncio, "run", no_loop)
    monkeypatch.setattr(executor_module.asyncio, "new_event_loop", no_loop)
    provider.set_script([{"do": "server_error"}, {"do": "hang"}, {"do": "ok"}])
    policy = make_policy(provider, timeouts={"attempt_ms": 100}, retry={"backoff": {"base_ms": 1, "max_ms": 2}})
    with policy.executor() as executor:
        assert executor._primary.sync_lm is not None
        result = executor.run(question="q")
    assert [a.outcome for a in result.attempts] == ["server", "timeout", "ok"]
