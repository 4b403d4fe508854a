"""Batch runs that lose nothing: many inputs, several worker processes, one journal.

Layout, and why:

* The parent process never imports DSPy. It streams the input file, gives
  each line its id, skips ids the output file already holds, records bad
  lines and duplicate ids itself, and hands good lines to P worker processes
  (:mod:`runner.batch_worker`). A DSPy prediction costs ~3 ms of CPU under the
  GIL, so one process tops out near 330/s; P processes use P cores.
* The parent is the only writer of the output file, one ``os.write`` per
  record, so a ``kill -9`` leaves at most one torn last line, which the next
  run repairs (:mod:`runner.journal`). Workers send records back over pipes;
  a partial record from a worker is never written.
* Backpressure: each worker holds at most ``window`` inputs (running plus
  queued), so memory stays flat however long the input is; the parent reads
  the next line only when a worker has room.
* Workers run in their own sessions and ignore signals; the parent decides.
  SIGINT/SIGTERM: stop taking inputs, let workers finish what is in flight for
  ``grace_s``, abandon the rest (a rerun resumes them), print the summary and
  exit 130/143. A second signal abandons at once. A worker whose parent is
  gone sees its stdin close and exits.

Ids: a line's ``id`` or its line number. The second and later lines using an
id already seen in the input get an ``invalid_input`` record under the id
``"<id>#dup<line>"`` (the output holds one record per id, and the first line
keeps the plain id). Bad lines whose id cannot be read are recorded under
their line number.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from loguru import logger

from .exitcodes import EXIT_FAILED, EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, EXIT_USAGE
from .idset import IdSet
from .inputs import InputLine, Problem, count_lines, iter_raw_lines, judge
from .journal import JournalWriter, iter_journal, parse_record, repair_tail
from .logs import setup_logging
from .result import ERROR, FALLBACK, OK, error_record
from .summary import Progress, Summary, Tally, ThisRun, render_progress

DEFAULT_CONCURRENCY = 32
MAX_CONCURRENCY = 100  # one dspy.LM opens at most 100 connections; more tasks would queue inside it on the clock
DEFAULT_GRACE_S = 5.0
_PROGRESS_EVERY_S = 0.25
_KILL_MARGIN_S = 2.0  # after the grace, how long a worker gets to send its last records before SIGKILL


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class UsageError(Exception):
    """The command cannot start: a bad path, a bad option, a policy that does not load. Exit code 2."""


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """How a batch will run, resolved from the options and the policy's limits."""

    workers: int
    concurrency: int
    window: int  # inputs one worker holds at most: running plus queued

    @classmethod
    def resolve(cls, concurrency: int, workers: int | None, max_in_flight: int | None) -> "BatchPlan":
        if concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if workers is not None and workers < 1:
            raise UsageError("--workers must be at least 1")
        if concurrency > MAX_CONCURRENCY:
            logger.warning(
                "--concurrency {} is more than one dspy.LM's {} connections; using {} per worker (add --workers instead)",
                concurrency, MAX_CONCURRENCY, MAX_CONCURRENCY,
            )
            concurrency = MAX_CONCURRENCY
        workers = workers or default_workers()
        if max_in_flight is not None and max_in_flight < workers:
            # each worker's share of the cap is at least 1, so more workers than the cap would exceed it
            workers = max_in_flight
        return cls(workers=workers, concurrency=concurrency, window=concurrency + max(2, concurrency // 2))


@dataclass(slots=True)
class _Worker:
    """The parent's view of one worker process."""

    number: int
    proc: subprocess.Popen
    out_fd: int
    in_fd: int
    pending_out: deque[bytes] = field(default_factory=deque)  # messages for its stdin not yet written
    head_written: int = 0  # bytes of pending_out[0] already written: a message is never cut short
    pending_in: bytearray = field(default_factory=bytearray)  # bytes from its stdout not yet a whole line
    outstanding: set[str] = field(default_factory=set)  # ids sent and not yet recorded
    ended: bool = False  # sent the end (or drain) message
    alive: bool = True  # its stdout is open


def run_batch(
    policy_path: str | Path,
    inputs_path: str | Path,
    output_path: str | Path,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    workers: int | None = None,
    summary_json: str | Path | None = None,
    grace_s: float = DEFAULT_GRACE_S,
    progress: bool | None = None,
    log_level: str | None = None,
    log_format: str | None = None,
) -> int:
    """Run every input line of ``inputs_path`` under the policy, appending records to ``output_path``.

    Returns the exit code: 0 every input answered, 1 some input ended in an
    error (or could not run), 2 bad command line or policy, 130/143 interrupted.
    """
    try:
        _check_summary_path(summary_json)
        batch = _Batch.open(Path(policy_path), Path(inputs_path), Path(output_path), concurrency, workers, grace_s, (log_level, log_format))
    except UsageError as exc:
        print(f"dspy-run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    show_progress = sys.stderr.isatty() if progress is None else progress
    with batch:
        summary = batch.run(show_progress)
    print(summary.render(), file=sys.stderr)
    if summary_json is not None:
        try:
            Path(summary_json).write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:  # the records are safe; only the copy of the summary is lost
            logger.error("cannot write --summary-json {}: {}", summary_json, exc.strerror)
    if batch.refusal is not None:
        return EXIT_USAGE
    if summary.interrupted == "SIGINT":
        return EXIT_SIGINT
    if summary.interrupted == "SIGTERM":
        return EXIT_SIGTERM
    if summary.by_status.get(ERROR, 0) or summary.this_run.abandoned or batch.failed:
        return EXIT_FAILED
    return EXIT_OK


def _check_summary_path(summary_json: str | Path | None) -> None:
    """Refuse a --summary-json that cannot be written before the run, not after it."""
    if summary_json is None:
        return
    path = Path(summary_json)
    if path.is_dir():
        raise UsageError(f"cannot write --summary-json {summary_json}: it is a folder; name a file")
    if not path.resolve().parent.is_dir():
        raise UsageError(f"cannot write --summary-json {summary_json}: its folder does not exist")


def _check_paths(inputs_path: Path, output_path: Path, grace_s: float) -> None:
    """The command line's paths and numbers, refused in one line before anything is read or started."""
    if inputs_path.is_dir():
        raise UsageError(f"cannot read the inputs {inputs_path}: it is a folder; pass a JSONL file with --inputs")
    if not inputs_path.exists():
        raise UsageError(f"cannot read the inputs {inputs_path}: no such file; pass a JSONL file with --inputs")
    if not output_path.parent.is_dir():
        raise UsageError(f"cannot write {output_path}: the folder {output_path.parent} does not exist")
    # samefile, not path equality: a symlink or a hard link to the inputs would get records appended to it
    if output_path.exists() and os.path.samefile(output_path, inputs_path):
        raise UsageError("--output is the inputs file; give the records their own file")
    if not (math.isfinite(grace_s) and grace_s >= 0):
        raise UsageError(f"--grace must be a number of seconds, 0 or more (got {grace_s:g})")


def _open_inputs(inputs_path: Path) -> BinaryIO:
    """The inputs, opened now so that an unreadable file is a usage error, not a traceback mid-run."""
    try:
        return open(inputs_path, "rb")
    except OSError as exc:
        raise UsageError(f"cannot read the inputs {inputs_path}: {exc.strerror}") from exc


def _load_policy(path: Path):
    """The policy via the loader, its problems turned into one :class:`UsageError`."""
    from .loader import PolicyError, load_policy

    try:
        return load_policy(path)
    except PolicyError as exc:  # its message is the first problem as file:line:col, then the fix
        raise UsageError(exc.message) from exc


class _Batch:
    """One batch run: the journal, the input stream, the workers and the signal state."""

    def __init__(self, policy, policy_path: Path, inputs_path: Path, output_path: Path, plan: BatchPlan, grace_s: float, log: tuple[str, str]) -> None:
        self.policy = policy
        self.policy_path = policy_path
        self.inputs_path = inputs_path
        self.output_path = output_path
        self.plan = plan
        self.grace_s = grace_s
        self.log = log  # (level, format), resolved: the workers log the same way
        self.fields = policy.program.inputs
        self.tally = Tally()
        self.done = IdSet()  # ids in the output file not yet met in the input (shrinks as the input is read)
        self.seen = IdSet()  # ids met in the input in this run
        self.skipped = 0
        self.written = 0
        self.abandoned = 0
        self.repaired: str | None = None
        self.failed = False  # something stopped the run short of the input's end (all workers died)
        self.refusal: str | None = None  # why the workers could not build an executor (the policy cannot run)
        self.workers: list[_Worker] = []
        self.stopping: str | None = None  # the signal name once one arrived
        self.kill_at: float | None = None
        self.input_done = False
        self._inputs: BinaryIO | None = None
        self._lines: Iterator[Any] | None = None
        self._writer: JournalWriter | None = None
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        self._old_handlers: dict[int, Any] = {}
        self._old_wakeup_fd: int | None = None
        self._signals: list[str] = []

    @classmethod
    def open(cls, policy_path: Path, inputs_path: Path, output_path: Path, concurrency: int, workers: int | None, grace_s: float, log: tuple[str | None, str | None]) -> "_Batch":
        _check_paths(inputs_path, output_path, grace_s)
        policy = _load_policy(policy_path)
        level, fmt = log[0] or policy.logging.level, log[1] or policy.logging.format
        setup_logging(level, fmt)
        plan = BatchPlan.resolve(concurrency, workers, policy.limits.max_in_flight)
        batch = cls(policy, policy_path, inputs_path, output_path, plan, grace_s, (level, fmt))
        batch._open_journal()
        try:
            batch._inputs = _open_inputs(inputs_path)
        except UsageError:
            batch.__exit__()
            raise
        return batch

    # -- journal

    def _open_journal(self) -> None:
        try:
            writer = JournalWriter(self.output_path)
        except OSError as exc:
            raise UsageError(f"cannot write {self.output_path}: {exc.strerror}") from exc
        try:
            fcntl.flock(writer._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            writer.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise UsageError(f"another dspy-run is writing {self.output_path}; wait for it or choose another --output") from exc
            raise
        self._writer = writer
        repair = repair_tail(self.output_path)
        if repair is not None:
            self.repaired = repair.describe(self.output_path)
            logger.warning(self.repaired)
        foreign = 0
        for line in iter_journal(self.output_path):
            record = line.record
            if record is None:
                foreign += 1
                logger.warning("{}:{}: not a result record; ignored (its input, if any, runs again)", self.output_path, line.number)
                continue
            if record["id"] in self.done:
                logger.warning("{}:{}: a second record for id {!r}; counted once", self.output_path, line.number, record["id"])
                continue
            self.done.add(record["id"])
            self.tally.add(record)
        if self.done:
            logger.info("{} already holds {} records; resuming", self.output_path, len(self.done))

    def __enter__(self) -> "_Batch":
        return self

    def __exit__(self, *exc: object) -> None:
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.kill()
            worker.proc.wait()
            for stream in (worker.proc.stdin, worker.proc.stdout):
                try:
                    stream.close()
                except OSError:  # a broken pipe on the flush of an empty buffer
                    pass
        if self._writer is not None:
            self._writer.close()
        if self._inputs is not None:
            self._inputs.close()
        self._sel.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- the run

    def run(self, show_progress: bool) -> Summary:
        started = time.monotonic()
        # a pipe (--inputs <(...)) can be read once only: no total, so the progress line shows no ETA
        total = count_lines(self.inputs_path) if show_progress and self.inputs_path.is_file() else None
        self._lines = iter_raw_lines(self._inputs)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._install_signals()
        last_draw = 0.0
        try:
            while not self._finished():
                more = self._feed() if not self.stopping else False
                self._end_workers_if_input_done()
                self._pump(timeout=0 if more else _PROGRESS_EVERY_S)
                self._apply_signals()
                self._enforce_kill_deadline()
                if show_progress and time.monotonic() - last_draw >= _PROGRESS_EVERY_S:
                    last_draw = time.monotonic()
                    self._draw(total, started)
        finally:
            self._restore_signals()
            if show_progress:
                sys.stderr.write("\r\x1b[K")
                sys.stderr.flush()
        for worker in self.workers:
            self.abandoned += len(worker.outstanding)
            worker.outstanding.clear()
        return Summary.build(
            self.tally,
            output=str(self.output_path),
            wall_s=time.monotonic() - started,
            this_run=ThisRun(skipped=self.skipped, written=self.written, abandoned=self.abandoned, repaired=self.repaired),
            interrupted=self.stopping,
        )

    def _finished(self) -> bool:
        if self.workers and any(w.alive for w in self.workers):
            return False
        return self.input_done or bool(self.stopping) or self.failed

    def _draw(self, total: int | None, started: float) -> None:
        by = self.tally.by_status
        line = render_progress(
            Progress(
                done=self.skipped + self.written,
                total=total,
                ok=by.get(OK, 0),
                fallback=by.get(FALLBACK, 0),
                error=by.get(ERROR, 0),
                written=self.written,
                elapsed_s=time.monotonic() - started,
            )
        )
        sys.stderr.write("\r\x1b[K" + line)
        sys.stderr.flush()

    # -- reading the input: judge, dedupe, skip, record bad lines, dispatch the rest

    def _feed(self, budget: int = 1000) -> bool:
        """Read lines while some worker has room, at most ``budget`` of them; True when more could be read now."""
        while not self.input_done:
            worker = self._roomiest()
            if worker is None and self.workers:
                return False
            if budget == 0:  # stay responsive to workers' records and signals during a long run of bad or done lines
                return True
            raw = next(self._lines, None)
            if raw is None:
                self.input_done = True
                return False
            budget -= 1
            line = self._dedupe(judge(raw, self.fields))
            if line.id in self.done:
                self.done.discard(line.id)
                self.skipped += 1
            elif line.problem is not None:
                record = error_record(line.id, line.problem.code, f"{self.inputs_path.name}: {line.problem.message}").to_dict()
                self._record(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n", record)
            else:
                if not self.workers:
                    self._start_workers()
                    worker = self._roomiest()
                if worker is None:  # every worker died at start
                    self.failed = True
                    return False
                worker.outstanding.add(line.id)
                self._send(worker, json.dumps([line.id, dict(line.inputs)], ensure_ascii=True).encode("ascii") + b"\n")

    def _dedupe(self, line: InputLine) -> InputLine:
        if line.id not in self.seen:
            self.seen.add(line.id)
            return line
        dup_id = f"{line.id}#dup{line.number}"
        problem = Problem("invalid_input", f"line {line.number} (byte {line.offset}): duplicate id {line.id!r}, already used by an earlier line; give each input its own id")
        return InputLine(line.number, line.offset, dup_id, None, problem)

    def _roomiest(self) -> _Worker | None:
        best = None
        for worker in self.workers:
            if worker.alive and not worker.ended and len(worker.outstanding) < self.plan.window:
                if best is None or len(worker.outstanding) < len(best.outstanding):
                    best = worker
        return best

    def _record(self, line: bytes, record: dict[str, Any]) -> None:
        """Append one finished record (its line and its parsed form) to the journal and count it."""
        self._writer.append(line)
        self.tally.add(record)
        self.written += 1

    # -- workers

    def _start_workers(self) -> None:
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")
        for number in range(self.plan.workers):
            command = [
                sys.executable, "-m", "runner.batch_worker",
                "--policy", str(self.policy_path.resolve()),
                "--concurrency", str(self.plan.concurrency),
                "--share", str(self.plan.workers),
            ]
            command += ["--log-level", self.log[0], "--log-format", self.log[1]]
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True)
            # only the raw fds are used (non-blocking); the file objects stay referenced so they close once, at the end
            worker = _Worker(number, proc, out_fd=proc.stdout.fileno(), in_fd=proc.stdin.fileno())
            os.set_blocking(worker.in_fd, False)
            os.set_blocking(worker.out_fd, False)
            self._sel.register(worker.out_fd, selectors.EVENT_READ, ("out", worker))
            self.workers.append(worker)
        logger.debug("started {} workers, {} predictions in flight each", self.plan.workers, self.plan.concurrency)

    def _send(self, worker: _Worker, message: bytes) -> None:
        worker.pending_out.append(message)
        self._flush_to(worker)

    def _flush_to(self, worker: _Worker) -> None:
        pending = worker.pending_out
        try:
            while pending and worker.alive:
                head = memoryview(pending[0])[worker.head_written :]
                worker.head_written += os.write(worker.in_fd, head)
                if worker.head_written == len(pending[0]):
                    pending.popleft()
                    worker.head_written = 0
        except BlockingIOError:
            pass
        except BrokenPipeError:  # it died; its stdout's EOF says so and counts what it held
            pending.clear()
            worker.head_written = 0
        if not worker.alive:
            pending.clear()
        self._watch_writable(worker, bool(pending))

    def _drop_unsent(self, worker: _Worker) -> None:
        """Forget queued messages the worker has not started to receive (a started one is finished)."""
        keep = worker.pending_out.popleft() if worker.pending_out and worker.head_written else None
        worker.pending_out.clear()
        if keep is not None:
            worker.pending_out.append(keep)

    def _watch_writable(self, worker: _Worker, want: bool) -> None:
        key = self._sel.get_map().get(worker.in_fd)
        if want and key is None:
            self._sel.register(worker.in_fd, selectors.EVENT_WRITE, ("in", worker))
        elif not want and key is not None:
            self._sel.unregister(worker.in_fd)

    def _end_workers_if_input_done(self) -> None:
        if self.input_done and not self.stopping:
            for worker in self.workers:
                if worker.alive and not worker.ended:
                    worker.ended = True
                    self._send(worker, b'{"end": true}\n')

    def _pump(self, timeout: float) -> None:
        for key, _ in self._sel.select(timeout):
            if key.data is None:
                self._drain_wakeup()
                continue
            kind, worker = key.data
            if kind == "in":
                self._flush_to(worker)
            else:
                self._read_from(worker)

    def _read_from(self, worker: _Worker) -> None:
        try:
            chunk = os.read(worker.out_fd, 1 << 16)
        except BlockingIOError:
            return
        if not chunk:
            self._worker_gone(worker)
            return
        worker.pending_in += chunk
        end = worker.pending_in.rfind(b"\n")
        if end < 0:
            return
        lines = bytes(worker.pending_in[: end + 1])
        del worker.pending_in[: end + 1]
        for body in lines[:-1].split(b"\n"):  # JSON escapes every other line break, so only \n ends a record
            line = body + b"\n"
            if line.startswith(b'{"refused": '):
                self._refused(json.loads(line)["refused"])
                continue
            record = parse_record(line)
            if record is not None and record["id"] in worker.outstanding:
                worker.outstanding.discard(record["id"])
                self._record(line, record)
            else:  # a bug, not an input's fault: never write it; the input, unrecorded, runs again next time
                logger.error("worker {} sent a line that is not a record of an input it was given; dropped: {:.200}", worker.number, line)

    def _refused(self, message: str) -> None:
        """A worker could not build its executor: the policy cannot run, so no worker will; stop, say it once."""
        if self.refusal is None:
            self.refusal = message
            print(f"dspy-run: {message}", file=sys.stderr)
        self.failed = True
        for worker in self.workers:
            if worker.alive:
                worker.proc.kill()

    def _worker_gone(self, worker: _Worker) -> None:
        worker.alive = False
        self._sel.unregister(worker.out_fd)
        self._watch_writable(worker, False)
        code = worker.proc.wait()
        lost = len(worker.outstanding)
        self.abandoned += lost
        worker.outstanding.clear()
        if self.refusal is not None:
            return
        if lost and not self.stopping:
            logger.error("worker {} exited with code {}; its {} unfinished inputs run again on the next run", worker.number, code, lost)
        elif code not in (0, None) and not self.stopping:
            logger.error("worker {} exited with code {}", worker.number, code)
        if not self.stopping and not self.input_done and not any(w.alive for w in self.workers):
            logger.error("every worker has exited; stopping (rerun the same command to resume)")
            self.failed = True

    # -- signals

    def _install_signals(self) -> None:
        try:
            os.set_blocking(self._wake_w, False)
            self._old_wakeup_fd = signal.set_wakeup_fd(self._wake_w)
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._old_handlers[signum] = signal.signal(signum, self._on_signal)
        except ValueError:  # not the main thread: no signal handling, the caller owns it
            self._old_wakeup_fd = None

    def _restore_signals(self) -> None:
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        if self._old_handlers:
            signal.set_wakeup_fd(self._old_wakeup_fd if self._old_wakeup_fd is not None else -1)

    def _drain_wakeup(self) -> None:
        try:
            os.read(self._wake_r, 512)
        except BlockingIOError:
            pass

    def _on_signal(self, signum: int, frame: object) -> None:
        # only note it: the main loop acts, so that no pipe or selector is touched re-entrantly
        self._signals.append(signal.Signals(signum).name)

    def _apply_signals(self) -> None:
        while self._signals:
            name = self._signals.pop(0)
            if self.stopping:
                logger.warning("{} again: abandoning the inputs in flight", name)
                self.kill_at = time.monotonic()
                continue
            self.stopping = name
            logger.warning("{}: no new inputs; finishing those in flight for up to {:g} s ({} again abandons them)", name, self.grace_s, name)
            self.kill_at = time.monotonic() + self.grace_s + _KILL_MARGIN_S
            drain = json.dumps({"drain": self.grace_s}).encode() + b"\n"
            for worker in self.workers:
                if worker.alive:
                    worker.ended = True
                    self._drop_unsent(worker)  # inputs not yet handed over are simply not started
                    self._send(worker, drain)

    def _enforce_kill_deadline(self) -> None:
        if self.kill_at is None or time.monotonic() < self.kill_at:
            return
        for worker in self.workers:
            if worker.alive:
                worker.proc.kill()
                self._worker_gone(worker)

