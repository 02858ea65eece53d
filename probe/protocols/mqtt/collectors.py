"""MQTT collectors: what a broker does with anonymous clients, default and inventory identities.

The client layer is a small, exact MQTT 3.1.1/5 packet codec (`probe.protocols.mqtt.codec`) over
`ctx.connect`, not paho or aiomqtt. Both libraries open their own sockets, which would bypass
the device context (scope, rate, per-device slots, timeouts); aiomqtt also waits its whole
timeout when a TLS 1.3 broker drops a client without certificate after the handshake, or when a
cleartext client meets a TLS port. Reading the packets ourselves gives every outcome exactly and
at once: a CONNACK with its return code (3.1.1) or reason code (5), "requires a client
certificate" (a TLS alert, or the connection dropped before the CONNACK after the server asked
for a certificate), "closed" (dropped without a word), "not MQTT" (bytes that are no CONNACK)
and "timed out" (one read deadline, never more).

The anonymous level-4 CONNECT is not repeated: discovery (`probe.observe.identify`) already sent
one to every MQTT endpoint, and `endpoints` turns that identification evidence into the level-4
outcome. An endpoint that never sent a byte there (it hung, reset, or went away) is an MQTT
endpoint when its port says so (1883, 8883, 8884, or the inventory's `mqtt`/`mqtts`). It gets
one anonymous MQTT 5 CONNECT, because a broker that speaks only MQTT 5 ignores 3.1.1 (mqttools
does): a CONNACK makes it an MQTT 5 endpoint, logged into at level 5 (its 3.1.1 silence stays
undecided: it may be a login that hangs); after that second timeout no collector talks to a
silent endpoint again.

MQTT over WebSockets is one more transport of the same endpoints: an HTTP or HTTPS port (or a
TLS port that refused identification for want of the inventory's client certificate) whose
upgrade on one of `websocket.PATHS` agrees on the `mqtt` subprotocol is an endpoint with a
`ws_path`, and every connection to it (`login`) upgrades first, then speaks the same packets in
binary WebSocket messages. Its anonymous level-4 CONNECT is sent here, since discovery never
upgrades.

A code is read in the table of the packet and the level it came in: a broker that speaks only
3.1.1 (aedes, amqtt) answers an MQTT 5 CONNECT with the 3.1.1 CONNACK 1, which says
"unacceptable protocol version", not MQTT 5's reason code 1. A refused or ignored protocol
level says nothing about credentials: the checks judge the levels an endpoint speaks.

Collectors (each gathered once per device through `ctx.observe`, shared by the checks):
`endpoints`, `anonymous_access` (adds one level-5 CONNECT per endpoint), `default_credentials`
(intrusive: paced, bounded, stops at the first success) and `topic_authorization`.

Secrets (inventory passwords) are revealed only while the CONNECT packet is built; evidence
names usernames, never passwords.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from probe.context import DeviceContext
from probe.model import Device
from probe.observe.base import ObservationError
from probe.observe.discovery import Identification, Services, services
from probe.observe.identify import TlsClient
from probe.observe.tcp import head_hex, service_ports
from probe.protocols.mqtt import websocket
from probe.protocols.mqtt.codec import (
    ANONYMOUS,
    CONNACK,
    DISCONNECT_PACKET,
    MAX_PACKET,
    PROTOCOL,
    PUBACK,
    PUBLISH,
    SUBACK,
    Identity,
    MalformedPacket,
    Packet,
    connack_level,
    connect_packet,
    frame,
    maximum_qos,
    meaning,
    parse_puback,
    parse_publish,
    parse_suback,
    publish_packet,
    read_properties,
    reason_string,
    subscribe_packet,
)
from probe.secrets import Secret

T = TypeVar("T")

MQTT_PORTS = {1883: False, 8883: True, 8884: True}
"""Ports where MQTT is the convention, and whether over TLS."""
MAX_WATCH_MESSAGES = 1000
MAX_WATCH_BYTES = 1024 * 1024
SHOWN_TOPICS = 5
DRAIN = 0.1

# ---------------------------------------------------------------------------------------------
# Identities and outcomes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientCertificate:
    cert_file: str
    key_file: str | None
    password: Secret | None = field(default=None, repr=False)


ConnectOutcome = Literal["connack", "certificate-required", "tls-error", "closed", "not-mqtt",
                         "timeout", "tcp-refused", "network-error", "no-websocket",
                         "websocket-silent"]

DESCRIPTION = {
    "certificate-required": "the TLS layer requires a client certificate",
    "closed": "the connection was closed before any CONNACK",
    "not-mqtt": "the answer is not an MQTT CONNACK",
    "tcp-refused": "the port refused the connection",
    "tls-error": "TLS failed",
    "network-error": "network error",
    "no-websocket": "the WebSocket upgrade to MQTT was refused",
    "websocket-silent": "the WebSocket upgrade got no answer",
}


@dataclass(frozen=True)
class Outcome:
    """What one CONNECT got."""

    level: int
    result: ConnectOutcome
    code: int | None = None
    session_present: bool = False
    reason_string: str | None = None
    detail: str = ""
    source: Literal["identification", "exchange", "tls-layer"] = "exchange"
    answered_at: int | None = None
    """The protocol level the CONNACK is written in, where it is not the CONNECT's."""
    qos: int = 2
    """The highest QoS the CONNACK lets the client publish at (MQTT 5 Maximum QoS)."""

    @property
    def packet_level(self) -> int:
        """The level whose CONNACK table says what `code` means."""
        return self.answered_at or self.level

    @property
    def version_refused(self) -> bool:
        """The broker refused the CONNECT's protocol level: it does not speak it, which says
        nothing about the credentials (3.1.1 return code 1, MQTT 5 reason code 0x84)."""
        return self.result == "connack" and self.code == (1 if self.packet_level == 4 else 0x84)

    @property
    def accepted(self) -> bool:
        return self.result == "connack" and self.code == 0

    @property
    def refused(self) -> bool:
        """The broker (or its TLS layer) said no: a decided outcome, not a failure to observe."""
        return (self.result == "connack" and self.code != 0) or self.result in (
            "certificate-required", "closed")

    @property
    def decided(self) -> bool:
        return self.accepted or self.refused

    def describe(self) -> str:
        if self.result == "connack" and self.code is not None:
            level = self.packet_level
            word = "CONNACK" if level == 4 else "CONNACK reason"
            said = f"{word} {self.code}, {meaning(level, self.code)}"
            if level == self.level:
                return said
            return (f"{PROTOCOL[level]} {said} (an {PROTOCOL[level]} answer to the "
                    f"{PROTOCOL[self.level]} CONNECT)")
        if self.result == "timeout":
            return self.detail or "no answer before the deadline"
        text = DESCRIPTION.get(self.result, self.result)
        return f"{text}: {self.detail}" if self.detail else text

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol_level": self.level, "outcome": self.result,
                               "source": self.source}
        if self.code is not None:
            level = self.packet_level
            out["connack_code" if level == 4 else "reason_code"] = self.code
            out["meaning"] = meaning(level, self.code)
            out["session_present"] = self.session_present
            if level != self.level:
                out["connack_protocol_level"] = level
        if self.reason_string:
            out["reason_string"] = self.reason_string
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class Endpoint:
    """An MQTT endpoint of the device, with the anonymous level-4 CONNECT discovery sent it."""

    port: int
    tls: bool
    silent: bool
    hello: Outcome
    tls_info: Mapping[str, Any]
    mqtt5: Outcome | None = None
    """The anonymous MQTT 5 CONNACK of an endpoint that left the 3.1.1 CONNECT unanswered: it
    speaks MQTT 5 only (mqttools ignores 3.1.1)."""
    ws_path: str | None = None
    """MQTT over WebSockets: the request path the listener upgraded on (None: MQTT on TCP)."""

    @property
    def transport(self) -> str:
        """`tcp`, or `ws` / `wss` (WebSockets in cleartext / inside TLS)."""
        if self.ws_path is None:
            return "tcp"
        return "wss" if self.tls else "ws"

    @property
    def target(self) -> str:
        """`tcp/<port>`, with the transport and path for WebSockets (`tcp/8080 ws /mqtt`)."""
        if self.ws_path is None:
            return f"tcp/{self.port}"
        return f"tcp/{self.port} {self.transport} {self.ws_path}"

    @property
    def answer(self) -> Outcome:
        """The endpoint's answer to an anonymous CONNECT at the first level it answers."""
        return self.mqtt5 if self.mqtt5 is not None else self.hello

    @property
    def needs_certificate(self) -> bool:
        return self.hello.result == "certificate-required"

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"port": self.port, "tls": self.tls, **self.tls_info}
        if self.ws_path is not None:
            out.update(transport=self.transport, path=self.ws_path)
        return out


def _hello(ident: Identification, silent: bool) -> Outcome:
    evidence = ident.evidence
    if silent:
        return Outcome(4, "timeout", detail=f"identification: {ident.detail}",
                       source="identification")
    if "connack_code" in evidence:
        code = int(evidence["connack_code"])
        return Outcome(4, "connack", code, bool(evidence.get("session_present")),
                       source="identification", answered_at=_hello_level(code))
    if evidence.get("client_certificate_required"):
        return Outcome(4, "certificate-required", detail=str(evidence.get("tls_alert", "")),
                       source="identification")
    return Outcome(4, "not-mqtt", detail=ident.detail, source="identification")


def _hello_level(code: int) -> int | None:
    """5 when identification's CONNACK code is an MQTT 5 reason code (0x80 and up: 3.1.1
    return codes stop at 5), the answer of a broker that speaks only MQTT 5."""
    return 5 if code >= 0x80 else None


async def endpoints(ctx: DeviceContext) -> tuple[Endpoint, ...]:
    """Collector: the device's MQTT endpoints, from discovery (traffic of its own only to a
    silent one: the MQTT 5 CONNECT of `_mqtt5_only`)."""
    found: Services = await ctx.observe(services)
    named = service_ports(ctx, udp=False)
    out = []
    for ident in found.tcp:
        by_port = named.get(ident.port)
        conventional = ident.port in MQTT_PORTS or by_port in ("mqtt", "mqtts")
        silent = ident.protocol == "unknown" and ident.silent and conventional
        if ident.protocol != "mqtt" and not silent:
            continue
        tls = ident.tls if not silent else (by_port == "mqtts" or MQTT_PORTS.get(ident.port)
                                            is True)
        tls_info = {k: ident.evidence[k] for k in ("tls_version", "cipher")
                    if k in ident.evidence}
        endpoint = Endpoint(ident.port, tls, silent, _hello(ident, silent), tls_info)
        out.append(await _mqtt5_only(ctx, endpoint) if silent else endpoint)
    certificate = client_certificate(ctx.device)
    for ident in found.tcp:
        if ident.protocol == "http" or (_refused_without_certificate(ident)
                                        and certificate is not None):
            websocket = await _websocket(ctx, ident, certificate)
            out += [websocket] if websocket is not None else []
    return tuple(out)


def _refused_without_certificate(ident: Identification) -> bool:
    """A TLS port whose TLS layer refused identification for want of a client certificate,
    with nothing identified inside: it may carry MQTT over `wss`."""
    return ident.protocol == "tls" and bool(ident.evidence.get("client_certificate_required"))


async def _websocket(ctx: DeviceContext, ident: Identification,
                     certificate: ClientCertificate | None) -> Endpoint | None:
    """The MQTT-over-WebSockets listener of an HTTP port (`ws`, or `wss` inside TLS): an
    anonymous 3.1.1 CONNECT after an upgrade offering the `mqtt` subprotocol, on each of
    `websocket.PATHS` until one upgrades. Only an upgrade that agrees on `mqtt` (101 with
    `Sec-WebSocket-Protocol: mqtt`, as MQTT requires of a broker) makes the port an MQTT
    endpoint, whatever follows (garbage or silence: an error for that listener alone). A port
    that does not answer an upgrade in time, or fails below HTTP, is asked no further path.

    The paths share one connection while the listener keeps it open after a refusal (an
    HTTP/1.1 answer of known length, without `Connection: close`), as web servers do: one
    connection, and one TLS handshake, for the whole list. A kept connection that ends without
    an answer is no verdict on the path: it is asked again on a new connection.

    A TLS port that refused identification for want of a client certificate is asked with the
    inventory's (`credentials.tls_client`); its anonymous answer stays identification's
    refusal at the TLS layer, as on an MQTT-over-TLS port that requires one."""
    tls_info = {k: ident.evidence[k] for k in ("tls_version", "cipher") if k in ident.evidence}
    required = _refused_without_certificate(ident)
    base = Endpoint(ident.port, ident.tls, False, Outcome(4, "timeout"), tls_info,
                    ws_path=websocket.PATHS[0])
    left = list(websocket.PATHS)

    async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  client: TlsClient | None) -> tuple[Outcome, Endpoint | None]:
        kept = False
        while True:
            upgraded = await _upgrade(ctx, reader, writer, ident.port, left[0], 4)
            if isinstance(upgraded, websocket.WsStream):
                hello, _ = await _exchange(_Link(ctx, reader, writer, 4, upgraded), None,
                                           client, required and certificate is not None, None)
                return hello, replace(base, ws_path=left[0])
            outcome, reusable = upgraded
            if kept and outcome.result == "websocket-silent":
                return Outcome(4, "no-websocket", detail="the kept connection ended"), None
            if outcome.result == "no-websocket":
                left.pop(0)
            if not (reusable and left):
                return outcome, None
            kept = True

    while left:  # every connection asks at least one path, or ends the search
        hello, found = await _connected(ctx, replace(base, ws_path=left[0]), 4,
                                        certificate if required else None, ask)
        if found is not None:
            return replace(found, hello=_hello(ident, False) if required else hello)
        if hello.result != "no-websocket":
            return None
    return None


async def _mqtt5_only(ctx: DeviceContext, endpoint: Endpoint) -> Endpoint:
    """A port that left identification's 3.1.1 CONNECT unanswered may be a broker that speaks
    MQTT 5 only and ignores 3.1.1 (mqttools does): one anonymous MQTT 5 CONNECT decides. A
    CONNACK makes it an MQTT 5 endpoint; anything else leaves it silent."""
    outcome, _ = await login(ctx, endpoint, 5, None)
    if outcome.result != "connack":
        return endpoint
    return replace(endpoint, silent=False, mqtt5=outcome)


# ---------------------------------------------------------------------------------------------
# One connection
# ---------------------------------------------------------------------------------------------


class _Closed(Exception):
    """The peer closed the connection."""


class _Link:
    """An open MQTT connection: packets framed out of `ctx.read`, each read deadline-bound."""

    def __init__(self, ctx: DeviceContext, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, level: int,
                 stream: websocket.WsStream | None = None) -> None:
        self.ctx, self.reader, self.writer, self.level = ctx, reader, writer, level
        self.stream = stream
        """The WebSocket that carries the packets, if any."""
        self.buffer = b""
        self.seen = b""
        self.received = 0
        self.qos = 1
        """The QoS to publish at: 1, or 0 where the broker allows no more."""

    async def send(self, data: bytes) -> None:
        if self.stream is not None:
            await self.stream.send(data)
            return
        self.writer.write(data)
        await self.writer.drain()

    def _pop(self) -> Packet | None:
        found = frame(self.buffer)
        if found is None:
            return None
        packet, size = found
        self.buffer = self.buffer[size:]
        return packet

    async def receive(self, seconds: float) -> Packet | None:
        """The next packet; None when `seconds` pass first. Raises _Closed at EOF."""
        packet = self._pop()
        if packet is not None:
            return packet
        def until(data: bytes) -> bool:
            return frame(self.buffer + data) is not None

        try:
            if self.stream is not None:
                data, stalled = await self.stream.read(MAX_PACKET, deadline=max(seconds, 0.0),
                                                       until=until)
            else:
                data, stalled = await self.ctx.read(self.reader, MAX_PACKET,
                                                    deadline=max(seconds, 0.0), until=until)
        except websocket.WebSocketError as exc:
            raise MalformedPacket(f"WebSocket: {exc}") from None
        self.buffer += data
        self.received += len(data)
        self.seen = self.seen or self.buffer
        packet = self._pop()
        if packet is not None or stalled:
            return packet
        if len(self.buffer) >= MAX_PACKET:
            raise MalformedPacket("no packet boundary within the read limit")
        raise _Closed


def _tls_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return str(reason)[:120].replace("_", " ").lower()


def _broken(level: int, exc: BaseException, client: TlsClient | None, presented: bool,
            handshake: bool = False) -> Outcome:
    """The outcome of a connection that a TLS or socket error ended before any CONNACK.

    A close during the TLS handshake, without a request for a certificate, is a TLS failure,
    not a refusal: the MQTT layer was never reached.
    """
    reason = _tls_reason(exc)
    asked = client is not None and client.certificate_requested and not presented
    if "certificate required" in reason or asked:
        return Outcome(level, "certificate-required", detail=reason)
    if isinstance(exc, ssl.SSLError):
        return Outcome(level, "tls-error", detail=reason)
    if isinstance(exc, ConnectionError):
        if handshake and client is not None:
            return Outcome(level, "tls-error", detail="the connection closed during the TLS "
                           "handshake")
        return Outcome(level, "closed")
    return Outcome(level, "network-error", detail=reason)


def _connack(level: int, packet: Packet, first: bytes) -> Outcome:
    if packet.kind != CONNACK or len(packet.body) < 2:
        return Outcome(level, "not-mqtt", detail=f"first bytes {head_hex(first)}")
    answered = connack_level(level, packet.body)
    try:
        properties, _ = read_properties(answered, packet.body, 2)
    except MalformedPacket as exc:
        return Outcome(level, "not-mqtt", detail=str(exc))
    return Outcome(level, "connack", packet.body[1], bool(packet.body[0] & 1),
                   reason_string(properties), answered_at=None if answered == level else answered,
                   qos=maximum_qos(properties))


def _client_id() -> str:
    return f"iotprobe-{secrets.token_hex(6)}"


def _tls_client(certificate: ClientCertificate | None) -> TlsClient:
    client = TlsClient()
    if certificate is not None:
        password = certificate.password

        def unlock() -> bytes:  # never let OpenSSL prompt on a terminal
            return password.reveal().encode() if password is not None else b""

        try:
            client.context.load_cert_chain(certificate.cert_file, certificate.key_file,
                                           password=unlock)
        except (OSError, ssl.SSLError) as exc:
            raise ObservationError("client-certificate", "credentials.tls_client could not be "
                                   f"loaded from {certificate.cert_file}: "
                                   f"{_tls_reason(exc)}") from None
    return client


Session = Callable[[asyncio.StreamReader, asyncio.StreamWriter, TlsClient | None],
                   Awaitable[tuple[Outcome, T | None]]]
"""What runs on one open connection to an endpoint (its TLS client, if any, given)."""


async def login(ctx: DeviceContext, endpoint: Endpoint, level: int, identity: Identity | None,
                certificate: ClientCertificate | None = None,
                then: Callable[[_Link], Awaitable[T]] | None = None
                ) -> tuple[Outcome, T | None]:
    """CONNECT to `endpoint` as `identity` (None: without credentials); when accepted, run
    `then` on the live connection (it handles its own I/O errors) and DISCONNECT.

    `certificate` is presented only over TLS. Costs one connection and at most one read
    deadline for the CONNACK.
    """
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      client: TlsClient | None) -> tuple[Outcome, T | None]:
        stream = None
        if endpoint.ws_path is not None:
            upgraded = await upgrade(ctx, reader, writer, endpoint.port, endpoint.ws_path,
                                     level)
            if isinstance(upgraded, Outcome):
                return upgraded, None
            stream = upgraded
        return await _exchange(_Link(ctx, reader, writer, level, stream), identity, client,
                               certificate is not None, then)
    return await _connected(ctx, endpoint, level, certificate, session)


async def _connected(ctx: DeviceContext, endpoint: Endpoint, level: int,
                     certificate: ClientCertificate | None, session: Session[T]
                     ) -> tuple[Outcome, T | None]:
    """`session` on one new connection to `endpoint`, or what stopped the connection.

    On a WebSocket endpoint a connection that fails before the upgrade is `websocket-silent`,
    never the MQTT layer's `timeout` or `closed`: discovery counts an endpoint only where an
    upgrade agreed on `mqtt`, and no broker refused anything."""
    client = _tls_client(certificate) if endpoint.tls else None
    presented = certificate is not None
    try:
        async with ctx.connect(endpoint.port, tls=client.context if client else None,
                               server_hostname=ctx.device.hostname) as (reader, writer):
            return await session(reader, writer, client)
    except ConnectionRefusedError:
        return Outcome(level, "tcp-refused"), None
    except TimeoutError:
        what = "TLS handshake" if endpoint.tls else "connection"
        detail = f"the {what} did not complete within {ctx.timeout:g} s"
        result: ConnectOutcome = "timeout" if endpoint.ws_path is None else "websocket-silent"
        return Outcome(level, result, detail=detail), None
    except OSError as exc:
        broken = _broken(level, exc, client, presented, handshake=True)
        if endpoint.ws_path is not None and broken.result == "closed":
            return Outcome(level, "websocket-silent", detail="the connection closed before "
                           "the upgrade was sent"), None
        return broken, None


async def _exchange(link: _Link, identity: Identity | None, client: TlsClient | None,
                    presented: bool, then: Callable[[_Link], Awaitable[T]] | None
                    ) -> tuple[Outcome, T | None]:
    """The CONNECT and its CONNACK on an open link; `then` and DISCONNECT when accepted."""
    level, timeout = link.level, link.ctx.timeout
    try:
        await link.send(connect_packet(level, _client_id(), identity))
        packet = await link.receive(timeout)
    except MalformedPacket as exc:
        return Outcome(level, "not-mqtt", detail=str(exc)), None
    except _Closed:
        if link.seen:
            return Outcome(level, "not-mqtt", detail="closed after the bytes "
                           f"{head_hex(link.seen)}"), None
        return _broken(level, ConnectionResetError(), client, presented), None
    except OSError as exc:
        return _broken(level, exc, client, presented), None
    if packet is None:
        if link.seen:
            return Outcome(level, "not-mqtt", detail=f"first bytes {head_hex(link.seen)}"), None
        return Outcome(level, "timeout", detail=f"no CONNACK within {timeout:g} s"), None
    outcome = _connack(level, packet, link.seen)
    extra: T | None = None
    if outcome.accepted:
        link.qos = min(1, outcome.qos)
        if then is not None:
            extra = await then(link)
        with contextlib.suppress(OSError):
            await link.send(DISCONNECT_PACKET)
    return outcome, extra


async def upgrade(ctx: DeviceContext, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter, port: int, path: str, level: int
                  ) -> websocket.WsStream | Outcome:
    """The WebSocket upgrade on `path` of an open connection: the stream when it agreed on
    `mqtt`; otherwise `no-websocket` (another answer) or `websocket-silent` (none: no other
    path is worth asking), neither of them a refusal of the client."""
    upgraded = await _upgrade(ctx, reader, writer, port, path, level)
    return upgraded if isinstance(upgraded, websocket.WsStream) else upgraded[0]


async def _upgrade(ctx: DeviceContext, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter, port: int, path: str, level: int
                   ) -> websocket.WsStream | tuple[Outcome, bool]:
    """`upgrade`, with whether a refused upgrade left the connection fit for another."""
    stream = websocket.WsStream(ctx, reader, writer)
    try:
        await stream.upgrade(websocket.host_header(ctx.address, port), path)
    except websocket.Refused as exc:
        return Outcome(level, "no-websocket", detail=f"{path}: {exc}"), exc.reusable
    except websocket.WebSocketError as exc:
        return Outcome(level, "no-websocket", detail=f"{path}: {exc}"), False
    except TimeoutError:
        return Outcome(level, "websocket-silent",
                       detail=f"no answer to the upgrade on {path} within {ctx.timeout:g} s"
                       ), False
    except ConnectionError:
        return Outcome(level, "websocket-silent", detail="the connection closed before an "
                       f"answer to the upgrade on {path}"), False
    if stream.subprotocol != websocket.SUBPROTOCOL:
        return Outcome(level, "no-websocket", detail=f"{path}: the upgrade did not agree on "
                       "the mqtt subprotocol"), False
    return stream


# ---------------------------------------------------------------------------------------------
# Anonymous access at both protocol levels
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Anonymous:
    """An endpoint's answers to a CONNECT without credentials, per protocol level."""

    endpoint: Endpoint
    levels: tuple[Outcome, ...]

    def at(self, level: int) -> Outcome | None:
        return next((o for o in self.levels if o.level == level), None)

    @property
    def accepted(self) -> Outcome | None:
        return next((o for o in self.levels if o.accepted), None)

    @property
    def level(self) -> int:
        """The level to log in with: 4, unless the endpoint answers MQTT 5 in MQTT 5 and
        refused the 3.1.1 version or left the 3.1.1 CONNECT unanswered."""
        five = self.at(5)
        if five is not None and five.result == "connack" and not five.version_refused and (
                self.endpoint.mqtt5 is not None or any(o.level == 4 for o in self.unspoken)):
            return 5
        return 4

    @property
    def unspoken(self) -> tuple[Outcome, ...]:
        """The answers at levels the endpoint does not speak: it refused their version. An
        unanswered CONNECT is no such answer: it may be a login that hangs."""
        return tuple(o for o in self.levels if o.version_refused)

    @property
    def spoken(self) -> tuple[Outcome, ...]:
        """The answers at the levels the endpoint speaks."""
        return tuple(o for o in self.levels if o not in self.unspoken)


async def _anonymous(ctx: DeviceContext, endpoint: Endpoint) -> Anonymous:
    hello = endpoint.hello
    if endpoint.silent:
        return Anonymous(endpoint, (hello,))
    if endpoint.mqtt5 is not None:
        return Anonymous(endpoint, (hello, endpoint.mqtt5))
    if endpoint.needs_certificate:
        before = Outcome(5, "certificate-required", detail="the TLS handshake comes before "
                         "any CONNECT, whatever its level", source="tls-layer")
        return Anonymous(endpoint, (hello, before))
    level5, _ = await login(ctx, endpoint, 5, None)
    return Anonymous(endpoint, (hello, level5))


async def anonymous_access(ctx: DeviceContext) -> tuple[Anonymous, ...]:
    """Collector: CONNECT without username and password, levels 4 (from discovery) and 5."""
    found = await ctx.observe(endpoints)
    return tuple(await asyncio.gather(*(_anonymous(ctx, e) for e in found)))


# ---------------------------------------------------------------------------------------------
# Inventory credentials
# ---------------------------------------------------------------------------------------------


def inventory_identity(device: Device, name: str) -> tuple[Identity | None, str]:
    """The identity `credentials.<name>` describes, or None and why it is unusable."""
    entry = device.credentials.get(name)
    if entry is None:
        return None, f"the inventory has no credentials.{name}"
    username = entry.get("username")
    if not isinstance(username, str | Secret) or not str(username):
        return None, f"credentials.{name} has no username"
    password = device.secret(name, "password")
    return Identity(str(username), username, password), ""


def client_certificate(device: Device) -> ClientCertificate | None:
    entry = device.credentials.get("tls_client")
    if entry is None or not isinstance(entry.get("cert_file"), str):
        return None
    key = entry.get("key_file")
    return ClientCertificate(entry["cert_file"], key if isinstance(key, str) else None,
                             device.secret("tls_client", "password"))


# ---------------------------------------------------------------------------------------------
# Default credentials (intrusive)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MqttAttempt:
    username: str
    outcome: Outcome

    def evidence(self) -> dict[str, Any]:
        full = self.outcome.evidence()
        brief = {k: v for k, v in full.items()
                 if k not in ("protocol_level", "source", "session_present")}
        return {"username": self.username, **brief}


@dataclass(frozen=True)
class CredentialTrial:
    """The default pairs tried on one endpoint, in order, until one was accepted."""

    endpoint: Endpoint
    level: int
    attempts: tuple[MqttAttempt, ...]
    anonymous_accepted: bool
    not_tried: str = ""
    """Why no pair was tried (the endpoint never answered, or needs a certificate we lack)."""

    @property
    def accepted(self) -> MqttAttempt | None:
        return next((a for a in self.attempts if a.outcome.accepted), None)

    @property
    def undecided(self) -> MqttAttempt | None:
        """The attempt that ended the trial without an answer (timeout, not MQTT, ...)."""
        last = self.attempts[-1] if self.attempts else None
        return last if last is not None and not last.outcome.decided else None


async def default_credentials(ctx: DeviceContext, *, pairs: tuple[tuple[str, str], ...],
                              pace: float) -> tuple[CredentialTrial, ...]:
    """Collector (intrusive): the (username, password) `pairs`, endpoint after endpoint.

    Attempts are paced `pace` seconds apart across the whole device (the endpoints of one
    device often share one account store), and stop at the first accepted pair or the first
    attempt that gets no answer.
    """
    certificate = client_certificate(ctx.device)
    loop = asyncio.get_running_loop()
    last: float | None = None
    trials = []
    for anonymous in await ctx.observe(anonymous_access):
        endpoint, level = anonymous.endpoint, anonymous.level
        accepted = anonymous.accepted is not None
        if endpoint.silent:
            trials.append(CredentialTrial(endpoint, level, (), accepted, "the endpoint never "
                                          "answered a CONNECT"))
            continue
        if endpoint.needs_certificate and certificate is None:
            trials.append(CredentialTrial(endpoint, level, (), accepted, "the TLS layer "
                                          "requires a client certificate and the inventory "
                                          "has no credentials.tls_client"))
            continue
        attempts: list[MqttAttempt] = []
        for username, password in pairs:
            if last is not None:
                await asyncio.sleep(max(0.0, last + pace - loop.time()))
            outcome, _ = await login(ctx, endpoint, level, Identity(username, username, password),
                                     certificate if endpoint.needs_certificate else None)
            last = loop.time()
            attempts.append(MqttAttempt(username, outcome))
            if not outcome.refused:
                break
        trials.append(CredentialTrial(endpoint, level, tuple(attempts), accepted))
    return tuple(trials)


# ---------------------------------------------------------------------------------------------
# Topic authorization
# ---------------------------------------------------------------------------------------------

WILDCARDS = ("#", "$SYS/#")


@dataclass
class Watch:
    """What reached the probe identity's subscription."""

    canary_topic: str = ""
    canary: bool = False
    sys_topics: list[str] = field(default_factory=list)
    sys_messages: int = 0
    other_messages: int = 0
    truncated: bool = False

    def take(self, level: int, packet: Packet) -> None:
        if packet.kind != PUBLISH:
            return
        topic, _ = parse_publish(level, packet)
        if self.canary_topic and topic == self.canary_topic:
            self.canary = True
        elif topic.startswith("$SYS"):
            self.sys_messages += 1
            if topic not in self.sys_topics and len(self.sys_topics) < SHOWN_TOPICS:
                self.sys_topics.append(topic)
        else:
            self.other_messages += 1

    @property
    def messages(self) -> int:
        return int(self.canary) + self.sys_messages + self.other_messages

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"canary_received": self.canary, "sys_messages": self.sys_messages,
                               "sys_topics": list(self.sys_topics),
                               "other_messages": self.other_messages}
        if self.truncated:
            out["truncated"] = True
        return out


@dataclass(frozen=True)
class Canary:
    """The second identity's publication on the canary topic."""

    identity: str
    topic: str
    login: Outcome | None = None
    suback: int | None = None
    puback: int | None = None
    echoed: bool = False
    problem: str = ""
    undecided: bool = False
    """The problem is a missing answer (timeout, broken connection), not a refusal."""
    qos: int = 1

    @property
    def proved(self) -> bool:
        """The canary's message was routed: the canary received its own copy."""
        return self.echoed

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"identity": self.identity, "topic": self.topic,
                               "echoed": self.echoed, "qos": self.qos}
        if self.login is not None:
            out["login"] = self.login.evidence()
        if self.suback is not None:
            out["suback"] = self.suback
        if self.puback is not None:
            out["puback"] = self.puback
        if self.problem:
            out["problem"] = self.problem
        return out


@dataclass(frozen=True)
class TopicProbe:
    """One endpoint: what the probe identity was granted and what reached it."""

    endpoint: Endpoint
    level: int
    identity: str = ""
    not_tried: str = ""
    login: Outcome | None = None
    suback: Mapping[str, int] = field(default_factory=dict)
    canary: Canary | None = None
    no_canary: str = ""
    watch: Watch | None = None
    window: float = 0.0
    problem: str = ""

    @property
    def granted(self) -> tuple[str, ...]:
        return tuple(f for f, code in self.suback.items() if code < 0x80)


async def _await_packet(link: _Link, seconds: float, want: Callable[[Packet], bool],
                        watch: Watch | None) -> Packet | None:
    """Read until a packet `want` accepts (others go to `watch`); None at the deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    for _ in range(MAX_WATCH_MESSAGES):
        packet = await link.receive(end - loop.time())
        if packet is None or want(packet):
            return packet
        if watch is not None:
            watch.take(link.level, packet)
    return None


async def _subscribe(link: _Link, filters: Sequence[str], watch: Watch | None
                     ) -> tuple[int, ...] | None:
    await link.send(subscribe_packet(link.level, 1, filters))
    packet = await _await_packet(link, link.ctx.timeout, lambda p: p.kind == SUBACK, watch)
    if packet is None:
        return None
    _, codes = parse_suback(link.level, packet.body)
    if len(codes) != len(filters):
        raise MalformedPacket(f"SUBACK with {len(codes)} codes for {len(filters)} filters")
    return codes


async def _publish_canary(link: _Link, label: str, topic: str, nonce: bytes) -> Canary:
    """As the canary: subscribe to the canary topic, publish the nonce, see it come back.

    At QoS 1, or at QoS 0 where the broker allows no more (mqttools): no PUBACK then, and a
    nonce that does not come back is undecided."""
    try:
        codes = await _subscribe(link, [topic], None)
        if codes is None:
            return Canary(label, topic, problem="no SUBACK before the deadline",
                          undecided=True)
        if codes[0] >= 0x80:
            return Canary(label, topic, suback=codes[0],
                          problem="the canary may not subscribe to its own topic")
        await link.send(publish_packet(link.level, 2, topic, nonce, link.qos))
        puback: int | None = None
        echoed = False
        loop = asyncio.get_running_loop()
        end = loop.time() + link.ctx.timeout
        for _ in range(MAX_WATCH_MESSAGES):
            packet = await link.receive(end - loop.time())
            if packet is None:
                break
            if packet.kind == PUBACK:
                puback = parse_puback(link.level, packet.body)[1]
            elif packet.kind == PUBLISH:
                echoed = echoed or parse_publish(link.level, packet) == (topic, nonce)
            if echoed and (puback is not None or not link.qos):
                break
        if echoed:
            problem = ""
        elif not link.qos:
            problem = (f"the QoS 0 publication did not come back within {link.ctx.timeout:g} s "
                       "(the broker allows no higher QoS, so nothing acknowledges it)")
        elif puback is None:
            problem = f"no PUBACK within {link.ctx.timeout:g} s"
        elif puback >= 0x80:
            problem = f"the broker refused the publication ({meaning(link.level, puback, PUBACK)})"
        else:
            problem = "the broker acknowledged the publication but did not deliver it, not even "
            problem += "to the canary: it may not publish or read on its topic"
        return Canary(label, topic, suback=codes[0], puback=puback, echoed=echoed,
                      problem=problem, undecided=not echoed and puback is None, qos=link.qos)
    except (OSError, _Closed, MalformedPacket) as exc:
        return Canary(label, topic, problem=f"the exchange failed: {_tls_reason(exc)}",
                      undecided=True)


async def _watch(link: _Link, watch: Watch, seconds: float) -> None:
    """Read publications for `seconds`; once one that breaks the scope arrived, only drain
    what follows it for `DRAIN` seconds (for the evidence)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    start = link.received
    while loop.time() < end:
        if watch.messages >= MAX_WATCH_MESSAGES or link.received - start >= MAX_WATCH_BYTES:
            watch.truncated = True
            return
        packet = await link.receive(end - loop.time())
        if packet is None:
            return
        watch.take(link.level, packet)
        if watch.canary or watch.sys_messages:
            end = min(end, loop.time() + DRAIN)


async def _probe_topics(ctx: DeviceContext, anonymous: Anonymous, identity: Identity,
                        canary_identity: Identity | None, no_canary: str,
                        certificate: ClientCertificate | None, prefix: str,
                        window: float) -> TopicProbe:
    endpoint, level = anonymous.endpoint, anonymous.level
    nonce = secrets.token_hex(8)
    topic = f"{prefix.rstrip('/')}/{nonce}"

    async def as_probe(link: _Link) -> TopicProbe:
        watch = Watch()
        probe = TopicProbe(endpoint, level, identity.label, watch=watch)
        try:
            codes = await _subscribe(link, WILDCARDS, watch)
            if codes is None:
                return replace(probe, problem=f"no SUBACK within {ctx.timeout:g} s")
            probe = replace(probe, suback=dict(zip(WILDCARDS, codes, strict=True)))
            if "#" not in probe.granted:
                if probe.granted:
                    await _watch(link, watch, window)
                return replace(probe, window=window if probe.granted else 0.0)
            canary = None
            if canary_identity is not None:
                watch.canary_topic = topic
                label = canary_identity.label
                canary_login, report = await login(
                    ctx, endpoint, level, None if canary_identity is ANONYMOUS
                    else canary_identity, certificate,
                    lambda other: _publish_canary(other, label, topic, nonce.encode()))
                canary = replace(report or Canary(label, topic, problem="the canary identity "
                                                  "could not log in"), login=canary_login)
            await _watch(link, watch, window)
            return replace(probe, canary=canary, no_canary="" if canary else no_canary,
                           window=window)
        except (OSError, _Closed, MalformedPacket) as exc:
            return replace(probe, problem=f"the exchange failed: {_tls_reason(exc)}")

    outcome, probe = await login(ctx, endpoint, level, None if identity is ANONYMOUS else
                                 identity, certificate, as_probe)
    return replace(probe or TopicProbe(endpoint, level, identity.label), login=outcome)


async def topic_authorization(ctx: DeviceContext, *, window: float, canary_prefix: str
                              ) -> tuple[TopicProbe, ...]:
    """Collector: per endpoint, subscribe to `#` and `$SYS/#` as the probe identity and, where
    granted, watch whether a canary identity's nonce or any `$SYS` message arrives.

    The probe identity is `credentials.mqtt`, or anonymous where the endpoint accepts anonymous
    clients; the canary is `credentials.mqtt_canary`, or anonymous likewise. Endpoints are
    probed one after another: each holds two connections at once. The canary publishes under
    `canary_prefix`; both are watched for `window` seconds.
    """
    certificate = client_certificate(ctx.device)
    probes = []
    for anonymous in await ctx.observe(anonymous_access):
        endpoint, level = anonymous.endpoint, anonymous.level
        open_door = anonymous.at(level)
        anonymous_ok = open_door is not None and open_door.accepted
        identity, why = inventory_identity(ctx.device, "mqtt")
        if identity is None and anonymous_ok:
            identity = ANONYMOUS
        canary, why_canary = inventory_identity(ctx.device, "mqtt_canary")
        if canary is None and anonymous_ok:
            canary = ANONYMOUS
        if endpoint.silent:
            probes.append(TopicProbe(endpoint, level, not_tried="the endpoint never answered "
                                     "a CONNECT"))
        elif identity is None:
            refusal = anonymous.levels[0].describe()
            probes.append(TopicProbe(endpoint, level, not_tried=f"{why}, and the endpoint "
                                     f"did not accept an anonymous client ({refusal})"))
        elif endpoint.needs_certificate and certificate is None:
            probes.append(TopicProbe(endpoint, level, identity.label, not_tried="the TLS layer "
                                     "requires a client certificate and the inventory has no "
                                     "credentials.tls_client"))
        elif ctx.options.per_device < 2:
            probes.append(TopicProbe(endpoint, level, identity.label, not_tried="the probe "
                                     "identity and the canary need two connections at once, "
                                     "and the per-device connection limit is 1"))
        else:
            no_canary = "" if canary is not None else (
                f"{why_canary}, and the endpoint refuses anonymous clients")
            probes.append(await _probe_topics(
                ctx, anonymous, identity, canary, no_canary,
                certificate if endpoint.needs_certificate else None, canary_prefix, window))
    return tuple(probes)
