"""One worker process of a batch run: one executor, up to N predictions in flight on N threads.

Started by :mod:`runner.batch` as ``python -m runner.batch_worker``. Its
stdin brings one JSON message per line: ``[id, {inputs}]`` to run,
``{"end": true}`` for "no more inputs: finish and exit", ``{"drain": S}``
for "stop: finish what is in flight within S seconds, abandon the rest". Its
stdout carries only result records, one per line, each written whole under a
lock; everything else (logs, stray prints of libraries) goes to stderr, so a
print can never corrupt a record. stdin closing without an end message means
the parent is gone: the worker exits at once, since nobody would write its
records.

Why threads and not an event loop: the executor's sync path (a hard deadline
on the socket, no asyncio) costs about 0.9 ms of CPU per prediction here
against about 4.5 ms for ``arun`` (bench/bench_executor.py) (DSPy's async engine hops to a thread on
every call), and CPU is what bounds a batch.

Signals are the parent's business: the worker runs in its own session and
ignores SIGINT/SIGTERM, so a Ctrl-C reaches only the parent, which drains the
workers in order.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import traceback
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager

from loguru import logger

from .exitcodes import EXIT_USAGE


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="runner.batch_worker")
    parser.add_argument("--policy", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--share", type=int, default=1, help="how many workers split the policy's limits")
    parser.add_argument("--log-level", default=None)
    parser.add_argument("--log-format", default=None)
    return parser.parse_args(argv)


class _Worker:
    def __init__(self, executor, concurrency: int, out_fd: int) -> None:
        self.executor = executor
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="predict")
        self.out_fd = out_fd
        self.write_lock = threading.Lock()
        self.futures: set[Future] = set()  # submitted and not done; pool threads remove theirs
        self.futures_lock = threading.Lock()

    def serve(self, stdin) -> int:
        for line in stdin:
            if not line.endswith(b"\n"):
                break
            message = json.loads(line)
            if isinstance(message, list):
                future = self.pool.submit(self._run, message[0], message[1])
                with self.futures_lock:
                    self.futures.add(future)
                future.add_done_callback(self._forget)
            elif message.get("end"):
                self.pool.shutdown(wait=True)
                return self._abandon()  # every record is written; skip the interpreter's slow teardown of DSPy
            elif "drain" in message:
                return self._drain(float(message["drain"]))
        return self._abandon()  # EOF without an end message: the parent is gone

    def _forget(self, future: Future) -> None:
        with self.futures_lock:
            self.futures.discard(future)

    def _run(self, id_: str, inputs: dict) -> None:
        try:
            line = self.executor.run(inputs, record_id=id_).to_json()
        except Exception as exc:  # the executor promises a record for every input; a bug must not lose one
            line = _internal_record(id_, exc)
        data = line.encode("utf-8", "surrogatepass") + b"\n"
        with self.write_lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self.out_fd, view) :]

    def _drain(self, grace_s: float) -> int:
        self.pool.shutdown(wait=False, cancel_futures=True)  # not started: dropped; the parent counts them
        with self.futures_lock:
            running = set(self.futures)
        wait(running, timeout=grace_s)
        return self._abandon()

    def _abandon(self) -> int:
        """Leave now: threads still inside a call cannot be interrupted, and leaving the process ends them.

        Holding the write lock first means no record is cut in half on its way out.
        """
        self.write_lock.acquire()
        sys.stderr.flush()
        os._exit(0)


def _internal_record(id_: str, exc: Exception) -> str:
    from .result import error_record

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
    from .errors import RunnerError

    try:
        with _executor(args) as executor:
            return _Worker(executor, args.concurrency, out_fd).serve(sys.stdin.buffer)
    except RunnerError as exc:  # the policy cannot run here (unknown model, key variable unset): one line, once
        os.write(out_fd, json.dumps({"refused": exc.message}).encode() + b"\n")
        return EXIT_USAGE  # the parent reads the refusal line above, not this code


@contextmanager
def _executor(args: argparse.Namespace):
    """The worker's executor; ``rehearsal/NAME`` models get an embedded provider of this worker's own."""
    from .logs import setup_logging
    from .limits import Limiter
    from .loader import load_policy
    from .rehearsal.session import policy_executor

    policy = load_policy(args.policy)
    setup_logging(args.log_level or policy.logging.level, args.log_format or policy.logging.format)
    with policy_executor(policy, limiter=Limiter.for_share(policy.limits, args.share)) as executor:
        yield executor


if __name__ == "__main__":
    sys.exit(main())
