"""The inventory: the devices to probe, from a YAML or CSV file or from command-line targets.

Every problem in an inventory is an InputError that names the file, the line and the field.
Secrets are read from environment variables (`X_env`) and files (`X_file`) into Secret values;
a secret written into the inventory itself is refused. CIDR blocks are kept as blocks and expanded
lazily by `Inventory.devices()`.

The first part of this module reads YAML documents with their line numbers and turns pydantic
validation errors into located InputErrors; `probe.profile_loader` uses it too.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import io
import ipaddress
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
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
from probe.model import Device
from probe.portspec import parse_port_spec
from probe.secrets import Secret

# --------------------------------------------------------------------------------------------
# YAML documents with line numbers, shared with probe.profile_loader
# --------------------------------------------------------------------------------------------

DocPath = tuple[str | int, ...]
"""Where a value sits in a document: mapping keys and list indexes from the top."""

MAX_VALUES = 1_000_000
"""The most values a document may hold once its aliases are expanded (a billion-laughs guard)."""

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
        return "true/false"
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
                         line=mark.line + 1 if mark is not None else None) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "cannot parse"
        raise InputError(f"YAML syntax error: {problem}", file=file,
                         line=mark.line + 1 if mark is not None else None) from None
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
            out[str(key) if isinstance(key, str) else int(key)] = self.convert(value, key_line)
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
            raise self._first(exc) from None

    def _first(self, exc: ValidationError) -> InputError:
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


def _ports(value: Any) -> tuple[int, ...]:
    try:
        return parse_port_spec(value)
    except ValueError as exc:
        fail(str(exc))


PortSpec = Annotated[tuple[int, ...], PlainValidator(_ports)]
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


# --------------------------------------------------------------------------------------------
# Targets: IP literals, host names, CIDR blocks
# --------------------------------------------------------------------------------------------

MAX_BLOCK = 65536
"""The largest CIDR block accepted (an IPv4 /16, an IPv6 /112)."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Target = ipaddress.IPv4Address | ipaddress.IPv6Address | Network | str

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _is_host_name(text: str) -> bool:
    """A fully qualified host name: two labels at least, the last not all digits."""
    name = text[:-1] if text.endswith(".") else text
    if len(name) > 253:
        return False
    labels = name.split(".")
    return len(labels) > 1 and all(_LABEL.fullmatch(label) for label in labels) \
        and not labels[-1].isdigit()


def parse_target(text: str) -> Target:
    """An IP address, a CIDR block (at most MAX_BLOCK addresses) or a host name (kept as text).

    Raises ValueError with a message for the user.
    """
    text = text.strip()
    if "/" in text:
        return parse_block(text)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _is_host_name(text):
        return text
    raise ValueError(f"{show(text)} is not an IP address, host name or CIDR block")


def parse_block(text: str) -> Network:
    """A CIDR block of at most MAX_BLOCK addresses; ValueError otherwise."""
    text = text.strip()
    try:
        block = ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{show(text)} is not a CIDR block") from None
        raise ValueError(f"{show(text)} has host bits set (the block is {loose})") from None
    if block.num_addresses > MAX_BLOCK:
        raise ValueError(f"{show(text)} holds {block.num_addresses} addresses; at most "
                         f"{MAX_BLOCK} per block (an IPv4 /16, an IPv6 /112): split it")
    return block


def _block_addresses(block: Network) -> Iterator[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The probed addresses of a block: IPv4 below /31 without network and broadcast."""
    first = int(block.network_address)
    last = int(block.broadcast_address)
    if block.version == 4 and block.prefixlen < 31:
        first, last = first + 1, last - 1
    make = ipaddress.IPv4Address if block.version == 4 else ipaddress.IPv6Address
    return (make(number) for number in range(first, last + 1))


def _block_size(block: Network) -> int:
    if block.version == 4 and block.prefixlen < 31:
        return block.num_addresses - 2
    return block.num_addresses


def _block_holds(block: Network, address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version != block.version or ip not in block or str(ip) != address:
        return False
    if block.version == 4 and block.prefixlen < 31:
        return ip not in (block.network_address, block.broadcast_address)
    return True


# --------------------------------------------------------------------------------------------
# The inventory
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    """A CIDR block: one device per address, all alike but for id and address."""

    network: Network
    template: Device


class Inventory:
    """The devices of a scan. CIDR blocks are expanded only while iterating `devices()`."""

    def __init__(self, items: Sequence[Device | _Block]) -> None:
        self._items = tuple(items)

    def devices(self) -> Iterator[Device]:
        for item in self._items:
            if isinstance(item, Device):
                yield item
                continue
            for ip in _block_addresses(item.network):
                yield dataclasses.replace(item.template, id=str(ip), address=str(ip))

    def count(self) -> int:
        return sum(1 if isinstance(item, Device) else _block_size(item.network)
                   for item in self._items)


def inventory_from_targets(targets: Iterable[str], *,
                           exclude_ports: Iterable[int] = ()) -> Inventory:
    """The inventory of command-line TARGETs: IP literals, host names and CIDR blocks.

    Repeated targets count once; overlapping blocks, or an address inside a block also given,
    are refused.
    """
    excluded = tuple(sorted(set(exclude_ports)))
    items: list[Device | _Block] = []
    seen: set[str] = set()
    for text in targets:
        try:
            target = parse_target(text)
        except ValueError as exc:
            raise InputError(str(exc), field="TARGET") from None
        key = str(target)
        if key in seen:
            continue
        seen.add(key)
        if isinstance(target, ipaddress.IPv4Network | ipaddress.IPv6Network):
            _refuse_overlap(target, items, lambda message: InputError(message, field="TARGET"))
            items.append(_Block(target, Device(id=key, address=key, exclude_ports=excluded)))
        else:
            for item in items:
                if isinstance(item, _Block) and _block_holds(item.network, key):
                    raise InputError(f"{key} is already in the block {item.network}",
                                     field="TARGET")
            hostname = target if isinstance(target, str) else None
            items.append(Device(id=key, address=key, hostname=hostname, exclude_ports=excluded))
    return Inventory(items)


def _refuse_overlap(block: Network, items: Sequence[Device | _Block],
                    error: Callable[[str], InputError]) -> None:
    for item in items:
        if isinstance(item, _Block):
            other = item.network
            if other.version == block.version and other.overlaps(block):
                raise error(f"the block {block} overlaps the block {other} "
                            f"({item.template.source})")
        elif _block_holds(block, item.id):
            raise error(f"the block {block} contains {item.id}, the id of the device at "
                        f"{item.source}")


ServiceName = Literal["mqtt", "mqtts", "coap", "coaps", "http", "https", "telnet", "ftp", "ssh",
                      "snmp"]
Name = Annotated[str, AfterValidator(token("name"))]


def _nonempty_ports(value: Any) -> tuple[int, ...]:
    ports = _ports(value)
    if not ports:
        fail("list at least one port")
    return ports


def _text(value: str) -> str:
    if not value.strip():
        fail("must not be empty")
    return value


def _address(value: str) -> str:
    try:
        return str(parse_target(value))
    except ValueError as exc:
        fail(str(exc))


def _cidr(value: str) -> str:
    if "/" not in value:
        fail(f"{show(value)} is not a CIDR block (a single device goes under `address:`)")
    try:
        return str(parse_block(value))
    except ValueError as exc:
        fail(str(exc))


def _hostname(value: str) -> str:
    if not _is_host_name(value):
        fail(f"{show(value)} is not a valid host name")
    return value


class _Shared(StrictModel):
    """The fields an entry may take from `defaults`."""

    device_class: Annotated[str, AfterValidator(token("device class"))] | None = Field(
        None, alias="class")
    site: Annotated[str, AfterValidator(token("site name"))] | None = None
    services: dict[ServiceName, Annotated[tuple[int, ...],
                                          PlainValidator(_nonempty_ports)]] | None = None
    credentials: dict[Name, dict[str, Any]] | None = None
    monitor: dict[Name, dict[str, Any]] | None = None
    trust_anchor: Annotated[str, AfterValidator(_text)] | None = None
    ports: PortSpec | None = None
    exclude_ports: PortSpec | None = None


class _Entry(_Shared):
    id: Annotated[str, AfterValidator(token("device id"))] | None = None
    address: Annotated[str, AfterValidator(_address)] | None = None
    cidr: Annotated[str, AfterValidator(_cidr)] | None = None
    hostname: Annotated[str, AfterValidator(_hostname)] | None = None


class _Document(StrictModel):
    defaults: dict[str, Any] | None = None
    devices: Annotated[list[Any], Field(min_length=1)]


_PER_DEVICE = ("id", "address", "cidr", "hostname")
_CSV_COLUMNS = ("id", "address", "hostname", "class", "site")
_LITERAL_SECRETS = frozenset({"password", "psk", "token", "secret", "passphrase", "key"})
_LITERAL_SECRET_SUFFIXES = ("_password", "_passphrase", "_token", "_secret", "_psk")
_PATH_KEYS = frozenset({"cert_file", "key_file", "ca_file"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_SECRET_BYTES = 1 << 20


def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    """The inventory in `path`: YAML (.yaml, .yml) or CSV (.csv)."""
    file = os.fspath(path)
    location = Path(file)
    suffix = location.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return _Loader(file, location).from_yaml()
    if suffix == ".csv":
        return _Loader(file, location).from_csv()
    raise InputError("unknown inventory format: name the file .yaml, .yml or .csv", file=file)


class _Loader:
    def __init__(self, file: str, path: Path) -> None:
        self.file = file
        self.path = path
        self.base = path.expanduser().absolute().parent
        self.items: list[Device | _Block] = []
        self.ids: dict[str, tuple[int | None, str]] = {}

    def from_yaml(self) -> Inventory:
        doc = load_yaml_mapping(self.path, self.file, "`devices` (and optionally `defaults`)")
        top = Where(self.file, doc.line)
        validated = top.validate(_Document, doc.data)
        defaults: dict[str, Any] = {}
        if validated.defaults is not None:
            where = top.at("defaults")
            for key in _PER_DEVICE:
                if key in validated.defaults:
                    raise where.error(f"{key} is set per device; it cannot be a default", key)
            defaults = self._fields(where.validate(_Shared, validated.defaults), where)
        for index, entry in enumerate(validated.devices):
            where = top.at("devices", index)
            self._add(where.validate(_Entry, entry), where, defaults)
        return Inventory(self.items)

    def from_csv(self) -> Inventory:
        text = read_text(self.path, self.file)
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        header: list[str] = []
        header_line = 1
        while True:
            row_line = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise InputError(f"CSV syntax error: {exc}", file=self.file,
                                 line=reader.line_num) from None
            if not any(cell.strip() for cell in row):
                continue
            if not header:
                header = self._csv_header(row, row_line)
                header_line = row_line
                continue
            if len(row) != len(header):
                raise InputError(f"expected {len(header)} cells as in the header, found "
                                 f"{len(row)}", file=self.file, line=row_line)
            entry = {column: cell.strip() for column, cell in zip(header, row, strict=True)
                     if cell.strip()}
            where = Where(self.file, _fixed_line(row_line))
            self._add(where.validate(_Entry, entry), where, {})
        if not header:
            raise InputError("the file is empty; expected a header line "
                             "`id,address,hostname,class` and one line per device",
                             file=self.file, line=1)
        if not self.items:
            raise InputError("no devices: add one line per device below the header",
                             file=self.file, line=header_line)
        return Inventory(self.items)

    def _csv_header(self, row: list[str], line: int) -> list[str]:
        header = [cell.strip().lower() for cell in row]
        for column in header:
            if column not in _CSV_COLUMNS:
                close = difflib.get_close_matches(column, _CSV_COLUMNS, n=1)
                hint = f"did you mean {close[0]!r}?" if close else \
                    "expected: " + ", ".join(_CSV_COLUMNS)
                raise InputError(f"unknown column {show(column)} ({hint})", file=self.file,
                                 line=line, field=column or None)
            if header.count(column) > 1:
                raise InputError("the column appears twice", file=self.file, line=line,
                                 field=column)
        if "address" not in header:
            raise InputError("the header needs an `address` column", file=self.file, line=line,
                             field="address")
        return header

    def _add(self, entry: _Entry, where: Where, defaults: dict[str, Any]) -> None:
        if entry.address is None and entry.cidr is None:
            raise where.error("give the device's `address` (or a `cidr` block)")
        if entry.address is not None and entry.cidr is not None:
            raise where.error("give either `address` or `cidr`, not both", "cidr")
        fields = _merge(defaults, self._fields(entry, where))
        line = where.line_of(where.prefix)
        source = f"{self.file}:{line}"
        key = "cidr" if entry.cidr is not None else "address"
        target = parse_target(entry.cidr or entry.address or "")
        if isinstance(target, ipaddress.IPv4Network | ipaddress.IPv6Network):
            for per_device in ("id", "hostname"):
                if getattr(entry, per_device) is not None:
                    raise where.error(f"a block expands to one device per address, so it "
                                      f"cannot have one {per_device}", per_device)
            _refuse_overlap(target, self.items, lambda message: where.error(message, key))
            template = Device(id=str(target), address=str(target), source=source, **fields)
            self.items.append(_Block(target, template))
            return
        address = str(target)
        device_id = entry.id or address
        first = self.ids.get(device_id)
        if first is not None:
            raise where.error(f"duplicate device id {show(device_id)} (first at {first[1]})",
                              "id" if entry.id else key)
        for item in self.items:
            if isinstance(item, _Block) and _block_holds(item.network, device_id):
                raise where.error(f"device id {show(device_id)} is also the id of a device of "
                                  f"the block {item.network} ({item.template.source})",
                                  "id" if entry.id else key)
        self.ids[device_id] = (line, source)
        if isinstance(target, str) and entry.hostname is None:
            fields["hostname"] = target
        if entry.hostname is not None:
            fields["hostname"] = entry.hostname
        self.items.append(Device(id=device_id, address=address, source=source, **fields))

    def _fields(self, model: _Shared, where: Where) -> dict[str, Any]:
        """The Device fields of an entry (or of `defaults`), with secrets and paths resolved."""
        fields: dict[str, Any] = {}
        if model.device_class is not None:
            fields["device_class"] = model.device_class
        if model.site is not None:
            fields["site"] = model.site
        if model.services is not None:
            fields["services"] = dict(model.services)
        for section in ("credentials", "monitor"):
            table: dict[str, dict[str, Any]] | None = getattr(model, section)
            if table is not None:
                fields[section] = {name: self._secrets(values, where.at(section, name))
                                   for name, values in table.items()}
        if model.trust_anchor is not None:
            fields["trust_anchor"] = self._existing(model.trust_anchor, where, "trust_anchor")
        if model.ports is not None:
            fields["ports"] = model.ports
        if model.exclude_ports is not None:
            fields["exclude_ports"] = model.exclude_ports
        return fields

    def _secrets(self, values: dict[str, Any], where: Where) -> dict[str, Any]:
        """A credentials or monitor entry with `X_env` and `X_file` turned into Secrets."""
        out: dict[str, Any] = {}
        written: dict[str, str] = {}
        resolved: Any
        for key, value in values.items():
            if key in _PATH_KEYS:
                name, resolved = key, self._existing(value, where, key)
            elif key.endswith("_env") and len(key) > len("_env"):
                name, resolved = key[: -len("_env")], self._from_env(value, where, key)
            elif key.endswith("_file") and len(key) > len("_file"):
                name, resolved = key[: -len("_file")], self._from_file(value, where, key)
            elif isinstance(value, dict):
                name, resolved = key, self._secrets(value, where.at(key))
            elif key in _LITERAL_SECRETS or key.endswith(_LITERAL_SECRET_SUFFIXES):
                raise where.error(f"secrets are not written into the inventory: use {key}_env "
                                  f"(an environment variable) or {key}_file (a file)", key)
            elif isinstance(value, list):
                name, resolved = key, [
                    self._secrets(item, where.at(key, index)) if isinstance(item, dict) else item
                    for index, item in enumerate(value)]
            else:
                name, resolved = key, value
            if name in written:
                raise where.error(f"{key} and {written[name]} both set {name}: keep one", key)
            written[name] = key
            out[name] = resolved
        return out

    def _from_env(self, value: Any, where: Where, key: str) -> Secret:
        if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
            raise where.error(f"expected the name of an environment variable, got "
                              f"{describe(value)}", key)
        if value not in os.environ:
            raise where.error(f"the environment variable {value} is not set", key)
        return Secret(os.environ[value], origin=f"env:{value}")

    def _from_file(self, value: Any, where: Where, key: str) -> Secret:
        path = self._path(value, where, key)
        try:
            if not path.is_file():
                problem = "does not exist" if not path.exists() else "is not a regular file"
                raise where.error(f"the secret file {path} {problem}", key)
            with path.open("rb") as handle:
                raw = handle.read(MAX_SECRET_BYTES + 1)
        except OSError as exc:
            raise where.error(f"cannot read the secret file {path}: {exc.strerror or 'error'}",
                              key) from None
        if len(raw) > MAX_SECRET_BYTES:
            raise where.error(f"the secret file {path} is larger than {MAX_SECRET_BYTES} "
                              "bytes", key)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise where.error(f"the secret file {path} is not UTF-8 text", key) from None
        if text.endswith("\r\n"):
            text = text[:-2]
        elif text.endswith("\n"):
            text = text[:-1]
        return Secret(text, origin=f"file:{path}")

    def _existing(self, value: Any, where: Where, key: str) -> str:
        path = self._path(value, where, key)
        if not path.exists():
            raise where.error(f"{path} does not exist", key)
        return str(path)

    def _path(self, value: Any, where: Where, key: str) -> Path:
        if not isinstance(value, str) or not value.strip() or "\0" in value:
            raise where.error(f"expected a file path, got {describe(value)}", key)
        return Path(os.path.normpath(self.base / Path(value).expanduser()))


def _fixed_line(line: int) -> Callable[[DocPath], int]:
    """The line finder of a CSV row: every field of the row is on the row's line."""
    return lambda _path: line


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` deeply merged onto `base`: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        below = out.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            out[key] = _merge(below, value)
        else:
            out[key] = value
    return out
