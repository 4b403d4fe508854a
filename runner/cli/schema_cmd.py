"""``dspy-run schema``: print the policy JSON Schema, byte for byte as shipped.

Editors and other validators (check-jsonschema) can use it without knowing
where the package is installed: ``dspy-run schema > policy.schema.json``.
"""

from __future__ import annotations

import argparse
import sys

from ..exitcodes import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Point an editor at it with a first line `# yaml-language-server: $schema=policy.schema.json`."


def main(args: argparse.Namespace) -> int:
    from ..schema import schema_bytes

    sys.stdout.buffer.write(schema_bytes())
    sys.stdout.flush()
    return EXIT_OK
