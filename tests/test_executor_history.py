"""A long-lived executor keeps no per-call history: memory does not grow with traffic, inputs are not retained."""

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
