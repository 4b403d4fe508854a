"""The policy JSON Schema: shipped inside the package, loaded and compiled once per process.

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
