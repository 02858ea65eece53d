"""SNMP in UDP discovery: GetRequest sysDescr.0 in v1 and v2c with each well-known community,
built and parsed with scapy's layers."""

from __future__ import annotations

import asyncio
import functools
import secrets

from scapy.asn1.asn1 import ASN1_OID
from scapy.layers.snmp import SNMP, SNMPget, SNMPresponse, SNMPvarbind

from probe.context import DeviceContext
from probe.observe.tcp import excerpt
from probe.observe.udp import Parsed, Parser, UdpProbe, UdpService, ask

SYSDESCR = "1.3.6.1.2.1.1.1.0"
COMMUNITIES = ("public", "private")
SNMP_VERSIONS = {0: "v1", 1: "v2c"}

_ID_BASE = 1 << 29
"""SNMP request ids are drawn from [2^29, 2^30): their BER encoding is always four bytes."""


@functools.cache
def _snmp_template(version: int, community: str) -> tuple[bytes, int]:
    """The GetRequest built by scapy once (a millisecond each, four per device), and where its
    request id's four bytes sit."""
    marker = _ID_BASE.to_bytes(4, "big")
    request = bytes(SNMP(version=version, community=community.encode(), PDU=SNMPget(
        id=_ID_BASE, varbindlist=[SNMPvarbind(oid=ASN1_OID(SYSDESCR))])))
    return request, request.index(b"\x02\x04" + marker) + 2


def _snmp_get(version: int, community: str) -> tuple[bytes, Parser]:
    request_id = _ID_BASE | secrets.randbits(29)
    template, at = _snmp_template(version, community)
    request = template[:at] + request_id.to_bytes(4, "big") + template[at + 4:]

    def parse(data: bytes) -> Parsed:
        reply = SNMP(data)
        if not isinstance(reply.PDU, SNMPresponse) or int(reply.PDU.id.val) != request_id:
            return None
        value = reply.PDU.varbindlist[0].value.val if reply.PDU.varbindlist else b""
        descr = excerpt(value) if isinstance(value, bytes) else ""
        return descr, {"version": SNMP_VERSIONS[version], "community": community}

    return request, parse


async def discover(ctx: DeviceContext, port: int) -> UdpService | None:
    """GetRequest sysDescr.0 in v1 and v2c with each well-known community."""
    asks = [ask(ctx, port, "snmp", _snmp_get(v, c)) for v in SNMP_VERSIONS for c in COMMUNITIES]
    found = [s for s in await asyncio.gather(*asks) if s is not None]
    accepted = [s for s in found if s.protocol == "snmp"]
    if not accepted:
        return found[0] if found else None
    answered = [{"version": s.evidence["version"], "community": s.evidence["community"]}
                for s in accepted]
    descr = next((s.detail for s in accepted if s.detail), "")
    which = ", ".join(f"{a['version']} '{a['community']}'" for a in answered)
    return UdpService(port, "snmp", f"SNMP answered {which}" + (f": {descr}" if descr else ""),
                      {"answered": answered, "sysdescr": descr})


UDP = UdpProbe("snmp", 161, frozenset({"snmp"}), discover)
