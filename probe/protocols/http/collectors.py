"""HTTP(S) collectors: the device's web listeners and what they answer.

Every connection is opened with `ctx.connect` (through `probe.protocols.http.wire`), so each one
is scoped to the device, rate-limited, holds a device slot and is bounded by the timeout. URLs
name the device's address (never a name to look up); the Host header and the TLS server name
carry the inventory hostname when there is one. Certificates are not checked here (the TLS
checks do that), bodies are read up to `MAX_BODY` bytes, redirects are followed only within the
listener (at most `MAX_REDIRECTS`), and each URL is fetched once per device (`fetch` is a
per-URL collector), whichever checks read it. A request costs at most three times the timeout,
counted from when it was made, its wait for the connection included, and each read at most the
timeout.

Credential trials (`default_credentials`, intrusive) use Basic or Digest as the listener asks,
paced and bounded, and stop at the first accepted pair; passwords never leave the request.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import ipaddress
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpcore
import httpx

from probe.context import DeviceContext
from probe.observe.discovery import Services, services
from probe.observe.tcp import excerpt
from probe.protocols.http.wire import (
    MAX_BODY,
    NETWORK_ERRORS,
    Get,
    Listener,
    credential_client,
)

SECURITY_TXT = "/.well-known/security.txt"
MAX_REDIRECTS = 3
UNUSABLE_CHALLENGE = (ValueError, KeyError, NotImplementedError)
"""What httpx's Digest flow raises on a challenge it cannot answer (a field without '=', an
unknown algorithm, qop=auth-int only): the device's answer, not the probe's failure."""
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


@functools.lru_cache(maxsize=1024)
def _target(tls: bool, path: str) -> bytes:
    """The request target httpx sends for `path`, a path that starts with "/" (its parsing, dot
    segments removed, percent-encoded), once per path: after the device's address and port
    (always valid) that "/" ends the authority, so the target does not depend on them, and
    every device of a fleet asks for the same few paths."""
    return httpx.URL(f"{'https' if tls else 'http'}://host{path}").raw_path


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
    get = Get(_target(tls, path) if path.startswith("/")
              else httpx.URL(url_of(ctx, port, tls, path)).raw_path,
               [("Host", host_header(ctx, port, tls)), ("Connection", "keep-alive"),
                ("User-Agent", USER_AGENT), ("Accept", "*/*"), ("Accept-Encoding", "identity")],
               time.time())
    try:
        async with ctx.shared(("http", port, tls),
                              functools.partial(Listener, ctx, port, tls)) as listener, \
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
        async with credential_client(ctx) as session, asyncio.timeout(ctx.timeout * 3), \
                session.stream("GET", url_of(ctx, port, tls, path), headers=headers, auth=auth,
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
    except UNUSABLE_CHALLENGE as exc:
        return Response(port, tls, path, sent_at=sent, received_at=time.time(),
                        error=f"an unusable WWW-Authenticate challenge: {_describe(exc)}")
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
    left_path: str = ""  # the path of that redirect's target
    unusable: str | None = None  # why the last hop's Location could not be followed, if so

    @property
    def final(self) -> Response:
        return self.hops[-1]

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "responses": [h.evidence() for h in self.hops]}
        if self.left_to is not None:
            out["left_to"] = self.left_to
        if self.unusable is not None:
            out["unusable_location"] = self.unusable
        return out


def _same_listener(ctx: DeviceContext, endpoint: HttpEndpoint, url: str) -> str | None:
    """The path of `url` if it points back at this listener, else None. Characters a request
    line cannot carry (controls, spaces, non-ASCII from a device's Location) are
    percent-encoded, as a browser does. Raises ValueError when the URL's host or port cannot
    be read (an unclosed [v6 literal, a port out of range or not a number)."""
    parts = urlsplit(url)
    port = parts.port
    if parts.scheme != endpoint.scheme:
        return None
    host = (parts.hostname or "").lower()
    names = {ctx.address.lower(), (ctx.device.hostname or "").lower()} - {""}
    default = 443 if endpoint.tls else 80
    if host not in names or (default if port is None else port) != endpoint.port:
        return None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return quote(_LONE_PERCENT.sub("%25", path), safe=_REQUEST_SAFE)


_REQUEST_SAFE = "!#$%&'()*+,/:;=?@[]~"
"""Characters of a followed path sent as they are; the rest are percent-encoded."""
_LONE_PERCENT = re.compile("%(?![0-9A-Fa-f]{2})")
"""A `%` that starts no escape: sent as %25."""


async def visit(ctx: DeviceContext, endpoint: HttpEndpoint, path: str) -> Visit:
    """GET `path`, following redirects that stay on the listener (at most MAX_REDIRECTS). A
    Location that cannot be parsed ends the visit there, named in `unusable`: the device's
    malformed header is this path's own outcome, never an exception for the whole device."""
    hops = [await ctx.observe(fetch, endpoint.port, endpoint.tls, path)]
    base = url_of(ctx, endpoint.port, endpoint.tls, path)
    for _ in range(MAX_REDIRECTS):
        last = hops[-1]
        if not last.redirect:
            break
        location = last.header("location") or ""
        try:
            target = urljoin(base, location)
            following = _same_listener(ctx, endpoint, target)
        except ValueError as exc:
            said = str(exc).encode("latin-1", "replace")  # it may quote the device's host
            why = f"{excerpt(location.encode('latin-1', 'replace'), 120)} ({excerpt(said, 80)})"
            return Visit(endpoint, path, tuple(hops), unusable=why)
        if following is None:
            return Visit(endpoint, path, tuple(hops), excerpt(target.encode("utf-8")),
                         urlsplit(target).path)
        base = target
        hops.append(await ctx.observe(fetch, endpoint.port, endpoint.tls, following))
    return Visit(endpoint, path, tuple(hops))


def looks_like_login(visit: Visit) -> bool:
    """Whether the visit ended at a login page: a login-like path or a password form."""
    final = visit.final
    if visit.left_to is not None:
        return bool(_LOGIN_PATH.search(visit.left_path))
    return final.login_form or (len(visit.hops) > 1 and final.success
                                and bool(_LOGIN_PATH.search(final.path)))


async def http_roots(ctx: DeviceContext) -> tuple[Visit, ...]:
    """Collector: `/` of every listener."""
    endpoints = await ctx.observe(http_endpoints)
    return tuple(await asyncio.gather(*(visit(ctx, e, "/") for e in endpoints)))


async def http_protected(ctx: DeviceContext, *, paths: tuple[str, ...]) -> tuple[Visit, ...]:
    """Collector: each of `paths` (duplicates once) of every listener, without credentials."""
    endpoints = await ctx.observe(http_endpoints)
    unique = dict.fromkeys(paths)
    return tuple(await asyncio.gather(*(visit(ctx, e, p) for e in endpoints for p in unique)))


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
class HttpAttempt:
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
    attempts: tuple[HttpAttempt, ...]

    @property
    def accepted(self) -> HttpAttempt | None:
        return next((a for a in self.attempts if a.accepted), None)

    @property
    def undecided(self) -> HttpAttempt | None:
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


async def default_credentials(ctx: DeviceContext, *, paths: tuple[str, ...],
                              pairs: tuple[tuple[str, str], ...], pace: float
                              ) -> tuple[CredentialTrial, ...]:
    """Collector (intrusive): the (username, password) `pairs` on the first Basic/Digest-
    protected path (of `/` and `paths`) of each listener, paced `pace` seconds apart across the
    device, stopping at the first accepted pair or the first attempt that gets no answer."""
    roots, protected = await asyncio.gather(ctx.observe(http_roots),
                                            ctx.observe(http_protected, paths=paths))
    loop = asyncio.get_running_loop()
    last: float | None = None
    trials = []
    for endpoint, path, scheme in authenticated_paths([*roots, *protected]):
        attempts: list[HttpAttempt] = []
        for username, password in pairs:
            if last is not None:
                await asyncio.sleep(max(0.0, last + float(pace) - loop.time()))
            auth: httpx.Auth = (httpx.DigestAuth(username, password) if scheme == "digest"
                                else httpx.BasicAuth(username, password))
            answer = await request(ctx, endpoint.port, endpoint.tls, path, auth)
            last = loop.time()
            attempts.append(HttpAttempt(username, answer.status, answer.error))
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
    except (TypeError, ValueError, OverflowError):  # e.g. a year or offset of 20 digits
        return None
