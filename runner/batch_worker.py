"""One worker process of a batch run: an executor, an event loop, up to N predictions in flight.

Started by :mod:`runner.batch` as ``python -m runner.batch_worker``. Its
stdin brings one JSON message per line: ``[id, {inputs}]`` to run,
``{"end": true}`` for "no more inputs: finish and exit", ``{"drain": S}``
for "stop: finish what is in flight within S seconds, abandon the rest". Its
stdout carries only result records, one per line, written whole; everything
else (logs, stray prints of libraries) goes to stderr, so a print can never
corrupt a record. stdin closing without an end message means the parent is
gone: the worker exits at once, since nobody would write its records.

Signals are the parent's business: the worker runs in its own session and
ignores SIGINT/SIGTERM, so a Ctrl-C reaches only the parent, which drains the
workers in order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import traceback

from loguru import logger

_MAX_MESSAGE = 1 << 27  # an input line may be as long as limits.max_input_chars allows, in escaped JSON


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="runner.batch_worker")
    parser.add_argument("--policy", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--share", type=int, default=1, help="how many workers split the policy's limits")
    parser.add_argument("--log-level", default=None)
    return parser.parse_args(argv)


class _Worker:
    def __init__(self, executor, concurrency: int, out_fd: int) -> None:
        self.executor = executor
        self.slots = asyncio.Semaphore(concurrency)
        self.out_fd = out_fd
        self.queued: set[asyncio.Task] = set()  # waiting for a slot: dropped at once on drain
        self.running: set[asyncio.Task] = set()

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_MAX_MESSAGE)
        stdin = os.fdopen(0, "rb", buffering=0, closefd=False)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
        while True:
            line = await reader.readline()
            if not line.endswith(b"\n"):  # EOF without an end message: the parent is gone
                return self._abandon()
            message = json.loads(line)
            if isinstance(message, list):
                task = asyncio.create_task(self._run(message[0], message[1]))
                self.queued.add(task)
            elif message.get("end"):
                await asyncio.gather(*self.queued, *self.running)
                return 0
            elif "drain" in message:
                await self._drain(float(message["drain"]))
                return 0

    async def _run(self, id_: str, inputs: dict) -> None:
        task = asyncio.current_task()
        async with self.slots:
            self.queued.discard(task)
            self.running.add(task)
            try:
                result = await self.executor.arun(inputs, record_id=id_)
                line = result.to_json()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the executor promises a record for every input; a bug must not lose one
                line = _internal_record(id_, exc)
            finally:
                self.running.discard(task)
            self._write(line.encode("utf-8", "surrogatepass") + b"\n")

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.out_fd, view) :]

    async def _drain(self, grace_s: float) -> None:
        for task in self.queued:
            task.cancel()
        if self.running:
            _, late = await asyncio.wait(set(self.running), timeout=grace_s)
            for task in late:
                task.cancel()
        await asyncio.gather(*self.queued, *self.running, return_exceptions=True)

    def _abandon(self) -> int:
        os._exit(3)


def _internal_record(id_: str, exc: Exception) -> str:
    from .batch import error_record

    logger.error("internal error on input {!r}: {}", id_, "".join(traceback.format_exception_only(exc)).strip())
    message = f"{type(exc).__name__} while running this input; this is a bug in dspy-run, please report it with the log"
    return error_record(id_, "internal", message, operation="run").to_json()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    out_fd = os.dup(1)
    os.dup2(2, 1)  # stdout is the record channel: anything printed goes to stderr instead
    sys.stdout = sys.stderr
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")
    if args.log_level:
        logger.remove()
        logger.add(sys.stderr, level=args.log_level.upper())
    from .limits import Limiter
    from .loader import load_policy

    policy = load_policy(args.policy)
    limiter = Limiter.for_share(policy.limits, args.share)
    executor = policy.executor(limiter=limiter) if limiter is not None else policy.executor()
    return asyncio.run(_Worker(executor, args.concurrency, out_fd).serve())


if __name__ == "__main__":
    sys.exit(main())
