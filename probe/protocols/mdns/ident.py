"""mDNS in UDP discovery: a unicast PTR query for `_services._dns-sd._udp.local`, built and
parsed with scapy's DNS layer."""

from __future__ import annotations

import secrets

from scapy.layers.dns import DNS, DNSQR

from probe.context import DeviceContext
from probe.observe.tcp import excerpt
from probe.observe.udp import Parsed, Parser, UdpProbe, UdpService, ask

MAX_NAMES = 16


def _mdns() -> tuple[bytes, Parser]:
    query_id = secrets.randbits(16)
    request = DNS(id=query_id, rd=0, qd=DNSQR(qname="_services._dns-sd._udp.local",
                                              qtype="PTR", unicastresponse=1))

    def parse(data: bytes) -> Parsed:
        reply = DNS(data)
        if reply.qr != 1 or reply.id not in (query_id, 0) or reply.opcode != 0:
            return None
        names = [excerpt(bytes(rr.rdata)) for rr in (reply.an or [])
                 if rr.type == 12 and isinstance(rr.rdata, bytes)][:MAX_NAMES]
        detail = "mDNS services: " + ", ".join(names) if names else "mDNS responder"
        return detail, {"services": names, "answers": len(reply.an or [])}

    return bytes(request), parse


async def discover(ctx: DeviceContext, port: int) -> UdpService | None:
    """Discovery's mDNS probe: which services the responder lists."""
    return await ask(ctx, port, "mdns", _mdns())


UDP = UdpProbe("mdns", 5353, frozenset({"mdns"}), discover)
