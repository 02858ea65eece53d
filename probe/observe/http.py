"""HTTP(S) collectors: the device's web listeners and what they answer.

Every connection is opened with `ctx.connect`, so each one is scoped to the device,
rate-limited, holds a device slot and is bounded by the timeout. URLs name the device's address
(never a name to look up); the Host header and the TLS server name carry the inventory hostname
when there is one. Certificates are not checked here (the TLS checks do that), bodies are read
up to `MAX_BODY` bytes, redirects are followed only within the listener (at most
`MAX_REDIRECTS`), and each URL is fetched once per device (`fetch` is a per-URL collector),
whichever checks read it.

The GETs without credentials speak HTTP/1.1 through h11 (the sans-IO protocol library under
httpcore) over the streams of `ctx.connect`: through httpx (its client, pool, anyio locks and
cancel scopes) a GET cost about three times the CPU it costs here (issue 8). Those that run at the
same time on one listener share one keep-alive connection (`ctx.shared`), one request after the
other; the last of them to finish closes it, which gives its device slot back. h11 says when a
connection may carry the next request: both sides done, and neither a `Connection: close`, an
HTTP/1.0 answer nor a body left unread (a truncated one). A request that fails on a connection
that had already answered (the device may drop idle connections) is sent again on a new one, so
only a connection opened for the request itself can fail it, as when each request had its own.
A request costs at most three times the timeout, counted from when it was made, its wait for
the connection included, and each read at most the timeout.

Credential trials (`default_credentials`, intrusive) use Basic or Digest through httpx as the
listener asks, paced and bounded, and stop at the first accepted pair; passwords never leave the
request. Each trial has a client and a connection of its own (`Connection: close`), as the
device counts and times login attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import ipaddress
import re
import ssl
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urljoin, urlsplit

import h11
import httpcore
import httpx

from probe.context import DeviceContext
from probe.observe.base import ObservationError, default_pairs
from probe.observe.discovery import Services, services
from probe.observe.tcp import excerpt

AUTHENTICATION = "http.authentication"
DEFAULT_CREDENTIALS = "http.default-credentials"
DEFAULT_PROTECTED = ("/admin", "/api", "/config", "/cgi-bin/", "/setup", "/settings",
                     "/system", "/management")
SECURITY_TXT = "/.well-known/security.txt"
MAX_BODY = 64 * 1024
MAX_REDIRECTS = 3
USER_AGENT = "iotprobe"
_LOGIN_PATH = re.compile(r"log-?in|sign-?in|logon|auth|sso|session", re.IGNORECASE)
_PASSWORD_INPUT = re.compile(rb"<input[^>]+type\s*=\s*[\"']?password", re.IGNORECASE)


@dataclass(frozen=True)
class HttpEndpoint:
    port: int
    tls: bool
    detail: str

    @property
    def target(self) -> str:
        return f"tcp/{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"


async def http_endpoints(ctx: DeviceContext) -> tuple[HttpEndpoint, ...]:
    """Collector: the device's HTTP and HTTPS listeners, from discovery (no traffic)."""
    found: Services = await ctx.observe(services)
    return tuple(HttpEndpoint(i.port, i.tls, i.detail) for i in found.tcp if i.protocol == "http")


# ---------------------------------------------------------------------------------------------
# GETs without credentials: h11 over ctx.connect, one keep-alive connection per listener
# ---------------------------------------------------------------------------------------------


_READ = 64 * 1024
"""Bytes asked of the connection at a time (as httpcore asks)."""
_MAX_HEAD = 100 * 1024
"""The most h11 buffers for a response head, as httpcore lets it: more is 'Receive buffer too
long'."""


@dataclass
class _Get:
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
                port, tls=_observer_tls() if tls else None, server_hostname=ctx.device.hostname))
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

    async def get(self, get: _Get) -> _Answer:
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


class _Listener(contextlib.AbstractAsyncContextManager["_Listener"]):
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

    async def get(self, get: _Get) -> _Answer:
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
                self._writer.start_tls(_observer_tls(), server_hostname=self._ctx.device.hostname),
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
            ssl_context=_observer_tls(), max_connections=1, max_keepalive_connections=0,
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


def _client(ctx: DeviceContext) -> httpx.AsyncClient:
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
def _observer_tls() -> ssl.SSLContext:
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


# ---------------------------------------------------------------------------------------------
# Fetching
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    """What one GET brought back (or why nothing did)."""

    port: int
    tls: bool
    path: str
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    truncated: bool = False
    sent_at: float = 0.0  # epoch seconds, probe clock
    received_at: float = 0.0
    error: str | None = None

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers if k == wanted), None)

    def all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [v for k, v in self.headers if k == wanted]

    @property
    def redirect(self) -> bool:
        return self.status is not None and 300 <= self.status < 400 and bool(
            self.header("location"))

    @property
    def success(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def login_form(self) -> bool:
        return self.success and bool(_PASSWORD_INPUT.search(self.body))

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        if self.error is not None:
            out["error"] = self.error
            return out
        out["status"] = self.status
        location = self.header("location")
        if location:
            out["location"] = excerpt(location.encode("latin-1", "replace"))
        kind = self.header("content-type")
        if kind:
            out["content_type"] = excerpt(kind.encode("latin-1", "replace"))
        out["body_bytes"] = len(self.body)
        if self.truncated:
            out["body_truncated"] = True
        return out


@functools.lru_cache(maxsize=4096)
def _host(address: str) -> str:
    """The address as a URL host ([v6]); cached, since every request of a device asks."""
    return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address


def url_of(ctx: DeviceContext, port: int, tls: bool, path: str) -> str:
    return f"{'https' if tls else 'http'}://{_host(ctx.address)}:{port}{path}"


def host_header(ctx: DeviceContext, port: int, tls: bool) -> str:
    name = ctx.device.hostname or _host(ctx.address)
    return name if port == (443 if tls else 80) else f"{name}:{port}"


async def request(ctx: DeviceContext, port: int, tls: bool, path: str,
                  auth: httpx.Auth | None = None) -> Response:
    """One GET of `path` (with `auth` if given), capped in time and size; never raises for
    what the network does. Without credentials it goes over the listener's shared keep-alive
    connection; with them, over a connection of its own. `sent_at` is when the request went
    out (after any wait for the connection)."""
    if auth is None:
        return await _fetch(ctx, port, tls, path)
    return await _authenticated(ctx, port, tls, path, auth)


async def _fetch(ctx: DeviceContext, port: int, tls: bool, path: str) -> Response:
    """A GET without credentials, through h11 over the listener's shared connection; the
    request line and headers are those httpx sent (its normalised target, then Host,
    Connection: keep-alive, User-Agent, Accept, Accept-Encoding)."""
    get = _Get(httpx.URL(url_of(ctx, port, tls, path)).raw_path,
               [("Host", host_header(ctx, port, tls)), ("Connection", "keep-alive"),
                ("User-Agent", USER_AGENT), ("Accept", "*/*"), ("Accept-Encoding", "identity")],
               time.time())
    try:
        async with ctx.shared(("http", port, tls),
                              functools.partial(_Listener, ctx, port, tls)) as listener, \
                asyncio.timeout(ctx.timeout * 3):
            answer = await listener.get(get)
    except NETWORK_ERRORS as exc:
        return Response(port, tls, path, sent_at=get.sent, received_at=time.time(),
                        error=_describe(exc))
    return Response(port, tls, path, answer.status, answer.headers, answer.body,
                    answer.truncated, get.sent, answer.received)


async def _authenticated(ctx: DeviceContext, port: int, tls: bool, path: str,
                         auth: httpx.Auth) -> Response:
    """A GET with credentials, through httpx over a connection of its own."""
    headers = {"Host": host_header(ctx, port, tls), "User-Agent": USER_AGENT,
               "Accept": "*/*", "Accept-Encoding": "identity", "Connection": "close"}
    sent = time.time()

    async def on_event(event: str, info: dict[str, Any]) -> None:
        nonlocal sent
        if event == "http11.send_request_headers.started":
            sent = time.time()

    body = bytearray()
    truncated = False
    try:
        async with _client(ctx) as session, asyncio.timeout(ctx.timeout * 3), session.stream(
                "GET", url_of(ctx, port, tls, path), headers=headers, auth=auth,
                extensions={"trace": on_event}) as answer:
            received = time.time()
            async for chunk in answer.aiter_raw():
                body += chunk
                if len(body) >= MAX_BODY:
                    truncated = True
                    break
    except NETWORK_ERRORS as exc:
        return Response(port, tls, path, sent_at=sent, received_at=time.time(),
                        error=_describe(exc))
    pairs = tuple((k.decode("latin-1").lower(), v.decode("latin-1"))
                  for k, v in answer.headers.raw)
    return Response(port, tls, path, answer.status_code, pairs, bytes(body[:MAX_BODY]),
                    truncated, sent, received)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | httpcore.TimeoutException | httpx.TimeoutException):
        return "no answer before the timeout"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


async def fetch(ctx: DeviceContext, port: int, tls: bool, path: str) -> Response:
    """Collector (per URL): an unauthenticated GET, shared by every check that reads it."""
    return await request(ctx, port, tls, path)


@dataclass(frozen=True)
class Visit:
    """A path fetched without credentials, with the redirects followed on the listener."""

    endpoint: HttpEndpoint
    path: str
    hops: tuple[Response, ...]
    left_to: str | None = None  # a redirect not followed (another origin), if it ended so

    @property
    def final(self) -> Response:
        return self.hops[-1]

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "responses": [h.evidence() for h in self.hops]}
        if self.left_to is not None:
            out["left_to"] = self.left_to
        return out


def _same_listener(ctx: DeviceContext, endpoint: HttpEndpoint, url: str) -> str | None:
    """The path of `url` if it points back at this listener, else None."""
    parts = urlsplit(url)
    if parts.scheme != endpoint.scheme:
        return None
    host = (parts.hostname or "").lower()
    names = {ctx.address.lower(), (ctx.device.hostname or "").lower()} - {""}
    default = 443 if endpoint.tls else 80
    if host not in names or (parts.port or default) != endpoint.port:
        return None
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


async def visit(ctx: DeviceContext, endpoint: HttpEndpoint, path: str) -> Visit:
    """GET `path`, following redirects that stay on the listener (at most MAX_REDIRECTS)."""
    hops = [await ctx.observe(fetch, endpoint.port, endpoint.tls, path)]
    base = url_of(ctx, endpoint.port, endpoint.tls, path)
    for _ in range(MAX_REDIRECTS):
        last = hops[-1]
        if not last.redirect:
            break
        target = urljoin(base, last.header("location") or "")
        following = _same_listener(ctx, endpoint, target)
        if following is None:
            return Visit(endpoint, path, tuple(hops), excerpt(target.encode("utf-8")))
        base = target
        hops.append(await ctx.observe(fetch, endpoint.port, endpoint.tls, following))
    return Visit(endpoint, path, tuple(hops))


def looks_like_login(visit: Visit) -> bool:
    """Whether the visit ended at a login page: a login-like path or a password form."""
    final = visit.final
    if visit.left_to is not None:
        return bool(_LOGIN_PATH.search(urlsplit(visit.left_to).path))
    return final.login_form or (len(visit.hops) > 1 and final.success
                                and bool(_LOGIN_PATH.search(final.path)))


def protected_paths(params: Mapping[str, Any]) -> list[str]:
    paths = params.get("protected_paths", list(DEFAULT_PROTECTED))
    if not isinstance(paths, list) or not all(isinstance(p, str) and p.startswith("/")
                                              for p in paths):
        raise ObservationError("profile", f"{AUTHENTICATION}: protected_paths must be a list "
                               "of paths starting with /")
    return list(dict.fromkeys(paths))


async def http_roots(ctx: DeviceContext) -> tuple[Visit, ...]:
    """Collector: `/` of every listener."""
    endpoints = await ctx.observe(http_endpoints)
    return tuple(await asyncio.gather(*(visit(ctx, e, "/") for e in endpoints)))


async def http_protected(ctx: DeviceContext) -> tuple[Visit, ...]:
    """Collector: every protected path (http.authentication's `protected_paths`) of every
    listener, without credentials."""
    paths = protected_paths(ctx.params_for(AUTHENTICATION))
    endpoints = await ctx.observe(http_endpoints)
    return tuple(await asyncio.gather(*(visit(ctx, e, p) for e in endpoints for p in paths)))


async def security_txt(ctx: DeviceContext) -> tuple[Visit, ...]:
    """Collector: /.well-known/security.txt of every HTTPS listener."""
    endpoints = await ctx.observe(http_endpoints)
    return tuple(await asyncio.gather(*(visit(ctx, e, SECURITY_TXT) for e in endpoints
                                        if e.tls)))


# ---------------------------------------------------------------------------------------------
# Default credentials (intrusive)
# ---------------------------------------------------------------------------------------------


def challenge_scheme(response: Response) -> str | None:
    """"basic" or "digest" when the 401 asks for one of them (digest preferred), else None."""
    if response.status != 401:
        return None
    offered = " ".join(response.all("www-authenticate")).lower()
    if re.search(r"(^|[\s,])digest\b", offered):
        return "digest"
    if re.search(r"(^|[\s,])basic\b", offered):
        return "basic"
    return None


@dataclass(frozen=True)
class Attempt:
    username: str
    status: int | None
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status is not None and self.status < 400

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"username": self.username, "status": self.status}
        if self.error:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class CredentialTrial:
    """The default pairs tried on one authenticated path of one listener."""

    endpoint: HttpEndpoint
    path: str
    scheme: str
    attempts: tuple[Attempt, ...]

    @property
    def accepted(self) -> Attempt | None:
        return next((a for a in self.attempts if a.accepted), None)

    @property
    def undecided(self) -> Attempt | None:
        last = self.attempts[-1] if self.attempts else None
        return last if last is not None and last.status is None else None


def authenticated_paths(visits: Sequence[Visit]) -> list[tuple[HttpEndpoint, str, str]]:
    """(listener, path, scheme) for the first path of each listener that asked for Basic or
    Digest credentials."""
    out: dict[int, tuple[HttpEndpoint, str, str]] = {}
    for item in visits:
        scheme = challenge_scheme(item.final)
        if scheme is not None and item.endpoint.port not in out:
            out[item.endpoint.port] = (item.endpoint, item.final.path, scheme)
    return list(out.values())


async def default_credentials(ctx: DeviceContext) -> tuple[CredentialTrial, ...]:
    """Collector (intrusive): the profile's default pairs on the first Basic/Digest-protected
    path of each listener, paced `pace_seconds` apart across the device, stopping at the first
    accepted pair or the first attempt that gets no answer."""
    params = ctx.params_for(DEFAULT_CREDENTIALS)
    pairs = default_pairs(params, DEFAULT_CREDENTIALS)
    pace = params.get("pace_seconds", 1.0)
    if not isinstance(pace, int | float) or isinstance(pace, bool) or pace < 0:
        raise ObservationError("profile", f"{DEFAULT_CREDENTIALS}: pace_seconds must be a "
                               "number of seconds")
    roots, protected = await asyncio.gather(ctx.observe(http_roots),
                                            ctx.observe(http_protected))
    loop = asyncio.get_running_loop()
    last: float | None = None
    trials = []
    for endpoint, path, scheme in authenticated_paths([*roots, *protected]):
        attempts: list[Attempt] = []
        for username, password in pairs:
            if last is not None:
                await asyncio.sleep(max(0.0, last + float(pace) - loop.time()))
            auth: httpx.Auth = (httpx.DigestAuth(username, password) if scheme == "digest"
                                else httpx.BasicAuth(username, password))
            answer = await request(ctx, endpoint.port, endpoint.tls, path, auth)
            last = loop.time()
            attempts.append(Attempt(username, answer.status, answer.error))
            if answer.status is None or answer.status < 400:
                break
        trials.append(CredentialTrial(endpoint, path, scheme, tuple(attempts)))
    return tuple(trials)


def date_of(response: Response) -> float | None:
    """The response's Date header as epoch seconds, or None (missing or unreadable)."""
    value = response.header("date")
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
