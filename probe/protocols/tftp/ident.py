"""TFTP in UDP discovery: a read request for a file that should not exist, built and parsed
with scapy's TFTP layer (the answer may come from another port)."""

from __future__ import annotations

import secrets

from scapy.layers.tftp import TFTP, TFTP_RRQ

from probe.context import DeviceContext
from probe.observe.tcp import excerpt
from probe.observe.udp import Parsed, Parser, UdpProbe, UdpService, ask


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


async def discover(ctx: DeviceContext, port: int) -> UdpService | None:
    """Discovery's TFTP probe: a read request; an error or data answers it."""
    return await ask(ctx, port, "tftp", _tftp())


UDP = UdpProbe("tftp", 69, frozenset({"tftp"}), discover)
