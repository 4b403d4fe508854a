"""``dspy-run explain``: the compiled plan of a policy, without calling anything.

It prints what the executor will do (runner.plan is the one source of both),
so an operator can read the worst case before shipping a policy. It imports
neither DSPy nor LiteLLM.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import ERROR_CLASSES, RunnerError
from ..exitcodes import EXIT_OK, EXIT_USAGE
from ..plan import ChainPlan, ModelPlan, chain_plan
from ..policy import FallbackStep, Policy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", required=True, metavar="FILE", help="the policy file to explain")
    parser.add_argument("--json", action="store_true", help="print the plan as one JSON object")


def main(args: argparse.Namespace) -> int:
    from ..loader import load_policy

    try:
        policy = load_policy(args.policy)
    except RunnerError as exc:
        print(f"dspy-run explain: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    plan = chain_plan(policy)
    if args.json:
        print(json.dumps(plan_to_dict(policy, plan), indent=2))
    else:
        print("\n".join(render(policy, plan)))
    return EXIT_OK


def _s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _step_text(step: FallbackStep) -> str:
    if step.model is not None:
        what = f"model {step.model.name} (same retry policy)"
    else:
        fields = ", ".join(f"{k}={v!r}" for k, v in step.output.items())
        what = f"canned response {fields}"
    conditions = [] if step.on == frozenset(ERROR_CLASSES) else [f"on {', '.join(sorted(step.on))}"]
    if step.match is not None:
        conditions.append(f"when the input matches /{step.match.pattern}/")
    return f"{what}" + (f"  [{'; '.join(conditions)}]" if conditions else "  [always]")


def _model_lines(policy: Policy, plan: ModelPlan) -> list[str]:
    retry = policy.retry
    lines = [f"{plan.label}: {plan.model.name}, up to {retry.max_attempts} attempt(s), each cut at {_s(policy.timeouts.attempt_s)}"]
    for step in plan.steps:
        if step.attempt == 1:
            lines.append("  attempt 1  at once")
            continue
        text = f"  attempt {step.attempt}  after {_s(step.wait_nominal_s)} ({_s(step.wait_low_s)} to {_s(step.wait_high_s)} with jitter)"
        if retry.respect_retry_after and "rate_limit" in retry.retry_on:
            text += f", or the provider's Retry-After when longer (up to {_s(retry.max_retry_after_s)})"
        lines.append(text)
    return lines


def render(policy: Policy, plan: ChainPlan) -> list[str]:
    source = f" ({policy.source})" if policy.source else ""
    lines = [f"policy {policy.name}{source}", ""]
    for model in plan.models:
        lines += _model_lines(policy, model)
    lines += ["", "error classes:"]
    for route in plan.routes:
        first = "retried" if route.retried else "not retried"
        then = " -> ".join(route.answered_by) if route.answered_by else "no fallback"
        end = ", else the input ends in an error" if route.ends_in_error else ""
        lines.append(f"  {route.error_class:<16}{first}, then {then}{end}")
    lines += ["", "fallback chain (in order):"]
    if not policy.fallbacks:
        lines.append("  none: when the primary model fails, the input ends in an error")
    for step in policy.fallbacks:
        note = "  UNREACHABLE: an earlier canned response always answers" if step.index in plan.unreachable else ""
        lines.append(f"  {step.label}: {_step_text(step)}{note}")
    lines += ["", *_worst_case_lines(policy, plan)]
    return lines


def _worst_case_lines(policy: Policy, plan: ChainPlan) -> list[str]:
    lines = [f"worst case per input: {_s(plan.worst_case_s)} wall time, {plan.worst_case_calls} billable call(s)"]
    if plan.cut_at is not None:
        label, attempt = plan.cut_at
        lines.append(
            f"  timeouts.total_ms ({_s(policy.timeouts.total_s)}) cuts the schedule short during {label} attempt {attempt};"
            f" uncut it would take {_s(plan.uncut_worst_case_s)}"
        )
    elif policy.timeouts.total_s is None:
        lines.append("  no timeouts.total_ms: nothing bounds the whole chain but the schedule itself")
    else:
        lines.append(f"  within timeouts.total_ms ({_s(policy.timeouts.total_s)}): the deadline never cuts the schedule")
    if policy.program.json_fallback:
        lines.append("  program.json_fallback doubles the calls: each unparseable answer is asked again as JSON")
    return lines


def plan_to_dict(policy: Policy, plan: ChainPlan) -> dict[str, Any]:
    return {
        "policy": policy.name,
        "source": str(policy.source) if policy.source else None,
        "models": [
            {
                "label": m.label,
                "model": m.model.name,
                "attempt_deadline_ms": policy.timeouts.attempt_s * 1000,
                "attempts": [
                    {"attempt": s.attempt, "wait_ms": s.wait_nominal_s * 1000, "wait_min_ms": s.wait_low_s * 1000, "wait_max_ms": s.wait_high_s * 1000}
                    for s in m.steps
                ],
                "worst_case_ms": m.worst_case_s * 1000,
                "calls": m.calls,
            }
            for m in plan.models
        ],
        "error_classes": {
            r.error_class: {"retried": r.retried, "answered_by": list(r.answered_by), "can_end_in_error": r.ends_in_error}
            for r in plan.routes
        },
        "fallbacks": [
            {
                "label": s.label,
                "kind": "model" if s.model is not None else "response",
                "model": s.model.name if s.model is not None else None,
                "output": dict(s.output) if s.output is not None else None,
                "on": sorted(s.on),
                "match": s.match.pattern if s.match is not None else None,
                "reachable": s.index not in plan.unreachable,
            }
            for s in policy.fallbacks
        ],
        "worst_case_ms": plan.worst_case_s * 1000,
        "uncut_worst_case_ms": plan.uncut_worst_case_s * 1000,
        "worst_case_calls": plan.worst_case_calls,
        "total_deadline_cuts_at": {"label": plan.cut_at[0], "attempt": plan.cut_at[1]} if plan.cut_at else None,
    }

