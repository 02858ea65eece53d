"""Syslog reception for the monitoring checks: the probe's own listener and the message parsers.

The probe receives syslog where the inventory says (`monitor.syslog.listen`):
`udp://ADDRESS:PORT` (one message per datagram, RFC 5426), `tcp://ADDRESS:PORT` (RFC 6587:
octet counting or LF-terminated frames, told apart frame by frame) or `tls://ADDRESS:PORT`
(RFC 5425: TLS 1.2 or later with `cert_file`/`key_file`, octet counting; a `ca_file` makes the
listener require a client certificate from that CA). Messages are parsed as RFC 5424 when they
carry a version after the PRI, else as RFC 3164 (BSD), else kept as text.

A listener is shared: every check of every device that names the same `listen` URL during one
event loop subscribes to one socket, which is bound when the first subscriber arrives and closed
when the last one leaves; each subscriber sees every message and keeps what it matches. Limits
hold whatever senders do: `MAX_MESSAGE` bytes per message, `MAX_CONNECTIONS` stream senders at
once, `IDLE_TIMEOUT` of silence per stream sender, `HANDSHAKE_TIMEOUT` per TLS handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

Scheme = Literal["udp", "tcp", "tls"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_MESSAGE = 64 * 1024
MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 300.0
HANDSHAKE_TIMEOUT = 10.0
FORBIDDEN_PORT = 2024
MAX_FORWARDERS = 64
_SCHEMES: tuple[Scheme, ...] = ("udp", "tcp", "tls")
_LENGTH_DIGITS = 10
_PRI = re.compile(r"<(\d{1,3})>")
_BSD_TIME = re.compile(r"([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)\s+")
_BSD_TAG = re.compile(r"([^\s:\[]{1,48})(?:\[([^\]\s]{1,32})\])?:(?: |$)")


# ---------------------------------------------------------------------------------------------
# Where to listen
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListenSpec:
    """A `monitor.syslog` entry: where the probe listens and, for TLS, with what."""

    scheme: Scheme
    host: str
    port: int
    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def encrypted(self) -> bool:
        return self.scheme == "tls"


def parse_listen(value: object) -> tuple[Scheme, str, int]:
    """(scheme, IP literal, port) of a `listen` URL; ValueError says what is wrong."""
    if not isinstance(value, str):
        raise ValueError("listen must be a string such as udp://127.0.0.1:5514")
    parts = urlsplit(value.strip())
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"listen: unknown scheme {parts.scheme!r} (use udp://, tcp:// or "
                         "tls://)")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError("listen takes only scheme://ADDRESS:PORT")
    try:
        host = str(ipaddress.ip_address(parts.hostname or ""))
        port = parts.port
    except ValueError:
        raise ValueError("listen needs an IP address and a port, e.g. udp://127.0.0.1:5514"
                         ) from None
    if port is None or not 0 < port < 65536:
        raise ValueError("listen needs a port between 1 and 65535")
    if port == FORBIDDEN_PORT:
        raise ValueError(f"port {FORBIDDEN_PORT} is reserved and never used by the probe")
    scheme: Scheme = "udp" if parts.scheme == "udp" else (
        "tcp" if parts.scheme == "tcp" else "tls")
    return scheme, host, port


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyslogMessage:
    """One received message, parsed as far as its format allows."""

    text: str
    format: Literal["rfc5424", "rfc3164", "unknown"]
    facility: int | None = None
    severity: int | None = None
    timestamp: str | None = None
    hostname: str | None = None
    app_name: str | None = None
    procid: str | None = None
    msgid: str | None = None
    structured_data: str | None = None
    message: str = ""

    def fields(self) -> dict[str, Any]:
        """The parsed header fields that are present (for evidence)."""
        out: dict[str, Any] = {"format": self.format}
        for name in ("facility", "severity", "timestamp", "hostname", "app_name", "procid",
                     "msgid", "structured_data"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


def _nil(token: str) -> str | None:
    return None if token == "-" else token


def _structured_data(rest: str) -> tuple[str | None, str]:
    """The STRUCTURED-DATA field at the start of `rest` (escapes honoured) and what follows."""
    if rest.startswith("-"):
        return None, rest[1:]
    at = 0
    while at < len(rest) and rest[at] == "[":
        quoted = escaped = False
        at += 1
        while at < len(rest):
            char = rest[at]
            at += 1
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = not quoted
            elif char == "]" and not quoted:
                break
        else:
            raise ValueError("unterminated structured data")
    if at == 0:
        raise ValueError("no structured data")
    return rest[:at], rest[at:]


def _rfc5424(text: str, pri: int, rest: str) -> SyslogMessage:
    head = rest.split(" ", 6)
    if len(head) < 7 or head[0] != "1":
        raise ValueError("not RFC 5424")
    _, timestamp, hostname, app, procid, msgid, tail = head
    data, message = _structured_data(tail)
    message = message[1:] if message.startswith(" ") else message
    message = message.removeprefix("\ufeff")
    return SyslogMessage(text, "rfc5424", pri >> 3, pri & 7, _nil(timestamp), _nil(hostname),
                         _nil(app), _nil(procid), _nil(msgid), data, message)


def _rfc3164(text: str, pri: int, rest: str) -> SyslogMessage:
    timestamp = hostname = app = procid = None
    stamp = _BSD_TIME.match(rest)
    if stamp:
        timestamp, rest = stamp.group(1), rest[stamp.end():]
        first, space, after = rest.partition(" ")
        if space and _BSD_TAG.fullmatch(first + " ") is None:
            hostname, rest = first, after
    tag = _BSD_TAG.match(rest)
    if tag:
        app, procid, rest = tag.group(1), tag.group(2), rest[tag.end():]
    return SyslogMessage(text, "rfc3164", pri >> 3, pri & 7, timestamp, hostname, app, procid,
                         message=rest)


def parse_syslog(data: bytes) -> SyslogMessage:
    """A message as received (one datagram or one frame), parsed; never raises."""
    text = data.decode("utf-8", "replace").rstrip("\r\n\x00")
    pri = _PRI.match(text)
    if pri is None or int(pri.group(1)) > 191:
        return SyslogMessage(text, "unknown", message=text)
    value, rest = int(pri.group(1)), text[pri.end():]
    with contextlib.suppress(ValueError):
        return _rfc5424(text, value, rest)
    return _rfc3164(text, value, rest)


# ---------------------------------------------------------------------------------------------
# Receiving
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """A message and how it came: the listener's URL and scheme, the sender (address:port),
    the moment, and on TLS with client certificates required, the certificate's subject."""

    message: SyslogMessage
    url: str
    scheme: Scheme
    sender: str
    at: float  # time.monotonic()
    subject: str | None = None


Subscriber = Callable[[Received], None]


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, shared: _Shared) -> None:
        self.shared = shared

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.shared.publish(data[:MAX_MESSAGE], f"{addr[0]}:{addr[1]}")


async def _frame(reader: asyncio.StreamReader) -> bytes | None:
    """The next RFC 6587 frame: octet counting when it starts with a digit, else up to LF.
    None at EOF; ValueError for a frame that breaks the limits."""
    first = await reader.read(1)
    if not first:
        return None
    if first.isdigit():
        digits = first
        while (char := await reader.readexactly(1)) != b" ":
            if not char.isdigit() or len(digits) >= _LENGTH_DIGITS:
                raise ValueError("bad octet count")
            digits += char
        length = int(digits)
        if length > MAX_MESSAGE:
            raise ValueError(f"a frame of {length} bytes")
        return await reader.readexactly(length)
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        line = exc.partial
    return first + line


def _subject(certificate: object) -> str | None:
    """The subject of a verified client certificate (`ssl` peercert form) as "CN=..,O=..",
    bounded; None without one."""
    if not isinstance(certificate, dict):
        return None
    parts = [f"{key}={value}" for rdn in certificate.get("subject", ())
             for key, value in rdn]
    return ",".join(parts)[:300] or None


class _Shared:
    """One bound listener and its subscribers."""

    def __init__(self, spec: ListenSpec) -> None:
        self.spec = spec
        self.subscribers: list[Subscriber] = []
        self.server: asyncio.Server | None = None
        self.datagrams: asyncio.DatagramTransport | None = None
        self.clients: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def publish(self, data: bytes, sender: str, subject: str | None = None) -> None:
        received = Received(parse_syslog(data), self.spec.url, self.spec.scheme, sender,
                            time.monotonic(), subject)
        for subscriber in list(self.subscribers):
            subscriber(received)

    def _tls(self) -> ssl.SSLContext:
        spec = self.spec
        if spec.cert_file is None:
            raise ValueError("a tls:// listener needs cert_file (and key_file)")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(spec.cert_file, spec.key_file)
        if spec.ca_file is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=spec.ca_file)
        return context

    async def start(self) -> None:
        spec = self.spec
        loop = asyncio.get_running_loop()
        if spec.scheme == "udp":
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), local_addr=(spec.host, spec.port))
            self.datagrams = transport
            return
        self.server = await asyncio.start_server(
            self._accept, spec.host, spec.port, limit=MAX_MESSAGE,
            ssl=self._tls() if spec.scheme == "tls" else None,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT if spec.scheme == "tls" else None)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or len(self.clients) >= MAX_CONNECTIONS:
            writer.transport.abort()
            return
        self.clients[task] = writer
        peer = writer.get_extra_info("peername")
        sender = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unknown"
        subject = _subject(writer.get_extra_info("peercert"))
        try:
            while True:
                frame = await asyncio.wait_for(_frame(reader), IDLE_TIMEOUT)
                if frame is None:
                    break
                self.publish(frame, sender, subject)
        except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError):
            pass
        finally:
            self.clients.pop(task, None)
            writer.close()

    async def close(self) -> None:
        if self.datagrams is not None:
            self.datagrams.close()
            await asyncio.sleep(0)  # the socket closes on the loop's next turn: let it
        if self.server is not None:
            self.server.close()
            for writer in list(self.clients.values()):
                writer.transport.abort()
            if self.clients:
                _, stuck = await asyncio.wait(list(self.clients), timeout=2.0)
                for task in stuck:
                    task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)


@dataclass
class _Registry:
    open: dict[tuple[int, str], _Shared] = field(default_factory=dict)
    users: dict[tuple[int, str], int] = field(default_factory=dict)
    closing: dict[tuple[int, str], asyncio.Future[None]] = field(default_factory=dict)


_REGISTRY = _Registry()


@contextlib.asynccontextmanager
async def listening(spec: ListenSpec, subscriber: Subscriber) -> AsyncIterator[ListenSpec]:
    """Receive every message that reaches `spec` while the block runs.

    Binds the listener if no one in this event loop holds it yet (OSError, ssl.SSLError or
    ValueError when it cannot), shares it otherwise, and closes it when its last user leaves.
    Yields the spec the listener was opened with (a later user's TLS files do not replace the
    first user's).
    """
    key = (id(asyncio.get_running_loop()), spec.url)
    while (pending := _REGISTRY.closing.get(key)) is not None:
        if pending.done():  # its closer was cancelled while waiting: the socket is gone now
            del _REGISTRY.closing[key]
            break
        await asyncio.wait([pending])  # the last user's socket must be gone before we bind
    shared = _REGISTRY.open.get(key)
    if shared is None:
        shared = _Shared(spec)
        _REGISTRY.open[key] = shared
        _REGISTRY.users[key] = 1
        try:
            await shared.start()
        except BaseException as exc:
            del _REGISTRY.open[key], _REGISTRY.users[key]
            shared.ready.set_exception(exc)
            shared.ready.exception()
            await shared.close()
            raise
        shared.ready.set_result(None)
    else:
        _REGISTRY.users[key] += 1
        try:
            await asyncio.shield(shared.ready)
        except BaseException:
            if _REGISTRY.open.get(key) is shared:  # else the first user's start failed
                _REGISTRY.users[key] -= 1
            raise
    shared.subscribers.append(subscriber)
    try:
        yield shared.spec
    finally:
        shared.subscribers.remove(subscriber)
        _REGISTRY.users[key] -= 1
        if _REGISTRY.users[key] == 0:
            del _REGISTRY.open[key], _REGISTRY.users[key]
            closing = _REGISTRY.closing[key] = asyncio.ensure_future(shared.close())
            try:
                await asyncio.shield(closing)
            finally:
                if closing.done() and _REGISTRY.closing.get(key) is closing:
                    del _REGISTRY.closing[key]


def forwarder_networks(value: object) -> tuple[Network, ...]:
    """The `monitor.syslog.forwarders` list: IP addresses or CIDR blocks of the relays allowed
    to deliver the device's events (at most `MAX_FORWARDERS`); ValueError says what is
    wrong."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_FORWARDERS:
        raise ValueError(f"expected a list of at most {MAX_FORWARDERS} IP addresses or CIDR "
                         "blocks")
    found = []
    for item in value:
        try:
            found.append(ipaddress.ip_network(item if isinstance(item, str) else "",
                                              strict=True))
        except ValueError:
            raise ValueError(f"{str(item)[:60]!r} is not an IP address or CIDR block (IP "
                             "literals only)") from None
    return tuple(found)


def listen_spec(entry: Mapping[str, Any]) -> ListenSpec:
    """The ListenSpec of a `monitor.syslog` entry; ValueError names the faulty field."""
    scheme, host, port = parse_listen(entry.get("listen"))
    files: dict[str, str | None] = {}
    for name in ("cert_file", "key_file", "ca_file"):
        value = entry.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be a path")
        files[name] = value
    if scheme == "tls" and files["cert_file"] is None:
        raise ValueError("a tls:// listener needs cert_file and key_file (the probe's "
                         "certificate for RFC 5425)")
    return ListenSpec(scheme, host, port, files["cert_file"], files["key_file"],
                      files["ca_file"])
