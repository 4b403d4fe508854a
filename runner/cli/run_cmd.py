"""``dspy-run --policy FILE --input field=value [...] [--json]``: predictions under a policy.

One input from ``--input`` pairs: the output fields are printed (``--json``:
the whole result record, one object), then a short status line on stderr.
Many inputs with ``--inputs in.jsonl --output out.jsonl``: handed to the batch
runner (:mod:`runner.batch`), which streams, journals and resumes.

Exit codes: 0 every input answered (by the primary model or a fallback),
1 some input ended in an error, 2 the policy or the command line is invalid
(nothing was sent). A user mistake is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from . import EXIT_FAILED, EXIT_OK, EXIT_USAGE

LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")  # loguru's; runner.logs stays unimported until needed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", required=True, metavar="FILE", help="the policy YAML file")
    parser.add_argument("--input", action="append", default=[], metavar="FIELD=VALUE", help="one input field (repeat for each field)")
    parser.add_argument("--json", action="store_true", help="print the whole result record as one JSON object")
    parser.add_argument("--inputs", metavar="FILE.jsonl", help="batch: one JSON object of input fields per line")
    parser.add_argument("--output", metavar="FILE.jsonl", help="batch: where result records are appended (resumable)")
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, metavar="LEVEL", help="overrides the policy's logging.level (DEBUG, INFO, WARNING, ERROR)")
    parser.add_argument("--log-format", choices=("text", "json"), help="overrides the policy's logging.format")
    batch = parser.add_argument_group("batch options (with --inputs)")
    batch.add_argument("--concurrency", type=int, default=None, help="predictions in flight per worker (default 32)")
    batch.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    batch.add_argument("--summary-json", metavar="FILE", help="also write the batch summary as JSON")
    batch.add_argument("--grace", type=float, default=None, metavar="SECONDS", help="on SIGINT/SIGTERM, how long in-flight inputs may finish")
    parser.epilog = "Exit status: 0 every input answered, 1 some input ended in an error, 2 bad policy or command line."


def main(args: argparse.Namespace) -> int:
    if args.inputs or args.output:
        return _batch(args)
    return _single(args)


def _single(args: argparse.Namespace) -> int:
    from ..errors import RunnerError
    from ..loader import load_policy
    from ..logs import setup_logging
    from ..rehearsal.session import policy_executor
    from .inputs_arg import InputArgError, parse_pairs

    try:
        policy = load_policy(args.policy)
        setup_logging(args.log_level or policy.logging.level, args.log_format or policy.logging.format)
        if not args.input and policy.rehearsal is not None and policy.rehearsal.scenarios:
            return _scenarios(policy)
        if not args.input:
            names = " ".join(f"--input {name}=..." for name in policy.program.inputs)
            raise InputArgError(f"nothing to run: give {names} (or --inputs FILE.jsonl --output FILE.jsonl)")
        fields = parse_pairs(args.input)
        with policy_executor(policy) as executor:  # imports DSPy; refuses unknown models and missing keys before sending
            result = executor.run(fields)
    except RunnerError as exc:
        return _refuse(exc.message)
    except InputArgError as exc:
        return _refuse(str(exc))
    if args.json:
        print(result.to_json(), flush=True)
    else:
        _print_human(result)
    return EXIT_OK if result.ok else EXIT_FAILED


def _scenarios(policy) -> int:  # type: ignore[no-untyped-def]
    """No input and a policy with rehearsal scenarios: the guided demo run, which checks its own expectations."""
    from ..rehearsal.demo import run_scenarios

    outcomes = run_scenarios(policy, out=lambda line: print(line, flush=True))
    return EXIT_OK if all(o.met for o in outcomes) else EXIT_FAILED


def _print_human(result) -> None:  # type: ignore[no-untyped-def]
    if result.output is not None:
        outputs = dict(result.output)
        if len(outputs) == 1:
            print(next(iter(outputs.values())), flush=True)
        else:
            for name, value in outputs.items():
                print(f"{name}: {value}", flush=True)
        where = f"{result.served_by}" + (f" {result.model}" if result.model else " (canned response)")
        print(f"dspy-run: {result.status}, served by {where}, {len(result.attempts)} attempt(s), {result.elapsed_ms:.0f} ms", file=sys.stderr)
    else:
        error = result.error
        print(f"dspy-run: error {error.code}: {error.message}", file=sys.stderr)


def _batch(args: argparse.Namespace) -> int:
    if args.input:
        return _refuse("give --input pairs or --inputs FILE, not both")
    if not (args.inputs and args.output):
        return _refuse("a batch needs both --inputs FILE.jsonl and --output FILE.jsonl (records are appended, and a rerun resumes)")
    if args.json:
        return _refuse("--json is for one --input run; a batch writes JSON records to --output")
    from ..batch import DEFAULT_CONCURRENCY, DEFAULT_GRACE_S, run_batch

    return run_batch(
        args.policy,
        args.inputs,
        args.output,
        concurrency=args.concurrency if args.concurrency is not None else DEFAULT_CONCURRENCY,
        workers=args.workers,
        summary_json=args.summary_json,
        grace_s=args.grace if args.grace is not None else DEFAULT_GRACE_S,
        log_level=args.log_level,
        log_format=args.log_format,
    )


def _refuse(message: str) -> int:
    print(f"dspy-run: {message}", file=sys.stderr)
    return EXIT_USAGE


