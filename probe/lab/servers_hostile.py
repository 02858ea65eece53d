"""Hostile services for the lab: peers that crawl, lie, flood, reset or vanish.

Each one misbehaves in one precise way a probe meets on real networks, and stays bounded itself:
whatever it streams stops at a byte limit or when the peer goes, every wait ends at the lab's
idle timeout, and a flood is a fixed number of datagrams per request. They are the counterparts
of the hostile personas (probe.lab.personas.hostile); the probe must answer each with an `error`
naming the cause (or a verdict the data supports), within its device budget and bounded memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from dataclasses import dataclass, field

from probe.lab.servers import IDLE_TIMEOUT, MAX_READ, StreamService, offered, speaking

STREAM_LIMIT = 512 * 1024 * 1024
"""Bytes an endless stream sends at most (the peer gives up long before)."""
_CHUNK = 16 * 1024
_MAX_ROUNDS = 32
_JUNK_FIRST = 0x9C
"""The first byte of every junk reply: no protocol the probe knows starts with it (not MQTT's
0x20, TLS's 0x16, Telnet's 0xFF, CoAP's version 1, nor printable text)."""


def junk(seed: int, size: int) -> bytes:
    """`size` bytes of deterministic noise that no protocol parser accepts as a first byte."""
    body = random.Random(seed).randbytes(max(0, size - 1))
    return bytes([_JUNK_FIRST]) + body if size > 0 else b""


async def _until_gone(reader: asyncio.StreamReader) -> None:
    """Read and drop what the peer sends until it goes or the idle timeout passes."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(IDLE_TIMEOUT):
            while await reader.read(MAX_READ):
                pass


async def _first_request(reader: asyncio.StreamReader) -> bytes:
    """Whatever the peer sends first (at most MAX_READ bytes; b"" when it sends nothing)."""
    try:
        return await asyncio.wait_for(reader.read(MAX_READ), IDLE_TIMEOUT)
    except TimeoutError:
        return b""


def _gone(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Whether the peer went (a TLS transport does not say it is closing when the connection
    under it is lost, but its reader learns of the loss)."""
    return writer.is_closing() or reader.at_eof() or reader.exception() is not None


async def _stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes,
                  fill: bytes) -> None:
    """`head`, then `fill` repeated until STREAM_LIMIT, until the peer stops reading for the
    idle timeout (a write that cannot drain) or until it goes. Every chunk yields to the event
    loop, so a fast reader cannot starve the lab's other devices."""
    writer.write(head)
    sent = len(head)
    chunk = (fill * (_CHUNK // max(1, len(fill)) + 1))[:_CHUNK]
    while sent < STREAM_LIMIT and not _gone(reader, writer):
        async with asyncio.timeout(IDLE_TIMEOUT):
            await writer.drain()
        writer.write(chunk)
        sent += len(chunk)
        await asyncio.sleep(0)


@dataclass(frozen=True)
class Drip:
    """Sends `payload` one byte every `interval` seconds, whatever the peer says, then keeps
    the connection open until the peer goes."""

    payload: bytes
    interval: float = 1.0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for byte in self.payload:
            if _gone(reader, writer):
                return
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                if not await asyncio.wait_for(reader.read(MAX_READ), self.interval):
                    return
            except TimeoutError:
                continue
        await _until_gone(reader)


@dataclass(frozen=True)
class Garbage:
    """Greets with noise and answers everything the peer sends with more noise."""

    seed: int = 0
    size: int = 200

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(junk(self.seed, self.size))
        await writer.drain()
        for round_ in range(1, _MAX_ROUNDS):
            async with asyncio.timeout(IDLE_TIMEOUT):
                if not await reader.read(MAX_READ):
                    return
            writer.write(junk(self.seed + round_, self.size))
            await writer.drain()


@dataclass(frozen=True)
class GarbageDatagrams:
    """Answers every datagram with one datagram of noise."""

    seed: int = 0
    size: int = 300

    def answer(self, request: bytes) -> bytes | None:
        return junk(self.seed + len(request), self.size)


MALFORMED_CONNACK = b"\x20\xff\xff\xff\xff\x01"
"""A CONNACK whose remaining length runs past the four bytes MQTT allows (MQTT 3.1.1, 2.2.3)."""
HUGE_CONNACK = b"\x20\xff\xff\xff\x7f"
"""A CONNACK claiming 268,435,455 bytes, the largest length MQTT can express (256 MB)."""


@dataclass(frozen=True)
class BadConnack:
    """Answers the first thing the peer sends (a CONNECT) with `MALFORMED_CONNACK`, then keeps
    the connection open."""

    def offers(self, tls: bool) -> frozenset[str]:
        return speaking("mqtt", tls)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not await _first_request(reader):
            return
        writer.write(MALFORMED_CONNACK)
        await writer.drain()
        await _until_gone(reader)


@dataclass(frozen=True)
class EndlessMqtt:
    """Answers a CONNECT with `HUGE_CONNACK` and then streams its 256 MB body of zeros."""

    def offers(self, tls: bool) -> frozenset[str]:
        return speaking("mqtt", tls)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not await _first_request(reader):
            return
        await _stream(reader, writer, HUGE_CONNACK, b"\x00")


ENDLESS_HTTP_HEAD = (b"HTTP/1.1 200 OK\r\nServer: iotprobe-lab-endless\r\n"
                     b"Content-Type: text/html\r\n\r\n")


@dataclass(frozen=True)
class EndlessHttp:
    """Answers any request with 200 and a body without length that never ends."""

    def offers(self, tls: bool) -> frozenset[str]:
        return speaking("http", tls)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not await _first_request(reader):
            return
        await _stream(reader, writer, ENDLESS_HTTP_HEAD, b"<p>more</p>\n")


STALLED_RECORD = b"\x16\x03\x03\x40\x00\x02\x00\x3f\xfc\x03\x03"
"""A TLS handshake record header promising 16,384 bytes, and the first bytes of a ServerHello."""


@dataclass(frozen=True)
class TlsStall:
    """Answers a ClientHello with `STALLED_RECORD` and then says nothing more."""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not await _first_request(reader):
            return
        writer.write(STALLED_RECORD)
        await writer.drain()
        await _until_gone(reader)


@dataclass(frozen=True)
class Reset:
    """Accepts the connection and resets it at once (SO_LINGER 0: an RST, not a FIN)."""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()


COAP_VERSION = 1
COAP_ACK, COAP_CONTENT = 2, 0x45


@dataclass(frozen=True)
class CoapFlood:
    """Answers every CoAP request with `copies` datagrams: the same 2.05 Content response of
    `size` payload bytes, repeated, as a reflector used in an amplification attack does."""

    copies: int = 200
    size: int = 1024

    def answer(self, request: bytes) -> list[bytes] | None:
        if len(request) < 4 or request[0] >> 6 != COAP_VERSION:
            return None
        token_length = request[0] & 0x0F
        if token_length > 8 or len(request) < 4 + token_length:
            return None
        token = request[4:4 + token_length]
        header = bytes([COAP_VERSION << 6 | COAP_ACK << 4 | token_length, COAP_CONTENT])
        response = header + request[2:4] + token + b"\xff" + b"x" * self.size
        return [response] * self.copies


@dataclass(eq=False)
class Countdown:
    """The listeners of a vanishing device that still have a connection to serve.

    `gone` is set when the last one has served it: whoever runs the device (a test's fleet)
    can stop its listeners then, so that later connections are refused rather than reset."""

    left: int
    gone: asyncio.Event = field(default_factory=asyncio.Event)

    def spent(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.gone.set()


@dataclass(eq=False)
class Vanishing:
    """Serves `inner` to the first connection of its listener (in a scan: the port scan's) and
    resets every later one, as a device that went away in the middle of the scan does; tells
    `countdown` when its connection is spent."""

    inner: StreamService
    countdown: Countdown
    served: int = 0

    def offers(self, tls: bool) -> frozenset[str]:
        return offered(self.inner, tls)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.served:
            await Reset().serve(reader, writer)
            return
        self.served += 1
        self.countdown.spent()
        await self.inner.serve(reader, writer)
