"""The fault script of a rehearsal: which answer each arriving request gets.

A script is the data users write (in a YAML file, a policy, or a test): a list
of steps applied to requests in arrival order, or a mapping from model name to
such a list with ``"*"`` as the default. This module turns that data into frozen
:class:`Step` values, or into a list of :class:`Problem` values saying exactly
what is wrong where, so one bad step never hides the next. It imports nothing
heavy: ``dspy-run validate`` checks scripts inside policies without a server.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MODEL_KEY = "*"
"""The script key that answers every model not named by another key."""

FOREVER = "forever"
"""The ``times`` value (or ``null``) of a step that never runs out."""

# Every kind a step may name, with the parameters it accepts beyond do/times.
# Kept as one table so the user-facing docs, the validator and the server agree.
_RESPONDING = ("delay_ms", "message")
KINDS: dict[str, tuple[str, ...]] = {
    "ok": ("delay_ms", "text", "output", "raw"),
    "rate_limit": (*_RESPONDING, "retry_after_ms"),
    "quota": _RESPONDING,
    "auth": _RESPONDING,
    "context_window": _RESPONDING,
    "invalid_request": _RESPONDING,
    "unknown_model": _RESPONDING,
    "server_error": (*_RESPONDING, "status"),
    "hang": (),
    "trickle": ("interval_ms", "duration_ms"),
    "garbage": ("delay_ms", "raw"),
    "empty": ("delay_ms",),
    "unparseable": ("delay_ms", "text"),
    "drop": ("delay_ms", "reset"),
}
"""Step kinds and the parameters each accepts (besides ``do`` and ``times``)."""

KIND_HELP: dict[str, str] = {
    "ok": "a proper chat completion the DSPy adapter parses",
    "rate_limit": "429 rate_limit_exceeded with Retry-After",
    "quota": "429 insufficient_quota (billing)",
    "auth": "401 invalid_api_key",
    "context_window": "400 context_length_exceeded",
    "invalid_request": "400 invalid_request_error",
    "unknown_model": "404 model_not_found",
    "server_error": "5xx server_error (status: 500, 502, 503, ...)",
    "hang": "read the request, send nothing until the client goes away",
    "trickle": "send headers, then one byte every interval_ms",
    "garbage": "200 with a body that is not JSON",
    "empty": "200 with an empty message content",
    "unparseable": "200 with content lacking the signature's output fields",
    "drop": "close the connection without answering",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a script: where (a path like ``script[2].times``) and what to do."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class ScriptError(ValueError):
    """A script that cannot run; carries every :class:`Problem` found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True, slots=True)
class Step:
    """One scripted behaviour and how many requests it answers (``times=None``: all of them)."""

    kind: str
    times: int | None = 1
    delay_ms: float = 0.0
    text: str | None = None
    output: tuple[tuple[str, str], ...] | None = None
    raw: str | None = None
    message: str | None = None
    retry_after_ms: float | None = None
    status: int | None = None
    interval_ms: float = 500.0
    duration_ms: float | None = None
    reset: bool = False

    @property
    def output_map(self) -> dict[str, str] | None:
        return dict(self.output) if self.output is not None else None


OK = Step("ok", times=None)
"""What every request gets once its script has run out."""


@dataclass(frozen=True, slots=True)
class Script:
    """Parsed steps per model key; a plain list script is stored under ``"*"``."""

    lanes: tuple[tuple[str, tuple[Step, ...]], ...] = ()
    _index: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Exact keys win over prefix-stripped ones: "openai/gpt-4o" also answers
        # "gpt-4o", the model string DSPy sends, unless "gpt-4o" is its own key.
        index: dict[str, str] = {}
        for key, _ in self.lanes:
            index[key] = key
        for key, _ in self.lanes:
            _, slash, bare = key.partition("/")
            if slash and bare and bare not in index:
                index[bare] = key
        self._index.update(index)

    def lane_for(self, model: str | None) -> str | None:
        """The key whose steps answer a request for ``model``; None means answer ``ok``."""
        if model is not None:
            key = self._index.get(model)
            if key is not None:
                return key
        return DEFAULT_MODEL_KEY if DEFAULT_MODEL_KEY in self._index else None

    def steps(self, key: str) -> tuple[Step, ...]:
        for lane_key, steps in self.lanes:
            if lane_key == key:
                return steps
        return ()


def parse_script(data: Any, where: str = "script") -> Script:
    """Return the :class:`Script` for ``data``; raise :class:`ScriptError` listing every problem."""
    script, problems = check_script(data, where)
    if problems:
        raise ScriptError(problems)
    return script


def check_script(data: Any, where: str = "script") -> tuple[Script, list[Problem]]:
    """Parse ``data`` and return the script with the problems found (empty when valid)."""
    problems: list[Problem] = []
    if data is None:
        return Script(), problems
    if isinstance(data, Script):
        return data, problems  # already parsed (a compiled policy's rehearsal section)
    if isinstance(data, Mapping):
        lanes = []
        for key, steps in data.items():
            if not isinstance(key, str) or not key:
                problems.append(Problem(where, f"model key {key!r} must be a non-empty model name or '*'"))
                continue
            lanes.append((key, _steps(steps, f"{where}[{key!r}]", problems)))
        return Script(tuple(lanes)), problems
    return Script(((DEFAULT_MODEL_KEY, _steps(data, where, problems)),)), problems


def _steps(data: Any, where: str, problems: list[Problem]) -> tuple[Step, ...]:
    if isinstance(data, (str, bytes)) or not isinstance(data, (list, tuple)):
        problems.append(Problem(where, "must be a list of steps like [{do: rate_limit, times: 2}, {do: ok}]"))
        return ()
    steps = []
    for i, item in enumerate(data):
        step = parse_step(item, f"{where}[{i}]", problems)
        if step is not None:
            steps.append(step)
    return tuple(steps)


def parse_step(item: Any, where: str, problems: list[Problem]) -> Step | None:
    """One step from its mapping (or a bare kind name like ``"ok"``); appends problems, returns None if unusable."""
    if isinstance(item, str):
        item = {"do": item}
    if not isinstance(item, Mapping):
        problems.append(Problem(where, f"must be a mapping like {{do: ok}}, got {_type_name(item)}"))
        return None
    kind = item.get("do")
    if kind not in KINDS:
        problems.append(Problem(f"{where}.do", _unknown_kind(kind)))
        return None
    before = len(problems)
    allowed = KINDS[kind]
    for key in item:
        if key not in ("do", "times") and key not in allowed:
            hint = f"'{kind}' takes {', '.join(allowed)}" if allowed else f"'{kind}' takes only do and times"
            problems.append(Problem(f"{where}.{key}", f"unknown parameter for '{kind}'; {hint}"))
    values: dict[str, Any] = {"kind": kind, "times": _times(item.get("times", 1), f"{where}.times", problems)}
    for name in ("delay_ms", "retry_after_ms", "interval_ms", "duration_ms"):
        if name in item:
            values[name] = _milliseconds(item[name], f"{where}.{name}", problems, positive=name == "interval_ms")
    for name in ("text", "raw", "message"):
        if name in item:
            if isinstance(item[name], str):
                values[name] = item[name]
            else:
                problems.append(Problem(f"{where}.{name}", f"must be a string, got {_type_name(item[name])}"))
    if "output" in item:
        values["output"] = _output(item["output"], f"{where}.output", problems)
    if "status" in item:
        values["status"] = _status(item["status"], f"{where}.status", problems)
    if "reset" in item:
        if isinstance(item["reset"], bool):
            values["reset"] = item["reset"]
        else:
            problems.append(Problem(f"{where}.reset", "must be true or false"))
    if kind == "ok" and sum(k in item for k in ("text", "output", "raw")) > 1:
        problems.append(Problem(where, "give at most one of text, output and raw"))
    if len(problems) > before:
        return None
    return Step(**values)


def _times(value: Any, where: str, problems: list[Problem]) -> int | None:
    if value is None or value == FOREVER:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        problems.append(Problem(where, f"must be a whole number of requests >= 1 or 'forever', got {value!r}"))
        return 1
    return value


def _milliseconds(value: Any, where: str, problems: list[Problem], *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        problems.append(Problem(where, f"must be a number of milliseconds {bound}, got {value!r}"))
        return 0.0
    return float(value)


def _status(value: Any, where: str, problems: list[Problem]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 500 <= value <= 599:
        problems.append(Problem(where, f"must be an HTTP 5xx status such as 500, 502 or 503, got {value!r}"))
        return 500
    return value


def _output(value: Any, where: str, problems: list[Problem]) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping) or not value:
        problems.append(Problem(where, "must map output field names to answer text, e.g. {answer: Paris}"))
        return ()
    pairs = []
    for name, text in value.items():
        if not isinstance(name, str) or not name.isidentifier():
            problems.append(Problem(where, f"field name {name!r} is not a valid output field name"))
        elif isinstance(text, bool) or not isinstance(text, (str, int, float)):
            problems.append(Problem(f"{where}.{name}", f"must be text, got {_type_name(text)}"))
        else:
            pairs.append((name, str(text)))
    return tuple(pairs)


def _unknown_kind(kind: Any) -> str:
    if kind is None:
        return f"missing; say what the step does, one of: {', '.join(KINDS)}"
    close = [k for k in KINDS if isinstance(kind, str) and (kind in k or k in kind or kind.replace("-", "_") == k)]
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown step kind {kind!r}; {hint}use one of: {', '.join(KINDS)}"


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "null"}.get(type(value), type(value).__name__)
