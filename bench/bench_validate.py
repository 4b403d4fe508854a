"""Benchmark: `dspy-run validate` against `check-jsonschema` over the same 50 policies, as whole processes.

pre-commit starts the validator once per commit, so what matters is the wall
time of a whole process: interpreter start, imports, schema build, 50 files.
Both commands run interleaved, several rounds, and the medians are compared in
this one run (the machine is shared; a ratio from the same run is fair where
absolute times are not). Budget: ours <= 0.35 x check-jsonschema.

Run: /work/venv/bin/python bench/bench_validate.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SCHEMA = ROOT / "schemas" / "policy.schema.json"
BUDGET = 0.35
FILES = 50


def write_policies(directory: Path) -> list[str]:
    """50 valid policies: the two shipped ones and variations of them (different sizes and chains)."""
    sources = [ROOT / "policies" / "example.yaml", ROOT / "policies" / "prod.yaml"]
    paths = []
    for i in range(FILES):
        text = sources[i % 2].read_text(encoding="utf-8")
        text = text.replace("max_attempts: 3", f"max_attempts: {1 + i % 5}")
        text = text.replace("\nname: example", f"\nname: example-{i}").replace("\nname: prod", f"\nname: prod-{i}")
        path = directory / f"policy_{i:02d}.yaml"
        path.write_text(text, encoding="utf-8")
        paths.append(str(path))
    return paths


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = write_policies(Path(tmp))
        ours = [str(BIN / "dspy-run"), "validate", *files]
        theirs = [str(BIN / "check-jsonschema"), "--schemafile", str(SCHEMA), *files]
        timed(ours), timed(theirs)  # warm the page cache and .pyc files for both
        ours_s, theirs_s = [], []
        for _ in range(args.rounds):
            ours_s.append(timed(ours))
            theirs_s.append(timed(theirs))
    ours_med, theirs_med = statistics.median(ours_s), statistics.median(theirs_s)
    ratio = ours_med / theirs_med
    print(f"files per run:        {FILES}   rounds: {args.rounds} (interleaved)")
    print(f"dspy-run validate:    median {ours_med * 1000:7.1f} ms   (min {min(ours_s) * 1000:.1f}, max {max(ours_s) * 1000:.1f})")
    print(f"check-jsonschema:     median {theirs_med * 1000:7.1f} ms   (min {min(theirs_s) * 1000:.1f}, max {max(theirs_s) * 1000:.1f})")
    print(f"ratio ours/theirs:    {ratio:.3f}   budget {BUDGET}: {'OK' if ratio <= BUDGET else 'OVER BUDGET'}")
    return 0 if ratio <= BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
