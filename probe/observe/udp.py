"""UDP service discovery: one real request per protocol, and only a reply that parses counts.

Each request that draws nothing (no reply, no ICMP refusal) by half the timeout is sent once
more, unchanged, within the same wait: a lost datagram does not hide a service. SNMP, mDNS and
TFTP messages are built and parsed with scapy's layers and the SSDP M-SEARCH is
built by hand. The CoAP request (GET /.well-known/core), the DTLS ClientHello and the BACnet/IP
Who-Is are the `discover` probes of `probe.observe.coap`, `probe.observe.dtls` and
`probe.protocols.bacnet.ident`, whose collectors the CoAP
checks share, so discovery's round trips are not repeated: this module imports neither (their
surveys read discovery in turn); `probe.observe.discovery` hands them to `answering` as
`UdpProbe`s. A reply that does not parse as the protocol asked for is recorded as `unknown`,
with its first bytes.
"""

from __future__ import annotations

import asyncio
import functools
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from scapy.asn1.asn1 import ASN1_OID
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.snmp import SNMP, SNMPget, SNMPresponse, SNMPvarbind
from scapy.layers.tftp import TFTP, TFTP_RRQ

from probe.context import DeviceContext
from probe.observe.tcp import excerpt, excluded_ports, head_hex, service_ports

DEFAULT_PORTS = {"coap": 5683, "dtls": 5684, "snmp": 161, "ssdp": 1900, "mdns": 5353, "tftp": 69,
                 "bacnet": 47808}
_BY_SERVICE_NAME = {"coap": "coap", "coaps": "dtls", "dtls": "dtls", "snmp": "snmp",
                    "ssdp": "ssdp", "mdns": "mdns", "tftp": "tftp", "bacnet": "bacnet"}
SYSDESCR = "1.3.6.1.2.1.1.1.0"
COMMUNITIES = ("public", "private")
SNMP_VERSIONS = {0: "v1", 1: "v2c"}
MAX_NAMES = 16

Parsed = tuple[str, dict[str, Any]] | None
Parser = Callable[[bytes], Parsed]


@dataclass(frozen=True)
class UdpService:
    port: int
    protocol: str  # coap, dtls, snmp, ssdp, mdns, tftp, bacnet, or unknown
    detail: str
    evidence: Mapping[str, Any]


@dataclass(frozen=True)
class UdpProbe:
    """A protocol's discovery probe kept outside this module: `ask(ctx, port)` is the service
    found on the port, or None when nothing answered."""

    protocol: str
    ask: Callable[[DeviceContext, int], Awaitable[UdpService | None]]


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


def _ssdp(address: str, port: int) -> tuple[bytes, Parser]:
    host = f"[{address}]" if ":" in address else address
    request = (f'M-SEARCH * HTTP/1.1\r\nHOST: {host}:{port}\r\nMAN: "ssdp:discover"\r\n'
               "MX: 1\r\nST: ssdp:all\r\nUSER-AGENT: iotprobe\r\n\r\n").encode()

    def parse(data: bytes) -> Parsed:
        lines = data.decode("latin-1").split("\r\n")
        if not re.fullmatch(r"HTTP/1\.[01] \d{3}.*", lines[0]):
            return None
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (line.partition(":") for line in lines[1:] if ":" in line)}
        if not {"st", "usn", "location"} & headers.keys():
            return None
        evidence = {"status_line": excerpt(lines[0].encode("latin-1"))}
        evidence |= {k: excerpt(headers[k].encode("latin-1"))
                     for k in ("server", "st", "usn", "location") if k in headers}
        return f"SSDP: {evidence.get('server') or evidence.get('st', '')}", evidence

    return request, parse


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


def _tftp() -> tuple[bytes, Parser]:
    name = f"iotprobe-{secrets.token_hex(8)}.bin"
    request = TFTP() / TFTP_RRQ(filename=name.encode(), mode=b"octet")

    def parse(data: bytes) -> Parsed:
        reply = TFTP(data)
        if reply.op == 5 and len(data) >= 5 and data[-1] == 0 and 0 <= reply.errorcode <= 8:
            message = excerpt(bytes(reply.errormsg))
            return (f"TFTP error {int(reply.errorcode)} ({message}) to a read request",
                    {"reply": "error", "error_code": int(reply.errorcode), "message": message,
                     "file": name})
        if reply.op == 3 and len(data) >= 4:
            return ("TFTP sent data for a file that should not exist",
                    {"reply": "data", "block": int(reply.block), "file": name})
        return None

    return bytes(request), parse


def judge(port: int, protocol: str, replies: tuple[bytes, ...], parse: Parser) -> UdpService:
    """The service the first reply that parses shows, else `unknown` with the first reply's
    first bytes."""
    for data in replies:
        try:
            parsed = parse(data)
        except Exception:  # scapy raises many kinds on malformed input: it is not the protocol
            parsed = None
        if parsed is not None:
            detail, evidence = parsed
            return UdpService(port, protocol, detail, {**evidence, "reply_bytes": len(data)})
    return UdpService(port, "unknown", f"answered a {protocol} probe with something else",
                      {"probe": protocol, "first_bytes": head_hex(replies[0]),
                       "reply_bytes": len(replies[0])})


async def _ask(ctx: DeviceContext, port: int, protocol: str,
               request: tuple[bytes, Parser]) -> UdpService | None:
    """Send the request, and once more when nothing came back by half the timeout (a lost
    datagram must not hide a service `net.open-ports` or `net.cleartext-management` judges);
    the evidence says how many requests went out."""
    payload, parse = request
    reply = await ctx.exchange_udp(port, payload, any_source_port=protocol == "tftp",
                                   again_after=ctx.timeout / 2)
    if not reply.answered:
        return None
    found = judge(port, protocol, reply.replies, parse)
    return replace(found, evidence={**found.evidence, "requests": reply.sent})


async def _snmp(ctx: DeviceContext, port: int) -> UdpService | None:
    """GetRequest sysDescr.0 in v1 and v2c with each well-known community."""
    asks = [_ask(ctx, port, "snmp", _snmp_get(v, c)) for v in SNMP_VERSIONS for c in COMMUNITIES]
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


async def _probe(ctx: DeviceContext, protocol: str, port: int,
                 handed: tuple[UdpProbe, ...]) -> UdpService | None:
    if protocol == "snmp":
        return await _snmp(ctx, port)
    for probe in handed:
        if probe.protocol == protocol:
            return await probe.ask(ctx, port)
    builders: dict[str, Callable[[], tuple[bytes, Parser]]] = {
        "mdns": _mdns, "tftp": _tftp, "ssdp": lambda: _ssdp(ctx.address, port),
    }
    return await _ask(ctx, port, protocol, builders[protocol]())


def udp_targets(ctx: DeviceContext) -> list[tuple[str, int]]:
    """The (protocol, port) pairs discovery asks, sorted: each protocol on its well-known port
    and on the ports the inventory names for it, minus the device's excluded ports."""
    targets = {(protocol, port) for protocol, port in DEFAULT_PORTS.items()}
    targets |= {(_BY_SERVICE_NAME[name], port)
                for port, name in service_ports(ctx, udp=True).items()}
    skip = excluded_ports(ctx)
    return sorted((protocol, port) for protocol, port in targets if port not in skip)


async def answering(ctx: DeviceContext, handed: tuple[UdpProbe, ...]) -> tuple[UdpService, ...]:
    """The UDP services that answer, by port (none when UDP probing is off); `handed` asks for
    the protocols this module does not (CoAP, DTLS).

    Each protocol is asked on its well-known port and on the ports the inventory names for it
    (`coap`, `coaps`, `snmp`, ...); ports excluded for the device are not probed.
    """
    if not ctx.options.udp:
        return ()
    found = await asyncio.gather(*(_probe(ctx, protocol, port, handed)
                                   for protocol, port in udp_targets(ctx)))
    return tuple(sorted((s for s in found if s is not None), key=lambda s: (s.port, s.protocol)))
