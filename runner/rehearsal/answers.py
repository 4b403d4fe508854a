"""What a rehearsal model says: answer text in the shape DSPy's adapters parse.

DSPy tells the model which output fields it wants, and in which format, inside
the prompt: ChatAdapter's user message ends with "Respond with the corresponding
output fields, starting with the field `[[ ## answer ## ]]`, ...", JSONAdapter's
with "Respond with a JSON object in the following order of fields: `answer`."
(and it may also send a ``response_format`` JSON schema). The server reads those
lines, picks the text from the configured answers, and renders a completion
the same adapter parses back. Anything else (a plain OpenAI client) gets plain text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..regexsafe import PatternError, compile_match
from .script import Problem, ScriptError

DEFAULT_ANSWER = "This is a rehearsal answer."
REASONING_FILLER = "Rehearsal: the answer follows from the question."
FILLER = "rehearsal"

UNPARSEABLE_TEXT = "I would rather not follow the requested format today."
GARBAGE_BODY = "<html><body><h1>502 Bad Gateway</h1>upstream sent garbage</body></html>"

_CHAT_REQUIREMENT = "Respond with the corresponding output fields, starting with the field "
_JSON_REQUIREMENT = "Respond with a JSON object in the following order of fields: "
_OUTPUT_SECTION = "Your output fields are:"
_CHAT_FIELD = re.compile(r"\[\[ ## (\w+) ## \]\]")
_JSON_FIELD = re.compile(r"`(\w+)`")
_FIELD_TYPE = re.compile(r"^\d+\. `(\w+)` \((.*?)\)(?::|$)", re.MULTILINE)
_LITERAL_FIRST = re.compile(r"""^Literal\[\s*(?:'([^']*)'|"([^"]*)"|([^,\]]+))""")

CHAT, JSON_MODE, PLAIN = "chat", "json", "plain"


@dataclass(frozen=True, slots=True)
class Answer:
    """One configured answer: when ``pattern`` matches the user message, say ``text`` or ``output``."""

    pattern: Any  # an RE2 pattern (runner.regexsafe): linear time on any user message
    text: str | None = None
    output: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """What the request asked for: the adapter style and its output fields with their type names."""

    style: str  # CHAT, JSON_MODE or PLAIN
    fields: tuple[tuple[str, str], ...] = ()  # (name, type name as DSPy printed it)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.fields)


PLAIN_FORMAT = OutputFormat(PLAIN)


def parse_answers(data: Any, where: str = "answers") -> tuple[Answer, ...]:
    """Return the answers for ``data`` (a list of ``{match, text}`` or ``{match, output}``); raise :class:`ScriptError`."""
    if data is None:
        return ()
    if isinstance(data, tuple) and all(isinstance(item, Answer) for item in data):
        return data  # already parsed (a compiled policy's rehearsal section)
    if isinstance(data, (str, bytes)) or not isinstance(data, (list, tuple)):
        raise ScriptError([Problem(where, "must be a list like [{match: '(?i)capital of france', text: Paris}]")])
    problems: list[Problem] = []
    answers = []
    for i, item in enumerate(data):
        answer = _answer(item, f"{where}[{i}]", problems)
        if answer is not None:
            answers.append(answer)
    if problems:
        raise ScriptError(problems)
    return tuple(answers)


def _answer(item: Any, where: str, problems: list[Problem]) -> Answer | None:
    if not isinstance(item, Mapping):
        problems.append(Problem(where, "must be a mapping with match and text (or output)"))
        return None
    unknown = sorted(set(item) - {"match", "text", "output"})
    if unknown:
        problems.append(Problem(f"{where}.{unknown[0]}", "unknown key; an answer has match and text (or output)"))
        return None
    try:
        pattern = compile_match(item.get("match", ""))
    except (PatternError, TypeError) as exc:
        problems.append(Problem(f"{where}.match", f"cannot be used as a pattern: {exc}"))
        return None
    text, output = item.get("text"), item.get("output")
    if (text is None) == (output is None):
        problems.append(Problem(where, "give exactly one of text (the first output field) or output (a field -> text mapping)"))
        return None
    if text is not None:
        if not isinstance(text, str):
            problems.append(Problem(f"{where}.text", "must be a string"))
            return None
        return Answer(pattern, text=text)
    if not isinstance(output, Mapping) or not output or not all(isinstance(k, str) for k in output):
        problems.append(Problem(f"{where}.output", "must map output field names to text, e.g. {answer: Paris}"))
        return None
    return Answer(pattern, output=tuple((k, v if isinstance(v, str) else json.dumps(v)) for k, v in output.items()))


def message_text(message: Any) -> str:
    """The text of one chat message, whether its content is a string or a list of parts (JSON-decoded dicts)."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def last_user_text(messages: Any) -> str:
    """The last user message: where DSPy puts this call's inputs (earlier ones are demos)."""
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return message_text(message)
    return ""


class FormatReader:
    """Work out the :class:`OutputFormat` of requests, remembering it per prompt shape.

    Every request of one DSPy program carries the same system message, so the
    regex work is done once per signature, not once per request.
    """

    def __init__(self, capacity: int = 256) -> None:
        self._cache: dict[tuple[str, str, str], OutputFormat] = {}
        self._capacity = capacity

    def read(self, body: Mapping[str, Any], user_text: str) -> OutputFormat:
        messages = body.get("messages")
        system = ""
        if isinstance(messages, list) and messages and isinstance(messages[0], dict) and messages[0].get("role") == "system":
            system = message_text(messages[0])
        requirement = _requirement_line(user_text)
        response_format = body.get("response_format")
        rf_key = json.dumps(response_format, sort_keys=True) if isinstance(response_format, dict) else ""
        key = (system, requirement, rf_key)
        found = self._cache.get(key)
        if found is None:
            found = _read_format(system, requirement, response_format)
            if len(self._cache) >= self._capacity:
                self._cache.clear()
            self._cache[key] = found
        return found


def _requirement_line(user_text: str) -> str:
    for marker in (_CHAT_REQUIREMENT, _JSON_REQUIREMENT):
        at = user_text.rfind(marker)
        if at >= 0:
            end = user_text.find("\n", at)
            return user_text[at:] if end < 0 else user_text[at:end]
    return ""


def _read_format(system: str, requirement: str, response_format: Any) -> OutputFormat:
    types = _field_types(system)
    schema_fields = _schema_fields(response_format)
    if schema_fields:
        return OutputFormat(JSON_MODE, tuple((name, types.get(name, "str")) for name in schema_fields))
    if requirement.startswith(_CHAT_REQUIREMENT):
        names = [n for n in _CHAT_FIELD.findall(requirement) if n != "completed"]
        return OutputFormat(CHAT, tuple((name, types.get(name, "str")) for name in names))
    if requirement.startswith(_JSON_REQUIREMENT):
        names = _JSON_FIELD.findall(requirement)
        return OutputFormat(JSON_MODE, tuple((name, types.get(name, "str")) for name in names))
    if types:
        # A DSPy-like prompt without the reminder line: trust the system message.
        style = JSON_MODE if isinstance(response_format, Mapping) or "Outputs will be a JSON object" in system else CHAT
        return OutputFormat(style, tuple(types.items()))
    return PLAIN_FORMAT


def _field_types(system: str) -> dict[str, str]:
    at = system.find(_OUTPUT_SECTION)
    if at < 0:
        return {}
    section = system[at + len(_OUTPUT_SECTION):]
    end = section.find("\n\n")
    section = section if end < 0 else section[:end]
    return {name: type_name.strip() for name, type_name in _FIELD_TYPE.findall(section)}


def _schema_fields(response_format: Any) -> list[str]:
    if not isinstance(response_format, Mapping) or response_format.get("type") != "json_schema":
        return []
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    return list(properties) if isinstance(properties, Mapping) else []


def choose_outputs(
    fmt: OutputFormat,
    user_text: str,
    answers: tuple[Answer, ...],
    default_answer: str,
    *,
    text: str | None = None,
    output: dict[str, str] | None = None,
) -> dict[str, str]:
    """Text for every output field: a step's override, else the first matching answer, else defaults."""
    names = fmt.names or ("answer",)
    # ChainOfThought puts `reasoning` first; the answer text belongs to the field after it.
    primary = next((name for name in names if name != "reasoning"), names[0])
    chosen: dict[str, str] = {}
    if output:
        chosen.update(output)
    elif text is not None:
        chosen[primary] = text
    else:
        for answer in answers:
            if answer.pattern.search(user_text):
                if answer.output is not None:
                    chosen.update(answer.output)
                else:
                    chosen[primary] = answer.text or ""
                break
    types = dict(fmt.fields)
    ordered = {}
    for name in names:
        ordered[name] = chosen[name] if name in chosen else _filler(name, types.get(name, "str"), default_answer if name == primary else None)
    return ordered


def _filler(name: str, type_name: str, default_answer: str | None) -> str:
    """A value of the field's type, so that a typed signature (``answer: int``) still parses."""
    bare = type_name.replace(" ", "")
    if bare in ("", "str") or bare.startswith(("str|", "Optional[str")):
        if default_answer is not None:
            return default_answer
        return REASONING_FILLER if name == "reasoning" else FILLER
    if bare == "int":
        return "1"
    if bare == "float":
        return "0.5"
    if bare == "bool":
        return "true"
    if bare.startswith(("list[", "tuple[", "set[")) or bare in ("list", "tuple", "set"):
        return "[]"
    if bare.startswith("dict") or bare == "Any":
        return "{}"
    literal = _LITERAL_FIRST.match(type_name.strip())
    if literal:
        return next(group for group in literal.groups() if group is not None).strip()
    return default_answer if default_answer is not None else FILLER


def render(fmt: OutputFormat, outputs: dict[str, str]) -> str:
    """The completion text for ``outputs`` in the request's format."""
    if fmt.style == CHAT:
        parts = [f"[[ ## {name} ## ]]\n{value}\n\n" for name, value in outputs.items()]
        parts.append("[[ ## completed ## ]]")
        return "".join(parts)
    if fmt.style == JSON_MODE:
        types = dict(fmt.fields)
        return json.dumps({name: _json_value(value, types.get(name, "str")) for name, value in outputs.items()})
    return next(iter(outputs.values()), "")


def _json_value(value: str, type_name: str) -> Any:
    """Non-string fields go out as JSON values (``1``, ``[]``), as a real model's JSON would carry them."""
    if type_name.replace(" ", "") in ("str", ""):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value
