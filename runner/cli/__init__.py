"""The ``dspy-run`` command: argument parsing and wiring, nothing worth testing on its own.

Each subcommand is a module with ``add_arguments(parser)`` and ``main(args) -> int``.
``dspy-run --policy FILE ...`` without a subcommand is ``dspy-run run``. Exit codes
live here, in one place:

* 0: every input answered (by the primary model or a fallback), or every file valid
* 1: some input ended in an error, or some policy file is invalid
* 2: the policy or the command line is invalid: nothing was sent
* 130 / 143: interrupted by SIGINT / SIGTERM
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..exitcodes import EXIT_FAILED, EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, EXIT_USAGE  # noqa: F401 - the table, re-exported

SUBCOMMANDS = {
    "run": "run predictions under a policy (the default)",
    "validate": "check policy files; one line per problem",
    "schema": "print the policy JSON Schema",
    "explain": "print a policy's plan: schedule, routes, worst case (calls nothing)",
    "rehearse": "run a policy against a scripted provider: timeline and verdict per input",
}


def _parser(command: str | None) -> argparse.ArgumentParser:
    """The parser, with the arguments of ``command`` only.

    Only the chosen subcommand's module is imported: ``validate`` must start
    fast and must not pay for (or break on) the run path's imports.
    """
    parser = argparse.ArgumentParser(
        prog="dspy-run",
        description="Run DSPy predictions under a declarative resilience policy.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_ in SUBCOMMANDS.items():
        subparser = sub.add_parser(name, help=help_, description=help_)
        if name == command:
            importlib.import_module(f"runner.cli.{name}_cmd").add_arguments(subparser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "run")
    args = _parser(argv[0] if argv[0] in SUBCOMMANDS else None).parse_args(argv)
    module = importlib.import_module(f"runner.cli.{args.command}_cmd")
    try:
        return module.main(args)
    except KeyboardInterrupt:
        print("dspy-run: interrupted", file=sys.stderr)
        return EXIT_SIGINT
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
