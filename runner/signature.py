"""Parse a DSPy signature string without importing DSPy.

``validate`` must run in well under a second, and ``import dspy`` alone costs
about that, so the policy language parses ``"context: list[str], question -> answer"``
itself. The grammar is DSPy's: comma-separated ``name[: type]`` fields on each
side of a single ``->``; names are Python identifiers.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import typing
from dataclasses import dataclass

# The names DSPy resolves without importing anything: typing's, the builtin types, NoneType, and dspy's own
# types (dspy.Image ...). Any other name makes DSPy import a module of that name, so a policy could run any
# installed module's import-time code: refused here.
_TYPE_NAMES = frozenset(
    {*typing.__all__, "NoneType", "dspy", "typing", *(n for n, v in vars(builtins).items() if isinstance(v, type) and not issubclass(v, BaseException))}
)
_TYPE_NODES = (ast.Name, ast.Attribute, ast.Subscript, ast.Tuple, ast.List, ast.Constant, ast.BinOp, ast.BitOr, ast.Load)


@dataclass(frozen=True, slots=True)
class Signature:
    text: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def parse_signature(text: str) -> Signature:
    """Return the input and output field names; raise ``ValueError`` saying what is wrong."""
    if text.count("->") != 1:
        raise ValueError(f"signature {text!r} must have exactly one '->' between inputs and outputs, e.g. 'question -> answer'")
    left, right = text.split("->")
    inputs = _fields(left, "input")
    outputs = _fields(right, "output")
    clash = set(inputs) & set(outputs)
    if clash:
        raise ValueError(f"signature field {sorted(clash)[0]!r} is both an input and an output; rename one of them")
    return Signature(text=text, inputs=inputs, outputs=outputs)


def _fields(side: str, kind: str) -> tuple[str, ...]:
    names: list[str] = []
    for part in _split_top_level(side):
        name, _, type_ = part.partition(":")
        name = name.strip()
        if not name:
            raise ValueError(f"signature has an empty {kind} field; write names separated by commas, e.g. 'context, question -> answer'")
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(f"signature {kind} field {name!r} is not a valid name; use letters, digits and underscores (not a Python keyword)")
        if _ and not type_.strip():
            raise ValueError(f"signature {kind} field {name!r} has ':' but no type; write e.g. '{name}: str' or drop the ':'")
        if _:
            _check_type(name, type_.strip())
        if name in names:
            raise ValueError(f"signature {kind} field {name!r} appears twice; give each field one name")
        names.append(name)
    if not names:
        raise ValueError(f"signature needs at least one {kind} field, e.g. 'question -> answer'")
    return tuple(names)


def _split_top_level(side: str) -> list[str]:
    """Split on commas outside brackets, so that ``dict[str, int]`` stays one type."""
    parts, depth, current = [], 0, []
    for char in side:
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    if parts == [""] or all(not p.strip() for p in parts) and len(parts) == 1:
        return []
    return parts


def _check_type(name: str, text: str) -> None:
    """A field type is a type expression over known names only, e.g. ``list[dict[str, int]]`` or ``Literal['a', 'b']``."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ValueError(f"signature field {name!r} has the type {text!r}, which is not a valid type; write e.g. 'str', 'list[str]' or 'dict[str, int]'") from None
    for node in ast.walk(tree.body):
        if not isinstance(node, _TYPE_NODES) or (isinstance(node, ast.BinOp) and not isinstance(node.op, ast.BitOr)):
            raise ValueError(f"signature field {name!r} has the type {text!r}, which is not a plain type; use names, [ ], commas, | and quoted literals only")
        if isinstance(node, ast.Name) and node.id not in _TYPE_NAMES:
            raise ValueError(f"signature field {name!r} has the unknown type {node.id!r}; use str, int, float, bool, list[...], dict[...], Literal[...], Optional[...] or a dspy type such as dspy.Image")
