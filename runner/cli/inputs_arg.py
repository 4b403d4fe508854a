"""Inputs from the command line: ``--input field=value`` pairs or a JSONL file, checked against the signature."""

from __future__ import annotations

import json
from typing import Iterator


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


def inputs_from_args(pairs: list[str], jsonl: str | None, input_names: tuple[str, ...], *, default_demo: bool = False) -> list[dict[str, str]]:
    """The inputs to run: the ``--input`` pairs as one input, or every line of ``jsonl``."""
    if pairs and jsonl:
        raise InputArgError("give --input pairs or --inputs FILE, not both")
    if pairs:
        return [parse_pairs(pairs)]
    if jsonl:
        return list(_jsonl(jsonl, input_names))
    if default_demo:
        return [{name: "What is the capital of France?" for name in input_names}]
    raise InputArgError(f"nothing to run: give --input {input_names[0]}=... or --inputs FILE.jsonl")


def _jsonl(path: str, input_names: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """Each line's input fields; other keys (``id``, an evaluation set's expected answers) are ignored, as in a batch."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputArgError(f"{path}:{number}:{exc.colno}: not JSON ({exc.msg}); write one object per line") from exc
                if not isinstance(data, dict):
                    raise InputArgError(f"{path}:{number}:1: a line must be a JSON object of input fields")
                yield {name: data[name] for name in input_names if name in data}
    except OSError as exc:
        raise InputArgError(f"cannot read {path}: {exc.strerror}") from exc
