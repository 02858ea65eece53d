"""Emulated MQTT for lab personas: a small MQTT 3.1(.1)/5 broker and a mutual-TLS wrapper.

`MqttBroker` speaks enough of the protocol for the probe and for an ordinary client: CONNECT
with or without credentials, SUBSCRIBE (QoS 0 delivery), PUBLISH at QoS 0 and 1, PINGREQ,
UNSUBSCRIBE and DISCONNECT. What it accepts is configuration: anonymous clients or not, which
accounts, and, for authenticated clients, the topic prefix they are confined to (a subscription
outside it is refused at SUBACK, a publication outside it dropped). Retained `$SYS` messages go
to every subscription that matches them. Each device address gets its own broker state, so
devices that share a persona never see each other's messages.

The packet parsing here is written apart from the probe's codec (`probe.protocols.mqtt`) on
purpose: a shared mistake would otherwise pass every lab test.

`MutualTls` serves its inner service behind TLS that demands a client certificate issued by the
lab CA (`client_certificate` issues one). The fleet's listeners cannot ask for a client
certificate, so the wrapper runs TLS itself on a plain TCP listener.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import struct
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from probe.lab import pki
from probe.lab.servers import (
    HANDSHAKE_TIMEOUT,
    IDLE_TIMEOUT,
    StreamService,
    offered,
    speaking,
)

MAX_PACKET = 65536
MAX_PACKETS = 1024
MAX_BUFFERED = 256 * 1024
_CLIENT_DAYS = 30

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP = 12, 13
# CONNACK codes (3.1.1 return code, 5 reason code)
ACCEPTED = {3: 0, 4: 0, 5: 0x00}
BAD_VERSION = {3: 1, 4: 1, 5: 0x84}
BAD_CREDENTIALS = {3: 4, 4: 4, 5: 0x86}
NOT_AUTHORIZED = {3: 5, 4: 5, 5: 0x87}
SUBSCRIBE_REFUSED = {3: 0x80, 4: 0x80, 5: 0x87}
DEFAULT_SYS = (("$SYS/broker/version", "iotprobe lab broker 1.0"),
               ("$SYS/broker/uptime", "42 seconds"),
               ("$SYS/broker/clients/connected", "1"))


class _Violation(ValueError):
    """The client broke the protocol: the connection closes."""


async def _packet(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    """(type, flags, body) of the next packet, IDLE_TIMEOUT and MAX_PACKET bound."""
    async with asyncio.timeout(IDLE_TIMEOUT):
        first = (await reader.readexactly(1))[0]
        length = 0
        for shift in (0, 7, 14, 21):
            byte = (await reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
        else:
            raise _Violation("remaining length longer than four bytes")
        if length > MAX_PACKET:
            raise _Violation(f"packet of {length} bytes")
        body = await reader.readexactly(length)
    return first >> 4, first & 0x0F, body


def _encode_length(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _frame(first: int, body: bytes) -> bytes:
    return bytes([first]) + _encode_length(len(body)) + body


class _Cursor:
    """Reads MQTT fields from a packet body; any overrun is a protocol violation."""

    def __init__(self, body: bytes, at: int = 0) -> None:
        self.body, self.at = body, at

    def take(self, size: int) -> bytes:
        if self.at + size > len(self.body):
            raise _Violation("field runs past the packet")
        out = self.body[self.at:self.at + size]
        self.at += size
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = struct.unpack("!H", self.take(2))[0]
        return value

    def binary(self) -> bytes:
        return self.take(self.u16())

    def text(self) -> str:
        try:
            return self.binary().decode("utf-8")
        except UnicodeDecodeError:
            raise _Violation("a string is not UTF-8") from None

    def skip_properties(self) -> None:
        length = 0
        for shift in (0, 7, 14, 21):
            byte = self.u8()
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
        self.take(length)

    @property
    def left(self) -> bool:
        return self.at < len(self.body)


@dataclass(frozen=True)
class _Hello:
    level: int
    client_id: str
    username: str | None
    password: bytes | None


def _parse_connect(body: bytes) -> _Hello:
    cursor = _Cursor(body)
    name = cursor.text()
    level = cursor.u8()
    if name not in ("MQTT", "MQIsdp"):
        raise _Violation(f"protocol name {name!r}")
    flags = cursor.u8()
    cursor.u16()  # keep-alive
    if level == 5:
        cursor.skip_properties()
    client_id = cursor.text()
    if flags & 0x04:
        if level == 5:
            cursor.skip_properties()
        cursor.text()
        cursor.binary()
    username = cursor.text() if flags & 0x80 else None
    password = cursor.binary() if flags & 0x40 else None
    return _Hello(level, client_id, username, password)


def matches(topic_filter: str, topic: str) -> bool:
    """Whether `topic` matches `topic_filter` (wildcards never match a leading `$` level)."""
    if topic.startswith("$") and topic_filter[:1] in ("#", "+"):
        return False
    parts, levels = topic_filter.split("/"), topic.split("/")
    for index, part in enumerate(parts):
        if part == "#":
            return True
        if index >= len(levels) or part not in ("+", levels[index]):
            return False
    return len(parts) == len(levels)


@dataclass
class _Session:
    level: int
    writer: asyncio.StreamWriter
    filters: set[str] = field(default_factory=set)

    def deliver(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Send a QoS 0 PUBLISH; a subscriber that stopped reading loses messages."""
        if self.writer.transport.get_write_buffer_size() > MAX_BUFFERED:
            return
        body = struct.pack("!H", len(topic.encode())) + topic.encode()
        body += (b"\x00" if self.level == 5 else b"") + payload
        self.writer.write(_frame((PUBLISH << 4) | int(retain), body))


@dataclass
class _Hub:
    """One device's broker state: its live sessions."""

    by_task: dict[asyncio.Task[Any], _Session] = field(default_factory=dict)


@dataclass(frozen=True)
class MqttBroker:
    """A small MQTT broker; see the module docstring for what it speaks.

    With no `accounts`, `anonymous` decides everything: True accepts any client, with or
    without credentials (as mosquitto does without a password file); False refuses all. With
    `accounts`, only those username/password pairs log in (wrong ones get "bad user name or
    password"), plus clients without credentials when `anonymous`. `scope` confines
    authenticated clients to topics under that prefix; None gives everyone everything,
    `$SYS` included. `levels` are the protocol levels served.
    """

    accounts: tuple[tuple[str, str], ...] = ()
    anonymous: bool = False
    scope: str | None = None
    levels: tuple[int, ...] = (3, 4, 5)
    sys_topics: tuple[tuple[str, str], ...] = DEFAULT_SYS
    hubs: dict[str, _Hub] = field(default_factory=dict, compare=False, repr=False)

    def offers(self, tls: bool) -> frozenset[str]:
        return speaking("mqtt", tls)

    def _admit(self, hello: _Hello) -> int:
        if hello.level not in self.levels:
            return BAD_VERSION.get(hello.level, 1)
        if hello.username is None:
            return ACCEPTED[hello.level] if self.anonymous else NOT_AUTHORIZED[hello.level]
        if not self.accounts:
            return ACCEPTED[hello.level] if self.anonymous else NOT_AUTHORIZED[hello.level]
        password = (hello.password or b"").decode("utf-8", "replace")
        if (hello.username, password) in self.accounts:
            return ACCEPTED[hello.level]
        return BAD_CREDENTIALS[hello.level]

    def _allowed(self, hello: _Hello, topic_filter: str) -> bool:
        return self.scope is None or (hello.username is not None
                                      and topic_filter.startswith(self.scope))

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        kind, _, body = await _packet(reader)
        if kind != CONNECT:
            return
        hello = _parse_connect(body)
        code = self._admit(hello)
        level = hello.level if hello.level in (3, 4, 5) else 4
        connack = bytes([0, code]) + (b"\x00" if level == 5 else b"")
        writer.write(_frame(CONNACK << 4, connack))
        await writer.drain()
        if code != 0:
            return
        task = asyncio.current_task()
        if task is None:
            return
        hub = self.hubs.setdefault(str(writer.get_extra_info("sockname")[0]), _Hub())
        session = _Session(level, writer)
        hub.by_task[task] = session
        try:
            await self._session(reader, hello, session, hub)
        finally:
            del hub.by_task[task]

    async def _session(self, reader: asyncio.StreamReader, hello: _Hello, session: _Session,
                       hub: _Hub) -> None:
        level, writer = session.level, session.writer
        for _ in range(MAX_PACKETS):
            kind, flags, body = await _packet(reader)
            cursor = _Cursor(body)
            if kind == SUBSCRIBE:
                packet_id = cursor.u16()
                if level == 5:
                    cursor.skip_properties()
                codes, granted = bytearray(), []
                while cursor.left:
                    topic_filter = cursor.text()
                    cursor.u8()
                    if self._allowed(hello, topic_filter):
                        codes.append(0)
                        granted.append(topic_filter)
                    else:
                        codes.append(SUBSCRIBE_REFUSED[level])
                props = b"\x00" if level == 5 else b""
                writer.write(_frame((SUBACK << 4), struct.pack("!H", packet_id) + props
                                    + bytes(codes)))
                session.filters.update(granted)
                for topic, value in self.sys_topics:
                    if any(matches(f, topic) for f in granted):
                        session.deliver(topic, value.encode(), retain=True)
            elif kind == PUBLISH:
                self._publish(hello, session, hub, flags, cursor)
            elif kind == UNSUBSCRIBE:
                packet_id = cursor.u16()
                if level == 5:
                    cursor.skip_properties()
                removed = 0
                while cursor.left:
                    session.filters.discard(cursor.text())
                    removed += 1
                reasons = bytes(removed) if level == 5 else b""
                props = b"\x00" if level == 5 else b""
                writer.write(_frame(UNSUBACK << 4, struct.pack("!H", packet_id) + props
                                    + reasons))
            elif kind == PINGREQ:
                writer.write(_frame(PINGRESP << 4, b""))
            elif kind != PUBACK:  # DISCONNECT, or a packet a client never sends
                return
            await writer.drain()

    def _publish(self, hello: _Hello, session: _Session, hub: _Hub, flags: int,
                 cursor: _Cursor) -> None:
        qos = (flags >> 1) & 0x03
        if qos > 1:
            raise _Violation("QoS 2 is not served")
        topic = cursor.text()
        packet_id = cursor.u16() if qos else 0
        if session.level == 5:
            cursor.skip_properties()
        payload = cursor.body[cursor.at:]
        allowed = self._allowed(hello, topic) and not topic.startswith("$")
        if allowed:
            for other in list(hub.by_task.values()):
                if any(matches(f, topic) for f in other.filters):
                    other.deliver(topic, payload)
        if qos:
            ack = struct.pack("!H", packet_id)
            if session.level == 5 and not allowed:
                ack += bytes([NOT_AUTHORIZED[5]])
            session.writer.write(_frame(PUBACK << 4, ack))


def issue_client(ca: pki.LabCA, name: str) -> tuple[bytes, bytes]:
    """A client certificate (clientAuth) named `name` from `ca`: (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=_CLIENT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@dataclass(frozen=True)
class MutualTls:
    """`inner` behind TLS 1.2/1.3 that requires a client certificate from the lab CA.

    Each address's server certificate is made on first use, from the lab CA like every other
    emulated device's, so the lab's trust anchor holds for it too.
    """

    inner: StreamService
    state: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def offers(self, tls: bool) -> frozenset[str]:
        return offered(self.inner, True) | {"tls"}

    @property
    def ca(self) -> pki.LabCA:
        return pki.lab_ca()

    def client_certificate(self, name: str) -> tuple[bytes, bytes]:
        """A certificate this wrapper accepts: (cert PEM, key PEM)."""
        return issue_client(self.ca, name)

    def _context(self, address: str) -> ssl.SSLContext:
        contexts: dict[str, ssl.SSLContext] = self.state.setdefault("contexts", {})
        if address not in contexts:
            context = pki.server_context(*pki.issue(self.ca, address, "mqtt-mutual-tls"))
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=self.ca.cert_pem.decode())
            contexts[address] = context
        return contexts[address]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        context = self._context(str(writer.get_extra_info("sockname")[0]))
        await writer.start_tls(context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        await self.inner.serve(reader, writer)
