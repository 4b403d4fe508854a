"""Batch throughput: ``dspy-run --inputs`` with P workers against single-process baselines.

    python bench/bench_batch.py [--inputs 2000] [--latency-ms 50] [--rounds 3]

A rehearsal provider runs as its own process answering every request after
``--latency-ms``. Each contender is a whole process run over the same inputs,
in rotating order within each round, and its wall time includes imports and
start-up:

* ``pool32``: the best simple single process, a ThreadPoolExecutor(32)
  running bare ``dspy.Predict`` calls (no policy, no records);
* ``parallel32``: ``dspy.Parallel(num_threads=32)`` over the same calls;
* ``dspy-run``: ``dspy-run --policy ... --inputs ... --output ...`` with the
  default workers (one per core) and ``--concurrency 32``: retries, timeouts,
  records and the journal included.

Prints each contender's median wall time and throughput, and the ratios
``dspy-run / pool32`` (the target: at least 1.6x on 2 cores, 2x being the
ceiling) and ``dspy-run / parallel32``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DSPY_RUN, MODEL, count_lines, provider_process, timed, write_inputs, write_policy  # noqa: E402

_BASELINE = r"""
import json, sys
from concurrent.futures import ThreadPoolExecutor
import dspy
base_url, inputs, out, mode, model = sys.argv[1:6]
lm = dspy.LM(model, api_base=base_url, api_key="bench", num_retries=0, cache=False)
dspy.configure(lm=lm)
predict = dspy.Predict("question -> answer")
questions = [json.loads(line)["question"] for line in open(inputs)]
if mode == "pool":
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda q: predict(question=q).answer, questions))
else:
    examples = [(predict, {"question": q}) for q in questions]
    answers = [p.answer for p in dspy.Parallel(num_threads=32, disable_progress_bar=True)(examples)]
with open(out, "w") as f:
    for a in answers:
        f.write(json.dumps({"answer": a}) + "\n")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="dspy-run --workers (default: one per core)")
    args = parser.parse_args()
    baseline = _BASELINE

    with tempfile.TemporaryDirectory() as tmp, provider_process(args.latency_ms) as url:
        tmp = Path(tmp)
        inputs = write_inputs(tmp / "in.jsonl", args.inputs)
        policy = write_policy(tmp / "policy.yaml", url)
        workers = ["--workers", str(args.workers)] if args.workers else []
        contenders = {
            "pool32": lambda out: [sys.executable, "-c", baseline, url, str(inputs), str(out), "pool", MODEL],
            "parallel32": lambda out: [sys.executable, "-c", baseline, url, str(inputs), str(out), "parallel", MODEL],
            "dspy-run": lambda out: [*DSPY_RUN, "--policy", str(policy), "--inputs", str(inputs), "--output", str(out),
                                     "--concurrency", str(args.concurrency), *workers],
        }
        times: dict[str, list[float]] = {name: [] for name in contenders}
        names = list(contenders)
        for round_ in range(args.rounds):
            order = names[round_ % len(names):] + names[: round_ % len(names)]
            for name in order:
                out = tmp / f"{name}-{round_}.jsonl"
                seconds = timed(contenders[name](out))
                produced = count_lines(out)
                if produced != args.inputs:
                    raise SystemExit(f"{name} wrote {produced} results for {args.inputs} inputs")
                times[name].append(seconds)
                print(f"round {round_ + 1}: {name:<10} {seconds:6.2f} s  {args.inputs / seconds:7.1f}/s", flush=True)

    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"\n{args.inputs} inputs, provider latency {args.latency_ms:g} ms, median of {args.rounds} rounds (whole processes):")
    for name, seconds in medians.items():
        print(f"  {name:<10} {seconds:6.2f} s  {args.inputs / seconds:7.1f} inputs/s")
    paired = ", ".join(f"{p / d:.2f}x" for p, d in zip(times["pool32"], times["dspy-run"]))
    print(f"  dspy-run / pool32 per round (paired, same round): {paired}")
    print(f"  dspy-run / pool32     throughput ratio: {medians['pool32'] / medians['dspy-run']:.2f}x  (target >= 1.6x on 2 cores)")
    print(f"  dspy-run / parallel32 throughput ratio: {medians['parallel32'] / medians['dspy-run']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
