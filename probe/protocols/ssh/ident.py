"""SSH endpoints: the ports identification (`probe.observe.identify`, which reads the version
line a server sends first) found speaking SSH, with their version lines."""

from __future__ import annotations

from dataclasses import dataclass

from probe.context import DeviceContext
from probe.observe.discovery import Services, services


@dataclass(frozen=True)
class Endpoint:
    port: int
    banner: str

    @property
    def target(self) -> str:
        return f"tcp/{self.port}"


async def endpoints(ctx: DeviceContext) -> tuple[Endpoint, ...]:
    """Collector: the ports identification found speaking SSH, with their version lines."""
    found: Services = await ctx.observe(services)
    return tuple(Endpoint(i.port, str(i.evidence.get("banner", i.detail)))
                 for i in found.tcp if i.protocol == "ssh")
