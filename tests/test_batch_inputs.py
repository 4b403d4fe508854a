"""Judging JSONL input lines: ids, bad lines, control characters, invalid UTF-8."""

from __future__ import annotations

from runner.inputs import RawLine, count_lines, is_empty, iter_raw_lines, judge

FIELDS = ("question",)


def _judge(data: bytes, number: int = 3, offset: int = 100):
    return judge(RawLine(number, offset, data), FIELDS)


def test_good_line_keeps_only_signature_fields_and_its_id():
    """A good line yields its id and exactly the signature's input fields; other keys are ignored."""
    line = _judge(b'{"id": "q7", "question": "why?", "expected": "because"}')
    assert line.problem is None
    assert (line.id, dict(line.inputs)) == ("q7", {"question": "why?"})


def test_id_defaults_to_the_line_number_and_integers_become_strings():
    """Without an id the line number is the id; an integer id is its decimal text."""
    assert _judge(b'{"question": "x"}', number=12).id == "12"
    assert _judge(b'{"id": 42, "question": "x"}').id == "42"


def test_bad_ids_are_invalid_input_under_the_line_number():
    """An id that is not a non-empty single-line string or integer is reported under the line number."""
    for data in (b'{"id": true, "question": "x"}', b'{"id": 1.5, "question": "x"}', b'{"id": " ", "question": "x"}', b'{"id": "a\\nb", "question": "x"}'):
        line = _judge(data, number=9)
        assert (line.id, line.problem.code) == ("9", "invalid_input"), data


def test_not_json_says_line_byte_and_column():
    """A line that is not JSON gets invalid_input naming its line, byte offset and column."""
    line = _judge(b'{"question": "x",}', number=4, offset=77)
    assert line.problem.code == "invalid_input"
    assert line.problem.message.startswith("line 4 (byte 77): not JSON")
    assert "column" in line.problem.message
    assert _judge(b'{"question": "x"} trailing').problem.code == "invalid_input"
    assert "JSON list" in _judge(b'["question"]').problem.message


def test_invalid_utf8_is_reported_with_its_byte_offset():
    """Invalid UTF-8 becomes invalid_input with the absolute byte offset of the bad byte."""
    line = _judge(b'{"question": "caf\xe9"}', number=2, offset=1000)
    assert line.problem.code == "invalid_input"
    assert "not valid UTF-8 at byte 1017 (0xe9)" in line.problem.message


def test_control_characters_in_strings_are_data():
    """Raw and escaped control characters inside strings pass through as data."""
    raw = _judge(b'{"question": "tab\there\x01\x00 bell\x07"}')
    assert raw.problem is None and raw.inputs["question"] == "tab\there\x01\x00 bell\x07"
    escaped = _judge(b'{"question": "a\\u0000b\\u001bc"}')
    assert escaped.inputs["question"] == "a\x00b\x1bc"
    assert _judge('{"question": "line\u2028sep"}'.encode()).inputs["question"] == "line\u2028sep"


def test_control_character_outside_a_string_is_not_json():
    """A control byte between JSON tokens is a bad line, not a crash."""
    assert _judge(b'{"question":\x01 "x"}').problem.code == "invalid_input"


def test_unpaired_surrogate_is_invalid_input():
    """An escaped lone surrogate, which cannot be encoded in a record, is refused; a valid pair is data."""
    assert _judge(b'{"question": "\\ud800"}').problem.code == "invalid_input"
    in_id = _judge(b'{"id": "x\\udc00", "question": "q"}', number=8)
    assert (in_id.id, in_id.problem.code) == ("8", "invalid_input")  # an unwritable id falls back to the line number
    assert _judge(b'{"question": "\\ud83d\\ude00"}').inputs["question"] == "\U0001f600"


def test_missing_and_empty_fields():
    """A missing field is invalid_input, a blank one empty_input, both under the line's id."""
    missing = _judge(b'{"id": "m", "other": "x"}')
    assert (missing.id, missing.problem.code) == ("m", "invalid_input")
    assert "'question'" in missing.problem.message
    for data in (b'{"question": ""}', b'{"question": "  "}', b'{"question": null}'):
        assert _judge(data).problem.code == "empty_input", data
    assert _judge(b'{"question": 0}').problem is None


def test_is_empty():
    """Blank strings and None are empty, as the executor says; zero, False and containers are values."""
    assert all(is_empty(v) for v in (None, "", " \n"))
    assert not any(is_empty(v) for v in (0, False, "x", [], [""]))


def test_raw_lines_stream_numbers_offsets_and_skip_blanks(tmp_path):
    """Blank lines are skipped but still counted; offsets point at each line's first byte; a BOM is dropped."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\n  \n{"b": 2}\n{"c": 3}')
    lines = list(iter_raw_lines(path))
    assert [(ln.number, ln.offset, ln.data) for ln in lines] == [(1, 3, b'{"a": 1}'), (4, 17, b'{"b": 2}'), (5, 26, b'{"c": 3}')]
    assert count_lines(path) == 3
