"""The DTLS collector that starts from what UDP discovery found.

It reads `probe.observe.discovery.udp_services`, which is handed the per-port probe of
`probe.protocols.dtls.wire`, so it lives apart from that module (no import cycle).
`dtls_survey`: every DTLS endpoint discovery found, and the port after each cleartext CoAP
port, CoAPS's convention, probed with DTLS 1.2 and DTLS 1.0 hellos.
"""

from __future__ import annotations

import asyncio

from probe.context import DeviceContext
from probe.observe.discovery import udp_services
from probe.observe.tcp import excluded_ports
from probe.observe.udp import UdpService, udp_targets
from probe.protocols import registry
from probe.protocols.dtls import wire as dtls


def candidate_ports(ctx: DeviceContext, found: tuple[UdpService, ...]) -> list[int]:
    """The DTLS endpoints discovery found, and the port after each cleartext CoAP port that
    discovery did not probe (CoAPS conventionally listens there)."""
    probed = {port for _, port in udp_targets(ctx, registry.UDP)}
    ports = {s.port for s in found if s.protocol == "dtls"}
    ports |= {s.port + 1 for s in found
              if s.protocol == "coap" and s.port < 65535 and s.port + 1 not in probed}
    return sorted(ports - excluded_ports(ctx))


async def dtls_survey(ctx: DeviceContext) -> tuple[dtls.DtlsEndpoint, ...]:
    """Collector: every DTLS endpoint of the device, probed with DTLS 1.2 and 1.0 hellos."""
    found = await ctx.observe(udp_services)
    known = {s.port for s in found if s.protocol == "dtls"}
    endpoints = await asyncio.gather(*(dtls.survey_endpoint(ctx, port)
                                       for port in candidate_ports(ctx, found)))
    return tuple(e for e in endpoints if e.port in known
                 or e.dtls12.decided_by is not None or e.dtls10.decided_by is not None)
