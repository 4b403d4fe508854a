"""Generate schemas/policy.schema.json from the code that owns the vocabulary and the defaults.

The error-class enum comes from runner.errors and every ``default`` from
runner.policy.DEFAULTS, so the schema an editor completes from cannot drift
from what the loader does (tests/test_schema.py proves the committed file is
this script's output). Run: python tools/gen_schema.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.errors import ERROR_CLASSES, POLICY_ERROR_NAMES  # noqa: E402
from runner.policy import DEFAULTS  # noqa: E402
from runner.rehearsal.script import KIND_HELP, KINDS  # noqa: E402

TARGET = ROOT / "runner" / "schemas" / "policy.schema.json"
SCHEMA_ID = "https://dspy-run.invalid/schemas/policy.schema.json"
# Python's `$` also matches before a final newline (a `|` block scalar ends in one); `(?!\n)` makes the
# pattern mean the same in Python (jsonschema) and ECMA-262 (editors): the end of the text.
END = r"$(?!\n)"
ENV_NAME = "^[A-Z_][A-Z0-9_]*" + END
DAY_MS = 86_400_000  # the cap on every duration: longer is a typo, and past ~292 years Python's timers overflow
LOG_LEVELS = ["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"]


def obj(description: str, properties: dict, *, required: list[str] | None = None, default=None, **extra) -> dict:
    out = {"type": "object", "description": description, "additionalProperties": False, "properties": properties}
    if required:
        out["required"] = required
    if default is not None:
        out["default"] = default
    out.update(extra)
    return out


def error_list(description: str, default: list[str]) -> dict:
    names = ", ".join(f"{c.name} ({c.description})" for c in ERROR_CLASSES.values())
    return {
        "type": "array",
        "description": f"{description} Error classes: {names}; `any` means all of them.",
        "items": {"enum": list(POLICY_ERROR_NAMES)},
        "minItems": 1,
        "uniqueItems": True,
        "default": default,
    }


def model_schema(description: str, defaults: dict, *, inherit_note: str = "") -> dict:
    d = defaults
    return obj(
        description,
        {
            "name": {
                "type": "string",
                "description": "The model as provider/model, the way DSPy names it, e.g. openai/gpt-4o-mini.",
                "pattern": r"^[^/\s]+/\S+" + END,
                "examples": ["openai/gpt-4o-mini"],
            },
            "api_base": {
                "type": ["string", "null"],
                "description": "The provider's base URL (http or https, no credentials in it); null means the provider's default.",
                "pattern": "^[hH][tT][tT][pP][sS]?://",
                "default": d["api_base"],
            },
            "api_key_env": {
                "type": ["string", "null"],
                "description": "The NAME of the environment variable holding the API key, e.g. OPENAI_API_KEY; never the key itself. Null: the provider's own default variable.",
                "pattern": ENV_NAME,
                "default": d["api_key_env"],
            },
            "temperature": {
                "type": ["number", "null"],
                "description": f"Sampling temperature, 0 to 2; null leaves the provider's default.{inherit_note}",
                "minimum": 0,
                "maximum": 2,
                "default": d["temperature"],
            },
            "max_tokens": {
                "type": ["integer", "null"],
                "description": f"The most tokens the model may answer with; null leaves the provider's default.{inherit_note}",
                "minimum": 1,
                "default": d["max_tokens"],
            },
            "cache": {
                "type": "boolean",
                "description": f"Let DSPy answer repeated identical requests from its cache.{inherit_note}",
                "default": d["cache"],
            },
        },
        required=["name"],
    )


def build() -> dict:
    m, p, r, t, lg, li = (DEFAULTS[k] for k in ("model", "program", "retry", "timeouts", "logging", "limits"))
    b = r["backoff"]
    inherit = " A fallback model takes the primary's value unless it sets its own."
    step = obj(
        "One step of the fallback chain: exactly one of `model` (another model, under the same retry policy), "
        "`response` (a canned answer for the first output field) or `output` (canned text per output field).",
        {
            "on": error_list("The error classes this step answers; the step is skipped for any other failure.", ["any"]),
            "match": {
                "type": ["string", "null"],
                "description": "A regular expression searched in the input text; the step is skipped when it does not match. "
                "Patterns that can backtrack catastrophically, like (a+)+, are refused.",
                "minLength": 1,
                "default": None,
            },
            "model": model_schema("A fallback model, tried with the same retry and timeout settings as the primary.", m, inherit_note=inherit),
            "response": {
                "type": "string",
                "description": "A canned answer given as the first output field. May name input fields as {field}; write {{ and }} for literal braces.",
            },
            "output": {
                "type": "object",
                "description": "A canned answer per output field (field name -> text). Texts may name input fields as {field}.",
                "minProperties": 1,
                "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                "additionalProperties": {"type": "string"},
            },
        },
        oneOf=[{"required": ["model"]}, {"required": ["response"]}, {"required": ["output"]}],
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "dspy-run policy",
        **obj(
            "A resilience policy for running DSPy predictions: the model, retries, timeouts and fallbacks. See docs/policy.md.",
            {
                "version": {"description": "The policy language version; only 1 exists.", "const": 1, "default": 1},
                "name": {
                    "type": ["string", "null"],
                    "description": "A name for logs and records; null means the file's name without its extension.",
                    "minLength": 1,
                    "maxLength": 200,
                    "default": None,
                },
                "model": model_schema("The primary model.", m),
                "program": obj(
                    "What to run: a DSPy signature, module and adapter.",
                    {
                        "signature": {"type": "string", "description": "A DSPy signature string, e.g. 'context, question -> answer'.", "minLength": 1, "default": p["signature"]},
                        "module": {"enum": ["predict", "chain_of_thought"], "description": "The DSPy module: predict (dspy.Predict) or chain_of_thought (dspy.ChainOfThought).", "default": p["module"]},
                        "adapter": {"enum": ["chat", "json"], "description": "How prompts are formatted and answers parsed: chat (dspy.ChatAdapter) or json (dspy.JSONAdapter).", "default": p["adapter"]},
                        "state": {"type": ["string", "null"], "description": "A saved DSPy program (module.save) to load, relative to the policy file; null runs the bare module.", "minLength": 1, "default": p["state"]},
                        "json_fallback": {"type": "boolean", "description": "Let the chat adapter silently re-ask with the JSON adapter when it cannot parse an answer (an extra model call).", "default": p["json_fallback"]},
                    },
                    default=dict(p),
                ),
                "retry": obj(
                    "How often and how patiently each model is retried.",
                    {
                        "max_attempts": {"type": "integer", "description": "Attempts per model, the first included; 1 means no retry.", "minimum": 1, "maximum": 100, "default": r["max_attempts"]},
                        "retry_on": error_list("The error classes worth another attempt of the same model.", list(r["retry_on"])),
                        "backoff": obj(
                            "The wait before each retry: base_ms x multiplier^(n-1), capped at max_ms, then jittered.",
                            {
                                "base_ms": {"type": "integer", "description": "The wait before the first retry, in milliseconds.", "minimum": 0, "maximum": DAY_MS, "default": b["base_ms"]},
                                "multiplier": {"type": "number", "description": "Each further wait is the previous one times this; 1 waits the same each time.", "minimum": 1, "default": b["multiplier"]},
                                "max_ms": {"type": "integer", "description": "The cap on any single wait, in milliseconds.", "minimum": 0, "maximum": DAY_MS, "default": b["max_ms"]},
                                "jitter": {"type": "number", "description": "Random spread of each wait as a fraction: 0.15 draws from 85 % to 115 % of the nominal wait.", "minimum": 0, "maximum": 1, "default": b["jitter"]},
                            },
                            default=dict(b),
                        ),
                        "respect_retry_after": {"type": "boolean", "description": "Wait as long as the provider's Retry-After says (capped by max_retry_after_ms) instead of the backoff, when it says longer.", "default": r["respect_retry_after"]},
                        "max_retry_after_ms": {"type": "integer", "description": "The longest Retry-After honoured, in milliseconds; a longer one fails the model over instead of waiting.", "minimum": 0, "maximum": DAY_MS, "default": r["max_retry_after_ms"]},
                    },
                    default={**r, "retry_on": list(r["retry_on"]), "backoff": dict(b)},
                ),
                "timeouts": obj(
                    "Deadlines.",
                    {
                        "attempt_ms": {"type": "integer", "description": "A hard deadline per attempt, in milliseconds; the request is cancelled when it passes.", "exclusiveMinimum": 0, "maximum": DAY_MS, "default": t["attempt_ms"]},
                        "total_ms": {"type": ["integer", "null"], "description": "One deadline for a whole prediction, waits and fallbacks included, in milliseconds; null means no overall deadline.", "exclusiveMinimum": 0, "maximum": DAY_MS, "default": t["total_ms"]},
                    },
                    default=dict(t),
                ),
                "fallbacks": {
                    "type": "array",
                    "description": "The ordered steps tried after the primary model has failed; the first step that applies answers.",
                    "items": step,
                    "default": list(DEFAULTS["fallbacks"]),
                },
                "logging": obj(
                    "Log output (to stderr).",
                    {
                        "level": {"enum": LOG_LEVELS, "description": "The least severe level logged.", "default": lg["level"]},
                        "format": {"enum": ["text", "json"], "description": "text for people, json for log collectors (one object per line).", "default": lg["format"]},
                    },
                    default=dict(lg),
                ),
                "limits": obj(
                    "Protection against oversized input and overload.",
                    {
                        "max_input_chars": {"type": "integer", "description": "An input field longer than this many characters is refused (invalid_input) before any model call.", "minimum": 1, "default": li["max_input_chars"]},
                        "requests_per_second": {"type": ["number", "null"], "description": "The most provider requests started per second (every attempt counts, retries included; a batch's workers share it); null means no rate limit.", "exclusiveMinimum": 0, "maximum": 1_000_000, "default": li["requests_per_second"]},
                        "max_in_flight": {"type": ["integer", "null"], "description": "The most provider calls in flight at once (a batch's workers share it); null means no limit.", "minimum": 1, "default": li["max_in_flight"]},
                    },
                    default=dict(li),
                ),
                "rehearsal": rehearsal_schema(DEFAULTS["rehearsal"]),
            },
            required=["model"],
        ),
    }


STEP_PARAMS = {
    "delay_ms": ({"type": "number", "minimum": 0}, "Wait this long before answering, in milliseconds.", 0),
    "text": ({"type": "string"}, "ok: the answer text for the first output field; unparseable: the text sent.", None),
    "output": ({"type": "object", "additionalProperties": {"type": "string"}}, "ok: the answer per output field.", None),
    "raw": ({"type": "string"}, "ok/garbage: the exact message content (ok) or body (garbage) sent.", None),
    "message": ({"type": "string"}, "The provider error message in the error body.", None),
    "retry_after_ms": ({"type": "number", "minimum": 0}, "rate_limit: the Retry-After sent, in milliseconds; none sends no header.", None),
    "status": ({"type": "integer", "minimum": 500, "maximum": 599}, "server_error: the 5xx status sent.", 500),
    "interval_ms": ({"type": "number", "exclusiveMinimum": 0}, "trickle: the gap between two bytes, in milliseconds.", 500),
    "duration_ms": ({"type": "number", "minimum": 0}, "trickle: stop trickling after this long; none trickles until the client leaves.", None),
    "reset": ({"type": "boolean"}, "drop: reset the connection (RST) instead of closing it.", False),
}
"""Step parameters: (JSON type, description, default). Which kinds take which is checked by runner.rehearsal.script."""


def script_schema() -> dict:
    kinds = "; ".join(f"{kind}: {help_}" for kind, help_ in KIND_HELP.items())
    step = obj(
        "One scripted behaviour of the provider and how many requests it answers.",
        {
            "do": {"enum": list(KINDS), "description": f"What the provider does. {kinds}."},
            "times": {
                "type": ["integer", "string", "null"],
                "description": "How many requests this step answers (a whole number >= 1); forever (or null) never runs out.",
                "default": 1,
            },
            **{name: {**kind, "description": text, "default": default} for name, (kind, text, default) in STEP_PARAMS.items()},
        },
        required=["do"],
    )
    steps = {"type": "array", "items": step}
    # `items` constrains only the list form and `additionalProperties` only the mapping form: no anyOf,
    # so a bad step gets jsonschema's precise message instead of "not valid under any of the given schemas".
    return {
        "type": ["array", "object"],
        "description": "Steps applied to requests in arrival order (then ok for ever), or a mapping from model name to such a list with '*' as the default.",
        "items": step,
        "additionalProperties": steps,
        "default": [],
    }


def rehearsal_schema(d: dict) -> dict:
    answer = obj(
        "An answer the rehearsal model gives when the user message matches.",
        {
            "match": {"type": "string", "description": "A regex searched in the user message."},
            "text": {"type": "string", "description": "The answer for the first output field.", "default": None},
            "output": {"type": "object", "additionalProperties": {"type": "string"}, "description": "The answer per output field.", "default": None},
        },
        required=["match"],
    )
    scenario = obj(
        "One guided step of `dspy-run --policy FILE` when no input is given: send an input under a script, or validate a policy.",
        {
            "title": {"type": "string", "description": "What the scenario shows."},
            "input": {"type": "object", "additionalProperties": {"type": "string"}, "description": "The input fields to send.", "default": None},
            "script": {**script_schema(), "description": "The provider's script for this scenario (default: the section's script).", "default": None},
            "expect": {"type": "string", "description": "What should happen: ok, fallback, error, an error code such as empty_input or auth, or invalid/valid for a policy.", "default": None},
            "policy": {"type": "string", "description": "A policy file to validate instead of sending an input, relative to this policy.", "default": None},
        },
        required=["title"],
    )
    return obj(
        "The embedded rehearsal provider that serves models named rehearsal/NAME: no key, no network.",
        {
            "script": script_schema(),
            "answers": {"type": "array", "items": answer, "description": "Answers by regex on the user message; the first match wins.", "default": d["answers"]},
            "default_answer": {"type": "string", "description": "The answer when no `answers` entry matches.", "default": d["default_answer"]},
            "scenarios": {"type": "array", "items": scenario, "description": "Guided scenarios run when the policy is run with no input.", "default": d["scenarios"]},
        },
        default=d,
    )


def render() -> str:
    schema = build()
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(render(), encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
