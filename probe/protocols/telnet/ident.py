"""Telnet endpoints: the ports identification (`probe.observe.identify`: option negotiation, or a
login prompt on a banner port) found speaking Telnet."""

from __future__ import annotations

from dataclasses import dataclass

from probe.context import DeviceContext
from probe.observe.discovery import Services, services


@dataclass(frozen=True)
class Endpoint:
    port: int

    @property
    def target(self) -> str:
        return f"tcp/{self.port}"


async def endpoints(ctx: DeviceContext) -> tuple[Endpoint, ...]:
    """Collector: the ports identification found speaking Telnet (option negotiation, or a
    login prompt on a banner port)."""
    found: Services = await ctx.observe(services)
    return tuple(Endpoint(i.port) for i in found.tcp if i.protocol == "telnet")
