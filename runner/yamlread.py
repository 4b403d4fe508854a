"""Safe, line-aware reading of a policy file into plain data.

PyYAML's loaders either trust the file (``!!python/object`` runs code) or
forget where every value came from. This reader does neither: it decodes the
bytes itself (so a bad byte is reported with its offset), lets libyaml compose
the node graph (no constructors run), then walks the nodes itself to build
plain dicts, lists and scalars. The walk is where the hostile inputs are
bounded: unknown tags are refused, duplicate keys reported, nesting depth
capped, and every node visited is counted so that an alias bomb (billion
laughs) stops after a few thousand nodes instead of filling memory. The walk
also records where each key and value sits, which is how a schema error's
JSON path becomes ``FILE:LINE:COL``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Any

import yaml

from .problems import Problem, shown_name

MAX_BYTES = 1024 * 1024  # a policy is a page of YAML; 1 MiB is far beyond any real one
MAX_DEPTH = 32  # the deepest real key (fallbacks[].model.name) sits at depth 4
MAX_NODES = 10_000  # nodes visited with aliases expanded; a real policy has about a hundred

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml is ~10x faster when built in
_CONSTRUCTOR = yaml.constructor.SafeConstructor()

_Y = "tag:yaml.org,2002:"
_SCALAR_TAGS = {
    _Y + "str": None,
    _Y + "null": _CONSTRUCTOR.construct_yaml_null,
    _Y + "bool": _CONSTRUCTOR.construct_yaml_bool,
    _Y + "int": _CONSTRUCTOR.construct_yaml_int,
    _Y + "float": _CONSTRUCTOR.construct_yaml_float,
    _Y + "timestamp": None,  # a policy holds no dates: keep what was written as text
}

Path = tuple[str | int, ...]


@dataclass(slots=True)
class Marks:
    """Where each key and value of a policy sits: JSON path -> (line, col), both 1-based."""

    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def value(self, path: Path) -> tuple[int, int]:
        """The position of the value at ``path``, or of its nearest known ancestor (e.g. behind an alias)."""
        path = tuple(path)
        while path:
            if path in self.values:
                return self.values[path]
            if path in self.keys:
                return self.keys[path]
            path = path[:-1]
        return self.values.get((), (1, 1))

    def key(self, path: Path) -> tuple[int, int]:
        """The position of the key that names ``path`` (the value's position for list items and the root)."""
        path = tuple(path)
        return self.keys.get(path) or self.value(path)


@dataclass(frozen=True, slots=True)
class ReadResult:
    data: Any  # a dict when the file is a usable policy, otherwise None
    marks: Marks
    problems: tuple[Problem, ...]


class _Refused(Exception):
    """A hostile or unusable construct: stop walking, the rest of the file is not worth reading."""

    def __init__(self, node: yaml.Node, code: str, message: str) -> None:
        super().__init__(message)
        self.line, self.col = _pos(node.start_mark)
        self.code = code
        self.message = message


def _pos(mark: Any) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def read_policy_file(path: str) -> ReadResult:
    """Read a policy file from disk; size is checked before reading more than the limit.

    The file is opened non-blocking and checked to be a regular file before
    any read: a FIFO with no writer (or a terminal) would otherwise block
    ``validate`` for ever, and a device such as /dev/zero has no end.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return _fail(path, "not-found", "no such file; check the path")
    except OSError as exc:
        return _fail(path, "unreadable", f"cannot read the file ({exc.strerror}); check the path and its permissions")
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            return _fail(path, "not-a-file", "this is a directory, not a policy file; name the .yaml file")
        if not stat.S_ISREG(mode):
            return _fail(path, "not-a-file", "this is not a regular file (a pipe, socket or device); save the policy to a .yaml file and name that")
        raw = _read_at_most(fd, MAX_BYTES + 1)
    except OSError as exc:
        return _fail(path, "unreadable", f"cannot read the file ({exc.strerror}); check the path and its permissions")
    finally:
        os.close(fd)
    return read_policy_bytes(raw, path)


def _read_at_most(fd: int, limit: int) -> bytes:
    """Up to ``limit`` bytes: one read() may return less than asked even for a regular file."""
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def read_policy_bytes(raw: bytes, source: str) -> ReadResult:
    """Decode, compose and walk a policy given as bytes; ``source`` names it in problems."""
    if len(raw) > MAX_BYTES:
        return _fail(source, "too-large", f"the file is larger than the 1 MiB limit for a policy; a policy is a page of YAML, check this is the right file")
    bom = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = bom + exc.start  # the offset in the file as an editor or hexdump shows it
        line, col = _byte_position(raw[bom:], exc.start)
        return _fail(
            source, "not-utf8",
            f"invalid UTF-8 byte 0x{raw[offset]:02x} at byte offset {offset}; save the file as UTF-8",
            line, col,
        )
    return read_policy_text(text, source)


def read_policy_text(text: str, source: str) -> ReadResult:
    """Compose and walk a policy given as text."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        return _fail(source, "too-large", "the text is larger than the 1 MiB limit for a policy; check this is the right file")
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        return ReadResult(None, Marks(), tuple(_syntax_problems(text, source, exc)))
    except yaml.reader.ReaderError as exc:  # unmarked, but it knows the offset of the character
        line, col = _char_position(text, exc.position)
        return _fail(source, "bad-character", f"the character {chr(exc.character)!r} (U+{exc.character:04X}) is not allowed in YAML; remove it, or write it as an escape such as \\x07 inside double quotes", line, col)
    except yaml.YAMLError as exc:  # any other unmarked error
        return _fail(source, "yaml-syntax", f"YAML error: {_one_line(str(exc))}; fix the YAML syntax")
    except RecursionError:  # only the pure-Python composer recurses; libyaml caps depth itself
        return _fail(source, "too-deep", f"the YAML is nested too deeply; a policy nests at most {MAX_DEPTH} levels")
    if root is None:
        return _fail(source, "empty", "the file is empty; a policy needs at least `version: 1` and `model: {name: provider/model}`")
    if not isinstance(root, yaml.MappingNode):
        line, col = _pos(root.start_mark)
        kind = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
        return _fail(source, "not-a-mapping", f"the top level is {kind}, but a policy is a mapping of keys such as `version:` and `model:`; write `key: value` lines", line, col)
    walker = _Walker(source)
    try:
        data = walker.build(root, (), 0)
    except _Refused as exc:
        problems = [*walker.problems, Problem(source, exc.line, exc.col, exc.code, exc.message)]
        return ReadResult(None, walker.marks, tuple(problems))
    return ReadResult(data, walker.marks, tuple(walker.problems))


class _Walker:
    """Builds plain data from composed nodes, counting every visit (aliases included) against the budget."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.marks = Marks()
        self.problems: list[Problem] = []
        self.visited = 0
        self.seen: set[int] = set()  # collection nodes already walked: a second visit is an alias

    def build(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self.visited += 1
        if self.visited > MAX_NODES:
            raise _Refused(node, "too-many-nodes", f"the YAML expands to more than {MAX_NODES} values (an alias bomb?); write the policy without deeply repeated aliases")
        if depth > MAX_DEPTH:
            raise _Refused(node, "too-deep", f"the YAML is nested more than {MAX_DEPTH} levels deep; a policy nests only a few levels")
        # Positions are recorded on the first visit only: behind an alias they would
        # point at the anchor, so the lookup falls back to the key that used the alias.
        first_visit = id(node) not in self.seen
        if first_visit:
            self.marks.values.setdefault(path, _pos(node.start_mark))
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        if first_visit:
            self.seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _Y + "seq":
                raise _Refused(node, "unsupported-tag", _tag_message(node.tag))
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if node.tag != _Y + "map":
            raise _Refused(node, "unsupported-tag", _tag_message(node.tag))
        return self._mapping(node, path, depth, first_visit)

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int, record: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_seen: dict[str, tuple[int, int]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _Y + "merge":
                raise _Refused(key_node, "merge-key", "merge keys (`<<:`) are not supported in policies; write the keys out, or use an alias (`*name`) for a whole value")
            if not isinstance(key_node, yaml.ScalarNode):
                raise _Refused(key_node, "complex-key", "a key must be a plain name, not a list or mapping; write `name: value`")
            # The key's text as written: YAML 1.1 would read `on:` as the boolean true.
            key = key_node.value
            key_pos = _pos(key_node.start_mark)
            if key in out:
                line, col = first_seen[key]
                self.problems.append(Problem(self.source, *key_pos, "duplicate-key", f"duplicate key {shown_name(key)} (first defined at line {line}); keep one of them"))
                self.visited += 1
                continue
            first_seen[key] = key_pos
            if record:
                self.marks.keys.setdefault((*path, key), key_pos)
            out[key] = self.build(value_node, (*path, key), depth + 1)
        return out

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag not in _SCALAR_TAGS:
            raise _Refused(node, "unsupported-tag", _tag_message(node.tag))
        construct = _SCALAR_TAGS[node.tag]
        if construct is None:
            return node.value
        try:
            return construct(node)
        except (ValueError, yaml.constructor.ConstructorError) as exc:  # `!!int x`, or an int past Python's 4300 digits
            reason = _one_line(str(exc).split(":")[0])[:80]  # not the value itself: it could be a secret
            raise _Refused(node, "bad-scalar", f"this value cannot be read as {_short_tag(node.tag)} ({reason}); fix the value, or remove its tag") from None


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_Y):] if tag.startswith(_Y) else tag


def _tag_message(tag: str) -> str:
    return f"unsupported YAML tag `{_short_tag(tag)}`; a policy holds plain data only (mappings, lists, text, numbers, booleans): remove the tag"


def _syntax_problems(text: str, source: str, exc: yaml.MarkedYAMLError) -> list[Problem]:
    tabs = _indentation_tabs(text, source)
    if tabs:  # the usual cause, and libyaml's message for it is cryptic
        return tabs
    mark = exc.problem_mark or exc.context_mark
    line, col = _pos(mark) if mark is not None else (1, 1)
    problem = _one_line(exc.problem or "invalid YAML")
    if "expected a single document" in f"{problem} {exc.context}":
        return [Problem(source, line, col, "many-documents", "the file holds more than one YAML document (`---`); a policy file holds exactly one")]
    context = f" ({_one_line(exc.context)})" if exc.context else ""
    return [Problem(source, line, col, "yaml-syntax", f"YAML syntax error: {problem}{context}; fix the YAML at this point (check indentation, quotes and colons)")]


def _indentation_tabs(text: str, source: str) -> list[Problem]:
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            problems.append(Problem(source, number, indent.index("\t") + 1, "tab-indent", "a tab is used for indentation; YAML indents with spaces only: replace the tab with spaces"))
    return problems


def _byte_position(raw: bytes, offset: int) -> tuple[int, int]:
    return _line_col(raw[:offset].decode("utf-8"))  # valid up to the bad byte, by definition


def _char_position(text: str, position: int) -> tuple[int, int]:
    """The line:col of a reader error's offset: libyaml counts UTF-8 bytes, the pure-Python reader characters."""
    if _Loader is not yaml.SafeLoader:
        return _line_col(text.encode("utf-8", "surrogatepass")[:position].decode("utf-8", "ignore"))
    return _line_col(text[:position])


def _line_col(prefix: str) -> tuple[int, int]:
    """The 1-based line:col just after ``prefix``, the text before a position."""
    return prefix.count("\n") + 1, len(prefix) - prefix.rfind("\n")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(source: str, code: str, message: str, line: int = 1, col: int = 1) -> ReadResult:
    return ReadResult(None, Marks(), (Problem(source, line, col, code, message),))
