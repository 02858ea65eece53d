"""Emulated camera and plant services: an RTSP server (open, or asking for Basic credentials), a
Modbus/TCP server that answers Read Device Identification, and a BACnet/IP device that answers
Who-Is with I-Am. Each reads at most MAX_READ bytes, within IDLE_TIMEOUT, and writes nothing
back into any state: a request it does not know gets an error or silence.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from probe.lab.servers import IDLE_TIMEOUT, MAX_REQUESTS

MAX_HEAD = 4096
_REQUEST = re.compile(rb"([A-Z_]+) (\S+) RTSP/1\.0\r?\n")
_CSEQ = re.compile(rb"(?im)^cseq:\s*(\d{1,9})\s*$")
SDP = (b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=iotprobe lab camera\r\nt=0 0\r\n"
       b"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:track1\r\n")


@dataclass(frozen=True)
class RtspCamera:
    """An RTSP camera with one stream at `path`: OPTIONS answers anyone; DESCRIBE serves the
    session description, or 401 with a Basic challenge when `protected` (before looking the
    path up, as most cameras do); another path is 404."""

    path: str = "/live"
    protected: bool = False

    def offers(self, tls: bool) -> frozenset[str]:
        return frozenset({"tls", "rtsp"}) if tls else frozenset({"rtsp"})

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(MAX_REQUESTS):
            async with asyncio.timeout(IDLE_TIMEOUT):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.LimitOverrunError:
                    return
                except asyncio.IncompleteReadError:
                    return
            if len(head) > MAX_HEAD:
                return
            writer.write(self._answer(head))
            await writer.drain()

    def _answer(self, head: bytes) -> bytes:
        request, cseq = _REQUEST.match(head), _CSEQ.search(head)
        lines = [f"CSeq: {int(cseq.group(1)) if cseq else 0}", "Server: iotprobe-lab camera"]
        body = b""
        if request is None:
            status = "400 Bad Request"
        elif request.group(1) == b"OPTIONS":
            status = "200 OK"
            lines.append("Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN")
        elif request.group(1) != b"DESCRIBE":
            status = "405 Method Not Allowed"
        elif self.protected:
            status = "401 Unauthorized"
            lines.append('WWW-Authenticate: Basic realm="iotprobe lab camera"')
        elif not request.group(2).decode("latin-1").endswith(self.path):
            status = "404 Not Found"
        else:
            status, body = "200 OK", SDP
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join([f"RTSP/1.0 {status}", *lines]) + "\r\n\r\n").encode() + body


@dataclass(frozen=True)
class ModbusDevice:
    """A Modbus/TCP server: Read Device Identification (43/14) gets the basic objects; every
    other function gets exception 1 (illegal function), so nothing can be written."""

    vendor: str = "iotprobe lab"
    product: str = "PLC-GW"
    revision: str = "1.0"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(MAX_REQUESTS):
            async with asyncio.timeout(IDLE_TIMEOUT):
                try:
                    header = await reader.readexactly(7)
                    length = int.from_bytes(header[4:6], "big")
                    if header[2:4] != b"\x00\x00" or not 2 <= length <= 254:
                        return
                    pdu = await reader.readexactly(length - 1)
                except asyncio.IncompleteReadError:
                    return
            answer = self._answer(pdu)
            writer.write(header[:4] + (len(answer) + 1).to_bytes(2, "big") + header[6:7] + answer)
            await writer.drain()

    def _answer(self, pdu: bytes) -> bytes:
        if pdu[:2] != b"\x2b\x0e":
            return bytes([pdu[0] | 0x80, 0x01])
        objects = b"".join(bytes([i, len(v)]) + v for i, v in enumerate(
            (self.vendor.encode(), self.product.encode(), self.revision.encode())))
        return b"\x2b\x0e\x01\x01\x00\x00\x03" + objects


@dataclass(frozen=True)
class BacnetDevice:
    """A BACnet/IP device: a Who-Is gets an I-Am for device `instance`; anything else, silence."""

    instance: int = 260001
    vendor: int = 999

    def answer(self, request: bytes) -> bytes | None:
        if len(request) < 8 or request[0] != 0x81 or request[-2:] != b"\x10\x08":
            return None
        object_id = (8 << 22 | self.instance).to_bytes(4, "big")
        apdu = (b"\x10\x00\xc4" + object_id + b"\x22\x05\xc4\x91\x03\x22"
                + self.vendor.to_bytes(2, "big"))
        npdu = b"\x01\x00" + apdu
        return b"\x81\x0a" + (len(npdu) + 4).to_bytes(2, "big") + npdu
