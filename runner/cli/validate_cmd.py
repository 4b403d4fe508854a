"""``dspy-run validate FILE...``: check policy files, one line per problem.

Every file is checked and every problem reported (``FILE:LINE:COL: message``;
warnings say ``warning:`` and do not fail). Exit 0 when every file is valid,
1 when any is not. Built for pre-commit: fast to start (no DSPy, no LiteLLM,
no loguru), quiet on success, and never a traceback for a bad file.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..exitcodes import EXIT_FAILED, EXIT_OK



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="policy files to check")
    parser.add_argument(
        "--format", choices=("text", "json"), default="text",
        help="text: one FILE:LINE:COL line per problem (default); json: one JSON document for machines",
    )
    parser.epilog = "Exit status: 0 every file is valid (warnings allowed), 1 some file has an error."


def main(args: argparse.Namespace) -> int:
    from ..loader import check_file

    if hasattr(sys.stdout, "reconfigure"):  # a file name that is not UTF-8 is printed back as its own bytes
        sys.stdout.reconfigure(errors="surrogateescape")
    reports = []
    for name in args.files:
        _, problems = check_file(name)
        reports.append((name, problems))
    valid = all(not any(p.is_error for p in problems) for _, problems in reports)
    if args.format == "json":
        document = {
            "valid": valid,
            "files": [
                {"file": name, "valid": not any(p.is_error for p in problems), "problems": [p.to_dict() for p in problems]}
                for name, problems in reports
            ],
        }
        print(json.dumps(document, indent=2))
    else:
        lines = [p.format() for _, problems in reports for p in problems]
        if lines:
            print("\n".join(lines))
        invalid = sum(1 for _, problems in reports if any(p.is_error for p in problems))
        if invalid:
            print(f"{invalid} of {len(reports)} policy file(s) invalid", file=sys.stderr)
    return EXIT_OK if valid else EXIT_FAILED
