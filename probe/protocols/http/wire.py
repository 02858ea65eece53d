"""HTTP on the wire, for the collectors of `probe.protocols.http.collectors`: every connection
through `ctx.connect`.

The GETs without credentials speak HTTP/1.1 through h11 (the sans-IO protocol library under
httpcore) over the streams of `ctx.connect`: through httpx (its client, pool, anyio locks and
cancel scopes) a GET cost about three times the CPU it costs here (issue 8). Those that run at the
same time on one listener share one keep-alive connection (`Listener`, through `ctx.shared`),
one request after the other; the last of them to finish closes it, which gives its device slot
back. h11 says when a connection may carry the next request: both sides done, and neither a
`Connection: close`, an HTTP/1.0 answer nor a body left unread (a truncated one). A request that
fails on a connection that had already answered (the device may drop idle connections) is sent
again on a new one, so only a connection opened for the request itself can fail it, as when
each request had its own.

Credential trials go through httpx (`credential_client`: Basic and Digest flows), each with a
client and a connection of its own (`Connection: close`), as the device counts and times login
attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import h11
import httpcore
import httpx

from probe.context import DeviceContext

MAX_BODY = 64 * 1024
"""Bytes of a body kept; a longer one is cut there (`truncated`)."""

# ---------------------------------------------------------------------------------------------
# GETs without credentials: h11 over ctx.connect, one keep-alive connection per listener
# ---------------------------------------------------------------------------------------------


_READ = 64 * 1024
"""Bytes asked of the connection at a time (as httpcore asks)."""
_MAX_HEAD = 100 * 1024
"""The most h11 buffers for a response head, as httpcore lets it: more is 'Receive buffer too
long'."""


@dataclass
class Get:
    """One GET without credentials: its target and headers, and when it last went out (each
    attempt on a connection sets it)."""

    target: bytes
    headers: list[tuple[str, str]]
    sent: float


class _Answer(NamedTuple):
    status: int
    headers: tuple[tuple[str, str], ...]  # names lower-cased
    body: bytes
    truncated: bool
    received: float  # when the response head came


class _Connection:
    """One HTTP/1.1 connection to a listener, opened by `ctx.connect` and driven by h11: a GET
    goes out, its response comes back, and the connection carries another GET only when h11
    has started a new cycle (`ready`). Failures are raised as the credential trials' httpcore
    backend raises them (`_Backend`), so that evidence reads the same whichever path failed."""

    def __init__(self, ctx: DeviceContext, stack: contextlib.AsyncExitStack,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._timeout = ctx.timeout
        self._stack = stack
        self._reader = reader
        self._writer = writer
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)

    @classmethod
    async def open(cls, ctx: DeviceContext, port: int, tls: bool) -> _Connection:
        """A connection to the listener; over TLS with the observer's context and the inventory
        hostname as server name, as `_Stream.start_tls` does."""
        stack = contextlib.AsyncExitStack()
        try:
            reader, writer = await stack.enter_async_context(ctx.connect(
                port, tls=observer_tls() if tls else None, server_hostname=ctx.device.hostname))
        except TimeoutError:
            raise  # no connection or no handshake before the timeout
        except OSError as exc:
            raise _connect_error(exc, tls) from exc
        return cls(ctx, stack, reader, writer)

    @property
    def ready(self) -> bool:
        """Whether the connection can carry another GET: h11 began a new cycle (both sides were
        done, neither asked to close) and the device has not closed it since."""
        return (self._h11.our_state is h11.IDLE and self._reader.exception() is None
                and not self._reader.at_eof())

    async def close(self) -> None:
        await self._stack.aclose()

    async def get(self, get: Get) -> _Answer:
        """Send `get` and read its response: the head, then the body up to MAX_BODY."""
        request = h11.Request(method="GET", target=get.target, headers=get.headers)
        get.sent = time.time()
        await self._send(b"".join(self._h11.send(event) or b""
                                  for event in (request, h11.EndOfMessage())))
        head = await self._event()
        while not isinstance(head, h11.Response):  # informational (1xx) answers come first
            head = await self._event()
        received = time.time()
        body = bytearray()
        while len(body) < MAX_BODY:
            event = await self._event()
            if not isinstance(event, h11.Data):  # the end of the message
                break
            body += event.data
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers)
        return _Answer(head.status_code, headers, bytes(body[:MAX_BODY]),
                       len(body) >= MAX_BODY, received)

    async def _send(self, data: bytes) -> None:
        """Send a request. A connection that the device closed or reset is left for the read
        that follows to tell: it may still hold an answer (httpcore does the same)."""
        self._writer.write(data)
        try:
            async with asyncio.timeout(self._timeout):
                await self._writer.drain()
        except TimeoutError:
            raise
        except OSError:
            pass

    async def _event(self) -> h11.Event:
        """The response's next event, read from the connection as h11 needs, each read bounded
        by the timeout."""
        event = self._h11.next_event()
        while event is h11.NEED_DATA:
            try:
                async with asyncio.timeout(self._timeout):
                    data = await self._reader.read(_READ)
            except TimeoutError:
                raise
            except OSError as exc:
                raise httpcore.ReadError(type(exc).__name__) from exc
            if not data and self._h11.their_state is h11.SEND_RESPONSE:
                raise h11.RemoteProtocolError("Server disconnected without sending a response.")
            self._h11.receive_data(data)
            event = self._h11.next_event()
        assert isinstance(event, h11.Event)  # h11 pauses only after the end of a response
        return event


def _connect_error(exc: OSError, tls: bool) -> httpcore.ConnectError:
    """A failed connection in `_Backend`'s words: the TLS handshake's failure (an SSL error,
    or the device resetting or closing the connection) by the exception's name, the TCP
    connection's by the system's message."""
    handshake = isinstance(exc, ssl.SSLError) or (isinstance(exc, ConnectionError)
                                                  and not isinstance(exc, ConnectionRefusedError))
    if tls and handshake:
        return httpcore.ConnectError(f"TLS handshake failed: {type(exc).__name__}")
    return httpcore.ConnectError(exc.strerror or type(exc).__name__)


_DROPPED = (httpcore.ReadError, h11.RemoteProtocolError)
"""How a request ends on a kept-alive connection that the device closed or reset meanwhile."""


class Listener(contextlib.AbstractAsyncContextManager["Listener"]):
    """The GETs without credentials of one listener that run at the same time (`ctx.shared`):
    one connection, kept alive between them, carrying them one after the other; leaving closes
    it.

    A GET that fails with `_DROPPED` on a connection that had already answered is sent again
    on a new connection, whose failure is its own: at most two attempts."""

    def __init__(self, ctx: DeviceContext, port: int, tls: bool) -> None:
        self._ctx = ctx
        self._port = port
        self._tls = tls
        self._turn = asyncio.Lock()
        self._connection: _Connection | None = None

    async def __aexit__(self, *exc: object) -> None:
        await self._drop()

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def get(self, get: Get) -> _Answer:
        async with self._turn:
            while True:
                connection, fresh = self._connection, False
                if connection is None or not connection.ready:
                    await self._drop()
                    connection = self._connection = await _Connection.open(
                        self._ctx, self._port, self._tls)
                    fresh = True
                try:
                    answer = await connection.get(get)
                except BaseException as exc:
                    await self._drop()
                    if fresh or not isinstance(exc, _DROPPED):
                        raise
                    continue
                if not connection.ready:
                    await self._drop()
                return answer


# ---------------------------------------------------------------------------------------------
# Credential trials: httpx over ctx.connect, a connection per trial
# ---------------------------------------------------------------------------------------------


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, ctx: DeviceContext, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, stack: contextlib.AsyncExitStack) -> None:
        self._ctx = ctx
        self._reader = reader
        self._writer = writer
        self._stack = stack

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return await asyncio.wait_for(self._reader.read(max_bytes),
                                          timeout or self._ctx.timeout)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout("no data before the timeout") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpcore.ReadError(type(exc).__name__) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            await asyncio.wait_for(self._writer.drain(), timeout or self._ctx.timeout)
        except TimeoutError as exc:
            raise httpcore.WriteTimeout("could not send before the timeout") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpcore.WriteError(type(exc).__name__) from exc

    async def aclose(self) -> None:
        await self._stack.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        try:
            await asyncio.wait_for(
                self._writer.start_tls(observer_tls(), server_hostname=self._ctx.device.hostname),
                timeout or self._ctx.timeout)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout("TLS handshake timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpcore.ConnectError(f"TLS handshake failed: {type(exc).__name__}") from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        return None


class _Backend(httpcore.AsyncNetworkBackend):
    def __init__(self, ctx: DeviceContext) -> None:
        self._ctx = ctx

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        stack = contextlib.AsyncExitStack()
        try:
            reader, writer = await stack.enter_async_context(
                self._ctx.connect(port, timeout=timeout))
        except TimeoutError as exc:
            await stack.aclose()
            raise httpcore.ConnectTimeout("no connection before the timeout") from exc
        except OSError as exc:
            await stack.aclose()
            raise httpcore.ConnectError(exc.strerror or type(exc).__name__) from exc
        return _Stream(self._ctx, reader, writer, stack)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("the probe never connects to local sockets")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _Transport(httpx.AsyncBaseTransport):
    """httpx's transport interface over an httpcore pool that connects through `ctx`, one
    request per connection."""

    def __init__(self, ctx: DeviceContext) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=observer_tls(), max_connections=1, max_keepalive_connections=0,
            retries=0, network_backend=_Backend(ctx))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._pool.handle_async_request(_core(request))
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_Body(response.stream), extensions=response.extensions)

    async def aclose(self) -> None:
        await self._pool.aclose()


def _core(request: httpx.Request) -> httpcore.Request:
    """The httpcore request for `request`."""
    assert isinstance(request.stream, httpx.AsyncByteStream)
    return httpcore.Request(
        method=request.method,
        url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                         port=request.url.port, target=request.url.raw_path),
        headers=request.headers.raw, content=request.stream, extensions=request.extensions)


def credential_client(ctx: DeviceContext) -> httpx.AsyncClient:
    """A client over `_Transport`: redirects not followed, no environment, no pool timeout
    (`request` bounds the whole request)."""
    return httpx.AsyncClient(
        transport=_Transport(ctx), timeout=httpx.Timeout(ctx.timeout, pool=None),
        follow_redirects=False, trust_env=False)


class _Body(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> Any:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        if hasattr(self._stream, "aclose"):
            await self._stream.aclose()


@functools.cache
def observer_tls() -> ssl.SSLContext:
    """A client context that accepts any certificate and every version the local OpenSSL has:
    observation, not validation. It offers ALPN http/1.1, as httpcore makes the context it is
    given (this one) offer, so that every HTTPS connection says the same whoever opens it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.set_alpn_protocols(["http/1.1"])
    return context


NETWORK_ERRORS = (httpx.HTTPError, httpcore.TimeoutException, httpcore.NetworkError,
                  httpcore.ProtocolError, httpcore.UnsupportedProtocol, h11.ProtocolError,
                  OSError, ssl.SSLError, TimeoutError)
