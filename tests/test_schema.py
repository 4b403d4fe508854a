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
