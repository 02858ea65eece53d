"""The inventory: the devices to probe, from a YAML or CSV file or from command-line targets.

Every problem in an inventory is an InputError that names the file, the line and the field.
Secrets are read from environment variables (`X_env`) and files (`X_file`) into Secret values;
a secret written into the inventory itself is refused. CIDR blocks are kept as blocks and expanded
lazily by `Inventory.devices()`.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import io
import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    PlainValidator,
)

from probe.errors import InputError
from probe.ids import id_problem
from probe.model import Device
from probe.monitoring.syslog import forwarder_networks
from probe.secrets import Secret
from probe.target_lists import list_name, read_nmap_xml, read_target_list
from probe.targets import (
    Network,
    block_addresses,
    block_holds,
    block_size,
    is_host_name,
    parse_block,
    parse_target,
)
from probe.yamldoc import (
    DocPath,
    PortSpec,
    StrictModel,
    Where,
    deep_merge,
    describe,
    fail,
    load_yaml_mapping,
    port_tuple,
    read_text,
    show,
    token,
)

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
            for ip in block_addresses(item.network):
                yield dataclasses.replace(item.template, id=str(ip), address=str(ip))

    def count(self) -> int:
        return sum(1 if isinstance(item, Device) else block_size(item.network)
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
        problem = id_problem(key) if not isinstance(target, ipaddress.IPv4Network
                                                    | ipaddress.IPv6Network) else None
        if problem is not None:
            raise InputError(f"{show(key)}: {problem}; name the device in an inventory "
                             "with a shorter `id`", field="TARGET")
        seen.add(key)
        if isinstance(target, ipaddress.IPv4Network | ipaddress.IPv6Network):
            items.append(_Block(target, Device(id=key, address=key, exclude_ports=excluded)))
        else:
            hostname = target if isinstance(target, str) else None
            items.append(Device(id=key, address=key, hostname=hostname, exclude_ports=excluded))
    _refuse_conflicts(items)
    return Inventory(items)


def _refuse_conflicts(items: Sequence[Device | _Block]) -> None:
    """Refuse overlapping blocks, and an address inside a block, among targets.

    Sorted by first address, each target is compared with the block reaching furthest before
    it: n log n for n targets, so that a long target list (probe.target_lists) costs no more
    than sorting it. Of two targets in conflict, the message names the one given second."""
    spans: list[tuple[int, int, int, Device | _Block]] = []
    for order, item in enumerate(items):
        if isinstance(item, _Block):
            spans.append((item.network.version, int(item.network.network_address), order, item))
        elif item.hostname is None:
            ip = ipaddress.ip_address(item.address)
            spans.append((ip.version, int(ip), order, item))
    # at one first address a block sorts before an address, so that it holds the address
    spans.sort(key=lambda span: (span[0], span[1], isinstance(span[3], Device), span[2]))
    reach: tuple[int, int, int, _Block] | None = None  # version, last address, order, block
    for version, first, order, item in spans:
        if reach is not None and reach[0] == version and first <= reach[1]:
            _conflict(reach[3], reach[2], item, order)
        if isinstance(item, _Block):
            last = int(item.network.broadcast_address)
            if reach is None or reach[0] != version or last > reach[1]:
                reach = (version, last, order, item)


def _conflict(block: _Block, block_order: int, item: Device | _Block, order: int) -> None:
    """Raise the InputError for `item` starting inside `block`, if they conflict (an address
    the block does not probe, its IPv4 network or broadcast address, does not)."""
    if isinstance(item, _Block):
        first, second = (block, item) if block_order < order else (item, block)
        raise InputError(f"the block {second.network} overlaps the block {first.network} "
                         f"({first.template.source})", field="TARGET")
    if not block_holds(block.network, item.id):
        return
    if block_order < order:
        raise InputError(f"{item.id} is already in the block {block.network}", field="TARGET")
    raise InputError(f"the block {block.network} contains {item.id}, the id of the device at "
                     f"{item.source}", field="TARGET")


def inventory_from_list(source: str) -> Inventory:
    """The inventory of a target list (`-iL`: probe.target_lists), `-` for standard input;
    composed as command-line targets are, its errors naming the list."""
    targets = read_target_list(source)
    try:
        return inventory_from_targets(targets)
    except InputError as exc:
        raise InputError(exc.message, file=list_name(source)) from None


def _refuse_overlap(block: Network, items: Sequence[Device | _Block],
                    error: Callable[[str], InputError]) -> None:
    for item in items:
        if isinstance(item, _Block):
            other = item.network
            if other.version == block.version and other.overlaps(block):
                raise error(f"the block {block} overlaps the block {other} "
                            f"({item.template.source})")
        elif block_holds(block, item.id):
            raise error(f"the block {block} contains {item.id}, the id of the device at "
                        f"{item.source}")


ServiceName = Literal["mqtt", "mqtts", "coap", "coaps", "http", "https", "telnet", "ftp", "ssh",
                      "snmp", "rtsp", "rtsps", "modbus", "bacnet"]
Name = Annotated[str, AfterValidator(token("name"))]


def _nonempty_ports(value: Any) -> tuple[int, ...]:
    ports = port_tuple(value)
    if not ports:
        fail("list at least one port")
    return ports


def _device_id(value: str) -> str:
    token("device id")(value)
    problem = id_problem(value)
    if problem is not None:
        fail(problem)
    return value


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
    if not is_host_name(value):
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
    id: Annotated[str, AfterValidator(_device_id)] | None = None
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
    """The inventory in `path`: YAML (.yaml, .yml), CSV (.csv), nmap XML (.xml) or a plain
    target list (.txt, .lst: probe.target_lists)."""
    file = os.fspath(path)
    location = Path(file)
    suffix = location.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return _Loader(file, location).from_yaml()
    if suffix == ".csv":
        return _Loader(file, location).from_csv()
    if suffix == ".xml":
        return Inventory(read_nmap_xml(file))
    if suffix in (".txt", ".lst"):
        return inventory_from_list(file)
    raise InputError("unknown inventory format: name the file .yaml, .yml, .csv, .xml (nmap "
                     "-oX) or .txt (one target a line)", file=file)


class _Loader:
    def __init__(self, file: str, path: Path) -> None:
        self.file = file
        self.path = path
        self.base = path.expanduser().absolute().parent
        self.items: list[Device | _Block] = []
        self.ids: dict[str, tuple[int | None, str]] = {}
        self.blocks: list[_Block] = []
        """The blocks among `items`, which each device id is checked against (the devices
        alone would make a large inventory's load quadratic)."""

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
        fields = deep_merge(defaults, self._fields(entry, where))
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
            self.blocks.append(_Block(target, template))
            self.items.append(self.blocks[-1])
            return
        address = str(target)
        device_id = entry.id or address
        problem = id_problem(device_id)
        if problem is not None:
            raise where.error(f"the address is the device's id, and {problem}: give the "
                              "device a shorter `id`", key)
        first = self.ids.get(device_id)
        if first is not None:
            raise where.error(f"duplicate device id {show(device_id)} (first at {first[1]})",
                              "id" if entry.id else key)
        for item in self.blocks:
            if block_holds(item.network, device_id):
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
        if model.monitor is not None and "syslog" in model.monitor:
            _forwarders(model.monitor["syslog"], where.at("monitor", "syslog"))
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


def _forwarders(syslog: dict[str, Any], where: Where) -> None:
    """`monitor.syslog.forwarders` must be a list of IP addresses or CIDR blocks: the relays
    whose syslog counts besides the device's own (`probe.monitoring.collectors`)."""
    try:
        forwarder_networks(syslog.get("forwarders"))
    except ValueError as exc:
        raise where.error(str(exc), "forwarders") from None


def _fixed_line(line: int) -> Callable[[DocPath], int]:
    """The line finder of a CSV row: every field of the row is on the row's line."""
    return lambda _path: line
