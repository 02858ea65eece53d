"""Discovery: the device's open TCP ports, its answering UDP services, and what each one is.

Collectors (each gathered once per device through `ctx.observe`): `tcp_ports` (connect scan,
or SYN scan with `--syn`), `udp_services` (`probe.observe.udp`, handed the CoAP, DTLS and
BACnet probes) and `services`, which runs those, identifies every open TCP port
(`identify`) and is what the exposure checks and the record's service list read.

Identification is bounded twice: each port costs about one timeout (see `probe.observe.identify`)
and all of them together at most `IDENTIFY_SHARE` of what the device budget has left once the
port scan is done. Ports the inventory or convention names go first (in port order), then the
others; a port not reached in time is kept as `unknown` and silent, with that reason. So
a device with hundreds of silent ports still has its open ports judged, from the port scan.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from probe.context import DeviceContext
from probe.model import Service
from probe.observe import coap, dtls
from probe.observe.base import Unreachable
from probe.observe.identify import (
    Identification,
    conventional,
    could_serve,
    identify,
    undecided,
)
from probe.observe.syn import syn_scan
from probe.observe.tcp import PortScan, connect_scan, port_set, service_ports
from probe.observe.udp import UdpProbe, UdpService, answering
from probe.protocols.bacnet import ident as bacnet

__all__ = [
    "Identification", "PortScan", "Services", "UdpService", "identify", "services",
    "tcp_ports", "udp_services",
]

IDENTIFY_SHARE = 0.5
"""The part of the device budget left after the port scan that identification may use."""


@dataclass(frozen=True)
class Services:
    tcp: tuple[Identification, ...]
    udp: tuple[UdpService, ...]
    scan: PortScan
    serves: Mapping[int, frozenset[str]] = field(default_factory=dict)  # `could_serve`, by port

    def as_services(self) -> list[Service]:
        """The endpoints as the record lists them."""
        return [Service("tcp", i.port, i.protocol, i.tls, i.detail) for i in self.tcp] + [
            Service("udp", u.port, u.protocol, u.protocol == "dtls", u.detail) for u in self.udp
        ]

    def tcp_port(self, port: int) -> Identification | None:
        return next((i for i in self.tcp if i.port == port), None)

    def unresolved(self, wanted: frozenset[str]) -> list[tuple[Identification, frozenset[str]]]:
        """The open ports that may carry one of the `wanted` services but whose identification
        left it open, each with the services it left open (by `could_serve` and `undecided`)."""
        out = []
        for ident in self.tcp:
            open_ = undecided(ident, self.serves.get(ident.port, frozenset())) & wanted
            if open_:
                out.append((ident, open_))
        return out


UDP_PROBES = (UdpProbe("coap", coap.discover), UdpProbe("dtls", dtls.discover),
              UdpProbe("bacnet", bacnet.discover))
"""The UDP probes `probe.observe.udp` is handed: it imports no protocol module."""


async def udp_services(ctx: DeviceContext) -> tuple[UdpService, ...]:
    """Collector: the UDP services that answer, by port (none when UDP probing is off)."""
    return await answering(ctx, UDP_PROBES)


async def tcp_ports(ctx: DeviceContext) -> PortScan:
    """Collector: which TCP ports of the device are open (see `tcp.port_set` for which)."""
    ports = port_set(ctx)
    return await (syn_scan(ctx, ports) if ctx.options.syn else connect_scan(ctx, ports))


async def services(ctx: DeviceContext) -> Services:
    """Collector: every open TCP port identified, and the UDP services that answer.

    Raises Unreachable when no TCP port is open and no UDP probe got any answer.
    """
    scan, udp = await asyncio.gather(ctx.observe(tcp_ports), ctx.observe(udp_services))
    if not scan.open and not udp:
        raise Unreachable(
            f"no TCP port open among {scan.scanned} scanned ({len(scan.filtered)} filtered) "
            "and no UDP service answered"
        )
    named = service_ports(ctx, udp=False)
    serves = {port: could_serve(port, named.get(port)) for port in scan.open}
    tcp = await _identify_all(ctx, scan.open, ctx.remaining() * IDENTIFY_SHARE)
    return Services(tcp=tcp, udp=udp, scan=scan, serves=serves)


async def _identify_all(ctx: DeviceContext, ports: tuple[int, ...],
                        allowance: float) -> tuple[Identification, ...]:
    """Every port identified, the ports whose service is named or conventional first (the
    device's slots are granted in that order); what is not done within `allowance` seconds
    is cancelled and kept as not identified."""
    if not ports:
        return ()
    order = sorted(ports, key=lambda port: (not conventional(ctx, port), port))
    tasks = {port: asyncio.ensure_future(identify(ctx, port)) for port in order}
    try:
        await asyncio.wait(tasks.values(), timeout=allowance)
    finally:
        late = [task for task in tasks.values() if not task.done()]
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
    return tuple(_identified(tasks[port], port) for port in ports)


def _identified(task: asyncio.Task[Identification], port: int) -> Identification:
    if not task.cancelled():
        return task.result()
    return Identification(port, "unknown", False, "not identified: identification of the open "
                          "ports stopped at half of the device budget left after the port scan",
                          True, {"probes": [], "not_identified": "budget"})
