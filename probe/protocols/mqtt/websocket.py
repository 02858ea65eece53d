"""MQTT over WebSockets (`ws://`, and `wss://` inside TLS): the client side of RFC 6455 on a
connection the device context opened.

The WebSocket protocol is `wsproto`'s, not ours and not `websockets`' or `aiohttp`'s: wsproto is
sans-IO (it turns bytes into events and events into bytes and never touches a socket), so every
byte still goes through `ctx.connect` and `ctx.read` (scope, rate, slots, deadlines), and the
framing, the client's masking of every frame (RFC 6455 section 5.3) and the handshake checks
(Sec-WebSocket-Accept, the subprotocol being one we offered) are a maintained library's. A
client library that opens its own socket would bypass the device context.

MQTT rides in binary messages (MQTT 5 section 6, MQTT 3.1.1 section 6): the stream hands the MQTT
layer the concatenated payloads, however the broker splits packets across frames. Reads are
bounded in bytes (`MAX_HANDSHAKE` for the upgrade, the caller's limit after it) and in time (one
deadline per read). A text message, a frame wsproto rejects or a handshake it cannot parse is
`WebSocketError`: the listener answered garbage.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import ProtocolError

from probe.context import DeviceContext

PATHS: tuple[str, ...] = ("/mqtt", "/ws", "/")
"""The request paths an HTTP listener is asked to upgrade on, in order: mosquitto and EMQX
documentation use `/mqtt`, HiveMQ and many gateways `/mqtt` or `/ws`, amqtt and aedes answer on
any path (`/`)."""
SUBPROTOCOL = "mqtt"
"""The WebSocket subprotocol MQTT registers (IANA); MQTT 3.1 used `mqttv3.1`, not offered."""
MAX_HANDSHAKE = 16 * 1024
"""The most bytes read for the upgrade's answer."""
CHUNK = 64 * 1024


class WebSocketError(Exception):
    """The listener broke the WebSocket protocol (its handshake or a frame)."""


class Refused(Exception):
    """The HTTP listener answered the upgrade with something other than 101. `reusable`: the
    whole answer was read, framed by its length (or empty), and the listener did not say
    `Connection: close`, so the connection may carry the next upgrade (HTTP/1.1 keep-alive)."""

    def __init__(self, status: int, reusable: bool = False) -> None:
        super().__init__(f"HTTP {status} to the WebSocket upgrade")
        self.status, self.reusable = status, reusable


def _framed(answer: RejectConnection) -> bool:
    """The answer's end can be found without the connection closing: no body, a length, or
    chunks; and the listener keeps the connection open."""
    headers = {name.lower(): value.lower() for name, value in answer.headers}
    if b"close" in headers.get(b"connection", b""):
        return False
    return (not answer.has_body or b"content-length" in headers
            or b"chunked" in headers.get(b"transfer-encoding", b""))


def host_header(address: str, port: int) -> str:
    """The Host header for an IP literal (bracketed for IPv6): never a name to resolve."""
    literal = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    return f"{literal}:{port}"


class WsStream:
    """One WebSocket client connection over a reader and writer of the device context."""

    def __init__(self, ctx: DeviceContext, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.ctx, self.reader, self.writer = ctx, reader, writer
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.payload = bytearray()
        self.closed = False
        self.subprotocol: str | None = None
        self.early: list[Event] = []

    async def _write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def upgrade(self, host: str, path: str) -> None:
        """The HTTP Upgrade offering the `mqtt` subprotocol. Raises Refused (no 101),
        WebSocketError (garbage), TimeoutError (no whole answer within one deadline) or
        ConnectionResetError (closed before one)."""
        await self._write(self.ws.send(Request(host=host, target=path,
                                               subprotocols=[SUBPROTOCOL])))
        loop = asyncio.get_running_loop()
        end = loop.time() + self.ctx.timeout
        received = 0
        rejected: RejectConnection | None = None
        while received < MAX_HANDSHAKE:
            data, stalled = await self.ctx.read(
                self.reader, MAX_HANDSHAKE - received, deadline=max(end - loop.time(), 0.0),
                until=(lambda d: b"\r\n\r\n" in d) if rejected is None else (lambda d: True))
            received += len(data)
            if rejected is not None and (stalled or not data):
                raise Refused(rejected.status_code)  # a body that never ended: closed
            if not data:  # the deadline, or EOF, before a whole answer: no answer at all
                raise TimeoutError if stalled else ConnectionResetError
            self._feed(data)
            events = self._events()
            for index, event in enumerate(events):
                if isinstance(event, AcceptConnection):
                    self.subprotocol = event.subprotocol
                    self.early = events[index + 1:]  # frames sent with the 101
                    return
                if isinstance(event, RejectConnection):
                    if not _framed(event):
                        raise Refused(event.status_code)
                    rejected = event
                    if not event.has_body:
                        raise Refused(event.status_code, reusable=True)
                if isinstance(event, RejectData) and event.body_finished and rejected:
                    raise Refused(rejected.status_code, reusable=True)
            if stalled:
                raise TimeoutError
        if rejected is not None:
            raise Refused(rejected.status_code)
        raise WebSocketError(f"no end of the upgrade's answer within {MAX_HANDSHAKE} bytes")

    def _feed(self, data: bytes | None) -> None:
        try:
            self.ws.receive_data(data)
        except ProtocolError as exc:
            raise WebSocketError(str(exc)[:120]) from None

    async def send(self, data: bytes) -> None:
        """`data` in one binary message (masked by the client, as RFC 6455 requires). Raises
        ConnectionResetError once the broker closed the WebSocket, like a closed socket."""
        if self.ws.state is not ConnectionState.OPEN:
            raise ConnectionResetError("the broker closed the WebSocket")
        await self._write(self.ws.send(Message(data=data)))

    def _events(self) -> list[Event]:
        early, self.early = self.early, []
        try:
            return early + list(self.ws.events())
        except ProtocolError as exc:
            raise WebSocketError(str(exc)[:120]) from None

    async def _take(self) -> None:
        """Move what the received frames carry into `payload`; answer pings."""
        for event in self._events():
            if isinstance(event, BytesMessage):
                self.payload += event.data
            elif isinstance(event, TextMessage):
                raise WebSocketError("a text message where MQTT needs binary ones")
            elif isinstance(event, Ping) and self.ws.state is ConnectionState.OPEN:
                await self._write(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if self.ws.state is ConnectionState.OPEN:  # wsproto's word for a bad frame
                    raise WebSocketError(f"a frame breaks RFC 6455: {event.reason or ''}"[:120])
                self.closed = True

    async def read(self, max_bytes: int, *, deadline: float,
                   until: Callable[[bytes], bool]) -> tuple[bytes, bool]:
        """Like `DeviceContext.read`, over the messages' payload: at most `max_bytes` of it,
        until `until(payload)` holds, the broker closes, or `deadline` seconds pass (then
        True)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while True:
            await self._take()
            if self.payload and (until(bytes(self.payload)) or len(self.payload) >= max_bytes):
                break
            if self.closed:
                break
            left = end - loop.time()
            if left <= 0:
                return self._pop(max_bytes), True
            data, stalled = await self.ctx.read(self.reader, CHUNK, deadline=left,
                                                until=lambda d: True)
            if stalled and not data:
                return self._pop(max_bytes), True
            if not data:
                self.closed = True
            self._feed(data or None)
        return self._pop(max_bytes), False

    def _pop(self, max_bytes: int) -> bytes:
        out = bytes(self.payload[:max_bytes])
        del self.payload[:max_bytes]
        return out
