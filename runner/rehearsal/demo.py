"""The guided run of a policy's ``rehearsal.scenarios``: what ``dspy-run --policy policies/demo.yaml`` shows.

Each scenario sends one input under its own fault script (or validates a
policy file) and says what it expects; the run prints what happened, the
timeline and the verdict, and fails when a scenario does not turn out as
expected, so the demo is also a check that the runner behaves as documented.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..policy import Policy
from ..result import Result
from .scenarios import Scenario, expectation_met
from .session import rehearsal
from .verdict import render_timeline, verdict

Print = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Outcome:
    scenario: Scenario
    met: bool
    result: Result | None = None


def run_scenarios(policy: Policy, out: Print = print) -> list[Outcome]:
    """Run every scenario of the policy in order against the embedded provider; print as it goes."""
    spec = policy.rehearsal
    outcomes = []
    with rehearsal(policy, every_model=False) as (provider, executor):
        for number, scenario in enumerate(spec.scenarios, 1):
            out(f"{number}. {scenario.title}")
            if scenario.policy is not None:
                outcomes.append(_validate(scenario, out))
                continue
            provider.set_script(scenario.script if scenario.script is not None else spec.script, reset_log=True)
            result = executor.run(dict(scenario.input or {}), record_id=str(number))
            outcomes.append(_show(policy, scenario, result, out))
    met = sum(o.met for o in outcomes)
    out(f"{met}/{len(outcomes)} scenarios behaved as expected")
    return outcomes


def _show(policy: Policy, scenario: Scenario, result: Result, out: Print) -> Outcome:
    out(f"   input:   {json.dumps(dict(scenario.input or {}), ensure_ascii=False)}")
    if result.output is not None:
        answer = ", ".join(f"{k}={v!r}" for k, v in result.output.items())
        out(f"   output:  {answer}  [{result.status}, served by {result.served_by}]")
    if result.error is not None:
        e = result.error
        out(f"   error:   {e.code}: {e.message}")
        out(f"   context: operation={e.operation} attempt={e.attempt} model={e.model} timestamp={e.timestamp}")
    for line in render_timeline(policy, result)[:-1]:
        out(f" {line}")
    out(f"   verdict: {verdict(policy, result)}")
    met = expectation_met(scenario.expect, result.status, result.error.code if result.error else None)
    out(_expectation_line(scenario, met) + "\n")
    return Outcome(scenario, met, result)


def _validate(scenario: Scenario, out: Print) -> Outcome:
    from ..loader import check_file

    _, problems = check_file(_shown_path(scenario.policy))
    errors = [p for p in problems if p.is_error]
    out(f"   dspy-run validate {scenario.policy.name}:")
    for problem in problems:
        out(f"   {problem.format()}")
    met = expectation_met(scenario.expect, "invalid" if errors else "valid", None)
    out(_expectation_line(scenario, met) + "\n")
    return Outcome(scenario, met)


def _shown_path(path: Path) -> str:
    """The path as the user would type it: relative to the working folder when it lies below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _expectation_line(scenario: Scenario, met: bool) -> str:
    if scenario.expect is None:
        return "   (no expectation given)"
    return f"   {'as expected' if met else 'NOT AS EXPECTED'}: {scenario.expect}"
