"""Inputs, ids, build-time refusals and isolation: what reaches the provider, and what never does."""

from __future__ import annotations

import asyncio

import pytest
from executor_support import fallback_model, make_policy, run  # noqa: F401  (run is a fixture)

from runner.errors import RunnerError


@pytest.mark.parametrize(
    ("inputs", "code"),
    [
        ({"question": ""}, "empty_input"),
        ({"question": "   \n\t"}, "empty_input"),
        ({"question": None}, "empty_input"),
        ({}, "invalid_input"),
        ({"question": "q", "topic": "x"}, "invalid_input"),
        ({"question": "x" * 101}, "invalid_input"),
        ({"question": "caf\udce9"}, "invalid_input"),
    ],
    ids=["empty", "whitespace", "null", "missing", "unknown-field", "oversized", "lone-surrogate"],
)
def test_bad_input_never_reaches_the_server_nor_a_fallback(provider, run, inputs, code):
    """A refused input costs no request and is not answered by an `on: [any]` fallback."""
    policy = make_policy(provider, limits={"max_input_chars": 100}, fallbacks=[{"on": ["any"], "response": "canned"}])
    with policy.executor() as executor:
        result = run(executor, inputs)
    assert provider.count == 0
    assert result.status == "error" and result.error.code == code and result.error.operation == "input"
    assert result.attempts == ()


def test_ids_count_per_executor_and_a_record_id_is_kept(provider, run):
    """Default ids are "1", "2", ... per executor; a mapping with record_id keeps the caller's id."""
    with make_policy(provider).executor() as executor:
        first = run(executor, question="a")
        second = run(executor, {"question": "b"}, record_id="row-7")
        third = run(executor, question="c")
    assert [first.id, second.id, third.id] == ["1", "row-7", "2"]


def test_record_attempts_match_what_the_server_saw(provider, run):
    """The record lists one attempt per request the server logged, with the same models and outcomes."""
    provider.set_script({"test-model": [{"do": "server_error", "times": 1}, {"do": "auth"}], "*": [{"do": "ok"}]})
    policy = make_policy(provider, fallbacks=[{"on": ["auth"], "model": fallback_model(provider, "openai/backup-model")}])
    with policy.executor() as executor:
        result = run(executor, question="q")
    seen = [(f"openai/{r.model}", {"server_error": "server"}.get(r.kind, r.kind)) for r in provider.requests]
    assert [(a.model, a.outcome) for a in result.attempts] == seen == [
        ("openai/test-model", "server"), ("openai/test-model", "auth"), ("openai/backup-model", "ok"),
    ]


def test_answers_are_not_cached_unless_the_policy_says_so(provider, run):
    """model.cache defaults to off: the same question twice is two requests."""
    with make_policy(provider).executor() as executor:
        run(executor, question="same question")
        run(executor, question="same question")
    assert provider.count == 2


def test_generation_settings_reach_the_wire(provider, run):
    """temperature and max_tokens from the policy are in the request body."""
    policy = make_policy(provider, model={"temperature": 0.3, "max_tokens": 77})
    with policy.executor() as executor:
        run(executor, question="q")
    (record,) = provider.requests
    # lm15 speaks OpenAI's current spelling of max_tokens on the wire
    assert record.option("temperature") == 0.3 and record.option("max_completion_tokens", record.option("max_tokens")) == 77


def test_concurrent_executors_with_different_policies_do_not_interfere(provider):
    """Two executors on one event loop each use their own model and adapter settings."""
    provider.set_script({"model-a": [{"do": "ok", "delay_ms": 30}], "model-b": [{"do": "ok", "delay_ms": 30}]})
    first = make_policy(provider, model={"name": "openai/model-a"}).executor()
    second = make_policy(provider, model={"name": "openai/model-b"}).executor()

    async def both():
        return await asyncio.gather(*(ex.arun(question=f"q{i}") for i in range(3) for ex in (first, second)))

    results = asyncio.run(both())
    assert [r.model for r in results] == ["openai/model-a", "openai/model-b"] * 3
    assert sorted(r.model for r in provider.requests) == ["model-a"] * 3 + ["model-b"] * 3
    first.close()
    second.close()


def test_unknown_model_is_refused_at_build_without_a_request(provider):
    """A model string no DSPy engine serves is an unknown_model error when the executor is built, before any call."""
    policy = make_policy(provider, fallbacks=[{"on": ["any"], "model": fallback_model(provider, "nosuchprovider/some-model")}])
    with pytest.raises(RunnerError) as caught:
        policy.executor()
    assert caught.value.code == "unknown_model" and "nosuchprovider/some-model" in caught.value.message
    assert provider.count == 0


def test_missing_key_variable_is_a_config_error_naming_it(provider, monkeypatch):
    """A policy naming an unset key variable fails at build with a message that says which variable to export."""
    monkeypatch.delenv("DSPY_RUN_TEST_KEY", raising=False)
    policy = make_policy(provider, model={"api_key_env": "DSPY_RUN_TEST_KEY"})
    with pytest.raises(RunnerError) as caught:
        policy.executor()
    assert caught.value.code == "config" and "export DSPY_RUN_TEST_KEY" in caught.value.message
