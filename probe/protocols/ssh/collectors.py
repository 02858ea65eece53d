"""SSH collectors: the server's algorithm lists and host keys, its authentication methods, and
(intrusive) default-credential trials.

What is cleartext is read here, by `probe.protocols.ssh.codec`, over `ctx.connect`: the version
line and the server's KEXINIT (sent right after the version exchange), and each host key, which
opens the server's reply to the first key-exchange message (KEXDH_REPLY, KEX_ECDH_REPLY or
GEX_REPLY). One connection per host key type, offering only that type and one key exchange the
server lists, is how a server shows every key it holds (ssh-audit asks the same way); the
connection ends as soon as the key is read, no keys are ever derived.

What needs the encrypted transport (the `none` request whose failure lists the authentication
methods, password trials) is done by paramiko, over the socket of a connection the device
context opened: the context's slot, rate token and count hold, the asyncio transport is paused
while paramiko reads, and each paramiko operation is bounded by the scan's timeout. paramiko
rather than asyncssh because it works over a given blocking socket and reports the methods a
server lists (BadAuthenticationType.allowed_types). It negotiates only what it supports
(no diffie-hellman-group1/group14-sha1, no SHA-1 ssh-rsa signatures, no post-quantum hybrid
key exchange; curve25519-sha256 is taught under its RFC 8731 name): a server that offers nothing
else cannot be asked about authentication, which the checks report as an error.

Passwords are revealed only to paramiko; evidence names usernames, never passwords.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from paramiko.kex_curve25519 import KexCurve25519
from paramiko.kex_group14 import KexGroup14SHA256
from paramiko.kex_group16 import KexGroup16SHA512

from probe.context import DeviceContext
from probe.observe.discovery import Services, services
from probe.observe.tcp import excerpt
from probe.protocols.ssh import codec
from probe.protocols.ssh.codec import HostKey, KexInit, MalformedMessage
from probe.protocols.ssh.ident import SERVICE

T = TypeVar("T")

_PARAMIKO_LOG = logging.getLogger("paramiko")
_PARAMIKO_LOG.addHandler(logging.NullHandler())
_PARAMIKO_LOG.propagate = False  # its thread's tracebacks are not the scan's: evidence says why

PROBE_USER = "iotprobe"
"""The user name of the `none` authentication request that asks for the methods list."""
MAX_HOST_KEY_PROBES = 6
KEY_FAMILIES = (("ssh-ed25519",), ("ssh-ed448",), ("ecdsa-sha2-nistp256",),
                ("ecdsa-sha2-nistp384",), ("ecdsa-sha2-nistp521",),
                ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"), ("ssh-dss",))
"""Host key algorithms by the key they use: one connection reads the key of a family."""
CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ecdh-sha2-nistp256": ec.SECP256R1, "ecdh-sha2-nistp384": ec.SECP384R1,
    "ecdh-sha2-nistp521": ec.SECP521R1}
GROUPS = {"diffie-hellman-group14-sha256": KexGroup14SHA256.P,
          "diffie-hellman-group14-sha1": KexGroup14SHA256.P,
          "diffie-hellman-group16-sha512": KexGroup16SHA512.P}
GEX = ("diffie-hellman-group-exchange-sha256", "diffie-hellman-group-exchange-sha1")
GEX_BITS = (2048, 2048, 8192)
"""The group sizes asked for: minimum, preferred, maximum."""
X25519 = ("curve25519-sha256", "curve25519-sha256@libssh.org")
USABLE_KEX = (*X25519, *CURVES, *GROUPS, *GEX)
"""The key exchanges whose first message the probe can write, in its order of preference."""


# ---------------------------------------------------------------------------------------------
# Cleartext: the version exchange, KEXINIT and host keys
# ---------------------------------------------------------------------------------------------


class _Wire:
    """The unencrypted start of one SSH connection, every read bounded by the scan timeout."""

    def __init__(self, ctx: DeviceContext, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.ctx, self.reader, self.writer = ctx, reader, writer
        self.buffer = b""

    async def _fill(self, done: Callable[[bytes], bool], cap: int, what: str) -> None:
        """Read until `done(buffer)`; at once when what came with an earlier read is enough
        (a server often sends its KEXINIT in the same segment as its version line)."""
        if done(self.buffer):
            return
        data, stalled = await self.ctx.read(self.reader, cap, until=lambda d: done(
            self.buffer + d))
        self.buffer += data
        if not done(self.buffer):
            why = "no answer before the deadline" if stalled else (
                "the connection closed" if len(self.buffer) < cap else "too much data")
            raise MalformedMessage(f"{why} while waiting for {what}")

    async def version(self) -> str:
        """Send the client's version line; the server's."""
        self.writer.write(codec.CLIENT_VERSION)
        await self.writer.drain()
        await self._fill(lambda d: codec.version_line(d) is not None, codec.MAX_VERSION_BYTES,
                         "the version line")
        found = codec.version_line(self.buffer)
        assert found is not None
        line, end = found
        self.buffer = self.buffer[end:]
        if not line.startswith(("SSH-2.0-", "SSH-1.99-")):
            raise MalformedMessage(f"version {line!r} is not SSH 2")
        return line

    async def message(self) -> bytes:
        await self._fill(lambda d: codec.packet_size(d) is not None, codec.MAX_PACKET,
                         "a packet")
        size = codec.packet_size(self.buffer)
        assert size is not None
        whole, self.buffer = self.buffer[:size], self.buffer[size:]
        return codec.payload(whole)

    async def send(self, message: bytes) -> None:
        self.writer.write(codec.packet(message))
        await self.writer.drain()


@dataclass(frozen=True)
class Endpoint:
    port: int
    banner: str

    @property
    def target(self) -> str:
        return f"tcp/{self.port}"


async def endpoints(ctx: DeviceContext) -> tuple[Endpoint, ...]:
    """Collector: the ports identification found speaking SSH, with their version lines."""
    found: Services = await ctx.observe(services)
    return tuple(Endpoint(i.port, str(i.evidence.get("banner", i.detail)))
                 for i in found.tcp if i.protocol == SERVICE)


@dataclass(frozen=True)
class KeyProbe:
    """What the connection that offered only `algorithm` read."""

    algorithm: str
    key: HostKey | None
    problem: str = ""


@dataclass(frozen=True)
class Algorithms:
    """An endpoint's algorithm lists (None when unread) and the host keys behind them."""

    endpoint: Endpoint
    kexinit: KexInit | None
    keys: tuple[KeyProbe, ...] = ()
    problem: str = ""


async def _server_kexinit(ctx: DeviceContext, port: int) -> KexInit:
    async with ctx.connect(port) as (reader, writer):
        wire = _Wire(ctx, reader, writer)
        await wire.version()
        return codec.parse_kexinit(await wire.message())


def _first_message(kex: str, group: tuple[int, int] | None) -> bytes:
    """The client's first key-exchange message for `kex` (an ephemeral key of its own: the
    host key in the reply does not depend on it)."""
    if kex in X25519:
        public = x25519.X25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return bytes([codec.KEXDH_INIT]) + codec.string(public)
    if kex in CURVES:
        point = ec.generate_private_key(CURVES[kex]()).public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return bytes([codec.KEXDH_INIT]) + codec.string(point)
    prime, generator = group if group is not None else (GROUPS[kex], 2)
    secret = int.from_bytes(secrets.token_bytes(32), "big") | 1
    kind = codec.GEX_INIT if group is not None else codec.KEXDH_INIT
    return bytes([kind]) + codec.mpint(pow(generator, secret, prime))


async def _host_key(ctx: DeviceContext, port: int, kex: str, algorithm: str) -> HostKey:
    async with ctx.connect(port) as (reader, writer):
        wire = _Wire(ctx, reader, writer)
        await wire.version()
        server = codec.parse_kexinit(await wire.message())
        await wire.send(codec.kexinit((kex,), (algorithm,), server))
        group = None
        if kex in GEX:
            await wire.send(bytes([codec.GEX_REQUEST]) + struct.pack(">III", *GEX_BITS))
            group = codec.gex_group(await wire.message())
        await wire.send(_first_message(kex, group))
        reply = codec.GEX_REPLY if group is not None else codec.KEXDH_REPLY
        return codec.reply_host_key(await wire.message(), reply)


def _probed(host_keys: tuple[str, ...]) -> list[str]:
    """One algorithm of each key family the server lists (its first), at most
    MAX_HOST_KEY_PROBES; certificate algorithms are not probed."""
    out = []
    for family in KEY_FAMILIES:
        offered = [name for name in host_keys if name in family]
        if offered:
            out.append(offered[0])
    return out[:MAX_HOST_KEY_PROBES]


async def _endpoint_algorithms(ctx: DeviceContext, endpoint: Endpoint) -> Algorithms:
    try:
        server = await _server_kexinit(ctx, endpoint.port)
    except (MalformedMessage, OSError, TimeoutError) as exc:
        return Algorithms(endpoint, None, problem=_reason(exc))
    kex = next((name for name in USABLE_KEX if name in server.kex), None)
    keys = []
    for algorithm in _probed(server.host_key):
        if kex is None:
            keys.append(KeyProbe(algorithm, None, "the server lists no key exchange the probe "
                                 "can start"))
            continue
        try:
            keys.append(KeyProbe(algorithm, await _host_key(ctx, endpoint.port, kex,
                                                            algorithm)))
        except (MalformedMessage, OSError, TimeoutError) as exc:
            keys.append(KeyProbe(algorithm, None, _reason(exc)))
    return Algorithms(endpoint, server, tuple(keys))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer before the deadline"
    return excerpt((str(exc) or type(exc).__name__).encode("latin-1", "replace"), 160)


async def algorithms(ctx: DeviceContext) -> tuple[Algorithms, ...]:
    """Collector: each SSH endpoint's KEXINIT lists and host keys."""
    return tuple([await _endpoint_algorithms(ctx, e) for e in await ctx.observe(endpoints)])


# ---------------------------------------------------------------------------------------------
# Encrypted: authentication, by paramiko over a context connection
# ---------------------------------------------------------------------------------------------


def _paramiko(sock: socket.socket, timeout: float,
              work: Callable[[paramiko.Transport], T]) -> T:
    """`work` on a paramiko client transport over `sock`, closed after; blocking."""
    sock.setblocking(True)
    sock.settimeout(timeout)
    transport = paramiko.Transport(sock)
    transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = timeout
    # RFC 8731's name for the key exchange paramiko knows only as curve25519-sha256@libssh.org
    # (the same exchange): hardened servers may list only it.
    transport._kex_info = {**transport._kex_info, "curve25519-sha256": KexCurve25519}
    transport._preferred_kex = ("curve25519-sha256", *transport._preferred_kex)
    try:
        transport.start_client(timeout=timeout)
        return work(transport)
    finally:
        transport.close()


def _in_thread(fn: Callable[[], T]) -> asyncio.Future[T]:
    """`fn()` in a thread of its own, as a future of the running loop. Not the context's
    shared pool: a session's connection is already open, so its deadline must not include
    a wait for a thread that sslyze holds."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(cast(T, value))

    def run() -> None:
        try:
            value = fn()
        except BaseException as exc:  # handed to the loop: raised where the future is awaited
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(settle, None, exc)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, value, None)

    threading.Thread(target=run, name="iotprobe-ssh", daemon=True).start()
    return future


async def _session(ctx: DeviceContext, port: int, work: Callable[[paramiko.Transport], T]) -> T:
    """`work` over a connection the device context opened (its slot, rate and count). The
    asyncio side is paused while paramiko, in a thread, owns a duplicate of the socket; past
    three timeouts (the handshake's, authentication's, and slack) the socket is shut down,
    which ends paramiko's reads."""
    async with ctx.connect(port) as (_, writer):
        transport = writer.transport
        assert isinstance(transport, asyncio.ReadTransport)
        transport.pause_reading()
        raw = writer.get_extra_info("socket")
        sock = raw.dup()
        try:
            async with asyncio.timeout(ctx.timeout * 3):
                return await asyncio.shield(_in_thread(
                    functools.partial(_paramiko, sock, ctx.timeout, work)))
        finally:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@dataclass(frozen=True)
class Methods:
    """The authentication methods an endpoint lists to a `none` request."""

    endpoint: Endpoint
    methods: tuple[str, ...] = ()
    none_accepted: bool = False
    problem: str = ""


def _names(methods: list[str]) -> tuple[str, ...]:
    return tuple(str(m)[:codec.MAX_NAME] for m in methods)[:codec.MAX_NAMES]


def _list_methods(transport: paramiko.Transport) -> tuple[bool, tuple[str, ...]]:
    """(whether `none` logged in, the methods listed); a partial success with `none` lists
    the methods still asked for and logs nobody in."""
    try:
        further = transport.auth_none(PROBE_USER)
    except paramiko.BadAuthenticationType as exc:
        return False, _names(exc.allowed_types)
    return not further, _names(further)


async def _methods(ctx: DeviceContext, endpoint: Endpoint) -> Methods:
    try:
        accepted, listed = await _session(ctx, endpoint.port, _list_methods)
    except (paramiko.SSHException, OSError, EOFError, TimeoutError) as exc:
        return Methods(endpoint, problem=_reason(exc))
    return Methods(endpoint, listed, accepted)


async def auth_methods(ctx: DeviceContext) -> tuple[Methods, ...]:
    """Collector: what each SSH endpoint answers to a `none` authentication request."""
    return tuple([await _methods(ctx, e) for e in await ctx.observe(endpoints)])


AttemptResult = Literal["accepted", "refused", "no-method", "undecided"]


@dataclass(frozen=True)
class Attempt:
    username: str
    result: AttemptResult
    detail: str = ""

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"username": self.username, "result": self.result}
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class Trial:
    endpoint: Endpoint
    attempts: tuple[Attempt, ...]

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None


REFUSAL = "Authentication failed."
"""What paramiko raises for a USERAUTH_FAILURE without partial success: the only refusal.
Its other authentication errors (a timeout, the transport shut down) decide nothing."""


def _answers(username: str, password: str) -> Callable[[str, str, list[tuple[str, bool]]],
                                                       list[str]]:
    """A keyboard-interactive handler: the password to every prompt that hides its answer,
    the user name to one that echoes it."""
    def handler(title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
        return [username if echo else password for _, echo in prompts]
    return handler


def _refusal(exc: paramiko.AuthenticationException) -> tuple[AttemptResult, str]:
    said = str(exc)
    return ("refused", "") if said == REFUSAL else ("undecided", said[:160])


def _accepted(further: list[str]) -> tuple[AttemptResult, str]:
    """A login; `further` lists the methods a server that wants a second factor still asks
    for (the password itself was right)."""
    if not further:
        return "accepted", ""
    return "accepted", ("the password was accepted; the server asks for a further method "
                        f"({', '.join(str(m)[:codec.MAX_NAME] for m in further[:8])})")


def _password(username: str, password: str
              ) -> Callable[[paramiko.Transport], tuple[AttemptResult, str]]:
    """One login: `password`, or, where the server does not take that method but offers
    keyboard-interactive, the same password through it."""
    def attempt(transport: paramiko.Transport) -> tuple[AttemptResult, str]:
        try:
            return _accepted(transport.auth_password(username, password, fallback=False))
        except paramiko.BadAuthenticationType as exc:
            if "keyboard-interactive" not in exc.allowed_types:
                return "no-method", ""
        except paramiko.AuthenticationException as exc:
            return _refusal(exc)
        try:
            return _accepted(transport.auth_interactive(username, _answers(username, password)))
        except paramiko.AuthenticationException as exc:
            return _refusal(exc)
    return attempt


async def _attempt(ctx: DeviceContext, port: int, username: str, password: str) -> Attempt:
    try:
        return Attempt(username, *await _session(ctx, port, _password(username, password)))
    except (paramiko.SSHException, OSError, EOFError, TimeoutError) as exc:
        return Attempt(username, "undecided", _reason(exc))


async def default_credentials(ctx: DeviceContext, *, pairs: tuple[tuple[str, str], ...],
                              pace: float) -> tuple[Trial, ...]:
    """Collector (intrusive): the (username, password) `pairs` on each SSH endpoint, a
    connection each, `pace` seconds apart across the device; the trial of an endpoint stops at
    the first pair accepted, the first attempt without a decisive answer, or when the server
    offers no password method."""
    loop = asyncio.get_running_loop()
    last: float | None = None
    trials = []
    for endpoint in await ctx.observe(endpoints):
        attempts: list[Attempt] = []
        for username, password in pairs:
            if last is not None:
                await asyncio.sleep(max(0.0, last + pace - loop.time()))
            attempt = await _attempt(ctx, endpoint.port, username, password)
            last = loop.time()
            attempts.append(attempt)
            if attempt.result != "refused":
                break
        trials.append(Trial(endpoint, tuple(attempts)))
    return tuple(trials)
