"""Load a policy file: read safely, validate, check meaning, compile.

Four stages, each its own module: :mod:`runner.yamlread` turns bytes into
plain data with positions, :mod:`runner.schema` validates the shape, the
semantic checks here catch what a schema cannot say (a cap below its base, an
unreachable fallback, a regex that can hang, a key where a variable name
belongs), and :func:`runner.policy.compile_policy` builds the frozen Policy.
Every stage reports :class:`~runner.problems.Problem` values, so one mistake
never hides the next; :func:`load_policy` raises them as one
:class:`PolicyError`, :func:`check_file` returns them for ``dspy-run validate``.
"""

from __future__ import annotations

import difflib
import math
import re
import string
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import ANY, RunnerError, expand
from .plan import answers_every_failure, chain_plan, unreachable_after
from .policy import Policy, compile_policy
from .problems import ERROR, SECRET_PREFIX, WARNING, Problem, looks_secret, shown, shown_name
from .yamlread import Marks, ReadResult, read_policy_file, read_policy_text

JsonPath = tuple[str | int, ...]

ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_STEP_KINDS = ("model", "response", "output")


class PolicyError(RunnerError):
    """A policy file that cannot be used, with every :class:`Problem` found in it."""

    def __init__(self, problems: list[Problem], source: str) -> None:
        errors = [p for p in problems if p.is_error]
        self.problems = tuple(problems)
        first = errors[0].format() if errors else f"{source}: invalid policy"
        more = len(errors) - 1
        super().__init__(
            "config",
            first if not more else f"{first} (and {more} more problem{'s' if more > 1 else ''})",
            fix=f"run `dspy-run validate {source}` to see every problem" if more else "",
        )


def load_policy(path: str | Path) -> Policy:
    """Read, validate and compile the policy at ``path``; raise :class:`PolicyError` (code ``config``) if it is invalid."""
    policy, problems = check_file(path)
    if policy is None:
        raise PolicyError(problems, str(path))
    _log_warnings(problems)
    return policy


def load_policy_text(text: str, source: str = "<policy>", base_dir: str | Path | None = None) -> Policy:
    """Like :func:`load_policy` for YAML held in a string; relative paths resolve against ``base_dir`` (default: cwd)."""
    policy, problems = check_text(text, source, base_dir=base_dir)
    if policy is None:
        raise PolicyError(problems, source)
    _log_warnings(problems)
    return policy


def check_file(path: str | Path) -> tuple[Policy | None, list[Problem]]:
    """Every problem in the policy file, and the compiled Policy when there is no error (warnings allowed)."""
    label = str(path)
    return _check(read_policy_file(label), label, Path(path).absolute(), Path(path).absolute().parent)


def check_text(text: str, source: str = "<policy>", base_dir: str | Path | None = None) -> tuple[Policy | None, list[Problem]]:
    """:func:`check_file` for YAML held in a string."""
    return _check(read_policy_text(text, source), source, None, Path(base_dir) if base_dir is not None else Path.cwd())


def _log_warnings(problems: list[Problem]) -> None:
    warnings = [p for p in problems if not p.is_error]
    if warnings:  # loguru only on the run path, and only when there is something to say
        from loguru import logger

        for problem in warnings:
            logger.warning(problem.format())


def _check(read: ReadResult, label: str, source: Path | None, base_dir: Path) -> tuple[Policy | None, list[Problem]]:
    problems = list(read.problems)
    if read.data is None:
        return None, problems
    data, marks = read.data, read.marks
    problems += _one_per_spot(
        _number_problems(data, (), marks, label),
        _schema_problems(data, marks, label),
        _semantic_problems(data, marks, label, base_dir),
    )
    if any(p.is_error for p in problems):
        return None, _ordered(problems)
    policy = compile_policy(data, source)
    problems += _schedule_warnings(policy, data, marks, label)
    return policy, _ordered(problems)


def _one_per_spot(*stages: Iterable[tuple[JsonPath, Problem]]) -> list[Problem]:
    """The problems of each stage, minus those at or below a spot an earlier stage already reported.

    A value that is not a finite number would also fail its schema range; a
    value of the wrong type would also fail a semantic check: one mistake, one line.
    """
    kept: list[Problem] = []
    bad: set[JsonPath] = set()
    for stage in stages:
        found = [(path, p) for path, p in stage if not any(path[: len(b)] == b for b in bad)]
        kept += [p for _, p in found]
        bad |= {path for path, _ in found}
    return kept


def _number_problems(node: Any, path: JsonPath, marks: Marks, label: str) -> Iterator[tuple[JsonPath, Problem]]:
    """YAML's .inf and .nan: no policy value can be one (JSON has neither), and NaN even passes every range check."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _number_problems(value, (*path, key), marks, label)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _number_problems(value, (*path, i), marks, label)
    elif isinstance(node, float) and not math.isfinite(node):
        line, col = marks.value(path)
        yield path, Problem(label, line, col, "not-finite", f"`{_dotted(path)}` is {_YAML_SPECIAL[repr(node)]}, but a policy holds finite numbers only; write a finite number (or null where the key means no limit)")


_YAML_SPECIAL = {"nan": ".nan (not a number)", "inf": ".inf (infinity)", "-inf": "-.inf (minus infinity)"}


def _ordered(problems: list[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line, p.col))


# --- schema errors, rewritten for people -----------------------------------------------------------

_TYPE_WORDS = {
    "object": "a mapping (key: value lines)",
    "array": "a list",
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "empty (null)",
}


def _schema_problems(data: dict, marks: Marks, label: str) -> Iterator[tuple[JsonPath, Problem]]:
    from .schema import quick_valid, validator

    if quick_valid(data):  # the common case, answered without importing jsonschema
        return
    for error in validator().iter_errors(data):
        yield from _rewrite(error, marks, label)


def _rewrite(error: Any, marks: Marks, label: str) -> Iterator[tuple[JsonPath, Problem]]:
    path: JsonPath = tuple(error.absolute_path)
    kind, value, schema, expected = error.validator, error.instance, error.schema, error.validator_value
    where = _dotted(path)

    def at(message: str, code: str, pos_path: JsonPath = path, on_key: bool = False) -> tuple[JsonPath, Problem]:
        line, col = marks.key(pos_path) if on_key else marks.value(pos_path)
        return pos_path, Problem(label, line, col, code, message)

    if kind == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        for key in value:
            if key not in allowed:
                yield at(_unknown_key_message(key, path, allowed), "unknown-key", (*path, key), on_key=True)
    elif kind == "required":
        for key in expected:
            if key not in value:
                owner = f"`{where}`" if path else "the policy"
                line, col = marks.key(path)
                yield (*path, key), Problem(label, line, col, "missing-key", f"{owner} is missing the required key `{key}`; add it, e.g. `{key}: {_example(path, key)}`")
    elif kind == "type":
        wanted = " or ".join(_TYPE_WORDS[t] for t in ([expected] if isinstance(expected, str) else expected))
        got = _type_word(value)
        if isinstance(value, bool) and "string" in expected:  # YAML 1.1 reads yes/no/on/off as booleans
            hint = "put the text in quotes: YAML reads yes, no, on and off as true or false"
        else:
            hint = _hint(path, schema)
        yield at(f"`{where}` must be {wanted}, not {got}; {hint}", "wrong-type")
    elif kind == "enum":
        options = [str(o) for o in expected]
        close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.6)
        guess = f"did you mean `{close[0]}`? " if close else ""
        yield at(f"`{where}` is {shown(value)}, which is not one of: {', '.join(options)}; {guess}use one of these", "bad-value")
    elif kind == "const":
        yield at(f"`{where}` must be {expected!r} (the only policy language version); write `{path[-1]}: {expected}`", "bad-value")
    elif kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        bound = {"minimum": "at least", "exclusiveMinimum": "greater than", "maximum": "at most", "exclusiveMaximum": "less than"}[kind]
        yield at(f"`{where}` is {shown(value)}, but must be {bound} {expected}; {_hint(path, schema)}", "out-of-range")
    elif kind == "pattern" and "propertyNames" in error.schema_path:
        yield at(f"`{where}` names {shown_name(value)}, which cannot be a field name; use the signature's output field names (letters, digits, underscores)", "bad-format", (*path, value), on_key=True)
    elif kind == "pattern":
        yield at(_pattern_message(path, value), "bad-format")
    elif kind in ("minLength", "minProperties"):
        yield at(f"`{where}` is empty; give it a value or remove the key", "empty-value")
    elif kind == "minItems":
        yield at(f"`{where}` is an empty list; list at least one error class, e.g. [any], or remove the key", "empty-value")
    elif kind == "maxLength":
        yield at(f"`{where}` is longer than {expected} characters; shorten it", "too-long")
    elif kind == "uniqueItems":
        twice = [item for item, n in Counter(map(str, value)).items() if n > 1]
        yield at(f"`{where}` lists `{twice[0] if twice else '?'}` more than once; list each error class once", "duplicate-item")
    elif kind == "oneOf" and not isinstance(value, dict):
        return  # a step that is not a mapping: its type error already says so
    elif kind == "oneOf":
        present = [k for k in _STEP_KINDS if k in value]
        if not present:
            yield at(f"`{where}` needs exactly one of `model`, `response` or `output`; add one, e.g. `response: \"Please try again later.\"`", "step-kind")
        else:
            yield at(
                f"`{where}` has both `{present[0]}` and `{present[1]}`; a fallback step does one thing: split it into two steps",
                "step-kind", (*path, present[1]), on_key=True,
            )
    else:  # a rule no policy has broken in testing: keep jsonschema's words, scrubbed of secrets
        yield at(f"`{where}`: {_scrub(error.message)}; see docs/policy.md", "schema")


def _unknown_key_message(key: str, path: JsonPath, allowed: list[str]) -> str:
    here = f"`{_dotted(path)}`" if path else "the top level"
    if key == "api_key" or ("key" in key.lower() and "env" not in key.lower() and path[-1:] == ("model",)):
        return f"unknown key {shown_name(key)} in {here}: a policy never holds an API key; put the key in an environment variable and name it with `api_key_env`, e.g. `api_key_env: OPENAI_API_KEY`"
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key {shown_name(key)} in {here}; did you mean `{close[0]}`?"
    homes = _key_homes().get(key)
    if homes:
        return f"unknown key {shown_name(key)} in {here}; it belongs under `{homes[0]}`: move it there"
    return f"unknown key {shown_name(key)} in {here}; allowed keys: {', '.join(allowed)}"


def _key_homes() -> dict[str, list[str]]:
    """Where each known key lives in the schema, to say "it belongs under `retry`" for a misplaced key."""
    from .schema import policy_schema

    homes: dict[str, list[str]] = {}

    def walk(node: dict, where: str) -> None:
        for name, sub in node.get("properties", {}).items():
            homes.setdefault(name, []).append(where or "the top level")
            inner = sub.get("items", sub) if isinstance(sub, dict) else {}
            if "properties" in inner:
                walk(inner, f"{where}.{name}".strip(".") + ("[]" if "items" in sub else ""))

    walk(policy_schema(), "")
    return homes


def _pattern_message(path: JsonPath, value: Any) -> str:
    where, leaf = _dotted(path), path[-1] if path else ""
    if leaf == "api_key_env":
        if looks_secret(str(value)):
            return f"`{where}` looks like a literal API key, not the name of an environment variable; never put a key in a policy: export it as an environment variable and write its NAME here, e.g. OPENAI_API_KEY"
        return f"`{where}` must be the NAME of an environment variable (capital letters, digits, underscores); write e.g. `api_key_env: OPENAI_API_KEY`"
    if leaf == "name":
        return f"`{where}` is {shown(value)}, but a model is named provider/model; write e.g. `name: openai/gpt-4o-mini`"
    if leaf == "api_base":
        return f"`{where}` must be an http:// or https:// URL; write e.g. `api_base: https://api.openai.com/v1`"
    return f"`{where}` has an invalid format; see docs/policy.md"


def _hint(path: JsonPath, schema: dict) -> str:
    key = path[-1] if path and isinstance(path[-1], str) else "value"
    if "default" in schema and schema["default"] is not None and not isinstance(schema["default"], (dict, list)):
        return f"write e.g. `{key}: {_yaml_scalar(schema['default'])}`"
    if "default" in schema and isinstance(schema["default"], dict):
        return f"write `{key}:` followed by indented keys, or remove it to use the defaults"
    if schema.get("type") == "array" or (isinstance(schema.get("type"), list) and "array" in schema["type"]):
        return f"write a list, e.g. `{key}: [...]`"
    return "see docs/policy.md"


def _example(path: JsonPath, key: str) -> str:
    return {"name": "openai/gpt-4o-mini", "model": "{name: openai/gpt-4o-mini}"}.get(key, "...")


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _type_word(value: Any) -> str:
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return f"the boolean {_yaml_scalar(value)}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {shown(value)}"
    return "a list" if isinstance(value, list) else "a mapping"


def _dotted(path: Iterable[str | int]) -> str:
    """A JSON path as people write it (``fallbacks[0].model.name``); an odd key is quoted, a secret-looking one hidden."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier() and len(part) <= 60 and not looks_secret(part):
            out += f".{part}" if out else part
        else:
            out += f"[{shown(part)}]"
    return out


def _scrub(message: str) -> str:
    return SECRET_PREFIX.sub(" <redacted>", " ".join(message.split()))


# --- semantic checks: what the schema cannot say -----------------------------------------------------


def _semantic_problems(data: dict, marks: Marks, label: str, base_dir: Path) -> Iterator[tuple[JsonPath, Problem]]:
    def problem(path: JsonPath, code: str, message: str, severity: str = ERROR, on_key: bool = False) -> tuple[JsonPath, Problem]:
        line, col = marks.key(path) if on_key else marks.value(path)
        return path, Problem(label, line, col, code, message, severity)

    yield from _check_secrets(data, (), problem)
    yield from _check_model(_get(data, "model", dict), ("model",), problem)
    yield from _check_times(data, problem)
    inputs, outputs = yield from _check_program(_get(data, "program", dict) or {}, base_dir, problem)
    yield from _check_fallbacks(_get(data, "fallbacks", list) or [], inputs, outputs, marks, problem)
    yield from _check_rehearsal(_get(data, "rehearsal", dict), base_dir, problem)


def _get(mapping: Any, key: str, kind: type) -> Any:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, kind) and not (kind is int and isinstance(value, bool)) else None


def _check_secrets(node: Any, path: JsonPath, problem) -> Iterator:
    """Any string that looks like a literal API key is an error wherever it is: the file gets committed."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _check_secrets(value, (*path, key), problem)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _check_secrets(value, (*path, i), problem)
    elif isinstance(node, str) and path[-1:] != ("api_key_env",) and SECRET_PREFIX.search(node):
        yield problem(path, "literal-secret", f"`{_dotted(path)}` contains what looks like a literal API key; never put a key in a policy: export it as an environment variable and name it with `model.api_key_env`")


def _check_model(model: dict | None, path: JsonPath, problem) -> Iterator:
    if model is None:
        return
    env = _get(model, "api_key_env", str)
    if env is not None and ENV_NAME.match(env) and looks_secret(env):
        yield problem((*path, "api_key_env"), "literal-secret", f"`{_dotted(path)}.api_key_env` looks like a literal API key, not the name of an environment variable; export the key as a variable and write its NAME here, e.g. OPENAI_API_KEY")
    base = _get(model, "api_base", str)
    if base is not None:
        yield from _check_url(base, (*path, "api_base"), problem)


def _check_url(url: str, path: JsonPath, problem) -> Iterator:
    from urllib.parse import urlsplit

    where = _dotted(path)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        yield problem(path, "bad-url", f"`{where}` is not a valid URL; write e.g. https://api.openai.com/v1")
        return
    if any(c.isspace() or not c.isprintable() for c in url):
        yield problem(path, "bad-url", f"`{where}` contains a space or control character; write the URL without it, e.g. https://api.openai.com/v1")
    elif parts.scheme.lower() not in ("http", "https"):
        yield problem(path, "bad-url", f"`{where}` must use http or https; write e.g. https://api.openai.com/v1")
    elif "@" in parts.netloc:  # never echo it: the point is that it would leak
        yield problem(path, "url-credential", f"`{where}` contains a credential (user:password@ before the host), which would be written to logs; remove it and put the key in the environment variable named by `api_key_env`")
    elif not parts.hostname:
        yield problem(path, "bad-url", f"`{where}` has no host; write e.g. https://api.openai.com/v1")


def _check_times(data: dict, problem) -> Iterator:
    backoff = _get(_get(data, "retry", dict), "backoff", dict)
    base, cap = _get(backoff, "base_ms", int), _get(backoff, "max_ms", int)
    if base is not None and cap is not None and base > cap:
        yield problem(("retry", "backoff", "max_ms"), "inconsistent", f"`retry.backoff.max_ms` ({cap}) is below `base_ms` ({base}): the cap would cut even the first wait; raise max_ms to at least {base} or lower base_ms")
    timeouts = _get(data, "timeouts", dict)
    attempt, total = _get(timeouts, "attempt_ms", int), _get(timeouts, "total_ms", int)
    if attempt is not None and total is not None and attempt > total:
        yield problem(("timeouts", "total_ms"), "inconsistent", f"`timeouts.total_ms` ({total}) is shorter than one attempt (`attempt_ms` {attempt}); raise total_ms to at least {attempt} or lower attempt_ms")


def _check_program(program: dict, base_dir: Path, problem):
    """Check the signature and saved state; return the signature's (inputs, outputs), or None each when unknown."""
    from .signature import parse_signature

    text = program.get("signature", "question -> answer")
    inputs = outputs = None
    if isinstance(text, str) and text:
        try:
            signature = parse_signature(text)
            inputs, outputs = signature.inputs, signature.outputs
        except ValueError as exc:
            yield problem(("program", "signature"), "bad-signature", f"`program.signature` is invalid: {exc}")
    state = _get(program, "state", str)
    if state and not _is_file(base_dir, state):
        yield problem(("program", "state"), "missing-file", f"`program.state` names {shown(state)}, which is not a file; save the program there with module.save(...) or fix the path (relative to the policy file)")
    return inputs, outputs


def _is_file(base_dir: Path, name: str) -> bool:
    """Whether ``name`` (relative to ``base_dir``) is a file; a name no file can have (a NUL byte, too long) is not."""
    try:
        return (base_dir / name).is_file()
    except (OSError, ValueError):
        return False


def _check_fallbacks(steps: list, inputs, outputs, marks: Marks, problem) -> Iterator:
    always = [isinstance(step, dict) and _always_answers(step) for step in steps]
    for i in unreachable_after(always):
        catch_all = always.index(True)
        line, _ = marks.value(("fallbacks", catch_all))
        yield problem(("fallbacks", i), "unreachable", f"`fallbacks[{i}]` can never run: `fallbacks[{catch_all}]` (line {line}) answers every failure with a canned response; move this step before it or remove it")
    for i, step in enumerate(steps):
        if isinstance(step, dict):
            yield from _check_step(step, ("fallbacks", i), inputs, outputs, problem)


def _always_answers(step: dict) -> bool:
    canned = _get(step, "response", str) is not None or _get(step, "output", dict) is not None
    on = _get(step, "on", list)
    if on is not None and not all(isinstance(name, str) for name in on):
        return False  # the schema reports the list; guessing its meaning would add a second problem
    return answers_every_failure(canned, _get(step, "match", str) is not None, expand(on if on is not None else [ANY]))


def _check_step(step: dict, path: JsonPath, inputs, outputs, problem) -> Iterator:
    pattern = _get(step, "match", str)
    if pattern is not None:
        yield from _check_pattern(pattern, (*path, "match"), problem)
    yield from _check_model(_get(step, "model", dict), (*path, "model"), problem)
    response = _get(step, "response", str)
    if response is not None:
        yield from _check_template(response, (*path, "response"), inputs, problem)
        if outputs and len(outputs) > 1:
            yield problem((*path, "response"), "partial-output", f"`{_dotted(path)}.response` fills only the first output field `{outputs[0]}`; the others ({', '.join(outputs[1:])}) stay empty: use `output:` to give each a text", WARNING, on_key=True)
    output = _get(step, "output", dict)
    if output is not None:
        yield from _check_output(output, path, inputs, outputs, problem)


def _check_rehearsal(section: dict | None, base_dir: Path, problem) -> Iterator:
    """The embedded provider's scripts, answers and scenarios: per-kind step parameters, safe regexes, files."""
    if section is None:
        return
    from .rehearsal.script import check_script

    scripts = [(("rehearsal", "script"), section.get("script"))]
    for i, scenario in enumerate(_get(section, "scenarios", list) or []):
        if isinstance(scenario, dict):
            scripts.append((("rehearsal", "scenarios", i, "script"), scenario.get("script")))
            policy = _get(scenario, "policy", str)
            if policy is not None and not _is_file(base_dir, policy):
                yield problem(("rehearsal", "scenarios", i, "policy"), "missing-file", f"`rehearsal.scenarios[{i}].policy` names {shown(policy)}, which is not a file; fix the path (relative to this policy)")
    for path, script in scripts:
        if script is not None:
            for found in check_script(script, _dotted(path))[1]:
                yield problem(_parse_dotted(found.where), "bad-script", f"`{found.where}` {found.message}")
    for i, answer in enumerate(_get(section, "answers", list) or []):
        pattern = _get(answer, "match", str)
        if pattern is not None:
            yield from _check_pattern(pattern, ("rehearsal", "answers", i, "match"), problem)


_PATH_PART = re.compile(r"\[(\d+)\]|\['([^']*)'\]|([^.\[\]]+)")


def _parse_dotted(where: str) -> JsonPath:
    """The JSON path of a dotted location such as ``rehearsal.script['*'][1].times``, for its line:col."""
    return tuple(int(i) if i else (key or name) for i, key, name in _PATH_PART.findall(where))


def _check_pattern(pattern: str, path: JsonPath, problem) -> Iterator:
    from .regexsafe import why_refused

    reason = why_refused(pattern)
    if reason:
        yield problem(path, "bad-regex", f"`{_dotted(path)}` cannot be used as a pattern: {reason}")


def _check_output(output: dict, path: JsonPath, inputs, outputs, problem) -> Iterator:
    where = _dotted((*path, "output"))
    for field, text in output.items():
        if outputs is not None and field not in outputs:
            close = difflib.get_close_matches(field, outputs, n=1, cutoff=0.6)
            guess = f" did you mean `{close[0]}`?" if close else ""
            yield problem((*path, "output", field), "unknown-field", f"`{where}` names {shown_name(field)}, which is not an output field of the signature ({', '.join(outputs)});{guess} use the signature's output names", on_key=True)
        if isinstance(text, str):
            yield from _check_template(text, (*path, "output", field), inputs, problem)
    if outputs is not None:
        missing = [name for name in outputs if name not in output]
        if missing and all(f in outputs for f in output):
            yield problem((*path, "output"), "partial-output", f"`{where}` gives no text for {', '.join(missing)}; those fields stay empty: add them if callers read them", WARNING, on_key=True)


def _check_template(text: str, path: JsonPath, inputs, problem) -> Iterator:
    """A canned text may name input fields as {field}; anything else could reach into Python objects."""
    where = _dotted(path)
    allowed = ", ".join(f"{{{name}}}" for name in inputs) if inputs else "none"
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        yield problem(path, "bad-template", f"`{where}` has an unmatched {{ or }}; write {{{{ and }}}} for literal braces, or {{field}} to insert an input field")
        return
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if spec or conversion:
            placeholder = _placeholder(f"{{{field}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}")
            yield problem(path, "bad-template", f"`{where}` uses the placeholder {placeholder} with a conversion or format; write just {{name}} (allowed: {allowed}), and {{{{ }}}} for literal braces")
        elif inputs is not None and field not in inputs:
            yield problem(path, "bad-template", f"`{where}` uses the placeholder {_placeholder(f'{{{field}}}')}, but placeholders may only name input fields of the signature (allowed: {allowed}); write {{{{ and }}}} for literal braces")


def _placeholder(text: str) -> str:
    """A placeholder as written when it is short and plain, else quoted like any value (one line, no secret)."""
    return text if text.isprintable() and len(text) <= 40 and not looks_secret(text) else shown(text, 40)


def _schedule_warnings(policy: Policy, data: dict, marks: Marks, label: str) -> list[Problem]:
    total = policy.timeouts.total_s
    if total is None:
        return []
    plan = chain_plan(policy)
    worst = plan.uncut_worst_case_s
    if worst <= total:
        return []
    line, col = marks.value(("timeouts", "total_ms"))
    return [Problem(
        label, line, col, "schedule-too-long",
        f"in the worst case the chain takes {worst:.1f} s ({len(plan.models)} model(s) x {policy.retry.max_attempts} attempts of up to "
        f"{policy.timeouts.attempt_s:g} s, plus backoff and Retry-After waits), longer than `timeouts.total_ms` ({total:g} s): later attempts "
        "and fallback models may never run; raise total_ms, or lower max_attempts, attempt_ms or max_retry_after_ms",
        WARNING,
    )]
