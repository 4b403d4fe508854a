"""What a batch run reports: a tally of result records, the end-of-run summary, and the progress line.

The summary describes the whole output file after the run (records found on
resume plus the records this run wrote), so its counts agree with the file
line for line; ``this_run`` says what this invocation added. Rendering is pure
(numbers in, text out) so that it is tested without a terminal.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

from .result import ERROR, FALLBACK, OK

STATUSES = (OK, FALLBACK, ERROR)


@dataclass(slots=True)
class Tally:
    """Running counts over result records; one float per record for the latency percentiles."""

    by_status: Counter = field(default_factory=Counter)
    by_error: Counter = field(default_factory=Counter)
    fallbacks: Counter = field(default_factory=Counter)
    retries: int = 0
    latencies_ms: array = field(default_factory=lambda: array("f"))

    @property
    def records(self) -> int:
        return sum(self.by_status.values())

    def add(self, record: Mapping[str, Any]) -> None:
        """Count one record (a :meth:`runner.result.Result.to_dict` shape)."""
        status = record.get("status")
        self.by_status[status] += 1
        error = record.get("error")
        if status == ERROR and isinstance(error, Mapping):
            self.by_error[error.get("code")] += 1
        if status == FALLBACK:
            self.fallbacks[record.get("served_by")] += 1
        attempts = record.get("attempts") or ()
        if attempts:  # a record that never reached a provider (a bad input line) has no latency to speak of
            self.retries += len(attempts) - 1
            self.latencies_ms.append(float(record.get("elapsed_ms") or 0.0))


def percentile(sorted_values: Any, q: float) -> float | None:
    """The nearest-rank percentile ``q`` (0-100) of already sorted values; None when there are none."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, math.ceil(q / 100 * n))
    return float(sorted_values[rank - 1])


@dataclass(frozen=True, slots=True)
class ThisRun:
    skipped: int  # inputs already recorded in the output file when the run started
    written: int  # records this run appended
    abandoned: int  # inputs started but not recorded (interrupted, or a worker died): a rerun runs them
    repaired: str | None  # the journal repair, if the output file had a torn last line


@dataclass(frozen=True, slots=True)
class Summary:
    output: str
    records: int
    by_status: Mapping[str, int]
    by_error: Mapping[str, int]
    retries: int
    fallbacks: Mapping[str, int]
    latency_ms: Mapping[str, float | None]
    wall_s: float
    this_run: ThisRun
    interrupted: str | None  # "SIGINT" / "SIGTERM" when a signal stopped the run

    @classmethod
    def build(cls, tally: Tally, *, output: str, wall_s: float, this_run: ThisRun, interrupted: str | None) -> "Summary":
        ordered = sorted(tally.latencies_ms)
        return cls(
            output=output,
            records=tally.records,
            by_status={s: tally.by_status.get(s, 0) for s in STATUSES} | {s: n for s, n in tally.by_status.items() if s not in STATUSES},
            by_error=dict(sorted(tally.by_error.items(), key=lambda kv: (-kv[1], str(kv[0])))),
            retries=tally.retries,
            fallbacks=dict(sorted(tally.fallbacks.items(), key=lambda kv: str(kv[0]))),
            latency_ms={f"p{q}": _round(percentile(ordered, q)) for q in (50, 95, 99)},
            wall_s=round(wall_s, 3),
            this_run=this_run,
            interrupted=interrupted,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "records": self.records,
            "by_status": dict(self.by_status),
            "by_error": dict(self.by_error),
            "retries": self.retries,
            "fallbacks": dict(self.fallbacks),
            "latency_ms": dict(self.latency_ms),
            "wall_s": self.wall_s,
            "this_run": {
                "skipped": self.this_run.skipped,
                "written": self.this_run.written,
                "abandoned": self.this_run.abandoned,
                "repaired": self.this_run.repaired,
            },
            "interrupted": self.interrupted,
        }

    def render(self) -> str:
        """The human summary printed to stderr at the end of every batch run."""
        status = ", ".join(f"{n} {s}" for s, n in self.by_status.items())
        lines = [f"{self.records} records in {self.output}: {status}"]
        if self.by_error:
            lines.append("errors: " + ", ".join(f"{code} {n}" for code, n in self.by_error.items()))
        if self.fallbacks:
            lines.append("fallbacks used: " + ", ".join(f"{label} {n}" for label, n in self.fallbacks.items()))
        lat = self.latency_ms
        if lat.get("p50") is not None:
            lines.append(f"retries: {self.retries}; latency p50 {_ms(lat['p50'])}, p95 {_ms(lat['p95'])}, p99 {_ms(lat['p99'])}")
        else:
            lines.append(f"retries: {self.retries}")
        run = self.this_run
        tail = f"this run: {run.written} written, {run.skipped} already recorded"
        if run.abandoned:
            tail += f", {run.abandoned} not finished (rerun the same command to resume)"
        lines.append(f"{tail}; wall time {self.wall_s:.1f} s")
        if self.interrupted:
            lines.append(f"interrupted by {self.interrupted}: rerun the same command to resume")
        return "\n".join(lines)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _ms(value: float) -> str:
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot for the progress line: counts over the whole file, rate over this run."""

    done: int  # inputs with a record (already recorded plus written by this run)
    total: int | None  # inputs in the file, when counted
    ok: int
    fallback: int
    error: int
    written: int  # records this run wrote
    elapsed_s: float


def render_progress(p: Progress) -> str:
    """One line, ``done/total pct rate counts ETA``; rate and ETA come from this run's records only."""
    rate = p.written / p.elapsed_s if p.elapsed_s > 0 else 0.0
    if p.total:
        head = f"{p.done}/{p.total} {100 * p.done / p.total:3.0f}%"
    else:
        head = f"{p.done}"
    counts = f"ok {p.ok} fallback {p.fallback} error {p.error}"
    eta = "--:--"
    if p.total and rate > 0:
        eta = _clock(max(0, p.total - p.done) / rate)
    return f"{head}  {rate:6.1f}/s  {counts}  ETA {eta}"


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
