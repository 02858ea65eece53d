"""UDP service discovery: one real request per protocol, and only a reply that parses counts.

Each protocol brings its probe (a `UdpProbe`: its well-known port, the inventory's names for
it, and how to ask) in its package's `ident.py`; `probe.protocols.registry.UDP` lists them and
`probe.observe.discovery` hands that list to `answering`, so this module imports no protocol
(their packages use its `ask` and `judge`). The CoAP request (GET /.well-known/core) and the
DTLS ClientHello are also what the CoAP checks' surveys start from, so discovery's round trips
are not repeated.

Each request that draws nothing (no reply, no ICMP refusal) by half the timeout is sent once
more, unchanged, within the same wait: a lost datagram does not hide a service. A reply that
does not parse as the protocol asked for is recorded as `unknown`, with its first bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from probe.context import DeviceContext
from probe.observe.tcp import excluded_ports, head_hex, service_ports

Parsed = tuple[str, dict[str, Any]] | None
Parser = Callable[[bytes], Parsed]


@dataclass(frozen=True)
class UdpService:
    port: int
    protocol: str  # coap, dtls, snmp, ssdp, mdns, tftp, or unknown
    detail: str
    evidence: Mapping[str, Any]


@dataclass(frozen=True)
class UdpProbe:
    """How discovery asks for one UDP protocol: on its well-known `port` and on the ports the
    inventory names with one of `names`; `ask(ctx, port)` is the service found on the port, or
    None when nothing answered."""

    protocol: str
    port: int
    names: frozenset[str]
    ask: Callable[[DeviceContext, int], Awaitable[UdpService | None]]


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


async def ask(ctx: DeviceContext, port: int, protocol: str,
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


def udp_targets(ctx: DeviceContext, probes: tuple[UdpProbe, ...]) -> list[tuple[str, int]]:
    """The (protocol, port) pairs discovery asks, sorted: each protocol of `probes` on its
    well-known port and on the ports the inventory names for it, minus the device's excluded
    ports."""
    by_name = {name: probe.protocol for probe in probes for name in probe.names}
    targets = {(probe.protocol, probe.port) for probe in probes}
    targets |= {(by_name[name], port) for port, name in service_ports(ctx, udp=True).items()}
    skip = excluded_ports(ctx)
    return sorted((protocol, port) for protocol, port in targets if port not in skip)


async def answering(ctx: DeviceContext, probes: tuple[UdpProbe, ...]
                    ) -> tuple[UdpService, ...]:
    """The UDP services that answer, by port (none when UDP probing is off), asked with
    `probes` (`probe.protocols.registry.UDP`).

    Each protocol is asked on its well-known port and on the ports the inventory names for it
    (`coap`, `coaps`, `snmp`, ...); ports excluded for the device are not probed.
    """
    if not ctx.options.udp:
        return ()
    by_protocol = {probe.protocol: probe for probe in probes}
    found = await asyncio.gather(*(by_protocol[protocol].ask(ctx, port)
                                   for protocol, port in udp_targets(ctx, probes)))
    return tuple(sorted((s for s in found if s is not None), key=lambda s: (s.port, s.protocol)))
