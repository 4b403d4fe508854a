"""The policy JSON Schema: shipped inside the package, loaded and compiled once per process.

Checking a policy has two speeds. :func:`quick_valid` is a small interpreter
of exactly the keywords this schema uses; it only answers "valid or not",
and it answers fast, without importing jsonschema (about a third of the
startup cost of ``dspy-run validate`` in a pre-commit run). Only when it says
"invalid" does the loader ask jsonschema for the errors, so every message
still comes from the real validator. tests/test_schema.py proves the two agree
on every fixture and on thousands of mutated policies; a keyword the
interpreter does not know makes it defer to jsonschema rather than guess.

The schema file is package data (runner/schemas/policy.schema.json; the
top-level schemas/ file is a symlink to it for editors), read through
importlib.resources so that the CLI works from any folder and from a wheel.
jsonschema is imported on first use only: ``dspy-run schema`` does not need it.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any


def schema_bytes() -> bytes:
    """The schema file exactly as shipped."""
    return resources.files("runner").joinpath("schemas", "policy.schema.json").read_bytes()


@functools.cache
def policy_schema() -> dict[str, Any]:
    return json.loads(schema_bytes())


@functools.cache
def validator() -> Any:
    """A Draft 2020-12 validator for the policy schema, built once.

    No format checker: the schema uses no ``format`` a policy depends on, and
    building one costs startup time that ``dspy-run validate`` cannot spare.
    """
    from jsonschema import Draft202012Validator

    return Draft202012Validator(policy_schema())


class _Unknown(Exception):
    """The schema uses a keyword the quick interpreter does not implement: defer to jsonschema."""


_ANNOTATIONS = frozenset({"$schema", "$id", "title", "description", "default", "examples"})
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
}


def quick_valid(instance: Any) -> bool:
    """Whether ``instance`` is valid under the policy schema, without jsonschema; exact for this schema's keywords."""
    try:
        return _valid(policy_schema(), instance)
    except _Unknown:
        return validator().is_valid(instance)


def _valid(schema: dict[str, Any], value: Any) -> bool:  # noqa: C901 - one branch per keyword, on purpose
    for keyword, arg in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        if keyword == "type":
            if not any(_TYPES[t](value) for t in ([arg] if isinstance(arg, str) else arg)):
                return False
        elif keyword == "enum":
            if not any(_equal(value, option) for option in arg):
                return False
        elif keyword == "const":
            if not _equal(value, arg):
                return False
        elif keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if _TYPES["number"](value) and not _in_bound(keyword, value, arg):
                return False
        elif keyword in ("minLength", "maxLength", "pattern"):
            if isinstance(value, str) and not _string_ok(keyword, value, arg):
                return False
        elif keyword in ("properties", "additionalProperties", "required", "minProperties", "propertyNames"):
            if isinstance(value, dict) and not _object_ok(keyword, schema, value, arg):
                return False
        elif keyword in ("items", "minItems", "uniqueItems"):
            if isinstance(value, list) and not _array_ok(keyword, value, arg):
                return False
        elif keyword == "oneOf":
            if sum(1 for sub in arg if _valid(sub, value)) != 1:
                return False
        else:
            raise _Unknown(keyword)
    return True


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, 1.0 is 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b or (_TYPES["number"](a) and _TYPES["number"](b) and a == b)


def _in_bound(keyword: str, value: float, bound: float) -> bool:
    """Written as "not out of bound", as jsonschema tests it, so that NaN gets the same verdict (the loader refuses it)."""
    if keyword == "minimum":
        return not value < bound
    if keyword == "maximum":
        return not value > bound
    if keyword == "exclusiveMinimum":
        return not value <= bound
    return not value >= bound


def _string_ok(keyword: str, value: str, arg: Any) -> bool:
    if keyword == "minLength":
        return len(value) >= arg
    if keyword == "maxLength":
        return len(value) <= arg
    return _pattern(arg).search(value) is not None


@functools.cache
def _pattern(pattern: str) -> Any:
    import re

    return re.compile(pattern)


def _object_ok(keyword: str, schema: dict[str, Any], value: dict[str, Any], arg: Any) -> bool:
    if keyword == "properties":
        return all(_valid(arg[k], v) for k, v in value.items() if k in arg)
    if keyword == "additionalProperties":
        known = schema.get("properties", {})
        extra = [v for k, v in value.items() if k not in known]
        if arg is False:
            return not extra
        return all(_valid(arg, v) for v in extra)
    if keyword == "required":
        return all(k in value for k in arg)
    if keyword == "minProperties":
        return len(value) >= arg
    return all(_valid(arg, k) for k in value)  # propertyNames


def _array_ok(keyword: str, value: list[Any], arg: Any) -> bool:
    if keyword == "items":
        return all(_valid(arg, item) for item in value)
    if keyword == "minItems":
        return len(value) >= arg
    if not arg:  # uniqueItems: false
        return True
    return not any(_equal(a, b) for i, a in enumerate(value) for b in value[i + 1:])
