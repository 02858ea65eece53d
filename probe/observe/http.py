"""HTTP(S) collectors: the device's web listeners and what they answer.

Requests go through httpx with a network backend that opens every connection with
`ctx.connect`, so each one is scoped to the device, rate-limited, holds a device slot and is
bounded by the timeout. URLs name the device's address (never a name to look up); the Host
header and the TLS server name carry the inventory hostname when there is one. Certificates are
not checked here (the TLS checks do that), bodies are read up to `MAX_BODY` bytes, redirects are
followed only within the listener (at most `MAX_REDIRECTS`), and each URL is fetched once per
device (`fetch` is a per-URL collector), whichever checks read it.

The GETs without credentials that run at the same time on one listener share one client and
one keep-alive connection (`ctx.shared`), one request after the other; the last of them to
finish closes it, which gives its device slot back. A request that fails on a connection that
had already answered (the device may drop idle connections) is sent again on a new one, so only
a connection opened for the request itself can fail it, as when each request had its own. A
truncated body closes its connection, and a request still costs at most its timeout, counted
from when it was made, its wait for the connection included.

Credential trials (`default_credentials`, intrusive) use Basic or Digest as the listener asks,
paced and bounded, and stop at the first accepted pair; passwords never leave the request. Each
trial has a client and a connection of its own (`Connection: close`), as the device counts and
times login attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import http.cookiejar
import ipaddress
import re
import ssl
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

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
# The transport: httpx over ctx.connect
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
        if info == "is_readable":  # asked of an idle connection: has the device dropped it?
            return self._reader.at_eof() or self._reader.exception() is not None
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


_DROPPED = (httpcore.ReadError, httpcore.WriteError, httpcore.RemoteProtocolError)
"""How a request ends on a kept-alive connection that the device closed or reset meanwhile."""


class _Attempt:
    """The trace extension of one attempt at a request: notes whether the attempt opened a
    connection of its own, and passes every event on to the request's own trace, if any."""

    def __init__(self, trace: Any) -> None:
        self.fresh = False
        self._trace = trace

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.started":
            self.fresh = True
        if self._trace is not None:
            await self._trace(event, info)


class _Transport(httpx.AsyncBaseTransport):
    """httpx's transport interface over an httpcore pool of one connection at a time, which
    connects through `ctx`: kept alive for the next request, or one request per connection.

    A request that fails with `_DROPPED` on a connection that had already answered (the attempt
    opened no connection of its own) is sent again, until an attempt on a new connection
    answers or fails. This ends: each such failure closes a connection that another request
    opened, and a request opens at most one."""

    def __init__(self, ctx: DeviceContext, keep_alive: bool) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=_observer_tls(), max_connections=1,
            max_keepalive_connections=1 if keep_alive else 0, retries=0,
            network_backend=_Backend(ctx))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        while True:
            attempt = _Attempt(request.extensions.get("trace"))
            try:
                response = await self._pool.handle_async_request(_core(request, attempt))
            except _DROPPED:
                if attempt.fresh:
                    raise
                continue
            return httpx.Response(status_code=response.status, headers=response.headers,
                                  stream=_Body(response.stream), extensions=response.extensions)

    async def aclose(self) -> None:
        await self._pool.aclose()


def _core(request: httpx.Request, trace: _Attempt) -> httpcore.Request:
    """The httpcore request for `request`, traced by `trace`."""
    assert isinstance(request.stream, httpx.AsyncByteStream)
    return httpcore.Request(
        method=request.method,
        url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                         port=request.url.port, target=request.url.raw_path),
        headers=request.headers.raw, content=request.stream,
        extensions={**request.extensions, "trace": trace})


def _client(ctx: DeviceContext, keep_alive: bool) -> httpx.AsyncClient:
    """A client over `_Transport`: redirects not followed, no environment, no pool timeout
    (`request` bounds the whole request). A keep-alive client is shared by unrelated requests,
    so it keeps no cookies: each request sends only what it would send alone."""
    no_domain = http.cookiejar.DefaultCookiePolicy(allowed_domains=())
    return httpx.AsyncClient(
        transport=_Transport(ctx, keep_alive), timeout=httpx.Timeout(ctx.timeout, pool=None),
        follow_redirects=False, trust_env=False,
        cookies=http.cookiejar.CookieJar(no_domain) if keep_alive else None)


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
                  httpcore.ProtocolError, httpcore.UnsupportedProtocol, OSError, ssl.SSLError,
                  TimeoutError)


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


def _host(address: str) -> str:
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
    headers = {"Host": host_header(ctx, port, tls), "User-Agent": USER_AGENT,
               "Accept": "*/*", "Accept-Encoding": "identity"}
    client: contextlib.AbstractAsyncContextManager[httpx.AsyncClient]
    if auth is None:
        client = ctx.shared(("http", port, tls), functools.partial(_client, ctx, True))
    else:
        headers["Connection"] = "close"
        client = _client(ctx, keep_alive=False)
    sent = time.time()

    async def on_event(event: str, info: dict[str, Any]) -> None:
        nonlocal sent
        if event == "http11.send_request_headers.started":
            sent = time.time()

    body = bytearray()
    truncated = False
    try:
        async with client as session, asyncio.timeout(ctx.timeout * 3), session.stream(
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
