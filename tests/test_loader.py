"""The loader: valid policies compile to the right values, every invalid one gives its exact problem."""

from __future__ import annotations

import json
import re

import pytest

from runner import RunnerError, load_policy
from runner.errors import ERROR_CLASSES
from runner.loader import PolicyError, check_file, check_text, load_policy_text
from runner.yamlread import MAX_BYTES

from policyfixtures import POLICIES, invalid_corpus, write_ten_megabytes

MINIMAL = "version: 1\nmodel:\n  name: openai/gpt-4o-mini\n"


def test_example_policy_compiles_with_units_resolved():
    """policies/example.yaml compiles to seconds, a compiled weather regex and two canned answers."""
    policy = load_policy(POLICIES / "example.yaml")
    assert policy.name == "example"
    assert policy.model.name == "openai/gpt-3.5-turbo"
    assert policy.retry.max_attempts == 3
    assert policy.timeouts.attempt_s == 30.0
    assert policy.retry.backoff.base_s == 1.0
    weather, generic = policy.fallbacks
    assert weather.match.search("What's the Weather like?")
    assert not weather.match.search("weatherproof")
    assert dict(weather.output) == {"answer": "I don't have access to real-time weather data."}
    assert generic.match is None and generic.on == frozenset(ERROR_CLASSES)  # answers every failure


def test_prod_policy_routes_context_window_to_a_bigger_model():
    """policies/prod.yaml sends context_window to gpt-4o and outages to another provider, with no warnings."""
    policy, problems = check_file(POLICIES / "prod.yaml")
    assert problems == []
    assert policy.fallbacks[0].on == frozenset({"context_window"})
    assert policy.fallbacks[0].model.name == "openai/gpt-4o"
    assert policy.fallbacks[0].model.temperature == 0.0  # inherited from the primary
    assert policy.fallbacks[1].model.api_key_env == "ANTHROPIC_API_KEY"
    assert policy.timeouts.total_s == 150.0


def test_name_defaults_to_the_file_stem(tmp_path):
    """A policy without `name` is named after its file."""
    path = tmp_path / "staging.yaml"
    path.write_text(MINIMAL)
    assert load_policy(path).name == "staging"


def test_on_key_is_read_as_text_not_yaml_boolean():
    """YAML 1.1 reads a bare `on` as true; the loader keeps it as the key `on`."""
    policy = load_policy_text(MINIMAL + "fallbacks:\n  - on: [context_window, timeout]\n    response: sorry\n")
    assert policy.fallbacks[0].on == frozenset({"context_window", "timeout"})


def test_on_any_expands_to_every_error_class():
    """`on: [any]` (and no `on`) mean every error class."""
    policy = load_policy_text(MINIMAL + "fallbacks:\n  - on: [any]\n    model: {name: openai/gpt-4o}\n  - response: x\n")
    assert policy.fallbacks[0].on == frozenset(ERROR_CLASSES)
    assert policy.fallbacks[1].on == frozenset(ERROR_CLASSES)


def test_aliases_share_a_model_definition():
    """An anchored model can be reused with an alias, and compiles like the written-out form."""
    text = "version: 1\nmodel: &big\n  name: openai/gpt-4o\n  api_key_env: OPENAI_API_KEY\nfallbacks:\n  - on: [timeout]\n    model: *big\n  - response: x\n"
    policy = load_policy_text(text)
    assert policy.fallbacks[0].model.name == "openai/gpt-4o"


def test_state_resolves_relative_to_the_policy_file(tmp_path):
    """program.state names a file next to the policy, whatever the working directory is."""
    (tmp_path / "optimized.json").write_text(json.dumps({}))
    path = tmp_path / "p.yaml"
    path.write_text(MINIMAL + "program:\n  state: optimized.json\n")
    assert load_policy(path).program.state == (tmp_path / "optimized.json").resolve()


def test_templates_may_name_input_fields_and_escape_braces():
    """{field} of an input and {{ }} literals are accepted in response and output texts."""
    text = MINIMAL + (
        "program: {signature: 'context, question -> answer, confidence'}\n"
        "fallbacks:\n  - output: {answer: 'No answer to {question} {{sorry}}', confidence: low}\n"
    )
    policy = load_policy_text(text)
    assert policy.fallbacks[0].output["answer"] == "No answer to {question} {{sorry}}"


def test_warnings_do_not_block_loading():
    """A schedule longer than total_ms is a warning: the policy still loads, the warning points at total_ms."""
    text = MINIMAL + "timeouts:\n  attempt_ms: 30000\n  total_ms: 40000\n"
    policy, problems = check_text(text, "p.yaml")
    assert policy is not None
    assert [(p.severity, p.line, p.col, p.code) for p in problems] == [("warning", 6, 13, "schedule-too-long")]
    assert "raise total_ms" in problems[0].message


def test_load_policy_raises_config_error_with_location(tmp_path):
    """load_policy raises a RunnerError with code config whose message starts FILE:LINE:COL."""
    path = tmp_path / "bad.yaml"
    path.write_text(MINIMAL + "retry:\n  max_atempts: 3\n  backof: {}\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    error = caught.value
    assert isinstance(error, RunnerError) and error.code == "config"
    assert error.message.startswith(f"{path}:5:3: unknown key `max_atempts`")
    assert "(and 1 more problem)" in error.message and "dspy-run validate" in error.message
    assert [p.code for p in error.problems] == ["unknown-key", "unknown-key"]


def test_every_problem_is_reported_not_just_the_first():
    """Independent mistakes in one file are all reported, in file order."""
    text = "version: 1\nmodel:\n  name: gpt4\nretry:\n  max_attempts: 0\nlogging: {level: LOUD}\n"
    _, problems = check_text(text, "p.yaml")
    assert [(p.line, p.code) for p in problems] == [(3, "bad-format"), (5, "out-of-range"), (6, "bad-value")]


@pytest.mark.parametrize("case", invalid_corpus(), ids=lambda c: c.name)
def test_invalid_corpus(case):
    """Each invalid fixture is refused with its expected message at its expected line and column."""
    policy, problems = check_file(case.path)
    assert policy is None
    errors = [p for p in problems if p.is_error]
    matching = [p for p in errors if case.fragment in p.message and (not case.location or f"{p.line}:{p.col}" == case.location)]
    assert matching, [p.format() for p in problems]
    for problem in problems:
        assert "\n" not in problem.message and problem.message.strip()


def test_corpus_is_large_enough():
    """The invalid corpus keeps at least 30 distinct cases."""
    assert len(invalid_corpus()) >= 30


def test_ten_megabyte_file_is_refused_by_size(tmp_path):
    """A 10 MB file is refused before parsing, saying the 1 MiB limit."""
    path = write_ten_megabytes(tmp_path)
    assert path.stat().st_size > 10 * MAX_BYTES - 1
    policy, problems = check_file(path)
    assert policy is None
    assert [(p.line, p.col, p.code) for p in problems] == [(1, 1, "too-large")]
    assert "1 MiB" in problems[0].message


def test_missing_file_is_a_problem_not_a_traceback(tmp_path):
    """A path that does not exist gives one problem."""
    _, problems = check_file(tmp_path / "nope.yaml")
    assert [p.code for p in problems] == ["not-found"]


@pytest.mark.parametrize("name", ["literal_api_key", "literal_key_uppercase", "api_key_field", "url_credential"])
def test_secrets_are_never_repeated_in_messages(name):
    """A problem about a literal key or URL credential never repeats the secret."""
    from policyfixtures import INVALID

    _, problems = check_file(INVALID / f"{name}.yaml")
    text = "\n".join(p.format() for p in problems)
    for secret in ("Abc123Def456Ghi789", "AKIAIOSFODNN7", "hunter2", "admin:"):
        assert secret not in text


def test_unknown_key_lists_allowed_keys_when_nothing_is_close():
    """An unknown key with no close match lists the keys allowed there."""
    _, problems = check_text(MINIMAL + "retry:\n  zzz: 1\n", "p.yaml")
    assert problems[0].message.endswith("allowed keys: max_attempts, retry_on, backoff, respect_retry_after, max_retry_after_ms")


def test_messages_end_with_a_fix():
    """Every error of the corpus says how to fix it (an imperative or a did-you-mean after a semicolon)."""
    for case in invalid_corpus():
        _, problems = check_file(case.path)
        for problem in problems:
            assert re.search(r"[;:] .+", problem.message), problem.message


@pytest.mark.parametrize(
    ("signature", "fragment"),
    [
        ("class -> answer", "not a valid name"),
        ("question: strr -> answer", "unknown type 'strr'"),
        ("question: antigravity -> answer", "unknown type 'antigravity'"),
        ("question: list[str -> answer", "not a valid type"),
        ("question: __import__('os') -> answer", "not a plain type"),
    ],
)
def test_signature_types_are_checked_without_importing_anything(signature, fragment):
    """Keywords as names, unknown type names (DSPy would import a module of that name) and non-type expressions are refused."""
    _, problems = check_text(MINIMAL + f'program:\n  signature: "{signature}"\n', "p.yaml")
    assert [(p.line, p.code) for p in problems] == [(5, "bad-signature")]
    assert fragment in problems[0].message


@pytest.mark.parametrize(
    "signature",
    ["a, b -> c: list[dict[str, int]]", "q: int | None -> a: Optional[float]", "q -> a: Literal['x', 'y']", "q: dspy.Image -> a"],
)
def test_ordinary_signature_types_are_accepted(signature):
    """The type expressions DSPy resolves by itself (typing, builtins, dspy) pass."""
    policy, problems = check_text(MINIMAL + f'program:\n  signature: "{signature}"\n', "p.yaml")
    assert policy is not None and problems == []
