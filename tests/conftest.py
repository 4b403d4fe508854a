"""Shared pytest setup: offline LiteLLM metadata and a rehearsal provider fixture.

Kept minimal: every helper's tests import this. The environment variable must
be set before anything imports dspy or litellm, so it sits at the very top.
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")

import pytest  # noqa: E402

from runner.rehearsal import Provider  # noqa: E402


@pytest.fixture
def provider():
    """A started rehearsal provider answering `ok`; call provider.set_script([...]) to script faults."""
    with Provider() as started:
        yield started
