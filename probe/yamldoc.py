"""YAML documents that keep their line numbers, and pydantic validation located in them.

Inventories and profiles are read through here so that every error names the file, the line and
the field, and never quotes a value (it may be a secret).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    PlainValidator,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.util import create_timestamp, timestamp_regexp

from probe.errors import InputError
from probe.portspec import parse_port_spec

# --------------------------------------------------------------------------------------------
# YAML documents with line numbers, shared with probe.profile_loader
# --------------------------------------------------------------------------------------------

DocPath = tuple[str | int, ...]
"""Where a value sits in a document: mapping keys and list indexes from the top."""

MAX_VALUES = 1_000_000
"""The most values a document may hold once its aliases are expanded (a billion-laughs guard)."""

MAX_INTEGER = 2**63 - 1
"""The largest integer a document may hold: any larger one overflows a float or a database."""

_NAME_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def field_name(path: DocPath) -> str:
    """`devices[3].credentials.mqtt.password`; keys that are not simple names go in brackets."""
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _NAME_KEY.fullmatch(step):
            out += f".{step}" if out else step
        else:
            out += f"[{step!r}]"
    return out


def show(value: object, limit: int = 60) -> str:
    """A short repr of a user-written (non-secret) value for a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def describe(value: object) -> str:
    """What kind of value the user wrote, without the value itself (it may be a secret)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def read_text(path: Path, file: str) -> str:
    """The UTF-8 text of a user-named file, or an InputError saying why it cannot be read."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", file=file) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a file", file=file) from None
    except PermissionError:
        raise InputError("cannot read the file: permission denied", file=file) from None
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror or exc}", file=file) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError("is not UTF-8 text", file=file, line=line) from None


class Lines:
    """Where the values of one mapping or list were written: the line of each key (of each
    item in a list), and the same for every value that is itself a mapping or a list."""

    __slots__ = ("inner", "line", "steps")

    def __init__(self, line: int) -> None:
        self.line = line
        self.steps: dict[str | int, int] = {}
        self.inner: dict[str | int, Lines] = {}


@dataclass(frozen=True)
class YamlDocument:
    """A YAML file whose top level is a mapping: its plain data and the line of every value."""

    file: str
    path: Path
    lines: Lines
    data: dict[str, Any]

    def line(self, path: DocPath) -> int:
        """The line of the value at `path`, or of its closest existing ancestor."""
        node: Lines | None = self.lines
        line = self.lines.line
        for step in path:
            if node is None or isinstance(step, bool) or step not in node.steps:
                break
            line = node.steps[step]
            node = node.inner.get(step)
        return line

    def error(self, message: str, path: DocPath = ()) -> InputError:
        return InputError(message, file=self.file, line=self.line(path),
                          field=field_name(path) or None)


def load_yaml_mapping(path: Path, file: str, expected: str) -> YamlDocument:
    """Parse `path` as one YAML document whose top level is a mapping.

    `file` is how messages name the file; `expected` says what the top level should hold.
    The text is read by libyaml's parser, event by event, into plain dicts, lists, strings,
    numbers and booleans (scalars resolved by the YAML 1.2 core schema, see `_resolve`), with
    the line of every key beside them: no node tree is ever built, so a large inventory costs
    little more than its data. libyaml's syntax is YAML 1.1's: a text it refuses (a YAML 1.2
    form such as `{address: ::1}`, or an error) is read again by ruamel's YAML 1.2 parser,
    whose events are the same, and whose errors are the ones reported.
    """
    text = read_text(path, file)
    builder: _Builder | None = None
    if _LIBYAML is not None:
        with contextlib.suppress(yaml.YAMLError):
            builder = _build(file, text, yaml.parse(text, Loader=_LIBYAML))
    if builder is None:
        builder = _build(file, text, _ruamel_events(file, text))
    root, lines = builder.root
    if root is None:
        raise InputError(f"the file is empty; expected a mapping with {expected}",
                         file=file, line=1)
    if not isinstance(root, dict) or lines is None:
        raise InputError(f"the top level must be a mapping with {expected}, not "
                         f"{describe(root)}", file=file, line=1)
    return YamlDocument(file=file, path=path, lines=lines, data=root)


_LIBYAML = getattr(yaml, "CSafeLoader", None)
"""libyaml's parser, or None where PyYAML was built without it (ruamel's parser reads all)."""


def _build(file: str, text: str, events: Iterable[Any]) -> _Builder:
    builder = _Builder(file, text)
    for event in events:
        builder.take(event)
    return builder


def _ruamel_events(file: str, text: str) -> Iterator[Any]:
    """ruamel's parser events of `text`; its errors as InputErrors that never quote a value."""
    try:
        yield from YAML(typ="rt").parse(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "cannot parse"
        raise InputError(f"YAML syntax error: {problem}", file=file,
                         line=mark.line + 1 if mark is not None else None,
                         field=_key_before(text, mark.line, mark.column) if mark else None
                         ) from None
    except ReaderError as exc:
        line = text[: exc.position].count("\n") + 1 if isinstance(exc.position, int) else None
        raise InputError(f"YAML syntax error: {exc.reason} character {exc.character!r}",
                         file=file, line=line) from None
    except YAMLError as exc:
        raise InputError(f"YAML syntax error: {exc}", file=file) from None
    except RecursionError:
        raise InputError("YAML syntax error: the document is nested too deeply",
                         file=file) from None


_KEY = re.compile(r"""([A-Za-z_][\w.-]*)["']?\s*:(?=\s|$)""")


def _key_before(text: str, line: int, column: int) -> str | None:
    """The last mapping key written on `line` (0-based) of `text` before `column`: the field
    a YAML error at that mark is about (none when the line names no key before it)."""
    lines = text.splitlines()
    if not 0 <= line < len(lines):
        return None
    keys = [m.group(1) for m in _KEY.finditer(lines[line]) if m.start() < max(column, 1)]
    return keys[-1] if keys else None


MAX_DEPTH = 100
"""The deepest nesting of mappings and lists a document may have (inputs need a handful)."""

_CORE = "tag:yaml.org,2002:"
_MERGE = "<<"
_NULL = re.compile(r"~|null|Null|NULL|")
_BOOL = {"true": True, "True": True, "TRUE": True,
         "false": False, "False": False, "FALSE": False}
_NUMBER_START = frozenset("-+0123456789.")
_INT = re.compile(r"[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?[0-9_]+|[-+]?0x[0-9a-fA-F_]+")
_FLOAT = re.compile(r"""[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                       |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                       |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
                       |[-+]?\.(?:inf|Inf|INF)
                       |\.(?:nan|NaN|NAN)""", re.X)
_TIMESTAMP = re.compile(r"""[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
                           |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?
                            (?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?
                            (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?""", re.X)



class _Unbuildable(Exception):
    """A scalar its tag (written or resolved) cannot be built from, e.g. `2027-02-30`."""


def _int(text: str) -> int:
    """An integer as YAML 1.2 writes it: `_` separators, 0b, 0o and 0x; a leading zero is
    not octal."""
    digits = text.replace("_", "")
    sign = -1 if digits[:1] == "-" else 1
    digits = digits[1:] if digits[:1] in ("-", "+") else digits
    for prefix, base in (("0b", 2), ("0x", 16), ("0o", 8)):
        if digits.startswith(prefix):
            return sign * int(digits[2:], base)
    return sign * int(digits)


def _float(text: str) -> float:
    digits = text.replace("_", "").lower()
    sign = -1 if digits[:1] == "-" else 1
    digits = digits[1:] if digits[:1] in ("-", "+") else digits
    if digits == ".inf":
        return sign * math.inf
    if digits == ".nan":
        return math.nan
    return sign * float(digits)


def _timestamp(text: str) -> str:
    """A YAML timestamp as ISO 8601 text (`2027-01-31`, `2027-01-31T10:00:00+02:00`), built
    by ruamel's function as it always was (its rounding of the seventh fractional digit
    included)."""
    found = timestamp_regexp.match(text)
    if found is None:
        raise _Unbuildable
    return create_timestamp(**found.groupdict()).isoformat()


_BUILD: dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": _int,
    "float": _float,
    "bool": lambda text: {"true": True, "false": False, "yes": True, "no": False, "y": True,
                          "n": False, "on": True, "off": False}[text.lower()],
    "null": lambda text: None,
    "timestamp": _timestamp,
}
"""How each core tag builds its value; a tag written explicitly (`!!bool yes`) builds as it
always did with this tag, which is what the writer asked for."""


def _resolve(text: str) -> str:
    """The core tag of a plain scalar under YAML 1.2 (so `yes`, `on` and `0777` stay what
    they look like: a string and a decimal number); `<<` is a merge key, and `=` the value key
    of YAML 1.1, refused as it always was."""
    if text == _MERGE:
        return "merge"
    if text == "=":
        return "value"
    if _NULL.fullmatch(text):
        return "null"
    if text in _BOOL:
        return "bool"
    if text[:1] not in _NUMBER_START:
        return "str"  # the resolvers below apply by first character, as ruamel's did
    if _FLOAT.fullmatch(text):
        return "float"
    if text[:1] != "." and _INT.fullmatch(text):
        return "int"
    if _TIMESTAMP.fullmatch(text):
        return "timestamp"
    return "str"


@dataclass
class _Frame:
    """A mapping or a list being read: its value, its lines and, in a mapping, the key read
    last (whose value comes next)."""

    value: dict[str | int, Any] | list[Any]
    lines: Lines
    anchor: str | None
    count: int
    """Values read before this one (the size of an anchored value is the difference)."""
    key: str | int | None = None
    key_line: int = 0
    merging: bool = False
    """The key read last is a merge key (`<<`)."""
    merges: list[tuple[Any, Lines | None, int]] = dataclasses.field(default_factory=list)


class _Builder:
    """Plain values and their lines from libyaml's events, one document only.

    An alias is a copy of its anchor's value, counted whole against MAX_VALUES; merge keys
    (`<<: *defaults`) add the keys the mapping does not set itself; a key written twice is
    an error, as it always was.
    """

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.text = text
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Any, Lines | None, int]] = {}
        self.count = 0
        self.documents = 0
        self.mark = (0, 0)
        """Where the event being read starts: line and column, from 0."""
        self.root: tuple[Any, Lines | None] = (None, None)

    def take(self, event: Any) -> None:
        """Read one event of libyaml's or ruamel's parser (the same classes, by name)."""
        mark = event.start_mark
        self.mark = (mark.line, mark.column) if mark is not None else (0, 0)
        line = self.mark[0] + 1
        kind = type(event).__name__
        if kind == "ScalarEvent":
            self._scalar(event, line)
        elif kind in ("MappingStartEvent", "SequenceStartEvent"):
            self._open(event, kind == "MappingStartEvent", line)
        elif kind in ("MappingEndEvent", "SequenceEndEvent"):
            self._close()
        elif kind == "AliasEvent":
            self._alias(event, line)
        elif kind == "DocumentStartEvent":
            self._document(event, line)

    def _document(self, event: Any, line: int) -> None:
        self.documents += 1
        if self.documents > 1:
            raise InputError("YAML syntax error: expected a single document in the stream",
                             file=self.file, line=line)
        if event.version not in (None, (1, 2)):
            raise InputError("YAML syntax error: only YAML 1.2 is read; remove the %YAML "
                             "directive", file=self.file, line=line)

    def _scalar(self, event: Any, line: int) -> None:
        tag = None if event.tag is None else str(event.tag)
        if tag is None or tag == "!":
            kind = _resolve(event.value) if event.implicit[0] or tag == "!" else "str"
        elif tag.startswith(_CORE) and tag[len(_CORE):] in _BUILD:
            kind = tag[len(_CORE):]
        else:
            raise self._fail(f"unsupported YAML value (tagged {show(tag)}); use strings, "
                             "numbers, true/false, lists and mappings", line)
        if kind == "merge" and self._awaits_key():
            self._count(1, line)
            frame = self.stack[-1]
            if frame.merges:
                raise InputError(f"YAML syntax error: duplicate key {show(_MERGE)}",
                                 file=self.file, line=line, field=_MERGE)
            frame.key, frame.key_line, frame.merging = _MERGE, line, True
            return
        if kind == "timestamp" and self._awaits_key():
            raise self._fail("a mapping key must be a name, not a date", line)
        if kind not in _BUILD:
            raise self._fail(f"unsupported YAML value ({show(event.value)} unquoted); use "
                             "strings, numbers, true/false, lists and mappings", line)
        try:
            value = _BUILD[kind](event.value)
        except (_Unbuildable, ValueError, KeyError, OverflowError):
            raise InputError(f"YAML syntax error: not a valid {kind} value; quote it to keep "
                             "it as text", file=self.file, line=line,
                             field=_key_before(self.text, *self.mark)) from None
        self._add(self._checked(value, line), None, line, event.anchor, 1)

    def _checked(self, value: Any, line: int) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) \
                and not -MAX_INTEGER - 1 <= value <= MAX_INTEGER:
            raise self._fail(f"integers outside {-MAX_INTEGER - 1}..{MAX_INTEGER} (64 bits) "
                             "are not supported", line)
        if isinstance(value, float) and not math.isfinite(value):
            raise self._fail("infinite and not-a-number values are not supported", line)
        return value

    def _open(self, event: Any, mapping: bool, line: int) -> None:
        tag = None if event.tag is None else str(event.tag)
        if tag is not None and tag not in (f"{_CORE}map", f"{_CORE}seq", "!"):
            raise self._fail(f"unsupported YAML value (tagged {show(tag)}); use strings, "
                             "numbers, true/false, lists and mappings", line)
        if self._awaits_key():
            raise self._fail(f"a mapping key must be a name, not "
                             f"{describe({} if mapping else [])}", line)
        if len(self.stack) >= MAX_DEPTH:
            raise InputError("YAML syntax error: the document is nested too deeply",
                             file=self.file, line=line)
        self._count(1, line)
        self.stack.append(_Frame({} if mapping else [], Lines(line), event.anchor,
                                 self.count))
        if event.anchor is not None:
            self.anchors.pop(event.anchor, None)  # open: an alias to it now is a loop

    def _close(self) -> None:
        frame = self.stack.pop()
        if isinstance(frame.value, dict):
            self._merge(frame)
        self._add(frame.value, frame.lines, frame.lines.line, frame.anchor,
                  self.count - frame.count + 1, counted=True)

    def _alias(self, event: Any, line: int) -> None:
        name = event.anchor or ""
        if name not in self.anchors:
            if any(frame.anchor == name for frame in self.stack):
                raise self._fail("a YAML alias refers to a value that contains it", line)
            raise InputError(f"YAML syntax error: found undefined alias {show(name)}",
                             file=self.file, line=line)
        value, lines, size = self.anchors[name]
        if self._awaits_key() and isinstance(value, dict | list):
            raise self._fail(f"a mapping key must be a name, not {describe(value)}", line)
        self._count(size, line)
        self._add(copy.deepcopy(value), lines, line, None, size, counted=True)

    def _count(self, size: int, line: int) -> None:
        self.count += size
        if self.count > MAX_VALUES:
            raise InputError(f"the document is too large (more than {MAX_VALUES} values once "
                             "its aliases are expanded)", file=self.file, line=line)

    def _awaits_key(self) -> bool:
        return bool(self.stack) and isinstance(self.stack[-1].value, dict) \
            and self.stack[-1].key is None

    def _add(self, value: Any, lines: Lines | None, line: int, anchor: str | None, size: int,
             *, counted: bool = False) -> None:
        """Put a value read whole where it belongs: the document, the next item of a list,
        the next key of a mapping, or the value of the key read last."""
        if not counted:
            self._count(size, line)
        if anchor is not None:
            self.anchors[anchor] = (value, lines, size)
        if not self.stack:
            self.root = (value, lines)
            return
        frame = self.stack[-1]
        if isinstance(frame.value, list):
            index = len(frame.value)
            frame.value.append(value)
            frame.lines.steps[index] = line
            if lines is not None:
                frame.lines.inner[index] = lines
        elif frame.key is None:
            self._key(frame, value, line)
        else:
            self._set(frame, value, lines)

    def _key(self, frame: _Frame, key: Any, line: int) -> None:
        if isinstance(key, bool) or not isinstance(key, str | int):
            raise self._fail(f"a mapping key must be a name, not {describe(key)}", line)
        if key in frame.lines.steps:
            raise InputError(f"YAML syntax error: duplicate key {show(str(key))}",
                             file=self.file, line=line, field=str(key))
        frame.key, frame.key_line = key, line

    def _set(self, frame: _Frame, value: Any, lines: Lines | None) -> None:
        assert isinstance(frame.value, dict) and frame.key is not None
        key, line = frame.key, frame.key_line
        frame.key = None
        if frame.merging:
            frame.merging = False
            sources = value if isinstance(value, list) else [value]
            inner = [lines.inner.get(i) for i in range(len(sources))] \
                if isinstance(value, list) and lines is not None else [lines]
            for source, source_lines in zip(sources, inner, strict=True):
                if not isinstance(source, dict):
                    raise InputError("YAML syntax error: expected a mapping or list of "
                                     "mappings for merging", file=self.file, line=line)
                frame.merges.append((source, source_lines, line))
            return
        frame.value[key] = value
        frame.lines.steps[key] = line
        if lines is not None:
            frame.lines.inner[key] = lines

    def _merge(self, frame: _Frame) -> None:
        """The keys of the merged mappings that the mapping does not set itself, the first
        merged mapping first."""
        assert isinstance(frame.value, dict)
        for source, lines, line in frame.merges:
            for key, value in source.items():
                if key not in frame.value:
                    frame.value[key] = value
                    frame.lines.steps[key] = line
                    if lines is not None and key in lines.inner:
                        frame.lines.inner[key] = lines.inner[key]

    def _fail(self, message: str, line: int) -> InputError:
        """An error about the value being read, named by the innermost key it sits under."""
        key = next((frame.key for frame in reversed(self.stack)
                    if isinstance(frame.value, dict) and frame.key is not None), None)
        return InputError(message, file=self.file,
                          line=self._value_line(line), field=None if key is None else str(key))

    def _value_line(self, line: int) -> int:
        """The line an error about a value names: its key's, or its own in a list."""
        if self.stack and isinstance(self.stack[-1].value, dict) \
                and self.stack[-1].key is not None:
            return self.stack[-1].key_line
        return line


# --------------------------------------------------------------------------------------------
# Validation with pydantic, errors located in the document
# --------------------------------------------------------------------------------------------


class StrictModel(BaseModel):
    """A model of user input: no coercion, unknown fields reported with a suggestion."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            names = [info.alias or name for name, info in cls.model_fields.items()]
            for key in data:
                if key not in names:
                    raise PydanticCustomError("unknown_field", "unknown field",
                                              {"field": key, "expected": names})
        return data


def fail(message: str) -> NoReturn:
    """Raise a validation error with exactly this message (for use inside validators)."""
    raise PydanticCustomError("input", "{reason}", {"reason": message})


M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Where:
    """Where a validated value sits: in which file, at which path, how to find the line."""

    file: str
    line_of: Callable[[DocPath], int | None]
    prefix: DocPath = ()

    def at(self, *path: str | int) -> Where:
        return dataclasses.replace(self, prefix=self.prefix + path)

    def error(self, message: str, *path: str | int) -> InputError:
        full = self.prefix + path
        return InputError(message, file=self.file, line=self.line_of(full),
                          field=field_name(full) or None)

    def validate(self, model: type[M], data: Any) -> M:
        """`data` validated by `model`, or the first error (by line) as an InputError."""
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise self.first(exc) from None

    def first(self, exc: ValidationError) -> InputError:
        """The first error of `exc` (by line) as an InputError at this place."""
        found: list[tuple[int, InputError]] = []
        for item in exc.errors(include_url=False):
            loc = tuple(item["loc"])
            is_key = bool(loc) and loc[-1] == "[key]"
            path: DocPath = tuple(step for step in loc if step != "[key]")
            ctx = item.get("ctx") or {}
            if item["type"] == "unknown_field":
                path += (ctx["field"],)
            error = self.error(_message(item, is_key), *path)
            found.append((error.line or 0, error))
        return min(found, key=lambda pair: pair[0])[1]


_EXPECTED = {
    "string_type": "a string",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
    "int_type": "a whole number",
    "float_type": "a number",
}


def _message(item: Any, is_key: bool) -> str:
    kind = item["type"]
    ctx = item.get("ctx") or {}
    value = item.get("input")
    if kind == "unknown_field":
        key = ctx["field"]
        names = ctx["expected"]
        close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else "expected one of: " + ", ".join(names)
        return f"unknown field {show(key)} ({hint})"
    if kind == "missing":
        return "required field is missing"
    if kind == "too_short":
        return "must not be empty"
    if kind == "literal_error":
        if is_key:
            return f"{show(value)} is not allowed here (expected {ctx.get('expected')})"
        got = show(value) if isinstance(value, str) else describe(value)
        return f"expected {ctx.get('expected')}, got {got}"
    if kind in _EXPECTED:
        what = "a string as key" if is_key and kind == "string_type" else _EXPECTED[kind]
        hint = " (put it in quotes)" if kind == "string_type" and isinstance(
            value, int | float) and not is_key else ""
        return f"expected {what}, got {describe(value)}{hint}"
    return str(item["msg"])


def port_tuple(value: Any) -> tuple[int, ...]:
    try:
        return parse_port_spec(value)
    except ValueError as exc:
        fail(str(exc))


PortSpec = Annotated[tuple[int, ...], PlainValidator(port_tuple)]
"""A port specification (see probe.portspec), validated into a sorted tuple."""

ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
"""Ids and names: devices, classes, sites, credentials, profiles, controls, checks."""


def token(what: str) -> Callable[[str], str]:
    """A validator for an id or a name (ID), reported as an invalid `what`."""

    def check(value: str) -> str:
        if not ID.fullmatch(value):
            fail(f"{show(value)} is not a valid {what} (letters, digits and . _ : -, starting "
                 "with a letter or digit)")
        return value

    return check



def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` merged onto a copy of `base`: mappings key by key, anything else replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        below = out.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            out[key] = deep_merge(below, value)
        else:
            out[key] = copy.deepcopy(value)
    return out
