"""Refuse regular expressions that can backtrack catastrophically.

A fallback's ``match`` pattern is run on user input; a pattern such as
``(a+)+$`` takes exponential time on ``"aaaa…b"`` and would hang the runner.
Python's ``re`` has no timeout, so the dangerous shapes are refused when the
policy is validated: a repeat nested in an unbounded repeat (``(a+)+``,
``(.*)*``) and an unbounded repeat over alternatives that can start with the
same character (``(a|a)*``, ``(a|ab)+``). The check is conservative and pure
(it reads the parsed pattern, never runs it), so the executor can call it too.
"""

from __future__ import annotations

import re

try:  # the parser moved in 3.11; the old name still works there but warns
    from re import _constants as _c, _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT, *([_c.POSSESSIVE_REPEAT] if hasattr(_c, "POSSESSIVE_REPEAT") else [])}
_UNBOUNDED = 10  # a repeat allowing more than this many iterations counts as unbounded
_ANY = object()  # a first-character set that overlaps everything
_EMPTY = object()  # a branch that matches the empty string
_MAX_WORDS = 256
_OVERLAP = "a repeated group has alternatives that can match the same text, e.g. (a|a)* or (a|aa)+"


class UnsafePattern(ValueError):
    """The pattern is valid but can take exponential time on some inputs."""


def why_unsafe(pattern: str) -> str | None:
    """Say why ``pattern`` may backtrack catastrophically, or return None when it is safe; raises ``re.error`` if invalid."""
    return _scan(_sre_parse.parse(pattern))


def compile_safe(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """Compile ``pattern``, raising :class:`UnsafePattern` (a ``ValueError``) for a dangerous shape."""
    reason = why_unsafe(pattern)
    if reason is not None:
        raise UnsafePattern(reason)
    return re.compile(pattern, flags)


def _scan(items) -> str | None:
    for op, av in items:
        if op in _REPEATS:
            low, high, body = av
            if high == _c.MAXREPEAT or high > _UNBOUNDED:
                words = _words(body)
                if words is not None:  # a finite set of strings: decide exactly
                    if not _uniquely_decodable(words):
                        return _OVERLAP
                elif _has_variable_repeat(body):
                    return "a repeated group contains another repeat, e.g. (a+)+ or (.*)*"
                elif _has_overlapping_branches(body):
                    return _OVERLAP
            reason = _scan(body)
        elif op == _c.SUBPATTERN:
            reason = _scan(av[-1])
        elif op == _c.BRANCH:
            reason = next((r for r in map(_scan, av[1]) if r), None)
        elif op in (_c.ASSERT, _c.ASSERT_NOT):
            reason = _scan(av[1])
        else:
            reason = None
        if reason:
            return reason
    return None


def _has_variable_repeat(items) -> bool:
    """Whether the items contain a repeat whose count can vary (the inner half of a nested quantifier)."""
    for op, av in items:
        if op in _REPEATS and av[0] != av[1]:
            return True
        if op in _REPEATS and _has_variable_repeat(av[2]):
            return True
        if op == _c.SUBPATTERN and _has_variable_repeat(av[-1]):
            return True
        if op == _c.BRANCH and any(_has_variable_repeat(b) for b in av[1]):
            return True
    return False


def _has_overlapping_branches(items) -> bool:
    """Whether an alternation anywhere in ``items`` has two branches that can start the same way.

    ``re`` factors common prefixes out (``a|ab`` becomes ``a(?:|b)``), so two
    empty branches mean two identical alternatives: the classic ``(a|a)*``.
    """
    for op, av in items:
        if op == _c.BRANCH:
            firsts = [_first_chars(branch) for branch in av[1]]
            for i, a in enumerate(firsts):
                for b in firsts[i + 1:]:
                    if a is _EMPTY or b is _EMPTY:
                        if a is b:
                            return True
                    elif a is _ANY or b is _ANY or a & b:
                        return True
            if any(_has_overlapping_branches(branch) for branch in av[1]):
                return True
        elif op == _c.SUBPATTERN and _has_overlapping_branches(av[-1]):
            return True
        elif op in _REPEATS and _has_overlapping_branches(av[2]):
            return True
    return False


def _words(items) -> list[str] | None:
    """The strings ``items`` can match (case-folded, duplicates kept) when that is a small finite set, else None."""
    words = [""]
    for op, av in items:
        if op == _c.LITERAL:
            options = [chr(av).casefold()]
        elif op == _c.IN:
            chars = _class_chars(av)
            if chars is _ANY:
                return None
            options = sorted({chr(c).casefold() for c in chars})
        elif op == _c.SUBPATTERN:
            options = _words(av[-1])
        elif op == _c.BRANCH:
            options = []
            for branch in av[1]:
                branch_words = _words(branch)
                if branch_words is None:
                    return None
                options.extend(branch_words)
        elif op == _c.AT:
            continue
        else:
            return None
        if options is None or len(words) * len(options) > _MAX_WORDS:
            return None
        words = [w + o for w in words for o in options]
    return words


def _uniquely_decodable(words: list[str]) -> bool:
    """Sardinas-Patterson: whether every concatenation of ``words`` splits one way only.

    ``(bar|baz)+`` is fine, ``(a|ab)+`` is fine, but ``(a|aa)+`` and ``(a|a)+``
    are not: an input of many ``a`` splits in exponentially many ways, and the
    regex engine tries them all before it fails.
    """
    if len(set(words)) < len(words) or "" in words:  # a repeat of the empty string is (x*)*
        return False
    code = set(words)

    def quotients(left: set[str], right: set[str]) -> set[str]:
        return {b[len(a):] for a in left for b in right if b.startswith(a) and b != a}

    current = quotients(code, code)
    seen: set[str] = set()
    while current:
        if "" in current or current & code:
            return False
        seen |= current
        current = (quotients(code, current) | quotients(current, code)) - seen
    return True


def _first_chars(items):
    """The characters a branch can start with (both cases), _EMPTY for an empty branch, _ANY when hard to say."""
    for op, av in items:
        if op == _c.LITERAL:
            return _cased({av})
        if op == _c.IN:
            return _class_chars(av)
        if op == _c.SUBPATTERN:
            return _first_chars(av[-1])
        if op == _c.AT:
            continue
        return _ANY  # dots, repeats, nested branches: assume they overlap
    return _EMPTY


def _class_chars(items):
    chars: set[int] = set()
    for op, av in items:
        if op == _c.LITERAL:
            chars.add(av)
        elif op == _c.RANGE and av[1] - av[0] < 1024:
            chars.update(range(av[0], av[1] + 1))
        else:  # categories (\\d, \\w), negation, huge ranges
            return _ANY
    return _cased(chars)


def _cased(codes: set[int]) -> set[int]:
    return {ord(c) for code in codes for c in (chr(code), chr(code).lower(), chr(code).upper()) if len(c) == 1}
