"""What the policy machinery costs on a success: executor against the bare DSPy call of the same kind.

A rehearsal provider runs as a separate process and answers at once, so the
client's CPU per prediction is what is measured (``time.process_time`` of this
process: the server's work is not in it). Two pairs, each in the same run and
interleaved round by round so that drift hits both sides alike:

* ``executor.run()``          against a sync ``dspy.Predict`` call;
* ``await executor.arun()``   against ``await predict.acall()``.

The executor side runs the whole machinery: input check, stamina retry loop,
hard attempt deadline (the watchdog on the sync path, ``asyncio.timeout`` on
the async one), per-call ``dspy.context``, the result record. Target: each
ratio at most 1.05.

    python bench/bench_executor.py [--rounds 9] [--calls 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")

from bench._common import provider_process  # noqa: E402

MODEL = "openai/bench-model"
QUESTION = "What is the capital of France?"


def _round(sides: dict, calls: int) -> dict[str, tuple[float, float]]:
    """One round: the sides take turns call by call (drift and neighbours' load hit all alike)."""
    cpu = dict.fromkeys(sides, 0.0)
    wall = dict.fromkeys(sides, 0.0)
    for _ in range(calls):
        for name, fn in sides.items():
            c, w = time.process_time(), time.perf_counter()
            fn()
            cpu[name] += time.process_time() - c
            wall[name] += time.perf_counter() - w
    return {name: (cpu[name] / calls * 1000, wall[name] / calls * 1000) for name in sides}


async def _around(sides: dict, calls: int) -> dict[str, tuple[float, float]]:
    cpu = dict.fromkeys(sides, 0.0)
    wall = dict.fromkeys(sides, 0.0)
    for _ in range(calls):
        for name, fn in sides.items():
            c, w = time.process_time(), time.perf_counter()
            await fn()
            cpu[name] += time.process_time() - c
            wall[name] += time.perf_counter() - w
    return {name: (cpu[name] / calls * 1000, wall[name] / calls * 1000) for name in sides}


def _collect(rows: dict[str, list[tuple[float, float]]], one_round: dict[str, tuple[float, float]]) -> None:
    for name, sample in one_round.items():
        rows.setdefault(name, []).append(sample)


def _report(title: str, rows: dict[str, list[tuple[float, float]]], base: str, ours: str) -> float:
    print(f"\n{title}")
    print(f"  {'':28s} {'cpu ms/call':>12s} {'wall ms/call':>13s}")
    medians = {}
    for name, samples in rows.items():
        cpu = statistics.median(s[0] for s in samples)
        wall = statistics.median(s[1] for s in samples)
        medians[name] = cpu
        print(f"  {name:28s} {cpu:12.3f} {wall:13.3f}")
    ratio = medians[ours] / medians[base]
    print(f"  ratio (cpu) {ours} / {base}: {ratio:.3f}  {'OK' if ratio <= 1.05 else 'ABOVE 1.05'}")
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=200, help="calls per side per round")
    args = parser.parse_args()

    import dspy

    from runner.policy import compile_policy

    with provider_process(latency_ms=0) as base_url:
        policy = compile_policy(
            {
                "model": {"name": MODEL, "api_base": base_url},
                "retry": {"max_attempts": 3, "backoff": {"base_ms": 10, "max_ms": 100}},
                "timeouts": {"attempt_ms": 30000, "total_ms": 120000},
            }
        )
        executor = policy.executor()
        lm = dspy.LM(MODEL, api_base=base_url, api_key="bench", num_retries=0, cache=False)
        predict = dspy.Predict("question -> answer")
        predict.lm = lm

        def bare() -> None:
            predict(question=QUESTION)

        def ours() -> None:
            result = executor.run(question=QUESTION)
            assert result.status == "ok", result.to_json()

        async def abare() -> None:
            await predict.acall(question=QUESTION)

        async def aours() -> None:
            result = await executor.arun(question=QUESTION)
            assert result.status == "ok", result.to_json()

        sync_sides = {"dspy Predict (sync)": bare, "executor.run()": ours}
        _round(sync_sides, 30)  # warm both sides: pools, first-call imports
        sync_rows: dict[str, list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            _collect(sync_rows, _round(sync_sides, args.calls))

        async def async_rounds() -> dict[str, list[tuple[float, float]]]:
            sides = {"dspy Predict.acall()": abare, "executor.arun()": aours}
            await _around(sides, 30)
            rows: dict[str, list[tuple[float, float]]] = {}
            for _ in range(args.rounds):
                _collect(rows, await _around(sides, args.calls))
            return rows

        async_rows = asyncio.run(async_rounds())
        executor.close()

    print(f"{args.rounds} rounds x {args.calls} calls per side, the sides alternating call by call; medians of the rounds")
    r1 = _report("sync", sync_rows, "dspy Predict (sync)", "executor.run()")
    r2 = _report("async", async_rows, "dspy Predict.acall()", "executor.arun()")
    return 0 if r1 <= 1.05 and r2 <= 1.05 else 1


if __name__ == "__main__":
    sys.exit(main())
