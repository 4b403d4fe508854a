"""What a rehearsal shows: a timeline per input and a verdict in plain words.

Both are derived from the result record alone (the executor's account of what
it did), and :func:`request_count_problem` checks that account against the
provider's request log, so a rehearsal can never quietly disagree with the wire.
Pure functions: no I/O, no DSPy.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

from ..errors import ERROR_CLASSES
from ..policy import Policy
from ..result import Attempt, Result


@dataclass(frozen=True, slots=True)
class TimelineRow:
    start_ms: float
    attempt: Attempt
    label: str  # "primary" or "fallback[i]"


def _labels(policy: Policy) -> dict[str, str]:
    labels = {policy.model.name: "primary"}
    for step in policy.fallbacks:
        if step.model is not None:
            labels.setdefault(step.model.name, step.label)
    return labels


def timeline(policy: Policy, result: Result) -> list[TimelineRow]:
    """Each attempt with the moment it started, reconstructed from elapsed and wait times."""
    labels, rows, clock = _labels(policy), [], 0.0
    for attempt in result.attempts:
        rows.append(TimelineRow(clock, attempt, labels.get(attempt.model, "?")))
        clock += attempt.elapsed_ms + attempt.wait_ms
    return rows


def render_timeline(policy: Policy, result: Result) -> list[str]:
    lines = []
    for row in timeline(policy, result):
        a = row.attempt
        then = f"  then waited {a.wait_ms:.0f} ms" if a.wait_ms else ""
        lines.append(
            f"  {row.start_ms:>8.0f} ms  {row.label:<12} {a.model:<28} attempt {a.attempt}  {a.outcome:<15} {a.elapsed_ms:>7.0f} ms{then}"
        )
    lines.append(f"  {result.elapsed_ms:>8.0f} ms  {served_text(policy, result)}")
    return lines


def served_text(policy: Policy, result: Result) -> str:
    if result.status == "error":
        return f"ended in error {result.error.code}: {result.error.message}"
    if result.served_by == "primary":
        return f"served by the primary model {result.model}"
    step = policy.fallbacks[int(result.served_by[len("fallback[") : -1])]
    what = f"model {step.model.name}" if step.model is not None else "a canned response"
    return f"served by {result.served_by}: {what}"


def verdict(policy: Policy, result: Result) -> str:
    """One sentence: what was retried and how, what fell back on what, what was never retried, how it ended."""
    if not result.attempts:
        code = result.error.code if result.error else "?"
        return f"rejected the input before any call ({code}); nothing was sent"
    phrases: list[str] = []
    labels = _labels(policy)
    segments = [list(group) for _, group in groupby(result.attempts, key=lambda a: a.model)]
    for index, segment in enumerate(segments):
        phrases += _segment_phrases(policy, segment)
        if index + 1 < len(segments):
            cause = segment[-1].outcome
            nxt = segments[index + 1][0].model
            phrases.append(f"fell back to {nxt} ({labels.get(nxt, '?')}) on {cause}")
    last = result.attempts[-1]
    if result.status == "fallback" and result.model is None:
        phrases.append(f"answered with the canned response of {result.served_by} after {last.outcome}")
    elif result.status == "ok":
        phrases.append(f"answered on attempt {last.attempt}")
    elif result.status == "fallback":
        phrases.append(f"answered by {result.model} on attempt {last.attempt}")
    else:
        phrases.append(f"ended in error ({result.error.code})")
    return ", ".join(phrases)


def _segment_phrases(policy: Policy, segment: list[Attempt]) -> list[str]:
    phrases = []
    retried = [a.outcome for a in segment[:-1]]
    for outcome in dict.fromkeys(retried):
        count = retried.count(outcome)
        how = " honouring Retry-After" if outcome == "rate_limit" and policy.retry.respect_retry_after else ""
        phrases.append(f"retried {outcome} {count} time{'s' if count != 1 else ''}{how} on {segment[0].model}")
    final = segment[-1]
    if final.outcome in ERROR_CLASSES:
        if final.outcome not in policy.retry.retry_on:
            phrases.append(f"never retried {final.outcome} (not in retry_on)")
        elif final.attempt >= policy.retry.max_attempts:
            phrases.append(f"gave up on {final.outcome} after {final.attempt} attempts")
        else:
            phrases.append(f"stopped retrying {final.outcome} early (Retry-After too long or the total deadline)")
    elif final.outcome not in ("ok",):
        phrases.append(f"attempt {final.attempt} ended in {final.outcome}")
    return phrases


def request_count_problem(result: Result, requests_seen: int, json_fallback: bool) -> str | None:
    """A sentence when the provider saw another number of requests than the record's attempts, else None."""
    attempts = len(result.attempts)
    low, high = attempts, attempts * (2 if json_fallback else 1)
    if low <= requests_seen <= high:
        return None
    return f"the provider saw {requests_seen} request(s) but the record lists {attempts} attempt(s)"
