"""Logging for the command line: loguru to stderr, text or JSON, every line redacted.

Results go to stdout (or the output file); everything else goes here. The
sinks are functions, not loguru's own formatters, so that the *whole* line,
exception text included, passes through :func:`runner.redact.redact` after it
is formatted: a key that reaches a log by a path nobody foresaw is still
masked. ``diagnose`` is off (loguru's variable dumps in tracebacks would print
local values, keys among them).

The standard library's logging (DSPy's warnings, LiteLLM's) is routed into
the same sinks. stamina's own retry line is silenced: the executor logs one
line per failed attempt with more context (``Attempt 2/3 failed: rate_limit,
retrying in 1.02 s [operation=predict model=... attempt=2]``).
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from typing import Any, TextIO

from loguru import logger

from .redact import redact


def setup_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send loguru (and stdlib logging) to ``stream`` (stderr) at ``level``, as text or JSON lines."""
    out = stream if stream is not None else sys.stderr
    logger.remove()
    sink = _JsonSink(out) if fmt == "json" else _TextSink(out)
    logger.add(sink, level=level.upper(), format="{message}", colorize=False, backtrace=False, diagnose=False, catch=True)
    _route_stdlib(level.upper())


class _TextSink:
    """``HH:MM:SS.mmm LEVEL   message``, then the exception if there is one; redacted as a whole."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, message: Any) -> None:
        record = message.record
        line = f"{record['time']:%H:%M:%S.%f}"[:-3] + f" {record['level'].name:<7} {record['message']}"
        if record["exception"] is not None:
            line += "\n" + _exception_text(record["exception"])
        self.stream.write(redact(line) + "\n")
        self.stream.flush()


class _JsonSink:
    """One JSON object per line: time, level, message, the bound context (model, attempt, code...)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, message: Any) -> None:
        record = message.record
        data: dict[str, Any] = {
            "time": record["time"].isoformat(timespec="milliseconds"),
            "level": record["level"].name,
            "message": record["message"],
        }
        for key, value in record["extra"].items():
            data.setdefault(key, value if isinstance(value, (int, float, bool, type(None))) else str(value))
        if record["exception"] is not None:
            data["exception"] = _exception_text(record["exception"])
        self.stream.write(redact(json.dumps(data, ensure_ascii=False, default=str)) + "\n")
        self.stream.flush()


def _exception_text(exception: Any) -> str:
    kind, value, tb = exception
    return "".join(traceback.format_exception(kind, value, tb)).rstrip()


class _ToLoguru(logging.Handler):
    """A stdlib logging record, re-emitted through loguru (and so through the redacting sinks)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(exception=record.exc_info).log(level, f"{record.name}: {record.getMessage()}")


def _route_stdlib(level: str) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _ToLoguru)]:
        root.removeHandler(handler)
    root.addHandler(_ToLoguru())
    # Libraries' chatter below WARNING stays out unless the user asked for DEBUG.
    root.setLevel(logging.DEBUG if level in ("TRACE", "DEBUG") else logging.WARNING)
    logging.getLogger("stamina").setLevel(logging.ERROR)
