"""``dspy-run rehearse``: run a real policy against a scripted provider and say what it did.

Every model of the chain (primary and fallbacks) is redirected to the rehearsal
provider, which follows the fault script; each input gets a timeline and a
verdict in plain words, checked against the provider's own request log. Waits
are really waited; ``--speed`` divides every duration of the policy and the
script, and the output says so.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from ..errors import RunnerError
from ..exitcodes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from .run_cmd import LOG_LEVELS

SPEEDS = (0.01, 1000.0)
"""The --speed range: beyond it, scaled deadlines fall below a millisecond (or above hours) and the rehearsal stops meaning anything."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", required=True, metavar="FILE", help="the policy to rehearse")
    parser.add_argument("--script", metavar="FILE", help="fault script YAML: a list of steps, or {script, answers}")
    parser.add_argument("--input", action="append", default=[], metavar="FIELD=VALUE", help="one input field (repeatable)")
    parser.add_argument("--inputs", metavar="FILE.jsonl", help="one JSON object of input fields per line")
    parser.add_argument("--speed", type=float, default=1.0, help="divide every duration by this factor (default 1: real time)")
    parser.add_argument("--json", action="store_true", help="one JSON object per input instead of the timeline")
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, metavar="LEVEL", help="log level on stderr (default WARNING: one line per failed attempt)")
    parser.add_argument("--log-format", choices=("text", "json"), default=None, help="overrides the policy's logging.format")


def main(args: argparse.Namespace) -> int:
    from ..loader import load_policy
    from .inputs_arg import InputArgError, inputs_from_args

    low, high = SPEEDS
    if not (math.isfinite(args.speed) and low <= args.speed <= high):
        return _refuse(f"--speed must be between {low:g} and {high:g}, got {args.speed:g}; use e.g. --speed 10 to run ten times faster")
    try:
        policy = load_policy(args.policy)
        inputs = inputs_from_args(args.input, args.inputs, policy.program.inputs, default_demo=True)
        if not inputs:
            raise InputArgError(f"{args.inputs} holds no inputs; write one JSON object of input fields per line")
        provider_kwargs = _script_kwargs(args.script)
    except (RunnerError, InputArgError) as exc:
        return _refuse(exc.message if isinstance(exc, RunnerError) else str(exc))
    return _rehearse(policy, inputs, provider_kwargs, args)


def _run_line(executor, line):  # type: ignore[no-untyped-def]
    """The record of one input: the executor's, or a bad line's own error record (as in a batch)."""
    if line.problem is not None:
        from ..result import error_record

        return error_record(line.id, line.problem.code, line.problem.message)
    return executor.run(line.inputs, record_id=line.id)


def _refuse(message: str) -> int:
    print(f"dspy-run rehearse: {message}", file=sys.stderr)
    return EXIT_USAGE


def _script_kwargs(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    from ..rehearsal import ScriptError, load_rehearsal_file, parse_answers, parse_script

    try:
        data = load_rehearsal_file(path)
        data["script"] = parse_script(data.get("script"))
        if "answers" in data:
            data["answers"] = parse_answers(data["answers"])
    except OSError as exc:
        raise RunnerError("config", f"cannot read script {path}: {exc.strerror}", fix="check the --script path") from exc
    except (ScriptError, ValueError) as exc:
        raise RunnerError("config", f"{path}: {exc}", fix="see `Rehearse a policy` in the README for the step kinds") from exc
    except Exception as exc:  # YAML syntax errors and the like: one line, no traceback
        raise RunnerError("config", f"{path}: not a readable fault script ({type(exc).__name__})", fix="check its YAML") from exc
    return data


def _rehearse(policy, inputs, provider_kwargs: dict[str, Any], args: argparse.Namespace) -> int:
    from ..logs import setup_logging
    from ..rehearsal.session import rehearsal, scaled_policy, scaled_script
    from ..rehearsal.verdict import render_timeline, request_count_problem, verdict

    setup_logging(args.log_level or "WARNING", args.log_format or policy.logging.format)
    speed = args.speed
    run_policy = scaled_policy(policy, speed)
    script = provider_kwargs.pop("script", None)
    if script is None and policy.rehearsal is not None:
        script = policy.rehearsal.script
    if script is not None:
        script = scaled_script(script, speed)
    if isinstance(provider_kwargs.get("latency_ms"), (int, float)):
        provider_kwargs["latency_ms"] /= speed  # a duration of the script file too
    if speed != 1 and not args.json:
        print(f"(times scaled down {speed:g}x: every duration of the policy and the script is divided by {speed:g})")
    errors = 0
    try:
        with rehearsal(run_policy, every_model=True, script=script, **provider_kwargs) as (provider, executor):
            for line in inputs:
                provider.reset()
                result = _run_line(executor, line)
                seen = provider.count
                mismatch = request_count_problem(result, seen, policy.program.json_fallback)
                errors += result.status == "error"
                fields = dict(line.inputs) if line.inputs is not None else None
                if args.json:
                    print(json.dumps({"input": fields, "record": result.to_dict(), "verdict": verdict(policy, result),
                                      "requests_seen": seen, "speed": speed, "mismatch": mismatch}))
                    continue
                print(f"input {line.id}: {json.dumps(fields, ensure_ascii=False)}")
                print("\n".join(render_timeline(policy, result)))
                print(f"  verdict: {verdict(policy, result)}")
                print(f"  provider saw {seen} request(s)" + (f"; WARNING: {mismatch}" if mismatch else ", as the record says"))
    except RunnerError as exc:
        return _refuse(exc.message)
    return EXIT_FAILED if errors else EXIT_OK
