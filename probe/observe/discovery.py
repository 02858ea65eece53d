"""Discovery: the device's open TCP ports, its answering UDP services, and what each one is.

Collectors (each gathered once per device through `ctx.observe`): `tcp_ports` (connect scan,
or SYN scan with `--syn`), `udp_services`, `identify(ctx, port)` and `services`, which runs the
others and is what the exposure checks and the record's service list read.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from probe.context import DeviceContext
from probe.model import Service
from probe.observe.base import Unreachable
from probe.observe.identify import Identification, identify
from probe.observe.syn import syn_scan
from probe.observe.tcp import PortScan, connect_scan, port_set
from probe.observe.udp import UdpService, udp_services

__all__ = [
    "Identification", "PortScan", "Services", "UdpService", "identify", "services",
    "tcp_ports", "udp_services",
]


@dataclass(frozen=True)
class Services:
    tcp: tuple[Identification, ...]
    udp: tuple[UdpService, ...]
    scan: PortScan

    def as_services(self) -> list[Service]:
        """The endpoints as the record lists them."""
        return [Service("tcp", i.port, i.protocol, i.tls, i.detail) for i in self.tcp] + [
            Service("udp", u.port, u.protocol, u.protocol == "dtls", u.detail) for u in self.udp
        ]

    def tcp_port(self, port: int) -> Identification | None:
        return next((i for i in self.tcp if i.port == port), None)


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
    identified = (ctx.observe(identify, port) for port in scan.open)
    tcp = await asyncio.gather(*identified)
    return Services(tcp=tuple(tcp), udp=udp, scan=scan)
