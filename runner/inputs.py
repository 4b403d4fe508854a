"""Reading a JSONL input file line by line, turning each line into work or into a problem.

Every line is judged on its own so that one bad line never stops a batch:
it becomes an ``invalid_input`` or ``empty_input`` record that says the line
and its byte offset, and the run goes on. The file is read in binary and split
on ``\\n`` only, so invalid UTF-8 is caught per line (not as a crash of the
reader) and characters such as U+2028 or a raw carriage return stay data.
Raw control characters inside JSON strings are accepted as data too: they are
a common product of exports, and refusing them would drop inputs for no gain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Mapping

ID_KEY = "id"
_BOM = b"\xef\xbb\xbf"
_decoder = json.JSONDecoder(strict=False)


@dataclass(frozen=True, slots=True)
class RawLine:
    number: int  # 1-based
    offset: int  # byte offset of the line's first byte
    data: bytes  # without the newline


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a line cannot run; ``code`` is ``invalid_input`` or ``empty_input``."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class InputLine:
    """One judged line: its id, and either the inputs to run or the problem to record."""

    number: int
    offset: int
    id: str
    inputs: Mapping[str, Any] | None
    problem: Problem | None


def iter_raw_lines(source: Path | str | BinaryIO) -> Iterator[RawLine]:
    """Stream the non-blank lines of a path or an open binary file, with their numbers and byte offsets; never loads it."""
    if isinstance(source, (str, Path)):
        with open(source, "rb") as f:
            yield from iter_raw_lines(f)
        return
    offset = 0
    for number, line in enumerate(source, start=1):
        start = offset
        offset += len(line)
        if number == 1 and line.startswith(_BOM):
            line, start = line[len(_BOM) :], start + len(_BOM)
        data = line.rstrip(b"\r\n")
        if data.strip():
            yield RawLine(number, start, data)


def count_lines(path: Path | str) -> int:
    """How many non-blank lines the file has, streamed: the denominator of the progress line."""
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def judge(raw: RawLine, fields: tuple[str, ...]) -> InputLine:
    """Decide what to do with one line: its id, the inputs for the signature's ``fields``, or a problem.

    The id is the line's ``id`` (a non-empty string, or an integer) or else its
    line number. Keys other than ``id`` and the input fields (expected answers
    in an evaluation set, say) are ignored.
    """
    where = f"line {raw.number} (byte {raw.offset})"
    default_id = str(raw.number)
    try:
        text = raw.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw.offset + exc.start
        return _bad(raw, default_id, f"{where}: not valid UTF-8 at byte {bad} (0x{raw.data[exc.start]:02x}); save the file as UTF-8")
    try:
        value, end = _decoder.raw_decode(text, _skip_space(text, 0))
        if text[end:].strip():
            raise json.JSONDecodeError("extra data after the JSON object", text, _skip_space(text, end))
    except json.JSONDecodeError as exc:
        return _bad(raw, default_id, f"{where}: not JSON: {exc.msg} at column {exc.colno}; write one JSON object per line")
    if not isinstance(value, dict):
        return _bad(raw, default_id, f"{where}: a JSON {type(value).__name__} is not an input; write one JSON object per line")
    id_, id_problem = _id_of(value, default_id)
    if id_problem:
        return _bad(raw, default_id, f"{where}: {id_problem}")
    if _has_lone_surrogate(raw.data, value):
        record_id = id_ if _encodable(id_) else default_id  # a record's id must itself be writable
        return _bad(raw, record_id, f"{where}: a string holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff); fix the escape")
    missing = [name for name in fields if name not in value]
    if missing:
        return _bad(raw, id_, f"{where}: missing input field {', '.join(map(repr, missing))}; the signature needs {', '.join(fields)}")
    empty = [name for name in fields if is_empty(value[name])]
    if empty:
        return InputLine(raw.number, raw.offset, id_, None, Problem("empty_input", f"{where}: input field {', '.join(map(repr, empty))} is empty; give every input field a value"))
    return InputLine(raw.number, raw.offset, id_, {name: value[name] for name in fields}, None)


def is_empty(value: Any) -> bool:
    """None or a blank string: the executor's rule (``Executor._check_input``), checked here to name the line."""
    return value is None or (isinstance(value, str) and not value.strip())


def _bad(raw: RawLine, id_: str, message: str) -> InputLine:
    return InputLine(raw.number, raw.offset, id_, None, Problem("invalid_input", message))


def _id_of(value: dict[str, Any], default: str) -> tuple[str, str | None]:
    if ID_KEY not in value:
        return default, None
    id_ = value[ID_KEY]
    if isinstance(id_, bool) or not isinstance(id_, (str, int)):
        return default, f"id must be a string or an integer, not {json.dumps(id_)[:40]}"
    id_ = str(id_)
    if not id_.strip():
        return default, "id is empty; give a non-empty id or leave it out to use the line number"
    if "\n" in id_ or "\r" in id_:
        return default, "id holds a line break; use a single-line id"
    return id_, None


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    return at


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _has_lone_surrogate(data: bytes, value: dict[str, Any]) -> bool:
    """True when a ``\\udXXX`` escape left an unpaired surrogate, which no UTF-8 record or request can carry."""
    if b"\\ud" not in data and b"\\uD" not in data:  # the usual case, without walking the value
        return False
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
