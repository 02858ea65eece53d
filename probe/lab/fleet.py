"""A fleet of emulated devices in one asyncio loop: device i runs persona i mod len(personas) on
address base + i, all inside 127.0.0.0/8."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from probe.errors import InputError
from probe.lab import pki
from probe.lab.expectations import as_text
from probe.lab.personas.base import Persona
from probe.lab.servers import (
    DatagramServer,
    StreamServer,
    TcpListener,
    UdpListener,
    ports_of,
)
from probe.lab.servers_fragile import ConnectionTable, Fragile, FragileServer

log = logging.getLogger(__name__)

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
DEFAULT_BASE = "127.42.0.1"


@dataclass(frozen=True)
class DeviceSpec:
    id: str
    address: str
    persona: Persona

    def as_state(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "address": self.address,
            "persona": self.persona.name,
            "class": self.persona.device_class,
            "listeners": ports_of(self.persona.listeners),
            "expect": as_text(self.persona),
            "expect_verdict": self.persona.expect_verdict.value,
        }


def plan_fleet(personas: Sequence[Persona], count: int, base: str = DEFAULT_BASE
               ) -> tuple[DeviceSpec, ...]:
    """Which device runs which persona where; refuses anything outside 127.0.0.0/8."""
    if not personas:
        raise InputError("no personas to run", field="--personas")
    if count < 1:
        raise InputError(f"need at least one device, got {count}", field="--devices")
    try:
        first = ipaddress.IPv4Address(base)
    except ValueError:
        raise InputError(f"{base!r} is not an IPv4 address", field="--base") from None
    last_int = int(first) + count - 1
    lowest, highest = LOOPBACK.network_address + 1, LOOPBACK.broadcast_address - 1
    if not int(lowest) <= int(first) or last_int > int(highest):
        last = ipaddress.IPv4Address(last_int) if last_int <= 0xFFFFFFFF else "beyond"
        raise InputError(
            f"the lab uses loopback addresses only: {count} device(s) from {first} run up to "
            f"{last}, outside {lowest}-{highest}",
            field="--base",
        )
    seen: dict[str, int] = {}
    specs = []
    for i in range(count):
        persona = personas[i % len(personas)]
        seen[persona.name] = seen.get(persona.name, 0) + 1
        specs.append(DeviceSpec(
            id=f"{persona.name}-{seen[persona.name]}",
            address=str(first + i),
            persona=persona,
        ))
    return tuple(specs)


class LabBindError(Exception):
    """A listener could not bind: the address, port and the reason."""

    def __init__(self, address: str, transport: str, port: int, reason: str) -> None:
        super().__init__(f"cannot listen on {transport} {address}:{port}: {reason}")
        self.address = address
        self.transport = transport
        self.port = port
        self.reason = reason


class Fleet:
    """Running devices; `stop()` (or leaving `async with`) closes every listener."""

    def __init__(self, specs: Sequence[DeviceSpec]) -> None:
        self.specs = tuple(specs)
        self.ca = pki.lab_ca()
        self._streams: list[StreamServer] = []
        self._datagrams: list[DatagramServer] = []
        self._stopped = False

    @property
    def ca_pem(self) -> bytes:
        """The lab CA: the trust anchor for every device certificate."""
        return self.ca.cert_pem

    async def _bind_udp(self, address: str, listener: UdpListener) -> None:
        datagrams = DatagramServer(listener.service)
        await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: datagrams, local_addr=(address, listener.port)
        )
        self._datagrams.append(datagrams)

    async def _start(self) -> None:
        for spec in self.specs:
            tls: ssl.SSLContext | None = None
            if any(isinstance(lst, TcpListener) and lst.tls for lst in spec.persona.listeners):
                tls = pki.server_context(*pki.issue(self.ca, spec.address, spec.id))
            table = ConnectionTable()
            for listener in spec.persona.listeners:
                try:
                    if isinstance(listener, UdpListener):
                        await self._bind_udp(spec.address, listener)
                    else:
                        stream = FragileServer(listener, table) \
                            if isinstance(listener, Fragile) else StreamServer(listener.service)
                        await stream.start(spec.address, listener.port,
                                           tls if listener.tls else None)
                        self._streams.append(stream)
                except OSError as exc:
                    raise LabBindError(spec.address, listener.transport, listener.port,
                                       exc.strerror or str(exc)) from exc
        log.info("lab fleet up: %d devices", len(self.specs))

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for datagrams in self._datagrams:
            datagrams.stop()
        await asyncio.gather(*(stream.stop() for stream in self._streams))

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()


async def run_fleet(specs: Sequence[DeviceSpec]) -> Fleet:
    """Start every device of `specs` in the running loop; on any failure nothing stays bound."""
    for spec in specs:
        if ipaddress.IPv4Address(spec.address) not in LOOPBACK:
            raise InputError(f"{spec.address} is outside 127.0.0.0/8", field=spec.id)
    fleet = Fleet(specs)
    try:
        await fleet._start()
    except BaseException:
        await fleet.stop()
        raise
    return fleet
