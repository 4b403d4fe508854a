"""Shared plumbing of the batch benchmarks: a rehearsal provider process, input files, a policy.

Every timed thing is a whole process (``python -c ...`` or the ``dspy-run``
entry point), started the same way, so imports and start-up count for every
contender alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "true", "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
MODEL = "openai/bench-model"
DSPY_RUN = [sys.executable, "-c", "import sys; from runner.cli import main; sys.exit(main())"]


@contextmanager
def provider_process(latency_ms: float) -> Iterator[str]:
    """A rehearsal provider in its own process answering ``ok`` after ``latency_ms``; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner.rehearsal.server", "--port", "0", "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE, text=True, env=ENV, cwd=ROOT,
    )
    try:
        line = proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"the rehearsal provider did not start: {line!r}")
        yield line.removeprefix("listening on ")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def write_inputs(path: Path, count: int) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(count):
            f.write(json.dumps({"question": f"What is {i} plus {i}?"}) + "\n")
    return path


def write_policy(path: Path, base_url: str) -> Path:
    path.write_text(
        f"model:\n  name: {MODEL}\n  api_base: {base_url}\n"
        "program:\n  signature: question -> answer\n"
        "retry:\n  max_attempts: 2\n  backoff: {base_ms: 10, max_ms: 100}\n"
        "timeouts:\n  attempt_ms: 30000\n"
        "logging:\n  level: WARNING\n",
        encoding="utf-8",
    )
    return path


def timed(command: list[str], *, stdout_path: Path | None = None) -> float:
    """Wall seconds of one whole process; raises if it fails."""
    start = time.perf_counter()
    out = open(stdout_path, "w") if stdout_path else subprocess.DEVNULL
    try:
        proc = subprocess.run(command, env=ENV, cwd=ROOT, stdout=out, stderr=subprocess.PIPE, text=True)
    finally:
        if stdout_path:
            out.close()
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{command[:3]}... exited {proc.returncode}: {proc.stderr[-2000:]}")
    return elapsed


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)
