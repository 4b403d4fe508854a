"""The policy JSON Schema: generated from the code, complete for editors, shipped byte-identical."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
from runner.errors import POLICY_ERROR_NAMES
from runner.policy import DEFAULTS
from runner.schema import policy_schema, schema_bytes
from runner.yamlread import read_policy_file

from policyfixtures import POLICIES, ROOT

sys.path.insert(0, str(ROOT / "tools"))
import gen_schema  # noqa: E402


def _objects(node, path="$"):
    """Every object schema in the policy schema, with its path."""
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield path, node
        for key, value in node.items():
            yield from _objects(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _objects(value, f"{path}[{i}]")


def test_schema_is_valid_draft_2020_12():
    """The schema itself passes the 2020-12 metaschema."""
    schema = policy_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_committed_schema_is_the_generators_output():
    """runner/schemas/policy.schema.json is exactly what tools/gen_schema.py writes (no hand edits drift)."""
    assert schema_bytes().decode("utf-8") == gen_schema.render()


def test_top_level_and_packaged_schema_are_the_same_bytes():
    """schemas/policy.schema.json (for editors) and the packaged copy are identical."""
    assert (ROOT / "schemas" / "policy.schema.json").read_bytes() == schema_bytes()
    assert (ROOT / "runner" / "schemas" / "policy.schema.json").read_bytes() == schema_bytes()


def test_error_class_enums_equal_the_registry():
    """Every error-class enum in the schema is exactly runner.errors' names plus `any`, in order."""
    schema = policy_schema()
    retry_on = schema["properties"]["retry"]["properties"]["retry_on"]["items"]["enum"]
    on = schema["properties"]["fallbacks"]["items"]["properties"]["on"]["items"]["enum"]
    assert retry_on == on == list(POLICY_ERROR_NAMES)


def test_additional_properties_false_at_every_level():
    """No object in the schema accepts unknown keys (typos are errors, not silently ignored)."""
    objects = list(_objects(policy_schema()))
    assert len(objects) >= 10
    for path, node in objects:
        if "properties" in node:
            assert node.get("additionalProperties") is False, path


def test_every_key_has_a_description():
    """Every property has a description, so editors can explain it on hover."""
    for path, node in _objects(policy_schema()):
        for name, prop in node.get("properties", {}).items():
            assert prop.get("description"), f"{path}.{name}"


def test_every_optional_key_has_a_default():
    """Every property that is not required declares a default for editors (fallback step kinds excepted)."""
    step_kinds = {"model", "response", "output"}
    for path, node in _objects(policy_schema()):
        required = set(node.get("required", []))
        for name, prop in node.get("properties", {}).items():
            if name in required or (path.endswith("fallbacks.items") and name in step_kinds) or path.endswith("items.properties.model"):
                continue
            assert "default" in prop, f"{path}.{name}"


def test_schema_defaults_equal_policy_defaults():
    """The `default` of every key equals runner.policy.DEFAULTS, the values compile_policy uses."""
    props = policy_schema()["properties"]

    def compare(defaults, schema_props, where):
        for key, value in defaults.items():
            prop = schema_props[key]
            if isinstance(value, dict):
                if key != "model":  # required: its keys have defaults, the mapping itself has none
                    assert prop["default"] == json.loads(json.dumps(value)), where + key
                compare(value, prop["properties"], f"{where}{key}.")
            else:
                assert prop["default"] == json.loads(json.dumps(value)), where + key

    compare(dict(DEFAULTS), props, "")
    assert set(DEFAULTS) | {"version", "name"} == set(props)
    for key in DEFAULTS["model"]:
        assert props["model"]["properties"][key]["default"] == DEFAULTS["model"][key]


def test_example_policies_pass_the_plain_schema():
    """policies/*.yaml validate with plain jsonschema too, as check-jsonschema or an editor sees them."""
    validator = jsonschema.Draft202012Validator(policy_schema())
    for path in sorted(POLICIES.glob("*.yaml")):
        data = read_policy_file(str(path)).data
        assert list(validator.iter_errors(data)) == [], path
        assert path.read_text().startswith("# yaml-language-server: $schema=../schemas/policy.schema.json\n")


def test_schema_command_prints_the_shipped_bytes(tmp_path):
    """`dspy-run schema` prints the packaged schema exactly, from any folder."""
    out = subprocess.run([str(Path(sys.executable).parent / "dspy-run"), "schema"], cwd=tmp_path, capture_output=True, check=True)
    assert out.stdout == schema_bytes()
    assert out.stderr == b""


FULL_POLICY = {
    "version": 1, "name": "full",
    "model": {"name": "openai/gpt-4o-mini", "api_base": "https://h.invalid/v1", "api_key_env": "K", "temperature": 0.5, "max_tokens": 10, "cache": True},
    "program": {"signature": "q -> a", "module": "predict", "adapter": "json", "state": None, "json_fallback": False},
    "retry": {"max_attempts": 2, "retry_on": ["timeout", "any"], "backoff": {"base_ms": 1, "multiplier": 1.5, "max_ms": 9, "jitter": 0},
              "respect_retry_after": False, "max_retry_after_ms": 5},
    "timeouts": {"attempt_ms": 5, "total_ms": None},
    "fallbacks": [{"on": ["auth"], "match": "x", "model": {"name": "a/b"}}, {"response": "r"}, {"output": {"a": "t"}}],
    "logging": {"level": "DEBUG", "format": "json"},
    "limits": {"max_input_chars": 5, "requests_per_second": 0.5, "max_in_flight": None},
}
REPLACEMENTS = [None, True, False, 0, -1, 1, 1.0, 1.5, 2, 10**7, "", "x", "any", "A/B", "rate_limit", "json", "K_1", "http://h",
                [], ["any"], ["any", "any"], ["timeout", "bogus"], {}, {"a": "b"}, {"name": "a/b"}, {"response": "x", "model": {"name": "a/b"}}]


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*path, i))


def _mutate(data, rng):
    import copy

    data = copy.deepcopy(data)
    for _ in range(rng.choice((1, 1, 2, 3))):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = rng.choice(paths)
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        action = rng.random()
        if action < 0.15 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action < 0.25 and isinstance(parent, dict):
            parent[rng.choice(["extra", "on", "match", "output", "model", "response"])] = rng.choice(REPLACEMENTS)
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(REPLACEMENTS))
    return data


def test_quick_check_agrees_with_jsonschema_on_mutated_policies():
    """The fast validity check and jsonschema give the same verdict on 3000 randomly broken policies and the corpus."""
    import random

    from policyfixtures import invalid_corpus
    from runner.schema import quick_valid, validator

    rng = random.Random(20240601)
    seeds = [FULL_POLICY] + [read_policy_file(str(p)).data for p in sorted(POLICIES.glob("*.yaml"))]
    seeds += [d for d in (read_policy_file(str(c.path)).data for c in invalid_corpus()) if d is not None]
    verdicts = {True: 0, False: 0}
    for i in range(3000):
        data = seeds[i % len(seeds)] if i < len(seeds) else _mutate(seeds[i % len(seeds)], rng)
        expected = validator().is_valid(data)
        assert quick_valid(data) == expected, data
        verdicts[expected] += 1
    assert min(verdicts.values()) > 150  # both verdicts are well exercised
