"""TCP port discovery by full connect, and the bounded evidence every discovery module keeps."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
from dataclasses import dataclass
from typing import Literal

from probe.context import DeviceContext

# TCP port 2024 on every loopback address belongs to the machines iotprobe is developed and
# tested on (and to its lab): a scan of a loopback address never touches it, whatever the port
# set, the profile or the inventory says.
RESERVED_LOOPBACK_PORTS = frozenset({2024})

# Inventory service names that are UDP; every other name in `device.services` is TCP.
UDP_SERVICE_NAMES = frozenset({"coap", "coaps", "dtls", "snmp", "ssdp", "mdns", "tftp", "bacnet"})

RESET_AFTER_HANDSHAKE = frozenset({errno.ECONNRESET, errno.ENOTCONN, errno.ECONNABORTED,
                                   errno.EPIPE})
"""What a connect meets when the port completed the handshake and reset the connection before
the probe had set it up: the port is open (a closed one refuses, a filtered one is silent)."""

EXCERPT_CHARS = 200
HEAD_BYTES = 32


@dataclass(frozen=True)
class PortScan:
    method: Literal["connect", "syn"]
    scanned: int
    open: tuple[int, ...]
    filtered: tuple[int, ...]  # no answer within the timeout


def excerpt(data: bytes, limit: int = EXCERPT_CHARS) -> str:
    """The first bytes of a reply as text (one character a byte), bounded. Control bytes stay
    as they are here: the record escapes them, once, like every device string
    (probe.escaping)."""
    return data[:limit].decode("latin-1")


def head_hex(data: bytes) -> str:
    return data[:HEAD_BYTES].hex()


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def service_ports(ctx: DeviceContext, udp: bool) -> dict[int, str]:
    """Ports the inventory names for the device, by transport, with the name it gave."""
    named: dict[int, str] = {}
    for name, ports in ctx.device.services.items():
        if (name.lower() in UDP_SERVICE_NAMES) == udp:
            named.update({port: name.lower() for port in ports})
    return named


def excluded_ports(ctx: DeviceContext) -> frozenset[int]:
    return frozenset(ctx.options.exclude_ports) | frozenset(ctx.device.exclude_ports)


def port_set(ctx: DeviceContext) -> tuple[int, ...]:
    """The TCP ports to scan, sorted.

    The command line's set if given, else the device's own `ports` (inventory override), else the
    profile's set; plus the TCP ports the inventory names in `services`; minus every exclusion.
    """
    if ctx.options.tcp_ports is not None:
        base: tuple[int, ...] = ctx.options.tcp_ports
    elif ctx.device.ports is not None:
        base = ctx.device.ports
    else:
        base = ctx.scan_tcp_ports
    skip = excluded_ports(ctx)
    if is_loopback(ctx.address):
        skip |= RESERVED_LOOPBACK_PORTS
    wanted = set(base) | set(service_ports(ctx, udp=False))
    return tuple(sorted(p for p in wanted if 0 < p < 65536 and p not in skip))


async def _state(ctx: DeviceContext, port: int) -> Literal["open", "closed", "filtered"]:
    try:
        await ctx.knock(port)
        return "open"
    except ConnectionRefusedError:
        return "closed"
    except OSError as exc:  # TimeoutError included
        return "open" if exc.errno in RESET_AFTER_HANDSHAKE else "filtered"


async def connect_scan(ctx: DeviceContext, ports: tuple[int, ...]) -> PortScan:
    """Connect to every port at once; the device's connection slots bound the concurrency."""
    states = await asyncio.gather(*(_state(ctx, port) for port in ports))
    return PortScan(
        method="connect",
        scanned=len(ports),
        open=tuple(p for p, s in zip(ports, states, strict=True) if s == "open"),
        filtered=tuple(p for p, s in zip(ports, states, strict=True) if s == "filtered"),
    )
