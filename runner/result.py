"""The result record: one per input, the same from the Python API and the CLI."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import ErrorContext, RunnerError

OK, FALLBACK, ERROR = "ok", "fallback", "error"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One call to one model: its outcome (``ok`` or an error class) and the wait that *followed* it.

    ``wait_ms`` is the pause after this attempt failed, before the next attempt
    of the same model (0 for the last attempt of a model and for a success).
    """

    model: str
    attempt: int
    outcome: str
    elapsed_ms: float
    wait_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "attempt": self.attempt,
            "outcome": self.outcome,
            "elapsed_ms": round(self.elapsed_ms, 1),
            "wait_ms": round(self.wait_ms, 1),
        }


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    code: str
    message: str
    operation: str
    attempt: int | None
    timestamp: str
    model: str | None = None

    @classmethod
    def from_error(cls, error: RunnerError) -> "ErrorInfo":
        ctx = error.context
        return cls(error.code, error.message, ctx.operation, ctx.attempt, ctx.timestamp, ctx.model)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "operation": self.operation,
            "attempt": self.attempt,
            "model": self.model,
            "timestamp": self.timestamp,
        }


@dataclass(frozen=True, slots=True)
class Result:
    """What happened to one input: ``status`` is ``ok``, ``fallback`` or ``error``."""

    id: str
    status: str
    output: Mapping[str, Any] | None
    served_by: str | None  # "primary", "fallback[i]", or None on error
    model: str | None  # the model that answered; None for a canned response or an error
    attempts: tuple[Attempt, ...]
    error: ErrorInfo | None
    elapsed_ms: float

    @property
    def ok(self) -> bool:
        return self.status != ERROR

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "output": dict(self.output) if self.output is not None else None,
            "served_by": self.served_by,
            "model": self.model,
            "attempts": [a.to_dict() for a in self.attempts],
            "error": self.error.to_dict() if self.error is not None else None,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


def error_record(id_: str, code: str, message: str, operation: str = "read_input") -> Result:
    """The result record of an input that never reached a model: a bad line, a duplicate id, a crash."""
    error = RunnerError(code, message, context=ErrorContext(operation=operation), fix="")
    return Result(id=id_, status=ERROR, output=None, served_by=None, model=None, attempts=(), error=ErrorInfo.from_error(error), elapsed_ms=0.0)
