"""Hostile policy files are refused quickly, with bounded memory, and never run code or hang."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from runner.loader import check_file, check_text
from runner.yamlread import MAX_BYTES, MAX_DEPTH, MAX_NODES, read_policy_bytes

from policyfixtures import INVALID

HEAD = "version: 1\nmodel:\n  name: openai/gpt-4o-mini\n"


def test_python_tag_is_refused_without_running_it(tmp_path):
    """A !!python/object/apply tag is refused at its position and its call never runs."""
    marker = tmp_path / "pwned"
    text = f"version: 1\nmodel: !!python/object/apply:os.system ['touch {marker}']\n"
    _, problems = check_text(text, "p.yaml")
    assert [(p.line, p.col, p.code) for p in problems] == [(2, 8, "unsupported-tag")]
    assert not marker.exists()


def test_billion_laughs_fails_fast_with_bounded_memory():
    """The alias bomb (10^9 strings when expanded) stops at the node budget, well under a few MB."""
    tracemalloc.start()
    try:
        _, problems = check_file(INVALID / "alias_bomb.yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [p.code for p in problems] == ["too-many-nodes"]
    assert f"more than {MAX_NODES} values" in problems[0].message
    assert peak < 20 * 1024 * 1024


def test_node_budget_counts_expanded_aliases_not_text_size():
    """A small file whose aliases expand past the budget is refused; the same values written once are fine."""
    items = ", ".join(["x"] * 200)
    bomb = HEAD + f"a: &a [{items}]\nb: &b [" + ", ".join(["*a"] * 60) + "]\n"
    assert [p.code for p in check_text(bomb, "p.yaml")[1]] == ["too-many-nodes"]


def test_nesting_depth_is_bounded():
    """A value nested deeper than the limit is refused where it starts to be too deep."""
    deep = HEAD + "name: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    _, problems = check_text(deep, "p.yaml")
    assert [p.code for p in problems] == ["too-deep"]
    assert problems[0].line == 4


def test_libyaml_depth_limit_is_reported_as_a_problem():
    """Thousands of nested brackets give one syntax problem, not a crash."""
    _, problems = check_text("a: " + "[" * 5000, "p.yaml")
    assert len(problems) == 1 and problems[0].code in ("yaml-syntax", "too-deep")


def test_size_limit_reads_no_more_than_the_limit(tmp_path):
    """A file just over 1 MiB is refused by size; one just under is parsed."""
    over = b"version: 1\n" + b"#" * MAX_BYTES
    assert [p.code for p in read_policy_bytes(over, "p.yaml").problems] == ["too-large"]
    under = HEAD.encode() + b"#" * (MAX_BYTES - 100) + b"\n"
    assert read_policy_bytes(under, "p.yaml").problems == ()


def test_non_utf8_reports_byte_offset_line_and_column():
    """A Latin-1 byte is reported with its byte offset and its line:col."""
    raw = HEAD.encode() + "name: caf\u00e9\n".encode("latin-1")
    (problem,) = read_policy_bytes(raw, "p.yaml").problems
    assert (problem.line, problem.col, problem.code) == (4, 10, "not-utf8")
    assert f"byte offset {len(HEAD) + 9}" in problem.message and "0xe9" in problem.message


def test_utf8_bom_is_accepted():
    """A UTF-8 byte-order mark (Windows editors) is not an error."""
    assert read_policy_bytes(b"\xef\xbb\xbf" + HEAD.encode(), "p.yaml").problems == ()


HOSTILE_PATTERNS = ["(a+)+$", "^(a+)+$", "(a|a)*b", "(.*)*x", "(a|aa)+$", "(\\w+\\s?)*$", ".*.*.*=x", "(x+x+)+y"]


@pytest.mark.parametrize("pattern", HOSTILE_PATTERNS)
def test_backtracking_patterns_are_accepted_because_they_run_in_linear_time(pattern):
    """Patterns that are exponential or polynomial in Python's re are valid: they run on RE2, linear in the input."""
    text = HEAD + f"fallbacks:\n  - match: '{pattern}'\n    response: sorry\n"
    policy, problems = check_text(text, "p.yaml")
    assert problems == [] and policy.fallbacks[0].match.pattern == pattern


def test_classic_hostile_patterns_finish_on_long_input():
    """On 100,000 characters, where Python's re would run for hours, RE2 finishes (under a subprocess bound)
    with the answers Python's re gives on a short input of the same shape."""
    import re
    import subprocess
    import sys

    expected = [re.search(p, "a" * 12 + "!") is not None for p in HOSTILE_PATTERNS]
    code = (
        "from runner.regexsafe import compile_match\n"
        f"print([compile_match(p).search('a' * 100_000 + '!') is not None for p in {HOSTILE_PATTERNS!r}])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == str(expected), done.stderr


@pytest.mark.parametrize(
    ("pattern", "words"),
    [("(?<=a)b", "lookbehind"), ("(?=a)", "lookahead"), ("(a)\\1", "backreferences"), ("(a", "missing )")],
)
def test_patterns_re2_cannot_run_are_refused_with_the_reason(pattern, words):
    """Lookaround and backreferences (no linear-time matching) and broken patterns get one line saying why."""
    _, problems = check_text(HEAD + f"fallbacks:\n  - match: '{pattern}'\n    response: sorry\n", "p.yaml")
    assert [(p.line, p.code) for p in problems] == [(5, "bad-regex")]
    assert words in problems[0].message


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("https://user:s3cret@llm.example.invalid/v1", "url-credential"),
        ("http://token@llm.example.invalid", "url-credential"),
        ("file:///etc/passwd", "bad-format"),
        ("https://", "bad-url"),
        ("https://host:notaport/v1", "bad-url"),
    ],
)
def test_api_base_accepts_only_plain_http_urls(url, code):
    """api_base must be http(s) with a host and no credential; the credential is not repeated."""
    _, problems = check_text(HEAD + f"  api_base: '{url}'\n", "p.yaml")
    assert [(p.line, p.code) for p in problems] == [(4, code)]
    assert "s3cret" not in problems[0].message and "token@" not in problems[0].message


@pytest.mark.parametrize("template", ["{0.__class__}", "{question.__class__}", "{question[0]}", "{}", "{answer}", "{question!r}", "{question:>99999}", "{__import__}"])
def test_templates_may_only_name_input_fields(template):
    """A placeholder naming anything but an input field is refused with the allowed names listed."""
    _, problems = check_text(HEAD + f"fallbacks:\n  - response: 'Sorry: {template}'\n", "p.yaml")
    assert [(p.line, p.code) for p in problems] == [(5, "bad-template")]
    assert "{question}" in problems[0].message


def test_output_templates_are_checked_too():
    """`output` texts follow the same placeholder rule as `response`."""
    _, problems = check_text(HEAD + "fallbacks:\n  - output: {answer: '{secret}'}\n", "p.yaml")
    assert [p.code for p in problems] == ["bad-template"]


def test_literal_secret_anywhere_is_refused():
    """A key-shaped string in a canned response is refused too: policy files get committed."""
    _, problems = check_text(HEAD + "fallbacks:\n  - response: 'use sk-live-0123456789abcdefghij'\n", "p.yaml")
    assert [p.code for p in problems] == ["literal-secret"]
    assert "0123456789abcdefghij" not in problems[0].message


def test_fifo_is_refused_without_blocking(tmp_path):
    """A FIFO with no writer is refused as not a regular file instead of blocking validate for ever."""
    import os

    fifo = tmp_path / "policy.yaml"
    os.mkfifo(fifo)
    _, problems = check_file(fifo)
    assert [(p.line, p.col, p.code) for p in problems] == [(1, 1, "not-a-file")]


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_devices_are_refused_as_not_regular_files(device):
    """A device is never read: /dev/zero has no end and /dev/null is not a policy."""
    _, problems = check_file(device)
    assert [p.code for p in problems] == ["not-a-file"]


def test_directory_and_symlink_loop_are_one_problem_each(tmp_path):
    """A directory and a symlink loop each give one problem saying what the path is, not a traceback."""
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    assert [p.code for p in check_file(tmp_path)[1]] == ["not-a-file"]
    assert [p.code for p in check_file(tmp_path / "a.yaml")[1]] == ["unreadable"]


def test_non_utf8_offset_counts_the_bom():
    """After a UTF-8 BOM, the byte offset of a bad byte is the file's, as a hex dump shows it."""
    raw = b"\xef\xbb\xbf" + HEAD.encode() + "name: caf\u00e9\n".encode("latin-1")
    (problem,) = read_policy_bytes(raw, "p.yaml").problems
    assert (problem.line, problem.col) == (4, 10)
    assert f"byte offset {3 + len(HEAD) + 9}" in problem.message


def test_control_character_is_reported_where_it_is():
    """A control character gets its own line:col (counted in characters, after multi-byte ones), not 1:1."""
    _, problems = check_text(HEAD + 'name: "\u00e9\U0001F600\x07"\n', "p.yaml")
    assert [(p.line, p.col, p.code) for p in problems] == [(4, 10, "bad-character")]
    assert "U+0007" in problems[0].message


@pytest.mark.parametrize(
    "text",
    [
        "sk-proj-abcdefghijklmnop123456: 1\n",
        "fallbacks:\n  - response: '{sk-proj-abcdefghijklmnop123456}'\n",
        "fallbacks:\n  - output: {sk-proj-abcdefghijklmnop123456: hi}\n",
    ],
)
def test_secret_shaped_keys_and_placeholders_are_never_repeated(text):
    """A key or placeholder that looks like an API key is refused without the key in any message."""
    _, problems = check_text(HEAD + text, "p.yaml")
    assert problems and all(p.is_error for p in problems)
    assert not any("abcdefghijklmnop" in p.message for p in problems)


@pytest.mark.parametrize("text", ['"re\\ntry": 1\n', '"a\\nb": 1\n"a\\nb": 2\n', "fallbacks:\n  - response: \"{a\\nb}\"\n"])
def test_keys_and_placeholders_with_newlines_stay_on_one_line(text):
    """A quoted key or placeholder holding a newline is shown escaped: every problem stays one line."""
    _, problems = check_text(HEAD + text, "p.yaml")
    assert problems
    assert all("\n" not in p.format() and "\\n" in p.message for p in problems)


def test_fallback_step_that_is_text_gives_one_problem():
    """A list item that is text, not a step, gets the type error alone (no 'valid under each of' echo)."""
    _, problems = check_text(HEAD + "fallbacks:\n  - Sorry\n", "p.yaml")
    assert [(p.line, p.col, p.code) for p in problems] == [(5, 5, "wrong-type")]


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN"])
def test_non_finite_numbers_are_one_problem_each(value):
    """.nan passes every range check and .inf every minimum: both are refused once, at the value."""
    _, problems = check_text(HEAD + f"  temperature: {value}\nretry:\n  backoff: {{multiplier: {value}}}\n", "p.yaml")
    assert [(p.line, p.code) for p in problems] == [(4, "not-finite"), (6, "not-finite")]


@pytest.mark.parametrize("state", ['"a\\0b"', "'" + "a" * 5000 + "'"])
def test_state_path_no_file_can_have_is_a_problem(state):
    """A state path with a NUL byte or longer than any file name is reported as not a file, not a traceback."""
    _, problems = check_text(HEAD + f"program:\n  state: {state}\n", "p.yaml")
    assert [(p.line, p.code) for p in problems] == [(5, "missing-file")]


def test_on_list_of_mappings_does_not_crash_the_reachability_rule():
    """`on: [{a: 1}]` (unhashable items) is a schema problem, not a TypeError in the unreachable-step rule."""
    _, problems = check_text(HEAD + "fallbacks:\n  - on: [{a: 1}]\n    response: hi\n  - response: bye\n", "p.yaml")
    assert [p.code for p in problems] == ["bad-value"]


@pytest.mark.parametrize("key", ["attempt_ms", "total_ms"])
def test_durations_are_capped_at_a_day(key):
    """A duration past a day is refused by the schema (a 401-digit one too, shown by its length), never an overflow."""
    _, problems = check_text(HEAD + f"timeouts:\n  {key}: {10**400}\n", "p.yaml")
    assert [(p.line, p.code) for p in problems] == [(5, "out-of-range")]
    assert "401-digit number" in problems[0].message and "86400000" in problems[0].message


def test_integer_past_pythons_digit_limit_is_one_problem():
    """5000 digits exceed int()'s limit: one problem saying so, without repeating the value."""
    _, problems = check_text(HEAD + "timeouts:\n  attempt_ms: " + "9" * 5000 + "\n", "p.yaml")
    assert [(p.line, p.col, p.code) for p in problems] == [(5, 15, "bad-scalar")]
    assert "4300 digits" in problems[0].message and "999" not in problems[0].message


@pytest.mark.parametrize("model", ["  name: a/b\n  api_key_env: |\n    OPENAI_API_KEY\n", "  name: |\n    openai/gpt-4o\n"])
def test_trailing_newline_from_a_block_scalar_is_refused(model):
    """A `|` block scalar ends in a newline; Python's `$` would accept it, the schema's pattern does not."""
    _, problems = check_text("version: 1\nmodel:\n" + model, "p.yaml")
    assert [p.code for p in problems] == ["bad-format"]
