"""The fallback chain over real HTTP: order, on, match, model steps under the same policy, canned answers."""

from __future__ import annotations

from executor_support import fallback_model, make_policy, outcomes, run  # noqa: F401  (run is a fixture)


def test_quota_goes_straight_to_the_fallback_model(provider, run):
    """quota_exceeded is not retried: one request to the primary, then the backup model answers."""
    provider.set_script({"test-model": [{"do": "quota", "times": "forever"}], "*": [{"do": "ok"}]})
    policy = make_policy(provider, fallbacks=[{"on": ["quota_exceeded"], "model": fallback_model(provider, "openai/backup-model")}])
    with policy.executor() as executor:
        result = run(executor, question="What is DSPy?")
    assert [r.model for r in provider.requests] == ["test-model", "backup-model"]
    assert result.status == "fallback" and result.served_by == "fallback[0]" and result.model == "openai/backup-model"
    assert [(a.model, a.outcome) for a in result.attempts] == [("openai/test-model", "quota_exceeded"), ("openai/backup-model", "ok")]


def test_context_window_goes_to_the_context_fallback_only(provider, run):
    """A context_window error skips a step for other classes and lands on the large-context model."""
    provider.set_script({"test-model": [{"do": "context_window", "times": "forever"}], "*": [{"do": "ok"}]})
    policy = make_policy(
        provider,
        fallbacks=[
            {"on": ["server", "timeout"], "model": fallback_model(provider, "openai/other-model")},
            {"on": ["context_window"], "model": fallback_model(provider, "openai/long-context-model")},
        ],
    )
    with policy.executor() as executor:
        result = run(executor, question="a very long question")
    assert [r.model for r in provider.requests] == ["test-model", "long-context-model"]
    assert result.served_by == "fallback[1]" and result.model == "openai/long-context-model"


def test_fallback_model_runs_under_the_same_retry_policy(provider, run):
    """A fallback model that fails retryably gets max_attempts too; then the next step answers."""
    provider.set_script({"test-model": [{"do": "auth", "times": "forever"}], "backup-model": [{"do": "server_error", "times": "forever"}]})
    policy = make_policy(
        provider,
        fallbacks=[
            {"on": ["auth"], "model": fallback_model(provider, "openai/backup-model")},
            {"on": ["server"], "response": "canned"},
        ],
    )
    with policy.executor() as executor:
        result = run(executor, question="q")
    assert [r.model for r in provider.requests] == ["test-model"] + ["backup-model"] * 3
    assert outcomes(result) == ["auth", "server", "server", "server"]
    assert result.status == "fallback" and result.served_by == "fallback[1]" and result.model is None


def test_match_routes_inputs_to_different_canned_answers(provider, run):
    """Steps are tried in order; a step's match must find the input, else the next step is considered."""
    provider.set_script([{"do": "server_error", "times": "forever"}])
    policy = make_policy(
        provider,
        retry={"max_attempts": 1},
        fallbacks=[
            {"on": ["server"], "match": "(?i)france", "response": "Paris, as always"},
            {"on": ["server"], "response": "try again later"},
        ],
    )
    with policy.executor() as executor:
        french = run(executor, question="What is the capital of FRANCE?")
        other = run(executor, question="What is the capital of Peru?")
    assert (french.served_by, french.output) == ("fallback[0]", {"answer": "Paris, as always"})
    assert (other.served_by, other.output) == ("fallback[1]", {"answer": "try again later"})
    assert provider.count == 2


def test_no_applicable_step_reports_the_final_error(provider, run):
    """A step whose on does not name the error is skipped; with none left the record holds the error."""
    provider.set_script([{"do": "auth", "times": "forever"}])
    policy = make_policy(provider, fallbacks=[{"on": ["rate_limit"], "response": "busy"}])
    with policy.executor() as executor:
        result = run(executor, question="q")
    assert result.status == "error" and result.error.code == "auth" and provider.count == 1


def test_output_mapping_fills_several_fields_and_is_marked_fallback(provider, run):
    """An output: mapping fills each named output field; the record says fallback and names no model."""
    provider.set_script([{"do": "server_error", "times": "forever"}])
    policy = make_policy(
        provider,
        program={"signature": "question -> answer, confidence"},
        retry={"max_attempts": 1},
        fallbacks=[{"on": ["server"], "output": {"answer": "unknown", "confidence": "0"}}],
    )
    with policy.executor() as executor:
        result = run(executor, question="q")
    assert result.to_dict()["output"] == {"answer": "unknown", "confidence": "0"}
    assert (result.status, result.served_by, result.model) == ("fallback", "fallback[0]", None)


def test_template_substitutes_input_fields_and_evaluates_nothing(provider, run):
    """{question} is replaced by the input as text; format-string tricks in the input come out literally."""
    provider.set_script([{"do": "server_error", "times": "forever"}])
    policy = make_policy(
        provider,
        retry={"max_attempts": 1},
        fallbacks=[{"on": ["server"], "response": "Sorry, I cannot answer {{literally}}: {question}"}],
    )
    hostile = "{0.__class__} {question.__init__.__globals__} {question}"
    with policy.executor() as executor:
        result = run(executor, question=hostile)
    assert result.output == {"answer": f"Sorry, I cannot answer {{literally}}: {hostile}"}


def test_hostile_match_sees_the_whole_input_and_cannot_hang_the_runner(provider, run):
    """A backtracking-prone pattern scans a 100,000-character input to its end (RE2) and routes by what it finds."""
    provider.set_script([{"do": "server_error", "times": "forever"}])
    policy = make_policy(
        provider,
        retry={"max_attempts": 1},
        limits={"max_input_chars": 200_000},
        fallbacks=[{"on": ["server"], "match": "(a+)+needle$", "response": "found"}, {"on": ["server"], "response": "not found"}],
    )
    with policy.executor() as executor:
        found = run(executor, question="a" * 100_000 + "needle")
        missing = run(executor, question="a" * 100_000 + "!")  # Python's re would backtrack here for ever
    assert found.output == {"answer": "found"} and missing.output == {"answer": "not found"}


def test_internal_errors_do_not_trigger_fallbacks(provider):
    """An error the classifier cannot name is internal: reported, never answered by an `on: [any]` fallback."""
    policy = make_policy(provider, fallbacks=[{"on": ["any"], "response": "canned"}])
    with policy.executor() as executor:
        executor._program = None  # a broken program: calling it raises TypeError inside the attempt
        result = executor.run(question="q")
    assert result.status == "error" and result.error.code == "internal"
    assert "TypeError" in result.error.message and provider.count == 0
