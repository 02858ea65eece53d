"""Targets as nmap users have them: a plain list (`-iL FILE`, `-iL -`) and nmap's XML (`-oX`).

A plain list holds IP literals, CIDR blocks and ranges, one or more a line separated by blanks;
`#` starts a comment, blank lines are skipped. A range is `FIRST-LAST` (two addresses) or, for
IPv4, `A.B.C.D-E` (the last byte). Host names are refused: a list names addresses only, so
nothing is looked up.

nmap XML is parsed by defusedxml: a document that declares an entity (internal, as in "billion
laughs", or external) is refused, and so is one larger than MAX_XML_BYTES. Each host nmap saw
up becomes a device named by its address; its open ports become the device's services (hints
the probe starts identification from) where nmap named a service the probe knows.
"""

from __future__ import annotations

import io
import ipaddress
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from probe.errors import InputError
from probe.model import Device
from probe.targets import MAX_BLOCK, is_host_name, parse_block
from probe.yamldoc import show

MAX_LIST_BYTES = 16 << 20
"""The largest target list read."""
MAX_LISTED = 1 << 18
"""The most addresses a list names one by one or in ranges (each becomes a device in memory;
CIDR blocks are expanded lazily and do not count)."""
MAX_XML_BYTES = 64 << 20
"""The largest nmap XML document read."""
STDIN = "-"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _read(source: str, limit: int) -> bytes:
    """At most `limit` bytes of the file `source` (`-`: standard input), or an InputError."""
    try:
        if source == STDIN:
            return _bounded(sys.stdin.buffer, limit, "standard input")
        with Path(source).open("rb") as handle:
            return _bounded(handle, limit, source)
    except FileNotFoundError:
        raise InputError("file not found", file=source) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a file", file=source) from None
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror or exc}", file=source) from None


def _bounded(handle: BinaryIO, limit: int, name: str) -> bytes:
    data = handle.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"larger than {limit >> 20} MiB: split it", file=name)
    return data


# --------------------------------------------------------------------------------------------
# Plain lists
# --------------------------------------------------------------------------------------------


def list_name(source: str) -> str:
    """How messages name the list `source`."""
    return "<stdin>" if source == STDIN else source


def read_target_list(source: str) -> list[str]:
    """The targets of the list in the file `source`, or on standard input for `-`: addresses
    and blocks as written, ranges expanded (probe.inventory.inventory_from_list)."""
    name = list_name(source)
    raw = _read(source, MAX_LIST_BYTES)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError("is not UTF-8 text", file=name,
                         line=raw[: exc.start].count(b"\n") + 1) from None
    targets: list[str] = []
    listed = 0
    for number, line in enumerate(text.splitlines(), start=1):
        for word in line.partition("#")[0].split():
            try:
                expanded = _expand(word)
            except ValueError as exc:
                raise InputError(str(exc), file=name, line=number) from None
            listed += len(expanded) if "/" not in word else 0
            if listed > MAX_LISTED:
                raise InputError(f"more than {MAX_LISTED} addresses listed one by one or in "
                                 "ranges: write large spans as CIDR blocks, or split the list",
                                 file=name, line=number)
            targets.extend(expanded)
    if not targets:
        raise InputError("no targets: write one IP address, range or CIDR block a line",
                         file=name)
    return targets


def _expand(word: str) -> list[str]:
    """The targets of one word of a list: itself for an address or a block, the addresses
    of a range. ValueError (the message for the user) for anything else."""
    if "/" in word:
        return [str(parse_block(word))]
    if "-" in word:
        return [str(address) for address in _range(word)]
    try:
        return [str(ipaddress.ip_address(word))]
    except ValueError:
        pass
    if is_host_name(word):
        raise ValueError(f"{show(word)} is a host name: a target list takes IP addresses, "
                         "ranges and CIDR blocks only (nothing is looked up)")
    raise ValueError(f"{show(word)} is not an IP address, range (A-B) or CIDR block")


def _range(word: str) -> Iterator[Address]:
    """The addresses of `FIRST-LAST` or `A.B.C.D-E`, at most MAX_BLOCK of them."""
    head, _, tail = word.partition("-")
    try:
        first = ipaddress.ip_address(head)
        last = ipaddress.ip_address(tail) if not tail.isdigit() else \
            _last_byte(first, int(tail))
    except ValueError:
        raise ValueError(f"{show(word)} is not a range: write FIRST-LAST (two addresses) or "
                         "A.B.C.D-E") from None
    if first.version != last.version or int(last) < int(first):
        raise ValueError(f"{show(word)}: the range must go up from its first address to its "
                         "last, of the same family")
    count = int(last) - int(first) + 1
    if count > MAX_BLOCK:
        raise ValueError(f"{show(word)} holds {count} addresses; at most {MAX_BLOCK} per "
                         "range: split it")
    make = ipaddress.IPv4Address if first.version == 4 else ipaddress.IPv6Address
    return (make(number) for number in range(int(first), int(last) + 1))


def _last_byte(first: Address, byte: int) -> Address:
    if first.version != 4 or byte > 255:
        raise ValueError("not a last byte")
    return ipaddress.IPv4Address(int(first) & ~0xFF | byte)


# --------------------------------------------------------------------------------------------
# nmap XML
# --------------------------------------------------------------------------------------------

_SERVICES = {
    ("mqtt", False): "mqtt", ("mqtt", True): "mqtts", ("secure-mqtt", False): "mqtts",
    ("ibm-mqisdp", False): "mqtt",
    ("http", False): "http", ("http", True): "https", ("https", False): "https",
    ("http-alt", False): "http", ("http-proxy", False): "http",
    ("https-alt", False): "https",
    ("coap", False): "coap", ("coaps", False): "coaps",
    ("telnet", False): "telnet", ("ftp", False): "ftp", ("ssh", False): "ssh",
    ("snmp", False): "snmp",
}
"""nmap's service name (and whether nmap saw it inside TLS) -> the inventory's service name."""


def read_nmap_xml(file: str) -> list[Device]:
    """The hosts nmap saw up in the XML document `file` (`nmap -oX`), as devices.

    The document is parsed as a stream, each `<host>` dropped once read, so memory follows
    the largest host rather than the whole document."""
    raw = _read(file, MAX_XML_BYTES)
    devices: dict[str, Device] = {}
    try:
        events = iterparse(io.BytesIO(raw), events=("start", "end"))
        _, root = next(events)
        if root.tag != "nmaprun":
            raise InputError(f"not nmap XML output (-oX): the root element is "
                             f"{show(root.tag)}, not nmaprun", file=file)
        hosts = 0
        for event, element in events:
            if event != "end" or element.tag != "host":
                continue
            hosts += 1
            device = _host_device(element, f"{file}: host {hosts}")
            if device is not None and device.id not in devices:
                devices[device.id] = device
            root.clear()
    except DefusedXmlException as exc:
        raise InputError(f"refused: the document declares an XML entity, which nmap never "
                         f"writes ({type(exc).__name__})", file=file) from None
    except ParseError as exc:
        line = exc.position[0] if exc.position else None
        raise InputError(f"not well-formed XML: {exc}", file=file, line=line) from None
    if not devices:
        raise InputError("no host that nmap saw up", file=file)
    return list(devices.values())


def _host_device(host: Element, where: str) -> Device | None:
    """The device of one `<host>`, None when nmap did not see it up or gave no IP address."""
    status = host.find("status")
    if status is None or status.get("state") != "up":
        return None
    address = next((item.get("addr") for item in host.iter("address")
                    if item.get("addrtype") in ("ipv4", "ipv6")), None)
    if address is None:
        return None
    try:
        ip = str(ipaddress.ip_address(address))
    except ValueError:
        raise InputError(f"{show(address)} is not an IP address", file=where) from None
    services: dict[str, list[int]] = {}
    for port in host.iter("port"):
        state = port.find("state")
        if state is None or state.get("state") != "open":
            continue
        service = port.find("service")
        if service is None:
            continue
        key = (service.get("name", ""), service.get("tunnel") == "ssl")
        name = _SERVICES.get(key)
        if name is not None and _transport_fits(name, port.get("protocol", "")):
            services.setdefault(name, []).append(_port_number(port.get("portid", ""), where))
    return Device(id=ip, address=ip, services={name: tuple(sorted(set(ports)))
                                               for name, ports in services.items()},
                  source=where)


def _transport_fits(service: str, protocol: str) -> bool:
    """CoAP and SNMP are UDP services, the others TCP."""
    return protocol == ("udp" if service in ("coap", "coaps", "snmp") else "tcp")


def _port_number(text: str, where: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise InputError(f"{show(text)} is not a port number", file=where)
    return int(text)
