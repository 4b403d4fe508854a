"""The ``rehearsal`` section of a policy: the embedded provider's script and answers, and demo scenarios.

A policy whose model is ``rehearsal/NAME`` runs against the embedded provider
with no key and no network; its ``rehearsal`` section says how that provider
behaves. ``scenarios`` turn a plain ``dspy-run --policy FILE`` into a guided
run: each scenario sends one input under its own fault script (or validates a
policy file) and states what it expects, so the demo checks itself.
Pure data and parsing: no DSPy, no server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .answers import DEFAULT_ANSWER, Answer, parse_answers
from .script import Script, parse_script


@dataclass(frozen=True, slots=True)
class Scenario:
    """One demo step: send ``input`` under ``script``, or validate ``policy``; ``expect`` what happens."""

    title: str
    input: Mapping[str, str] | None = None
    script: Script | None = None  # None: the section's script
    expect: str | None = None  # ok | fallback | error | an error code such as empty_input
    policy: Path | None = None  # a policy file to validate instead of an input


@dataclass(frozen=True, slots=True)
class RehearsalSpec:
    script: Script
    answers: tuple[Answer, ...]
    default_answer: str = DEFAULT_ANSWER
    scenarios: tuple[Scenario, ...] = ()


def compile_rehearsal(data: Mapping[str, Any], base_dir: Path | None) -> RehearsalSpec:
    """The section of a validated policy as frozen values; relative policy paths resolve beside the policy."""
    scenarios = []
    for item in data.get("scenarios") or ():
        policy = item.get("policy")
        if policy is not None and base_dir is not None:
            policy = (base_dir / policy).resolve()
        scenarios.append(
            Scenario(
                title=item["title"],
                input=MappingProxyType({k: str(v) for k, v in item["input"].items()}) if "input" in item else None,
                script=parse_script(item["script"]) if "script" in item else None,
                expect=item.get("expect"),
                policy=Path(policy) if policy is not None else None,
            )
        )
    return RehearsalSpec(
        script=parse_script(data.get("script")),
        answers=parse_answers(data.get("answers")),
        default_answer=data.get("default_answer", DEFAULT_ANSWER),
        scenarios=tuple(scenarios),
    )


def expectation_met(expect: str | None, status: str, code: str | None) -> bool:
    """Whether a result with ``status`` (and error ``code``) is what the scenario said would happen."""
    return expect is None or expect == status or (code is not None and expect == code)
