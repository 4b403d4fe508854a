"""The output file of a batch run is its own journal: one JSON record per line, one line per input id.

A batch run appends each record with a single ``os.write`` of the whole line,
newline included, so a crash or ``kill -9`` leaves at most one torn line: the
last one, without its newline. Resuming is then pure file logic, kept here
apart from the process plumbing: repair the tail, stream the records to learn
which ids are done, append the rest. Nothing here holds the file in memory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

try:  # a dependency of DSPy, so always installed; the stdlib is the fallback, not a second code path to test
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None

_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class Repair:
    """What :func:`repair_tail` did to a file whose last line had no newline."""

    action: str  # "completed": the fragment was a whole record, a newline was added; "truncated": it was cut off
    offset: int  # byte offset where the fragment starts
    length: int  # bytes in the fragment

    def describe(self, path: Path | str) -> str:
        if self.action == "completed":
            return f"{path}: the last record had no newline (byte {self.offset}); added it"
        return (
            f"{path}: removed a torn last line ({self.length} bytes at byte {self.offset}), "
            "left by an interrupted write; its input runs again"
        )


def parse_record(line: bytes) -> dict[str, Any] | None:
    """One journal line as a record dict, or None when it is not a JSON object with a string ``id``."""
    try:
        value = _orjson.loads(line) if _orjson is not None else json.loads(line)
    except ValueError:
        try:  # json.dumps may write NaN, which orjson refuses
            value = json.loads(line)
        except ValueError:
            return None
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value
    return None


def repair_tail(path: Path | str) -> Repair | None:
    """Make the file end on a record boundary; return what was done, or None if it already did.

    A fragment that parses as a whole record lost only its newline (the kill
    came between the two); anything else is cut off at the last newline, and
    its input, not being recorded, runs again.
    """
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return None
    if size == 0:
        return None
    with open(path, "rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        start = _last_newline_end(f, size)
        f.seek(start)
        fragment = f.read(size - start)
        if parse_record(fragment) is not None:
            f.seek(size)
            f.write(b"\n")
            return Repair("completed", start, len(fragment))
        f.truncate(start)
        return Repair("truncated", start, len(fragment))


def _last_newline_end(f, size: int) -> int:
    """The offset just past the last ``\\n`` before ``size`` (0 if there is none), reading backwards in chunks."""
    end = size
    while end > 0:
        start = max(0, end - _CHUNK)
        f.seek(start)
        at = f.read(end - start).rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0


@dataclass(frozen=True, slots=True)
class JournalLine:
    number: int  # 1-based
    record: dict[str, Any] | None  # None: a complete line that is not a record (reported, then ignored)


def iter_journal(path: Path | str) -> Iterator[JournalLine]:
    """Stream the lines of an existing journal; a missing file has none. Call :func:`repair_tail` first."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                yield JournalLine(number, parse_record(line))


class JournalWriter:
    """The only writer of the output file: appends whole lines, each with one ``os.write``.

    Unbuffered on purpose: a record is in the kernel as soon as its input is
    done, so a ``kill -9`` of this process loses nothing that was reported.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, line: bytes) -> None:
        """Append one record line; ``line`` must be one JSON object and end with ``\\n``."""
        view = memoryview(line)
        while view:  # a regular file takes it whole unless the disk is full; then the loop raises OSError
            written = os.write(self._fd, view)
            view = view[written:]

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "JournalWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
