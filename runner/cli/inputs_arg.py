"""Inputs from the command line: ``--input field=value`` pairs, or a JSONL file read by the batch's rules."""

from __future__ import annotations

from ..inputs import InputLine, iter_raw_lines, judge


class InputArgError(ValueError):
    """A command-line input that cannot be used; the message says how to write it."""


def parse_pairs(pairs: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InputArgError(f"--input {pair!r} is not FIELD=VALUE; write e.g. --input question='What is DSPy?'")
        name = name.strip()
        if name in fields:  # the last one silently winning would run an input the operator did not mean
            raise InputArgError(f"--input {name}=... is given twice; give each field once")
        fields[name] = value
    return fields


def inputs_from_args(pairs: list[str], jsonl: str | None, input_names: tuple[str, ...], *, default_demo: bool = False) -> list[InputLine]:
    """The inputs to run: the ``--input`` pairs as input "1", or every line of ``jsonl`` judged as a batch judges it

    (its ``id`` or line number; other keys ignored; a bad line carries its problem instead of inputs).
    """
    if pairs and jsonl:
        raise InputArgError("give --input pairs or --inputs FILE, not both")
    if pairs:
        return [InputLine(1, 0, "1", parse_pairs(pairs), None)]
    if jsonl:
        try:
            return [judge(raw, input_names) for raw in iter_raw_lines(jsonl)]
        except OSError as exc:
            raise InputArgError(f"cannot read {jsonl}: {exc.strerror}") from exc
    if default_demo:
        return [InputLine(1, 0, "1", {name: "What is the capital of France?" for name in input_names}, None)]
    raise InputArgError(f"nothing to run: give --input {input_names[0]}=... or --inputs FILE.jsonl")
