"""SSDP in UDP discovery: an M-SEARCH built by hand; a reply counts when it is an HTTP status
line with ST, USN or LOCATION."""

from __future__ import annotations

import re

from probe.context import DeviceContext
from probe.observe.tcp import excerpt
from probe.observe.udp import Parsed, Parser, UdpProbe, UdpService, ask


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


async def discover(ctx: DeviceContext, port: int) -> UdpService | None:
    """Discovery's SSDP probe: an M-SEARCH for every service."""
    return await ask(ctx, port, "ssdp", _ssdp(ctx.address, port))


UDP = UdpProbe("ssdp", 1900, frozenset({"ssdp"}), discover)
