"""Batch memory: peak RSS of ``dspy-run --inputs`` for 100,000 inputs against 10,000.

    python bench/bench_memory.py [--small 10000] [--large 100000] [--workers N]

A rehearsal provider in its own process answers every request at once. Each
size runs as a whole ``dspy-run`` process tree; the bench samples
``VmHWM`` (the kernel's peak-RSS mark) of the parent and of every worker
every 50 ms, keeping each process's last value (the mark only rises, so the
last sample before a process exits is its peak, short of its final 50 ms).
It prints, per size, the parent's peak, the largest worker's peak and the sum
over the tree, and the ratios large/small; the target is the sum within 1.2x.
``getrusage(RUSAGE_CHILDREN).ru_maxrss`` (the largest single descendant) is
printed beside it as a cross-check.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DSPY_RUN, ENV, ROOT, count_lines, provider_process, write_inputs, write_policy  # noqa: E402


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            kids += [int(k) for k in text]
    except OSError:
        pass
    return kids


def _hwm_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def measure(command: list[str]) -> tuple[float, int, int, int]:
    """Run ``command``; return wall seconds, the parent's peak, the largest child's peak and the sum (kB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=ENV, cwd=ROOT, stderr=subprocess.DEVNULL)
    peaks: dict[int, int] = {}
    while proc.poll() is None:
        for pid in [proc.pid, *_children(proc.pid)]:
            hwm = _hwm_kb(pid)
            if hwm is not None:
                peaks[pid] = max(peaks.get(pid, 0), hwm)
        time.sleep(0.05)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"dspy-run exited {proc.returncode}")
    parent = peaks.pop(proc.pid, 0)
    return wall, parent, max(peaks.values(), default=0), parent + sum(peaks.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp, provider_process(0) as url:
        tmp = Path(tmp)
        policy = write_policy(tmp / "policy.yaml", url)
        for size in (args.small, args.large):
            inputs = write_inputs(tmp / f"in-{size}.jsonl", size)
            out = tmp / f"out-{size}.jsonl"
            command = [*DSPY_RUN, "--policy", str(policy), "--inputs", str(inputs), "--output", str(out),
                       "--concurrency", str(args.concurrency)]
            if args.workers:
                command += ["--workers", str(args.workers)]
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            wall, parent, worker, total = measure(command)
            after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            if count_lines(out) != size:
                raise SystemExit(f"{size} inputs gave {count_lines(out)} records")
            results[size] = (parent, worker, total)
            cross = f"{after} kB" if after > before else "not higher than before"
            print(f"{size:>7} inputs: {wall:6.1f} s  parent {parent / 1024:6.1f} MB  largest worker {worker / 1024:6.1f} MB  "
                  f"sum {total / 1024:6.1f} MB  (RUSAGE_CHILDREN max: {cross})", flush=True)
    (p1, w1, t1), (p2, w2, t2) = results[args.small], results[args.large]
    print(f"peak RSS ratio {args.large}/{args.small}: sum {t2 / t1:.3f}x (target <= 1.2x), parent {p2 / p1:.3f}x, largest worker {w2 / w1:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
