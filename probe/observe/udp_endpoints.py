"""The CoAP and DTLS collectors that start from what UDP discovery found.

They read `probe.observe.discovery.udp_services`, which is handed the per-port probes of
`probe.observe.coap` and `probe.observe.dtls`, so they live apart from those modules (no import
cycle). Collectors: `coap_survey` (every cleartext CoAP endpoint: its discovery document and a
GET of each local resource it lists, at most `max_resources`), `coap_writes` (intrusive: each
resource that answered a GET gets the payload just read PUT back) and `dtls_survey` (every DTLS
endpoint discovery found, and the port after each cleartext CoAP port, CoAPS's convention,
probed with DTLS 1.2 and DTLS 1.0 hellos).
"""

from __future__ import annotations

import asyncio

from probe.context import DeviceContext
from probe.observe import coap, dtls
from probe.observe.discovery import udp_services
from probe.observe.tcp import excluded_ports
from probe.observe.udp import UdpService, udp_targets


async def coap_survey(ctx: DeviceContext, *, max_resources: int
                      ) -> tuple[coap.CoapEndpoint, ...]:
    """Collector: every cleartext CoAP endpoint discovery found, with at most `max_resources`
    of its resources read."""
    found = await ctx.observe(udp_services)
    return tuple(await asyncio.gather(*(coap.survey_endpoint(ctx, s.port, max_resources)
                                        for s in found if s.protocol == "coap")))


async def coap_writes(ctx: DeviceContext, *, max_resources: int
                      ) -> tuple[coap.EndpointWrites, ...]:
    """Collector (intrusive): each resource the survey of `max_resources` read that answered a
    GET gets that payload PUT back."""
    survey = await ctx.observe(coap_survey, max_resources=max_resources)
    return tuple(await asyncio.gather(*(coap.endpoint_writes(ctx, endpoint)
                                        for endpoint in survey)))


def candidate_ports(ctx: DeviceContext, found: tuple[UdpService, ...]) -> list[int]:
    """The DTLS endpoints discovery found, and the port after each cleartext CoAP port that
    discovery did not probe (CoAPS conventionally listens there)."""
    probed = {port for _, port in udp_targets(ctx)}
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
