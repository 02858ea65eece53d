"""TCP port discovery by half-open (SYN) scan with scapy: needs root for raw sockets.

A SYN-ACK means open, a RST closed, silence or an ICMP error filtered. The kernel answers the
SYN-ACK of an open port with a RST (it knows no such connection), so no connection is ever
established on the device. Scapy blocks, so it runs in the scan's thread pool; every packet
still takes a token of the scan-wide rate limiter, and `inter` spaces this device's packets.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
from collections.abc import Callable, Iterator
from typing import Any

from scapy.config import conf
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.supersocket import L3RawSocket, L3RawSocket6, SuperSocket

from probe.context import DeviceContext
from probe.observe.base import ObservationError
from probe.observe.tcp import PortScan, is_loopback

SYN_ACK = 0x12


def _socket(address: str, ipv6: bool) -> SuperSocket:
    if is_loopback(address):
        # The default layer-3 socket misses replies on the loopback interface; a raw IP socket
        # for sending plus a packet socket for receiving sees them.
        return L3RawSocket6() if ipv6 else L3RawSocket(iface=conf.loopback_name)
    template = IPv6(dst=address) if ipv6 else IP(dst=address)
    iface = template.route()[0]  # type: ignore[no-untyped-call]
    return (conf.L3socket6 if ipv6 else conf.L3socket)(iface=iface)


def _paced(packets: list[Any], take_token: Callable[[], None]) -> Iterator[Any]:
    for packet in packets:
        take_token()
        yield packet


def _exchange(
    address: str, ports: tuple[int, ...], timeout: float, inter: float,
    take_token: Callable[[], None],
) -> dict[int, int]:
    """Send one SYN per port; return the TCP flags of each port's reply (absent: no reply)."""
    ipv6 = ipaddress.ip_address(address).version == 6
    sport = random.randint(40000, 60000)
    seq = random.getrandbits(32)
    layer = IPv6(dst=address) if ipv6 else IP(dst=address)
    packets = [layer / TCP(sport=sport, dport=port, flags="S", seq=seq) for port in ports]
    sock = _socket(address, ipv6)
    try:
        answered, _ = sock.sr(_paced(packets, take_token), timeout=timeout, inter=inter, verbose=0)
    finally:
        sock.close()
    flags: dict[int, int] = {}
    for sent, reply in answered:
        if reply.haslayer(TCP):
            flags[int(sent[TCP].dport)] = int(reply[TCP].flags)
    return flags


async def syn_scan(ctx: DeviceContext, ports: tuple[int, ...]) -> PortScan:
    if os.geteuid() != 0:
        raise ObservationError(
            "needs-root", "a SYN scan needs root (raw sockets); run as root or use a connect scan"
        )
    loop = asyncio.get_running_loop()

    def take_token() -> None:  # runs in scapy's sending thread; bounded if the loop is gone
        asyncio.run_coroutine_threadsafe(ctx.network.rate.acquire(), loop).result(
            ctx.options.budget
        )

    flags = await ctx.blocking(
        _exchange, ctx.address, ports, ctx.timeout, 1.0 / ctx.options.rate, take_token
    )
    return PortScan(
        method="syn",
        scanned=len(ports),
        open=tuple(p for p in ports if flags.get(p, 0) & SYN_ACK == SYN_ACK),
        filtered=tuple(p for p in ports if p not in flags),
    )
