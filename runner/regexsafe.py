"""Fallback ``match`` patterns run on RE2: linear time in the input, whatever the pattern.

A ``match`` pattern is written by the policy author but runs on untrusted
input. Python's ``re`` backtracks and has no timeout: ``(a+)+$`` takes
exponential time on ``"aaa…b"``, and even ``.*.*.*=x`` is cubic (7 s on 600
characters here). Refusing the dangerous shapes catches the exponential ones
but not the polynomial ones. RE2 (google-re2) matches in time linear in the
input for every pattern it accepts; what it gives up, backreferences and
lookaround, ``dspy-run validate`` refuses with a message that says so.

RE2 is imported on first use: only policies with a pattern pay for it.
"""

from __future__ import annotations

import functools
from typing import Any


class PatternError(ValueError):
    """A pattern RE2 cannot compile; the message says why and ends in a fix."""


@functools.cache
def _options() -> Any:
    import re2

    options = re2.Options()
    options.log_errors = False  # RE2 would print its own parse errors on stderr; ours are one clean line
    return options


def compile_match(pattern: str) -> Any:
    """Compile ``pattern`` with RE2 (the object has ``search`` and ``pattern`` like a ``re.Pattern``)."""
    import re2

    try:
        return re2.compile(pattern, _options())
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise PatternError(f"{reason}; {_fix(reason)}") from exc


def why_refused(pattern: str) -> str | None:
    """Why ``pattern`` cannot be a ``match`` pattern, or None when it can."""
    try:
        compile_match(pattern)
    except PatternError as exc:
        return str(exc)
    return None


def _fix(reason: str) -> str:
    if "(?<" in reason or "(?=" in reason or "(?!" in reason or "perl operator" in reason:
        return "lookahead and lookbehind are not supported (they can make matching slow); match the text itself instead"
    if "escape sequence" in reason and any(f"\\{d}" in reason for d in "123456789"):
        return "backreferences such as \\1 are not supported (they can make matching slow); spell the text out"
    return "fix the pattern (escape special characters such as ( [ ? with a backslash)"
