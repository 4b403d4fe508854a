"""The output file as a journal: torn-tail repair, streaming scan, whole-line appends."""

from __future__ import annotations

import json

from runner.journal import JournalWriter, iter_journal, parse_record, repair_tail


def _record(id_: str) -> bytes:
    return (json.dumps({"id": id_, "status": "ok"}) + "\n").encode()


def test_torn_last_line_is_truncated_to_the_last_newline(tmp_path):
    """A fragment that is not a whole record is cut off, leaving only complete lines."""
    out = tmp_path / "out.jsonl"
    good = _record("1") + _record("2")
    out.write_bytes(good + b'{"id": "3", "sta')
    repair = repair_tail(out)
    assert repair is not None and repair.action == "truncated"
    assert (repair.offset, repair.length) == (len(good), len(b'{"id": "3", "sta'))
    assert out.read_bytes() == good
    assert "torn last line" in repair.describe(out)


def test_whole_record_without_newline_gets_its_newline(tmp_path):
    """A kill between the record and its newline keeps the record and adds the newline."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(_record("1") + _record("2")[:-1])
    repair = repair_tail(out)
    assert repair is not None and repair.action == "completed"
    assert out.read_bytes() == _record("1") + _record("2")


def test_torn_only_line_leaves_an_empty_file(tmp_path):
    """A file whose single line is torn becomes empty (no newline to keep)."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"id": "1"')
    assert repair_tail(out).action == "truncated"
    assert out.read_bytes() == b""


def test_torn_line_longer_than_a_read_chunk(tmp_path):
    """The backwards search for the last newline crosses chunk boundaries."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(_record("1") + b'{"id": "2", "output": "' + b"x" * 200_000)
    assert repair_tail(out).action == "truncated"
    assert out.read_bytes() == _record("1")


def test_clean_missing_and_empty_files_need_no_repair(tmp_path):
    """A file that ends in a newline, an empty file and no file are left alone."""
    out = tmp_path / "out.jsonl"
    assert repair_tail(out) is None
    out.write_bytes(b"")
    assert repair_tail(out) is None
    out.write_bytes(_record("1"))
    assert repair_tail(out) is None
    assert out.read_bytes() == _record("1")


def test_scan_yields_records_and_flags_lines_that_are_not(tmp_path):
    """Complete lines that are not records come back as None with their line number; blank lines are skipped."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(_record("a") + b"\n" + b"garbage\n" + b'{"id": 5}\n' + _record("b"))
    lines = list(iter_journal(out))
    assert [(ln.number, ln.record and ln.record["id"]) for ln in lines] == [(1, "a"), (3, None), (4, None), (5, "b")]
    assert list(iter_journal(tmp_path / "missing.jsonl")) == []


def test_parse_record_accepts_nan_written_by_json_dumps():
    """Records the stdlib wrote with NaN still parse (orjson alone would refuse them)."""
    assert parse_record(b'{"id": "1", "elapsed_ms": NaN}\n')["id"] == "1"
    assert parse_record(b"[1, 2]") is None


def test_writer_appends_whole_lines_to_existing_content(tmp_path):
    """The writer appends after what is there and each append lands whole."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(_record("1"))
    with JournalWriter(out) as writer:
        writer.append(_record("2"))
        writer.append(_record("3"))
    assert [ln.record["id"] for ln in iter_journal(out)] == ["1", "2", "3"]
