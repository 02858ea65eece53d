"""The CoAP collectors that start from what UDP discovery found.

They read `probe.observe.discovery.udp_services`, which is handed the per-port probe of
`probe.protocols.coap.wire`, so they live apart from that module (no import cycle).
Collectors: `coap_survey` (every cleartext CoAP endpoint: its discovery document and a GET of
each local resource it lists, at most `max_resources`) and `coap_writes` (intrusive: each
resource that answered a GET gets the payload just read PUT back).
"""

from __future__ import annotations

import asyncio

from probe.context import DeviceContext
from probe.observe.discovery import udp_services
from probe.protocols.coap import wire as coap


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
