"""Emulated MQTT over WebSockets for lab personas: an MQTT service behind an RFC 6455 server.

`WebSocketMqtt` answers an HTTP request on its listener: an upgrade on its `path` that offers
the `mqtt` subprotocol gets 101 and the inner service (an `MqttBroker`) then talks through
binary messages; an upgrade elsewhere gets 404, any other request 426 (Upgrade Required), as a
broker's websockets listener does. The framing is written here by hand, apart from the probe's
client (which is wsproto's), for the same reason the lab's MQTT parsing is apart from the
probe's codec: a shared mistake would pass every lab test. Client frames must be masked (a
frame that is not closes the connection, as RFC 6455 5.1 says); server frames are not.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import hashlib
import struct
from dataclasses import dataclass
from typing import Any

from probe.lab.servers import StreamService, speaking

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 8192
MAX_FRAME = 65536
MAX_FRAMES = 4096
BINARY, CLOSE, PING, PONG, CONTINUATION = 0x2, 0x8, 0x9, 0xA, 0x0


def _frame(opcode: int, payload: bytes) -> bytes:
    """A final, unmasked server frame."""
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, size])
    elif size < 65536:
        head = bytes([0x80 | opcode, 126]) + struct.pack("!H", size)
    else:
        head = bytes([0x80 | opcode, 127]) + struct.pack("!Q", size)
    return head + payload


class _Framing(asyncio.Transport):
    """The inner service's transport: what it writes leaves as binary messages."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        super().__init__()
        self.writer = writer

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writer.write(_frame(BINARY, bytes(data)))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.writer.get_extra_info(name, default)

    def get_write_buffer_size(self) -> int:
        return self.writer.transport.get_write_buffer_size()

    def is_closing(self) -> bool:
        return self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


def _refusal(status: str) -> bytes:
    """An empty answer with `status`, dated as every HTTP origin server must (RFC 9110 6.6.1)."""
    date = email.utils.formatdate(usegmt=True)
    return (f"HTTP/1.1 {status}\r\nDate: {date}\r\nUpgrade: websocket\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n").encode()


def _headers(head: bytes) -> tuple[str, dict[str, str]]:
    """The request's path and headers (names lowercased)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    path = parts[1] if len(parts) == 3 else ""
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return path, headers


async def _unmasked(reader: asyncio.StreamReader, inner: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
    """Client frames to the inner reader: binary payloads fed, pings answered, a close or a
    broken frame ends it (EOF to the inner service)."""
    try:
        for _ in range(MAX_FRAMES):
            first, second = await reader.readexactly(2)
            opcode, size = first & 0x0F, second & 0x7F
            if not second & 0x80:
                return  # an unmasked client frame: RFC 6455 5.1 says close
            if size == 126:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", await reader.readexactly(8))[0]
            if size > MAX_FRAME:
                return
            key = await reader.readexactly(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(await reader.readexactly(size)))
            if opcode in (BINARY, CONTINUATION):
                inner.feed_data(payload)
            elif opcode == PING:
                writer.write(_frame(PONG, payload))
            elif opcode == CLOSE:
                writer.write(_frame(CLOSE, payload[:2]))
                return
            else:
                return  # text, or an opcode MQTT never uses
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        inner.feed_eof()


@dataclass(frozen=True)
class WebSocketMqtt:
    """`inner` (an MQTT service) over WebSockets on `path`; see the module docstring."""

    inner: StreamService
    path: str = "/mqtt"

    def offers(self, tls: bool) -> frozenset[str]:
        """What its listener offers as discovery names it: HTTP (the MQTT checks' statuses
        over WebSockets are the persona's to write)."""
        return speaking("http", tls)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        if len(head) > MAX_HEAD:
            return
        path, headers = _headers(head)
        key = headers.get("sec-websocket-key")
        offered_protocols = {p.strip() for p in headers.get("sec-websocket-protocol",
                                                            "").split(",")}
        if key is None or headers.get("upgrade", "").lower() != "websocket":
            writer.write(_refusal("426 Upgrade Required"))
            return
        if path != self.path or "mqtt" not in offered_protocols:
            writer.write(_refusal("404 Not Found"))
            return
        accept = base64.b64encode(hashlib.sha1(key.encode("latin-1") + GUID).digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
                     + b"\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n")
        await writer.drain()
        await self._bridge(reader, writer)

    async def _bridge(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        inner_reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(inner_reader)
        inner_writer = asyncio.StreamWriter(_Framing(writer), protocol, inner_reader,
                                            asyncio.get_running_loop())
        pump = asyncio.create_task(_unmasked(reader, inner_reader, writer))
        try:
            await self.inner.serve(inner_reader, inner_writer)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
