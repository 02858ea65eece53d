"""YAML documents that keep their line numbers, and pydantic validation located in them.

Inventories and profiles are read through here so that every error names the file, the line and
the field, and never quotes a value (it may be a secret).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    PlainValidator,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import ConstructorError, DuplicateKeyError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

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


@dataclass(frozen=True)
class YamlDocument:
    """A YAML file whose top level is a mapping: its plain data and the line of every value."""

    file: str
    path: Path
    root: CommentedMap
    data: dict[str, Any]

    def line(self, path: DocPath) -> int:
        """The line of the value at `path`, or of its closest existing ancestor."""
        node: Any = self.root
        line = _start_line(self.root)
        for step in path:
            in_mapping = isinstance(node, CommentedMap) and step in node
            in_list = isinstance(node, CommentedSeq) and isinstance(step, int) \
                and 0 <= step < len(node)
            if not (in_mapping or in_list):
                break
            line = _line_at(node, step) or line
            node = node[step]
        return line

    def error(self, message: str, path: DocPath = ()) -> InputError:
        return InputError(message, file=self.file, line=self.line(path),
                          field=field_name(path) or None)


def load_yaml_mapping(path: Path, file: str, expected: str) -> YamlDocument:
    """Parse `path` as one YAML document whose top level is a mapping.

    `file` is how messages name the file; `expected` says what the top level should hold.
    """
    text = read_text(path, file)
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            root = yaml.load(text)
    except DuplicateKeyError as exc:
        # ruamel's message quotes both values, which may be secrets: name only the key.
        key = _DUPLICATE_KEY.match(exc.problem or "")
        mark = exc.problem_mark
        raise InputError(f"YAML syntax error: duplicate key {show(key.group(1)) if key else ''}"
                         .rstrip(), file=file,
                         line=mark.line + 1 if mark is not None else None,
                         field=key.group(1) if key else None) from None
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
    if root is None:
        raise InputError(f"the file is empty; expected a mapping with {expected}",
                         file=file, line=1)
    if not isinstance(root, CommentedMap):
        raise InputError(f"the top level must be a mapping with {expected}, not "
                         f"{describe(_Plain(file).convert(root, 1))}", file=file, line=1)
    data = _Plain(file).convert(root, _start_line(root))
    return YamlDocument(file=file, path=path, root=root, data=data)


_DUPLICATE_KEY = re.compile(r'found duplicate key "(.*?)" with value')
_KEY = re.compile(r"""([A-Za-z_][\w.-]*)["']?\s*:(?=\s|$)""")


def _key_before(text: str, line: int, column: int) -> str | None:
    """The last mapping key written on `line` (0-based) of `text` before `column`: the field
    a YAML error at that mark is about (none when the line names no key before it)."""
    lines = text.splitlines()
    if not 0 <= line < len(lines):
        return None
    keys = [m.group(1) for m in _KEY.finditer(lines[line]) if m.start() < max(column, 1)]
    return keys[-1] if keys else None


class _Constructor(RoundTripConstructor):
    """ruamel's round-trip constructor; a value it cannot build (`2027-02-30`) is located.

    The message names the kind of value only: the value itself may be a secret.
    """

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (YAMLError, RecursionError):
            raise
        except Exception:
            kind = str(getattr(node, "tag", "")).rpartition(":")[2] or "YAML"
            raise ConstructorError(problem=f"not a valid {kind} value; quote it to keep it as "
                                   "text", problem_mark=node.start_mark) from None


class _Plain:
    """Converts ruamel's round-trip nodes into plain dicts, lists, strings, numbers, booleans."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.count = 0
        self.open: set[int] = set()

    def convert(self, node: Any, line: int) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise InputError(f"the document is too large (more than {MAX_VALUES} values once "
                             "its aliases are expanded)", file=self.file, line=line)
        if isinstance(node, dict | list):
            if id(node) in self.open:
                raise InputError("a YAML alias refers to a value that contains it",
                                 file=self.file, line=line)
            self.open.add(id(node))
            try:
                if isinstance(node, dict):
                    return self._mapping(node, line)
                return [self.convert(item, _line_at(node, index) or line)
                        for index, item in enumerate(node)]
            finally:
                self.open.discard(id(node))
        if node is None or isinstance(node, bool):
            return node
        if isinstance(node, str):
            return str(node)
        if isinstance(node, int):
            if not -MAX_INTEGER - 1 <= node <= MAX_INTEGER:
                raise InputError(f"integers outside {-MAX_INTEGER - 1}..{MAX_INTEGER} (64 bits) "
                                 "are not supported",
                                 file=self.file, line=line)
            return int(node)
        if isinstance(node, float):
            if not math.isfinite(node):
                raise InputError("infinite and not-a-number values are not supported",
                                 file=self.file, line=line)
            return float(node)
        if isinstance(node, datetime):
            return datetime.isoformat(node)
        if isinstance(node, date):
            return date.isoformat(node)
        raise InputError(f"unsupported YAML value ({type(node).__name__}); use strings, numbers, "
                         "true/false, lists and mappings", file=self.file, line=line)

    def _mapping(self, node: dict[Any, Any], line: int) -> dict[str | int, Any]:
        out: dict[str | int, Any] = {}
        for key, value in node.items():
            key_line = _line_at(node, key) or line
            if isinstance(key, bool) or not isinstance(key, str | int):
                raise InputError(f"a mapping key must be a name, not {describe(key)}",
                                 file=self.file, line=key_line)
            try:
                out[str(key) if isinstance(key, str) else int(key)] = self.convert(value,
                                                                                   key_line)
            except InputError as exc:
                if exc.field is None:
                    exc.field = str(key)  # the innermost key names the field
                raise
        return out


def _start_line(node: CommentedMap | CommentedSeq) -> int:
    line = node.lc.line
    return line + 1 if isinstance(line, int) else 1


def _line_at(node: Any, step: Any) -> int | None:
    """The line of a key or an item of a ruamel mapping or list, if ruamel recorded it."""
    data = getattr(getattr(node, "lc", None), "data", None)
    if not isinstance(data, dict):
        return None
    try:
        position = data.get(step)
    except TypeError:
        return None
    if isinstance(position, list | tuple) and position and isinstance(position[0], int):
        return position[0] + 1
    return None


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
