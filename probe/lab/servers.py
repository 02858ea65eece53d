"""The services emulated devices run, and the asyncio plumbing that serves them on one address.

A TCP service is an object with `async serve(reader, writer)`, run once per connection in its own
task; a UDP service answers one datagram with at most one datagram (a hostile one, with a
burst). Both are small and defensive: every read is capped in size (`MAX_READ`) and, except where
a persona means to hang, in time (`IDLE_TIMEOUT`); whatever a peer sends, the worst outcome is
that its own connection closes.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, cast, runtime_checkable

from scapy.asn1.asn1 import ASN1_OID, ASN1_STRING, ASN1_TIME_TICKS
from scapy.layers.snmp import SNMP, SNMPget, SNMPnext, SNMPresponse, SNMPvarbind

log = logging.getLogger(__name__)

FORBIDDEN_PORT = 2024
IDLE_TIMEOUT = 30.0
HANDSHAKE_TIMEOUT = 10.0
MAX_READ = 8192
MAX_DATAGRAM = 2048
MAX_CONNECTIONS = 256
MAX_REQUESTS = 100
"""HTTP requests answered on one connection; the last answer closes it."""
_MAX_COMMANDS = 32

_PEER_ERRORS = (OSError, EOFError, TimeoutError, asyncio.LimitOverrunError, ValueError)


class StreamService(Protocol):
    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Talk to one connected peer; the caller closes the connection afterwards."""


class DatagramService(Protocol):
    def answer(self, request: bytes) -> bytes | Sequence[bytes] | None:
        """The reply to one datagram, several datagrams (a burst), or None to stay silent."""


@runtime_checkable
class Offering(Protocol):
    """A TCP service that speaks a protocol the check catalogue judges."""

    def offers(self, tls: bool) -> frozenset[str]:
        """The services it offers, named as the catalogue's `applies_to` names them, when its
        connections arrive after a TLS handshake (`tls`) or without one."""


_OVER_TLS = {"http": "https", "mqtt": "mqtts"}


def speaking(protocol: Literal["http", "mqtt"], tls: bool) -> frozenset[str]:
    """What a service speaking `protocol` offers: the protocol itself in cleartext; behind TLS,
    TLS and the protocol's name over TLS (https, mqtts)."""
    return frozenset({"tls", _OVER_TLS[protocol]}) if tls else frozenset({protocol})


def offered(service: object, tls: bool) -> frozenset[str]:
    """What `service` offers (`Offering`); nothing for a service that speaks no judged protocol
    (FTP, VNC, silence, noise)."""
    return service.offers(tls) if isinstance(service, Offering) else frozenset()


def _check_port(port: int) -> None:
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    if port == FORBIDDEN_PORT:
        raise ValueError(f"port {FORBIDDEN_PORT} belongs to the host; the lab never uses it")


@dataclass(frozen=True)
class TcpListener:
    port: int
    service: StreamService
    tls: bool = False
    transport: ClassVar[Literal["tcp"]] = "tcp"

    def __post_init__(self) -> None:
        _check_port(self.port)

    @property
    def offers(self) -> frozenset[str]:
        """The catalogue's services this listener offers (probe.lab.expectations)."""
        return offered(self.service, self.tls)


@dataclass(frozen=True)
class UdpListener:
    port: int
    service: DatagramService
    transport: ClassVar[Literal["udp"]] = "udp"

    def __post_init__(self) -> None:
        _check_port(self.port)

    @property
    def offers(self) -> frozenset[str]:
        """Nothing: the catalogue's `applies_to` names TCP services only, so the CoAP checks'
        statuses are written by each persona."""
        return frozenset()


Listener = TcpListener | UdpListener


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    """The first line of what a terminal sends (ended by LF, CR or CR NUL), at most MAX_READ
    bytes; anything after it is dropped. b"" when the peer went."""
    buf = bytearray()
    async with asyncio.timeout(IDLE_TIMEOUT):
        while len(buf) < MAX_READ:
            chunk = await reader.read(MAX_READ - len(buf))
            if not chunk:
                return bytes(buf)
            buf += chunk
            if b"\n" in chunk or b"\r" in chunk:
                break
    end = min(i for i in (buf.find(b"\r"), buf.find(b"\n"), len(buf)) if i >= 0)
    return bytes(buf[:end])


def _strip_telnet_commands(data: bytes) -> bytes:
    """The text of a Telnet line without IAC commands and subnegotiations."""
    out = bytearray()
    i = 0
    while i < len(data):
        byte = data[i]
        if byte != 0xFF:
            out.append(byte)
            i += 1
        elif i + 1 < len(data) and data[i + 1] == 0xFA:
            end = data.find(b"\xff\xf0", i + 2)
            i = len(data) if end < 0 else end + 2
        elif i + 1 < len(data) and 0xFB <= data[i + 1] <= 0xFE:
            i += 3
        else:
            i += 2
    return bytes(out)


IAC, DO, WILL = 0xFF, 0xFD, 0xFB
OPT_ECHO, OPT_SUPPRESS_GO_AHEAD, OPT_TERMINAL_TYPE, OPT_NAWS = 1, 3, 24, 31


@dataclass(frozen=True)
class TelnetLogin:
    """A Telnet daemon that negotiates, prompts for a login and refuses whatever it gets."""

    banner: str = ""

    def offers(self, tls: bool) -> frozenset[str]:
        """Telnet (the catalogue's `telnet`), in clear: the lab never wraps it in TLS."""
        return frozenset({"telnet"})

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        negotiation = bytes([
            IAC, DO, OPT_TERMINAL_TYPE, IAC, DO, OPT_NAWS,
            IAC, WILL, OPT_ECHO, IAC, WILL, OPT_SUPPRESS_GO_AHEAD,
        ])
        writer.write(negotiation + self.banner.encode() + b"login: ")
        await writer.drain()
        line = _strip_telnet_commands(await _read_line(reader))
        log.debug("telnet login attempt for %r", line[:64])
        writer.write(b"\r\nLogin incorrect\r\n")
        await writer.drain()


@dataclass(frozen=True)
class FtpLogin:
    """An FTP server that greets, refuses every login and says goodbye on QUIT."""

    greeting: str = "FTP server ready"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"220 {self.greeting}\r\n".encode())
        await writer.drain()
        for _ in range(_MAX_COMMANDS):
            async with asyncio.timeout(IDLE_TIMEOUT):
                line = await reader.readuntil(b"\n")
            verb = line.strip().split(b" ", 1)[0].upper()
            if verb == b"QUIT":
                writer.write(b"221 Goodbye.\r\n")
                await writer.drain()
                return
            if verb in (b"USER", b"PASS"):
                writer.write(b"530 Login incorrect.\r\n")
            else:
                writer.write(b"530 Please login with USER and PASS.\r\n")
            await writer.drain()
        writer.write(b"421 Too many commands, closing control connection.\r\n")
        await writer.drain()


HttpAnswer = Callable[[list[str], dict[str, str]], tuple[list[str], bytes]]
"""(request line split on spaces, headers by lower-case name) -> (status line and headers, the
body to send)."""


async def serve_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     answer: HttpAnswer) -> None:
    """Answer HTTP/1.x requests on one connection with `answer`, kept alive as HTTP/1.1 allows:
    until the peer closes between requests or stays idle for IDLE_TIMEOUT, asks to close, is
    not HTTP/1.1, sends a request body (never read) or has had MAX_REQUESTS answers. The last
    answer says `Connection: close`."""
    for served in range(1, MAX_REQUESTS + 1):
        async with asyncio.timeout(IDLE_TIMEOUT):
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise
                return
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        response, body = answer(parts, headers)
        keep = served < MAX_REQUESTS and _persistent(parts, headers)
        if not keep:
            response = [*response, "Connection: close"]
        writer.write(("\r\n".join(response) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        if not keep:
            return


def _persistent(parts: list[str], headers: dict[str, str]) -> bool:
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    body = headers.get("content-length", "0").strip() != "0" or "transfer-encoding" in headers
    return len(parts) == 3 and parts[2] == "HTTP/1.1" and "close" not in tokens and not body


@dataclass(frozen=True)
class HttpPage:
    """A minimal HTTP/1.1 server: one page, 200 to GET and HEAD, persistent connections."""

    title: str = "Device"

    def offers(self, tls: bool) -> frozenset[str]:
        return speaking("http", tls)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_http(reader, writer, self._answer)

    def _answer(self, parts: list[str], headers: dict[str, str]) -> tuple[list[str], bytes]:
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            status, body = "400 Bad Request", b""
        elif parts[0] in ("GET", "HEAD"):
            status = "200 OK"
            body = (
                f"<!doctype html>\n<html><head><title>{self.title}</title></head>"
                f"<body><h1>{self.title}</h1></body></html>\n"
            ).encode()
        else:
            status, body = "405 Method Not Allowed", b""
        response = [
            f"HTTP/1.1 {status}",
            "Server: iotprobe-lab",
            "Content-Type: text/html; charset=utf-8",
            f"Content-Length: {len(body)}",
        ]
        if status.startswith("405"):
            response.append("Allow: GET, HEAD")
        return response, b"" if parts[0] == "HEAD" else body


@dataclass(frozen=True)
class RfbBanner:
    """A VNC server that announces its protocol version and waits for the client's."""

    version: bytes = b"RFB 003.008\n"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.version)
        await writer.drain()
        async with asyncio.timeout(IDLE_TIMEOUT):
            await reader.read(len(self.version))


@dataclass(frozen=True)
class MqttRefuse:
    """An MQTT broker (behind TLS, usually) that answers every CONNECT with "not authorised".

    MQTT 3.1 and 3.1.1 get CONNACK return code 5, MQTT 5 reason code 0x87. Anything else than a
    well-formed CONNECT closes the connection.
    """

    max_packet: int = 65536

    def offers(self, tls: bool) -> frozenset[str]:
        return speaking("mqtt", tls)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(IDLE_TIMEOUT):
            first = await reader.readexactly(1)
            if first[0] != 0x10:
                return
            length = 0
            for shift in (0, 7, 14, 21):
                byte = (await reader.readexactly(1))[0]
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
            else:
                return
            if not 10 <= length <= self.max_packet:
                return
            body = await reader.readexactly(length)
        (name_len,) = struct.unpack_from("!H", body)
        if 2 + name_len >= len(body):
            return
        level = body[2 + name_len]
        if level == 5:
            writer.write(bytes([0x20, 0x03, 0x00, 0x87, 0x00]))
        else:
            writer.write(bytes([0x20, 0x02, 0x00, 0x05]))
        await writer.drain()


@dataclass(frozen=True)
class Silent:
    """Accepts and never speaks or closes: reads (and drops) until the peer goes."""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(MAX_READ):
            pass


TFTP_RRQ, TFTP_WRQ, TFTP_ERROR = 1, 2, 5


def tftp_error(code: int, message: str) -> bytes:
    return struct.pack("!HH", TFTP_ERROR, code) + message.encode() + b"\0"


@dataclass(frozen=True)
class TftpDenied:
    """A TFTP server with nothing to give: read requests get File not found, writes are refused.

    Errors come back from port 69 itself rather than a fresh transfer port, which is what a
    client sees from a server that rejects a request before any transfer starts.
    """

    def answer(self, request: bytes) -> bytes | None:
        if len(request) < 4:
            return None
        (opcode,) = struct.unpack_from("!H", request)
        if opcode == TFTP_RRQ:
            return tftp_error(1, "File not found")
        if opcode == TFTP_WRQ:
            return tftp_error(2, "Access violation")
        return None


OID_SYS_DESCR = "1.3.6.1.2.1.1.1.0"
OID_SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
OID_SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
OID_SYS_NAME = "1.3.6.1.2.1.1.5.0"
_ENTERPRISE_OID = "1.3.6.1.4.1.8072.3.2.10"
_MAX_VARBINDS = 16
SNMP_V1, SNMP_V2C = 0, 1
_NO_SUCH_NAME = 2


def _oid_key(oid: str) -> tuple[int, ...]:
    return tuple(int(part) for part in oid.strip(".").split("."))


@dataclass(frozen=True)
class SnmpAgent:
    """An SNMP v1/v2c agent with the system group, answering Get and GetNext.

    Only requests carrying one of `communities` get an answer; others are dropped silently, as
    real agents do.
    """

    sys_descr: str
    sys_name: str
    communities: tuple[bytes, ...] = (b"public",)
    started: float = field(default_factory=time.monotonic, compare=False)

    def _mib(self) -> list[tuple[tuple[int, ...], str, Any]]:
        uptime = int((time.monotonic() - self.started) * 100)
        return sorted([
            (_oid_key(OID_SYS_DESCR), OID_SYS_DESCR, ASN1_STRING(self.sys_descr.encode())),
            (_oid_key(OID_SYS_OBJECT_ID), OID_SYS_OBJECT_ID, ASN1_OID(_ENTERPRISE_OID)),
            (_oid_key(OID_SYS_UPTIME), OID_SYS_UPTIME, ASN1_TIME_TICKS(uptime)),
            (_oid_key(OID_SYS_NAME), OID_SYS_NAME, ASN1_STRING(self.sys_name.encode())),
        ])

    def answer(self, request: bytes) -> bytes | None:
        message = SNMP(request)
        version = int(message.version.val)
        if version not in (SNMP_V1, SNMP_V2C):
            return None
        if bytes(message.community.val) not in self.communities:
            return None
        pdu = message.PDU
        if not isinstance(pdu, SNMPget | SNMPnext):
            return None
        requested = [str(vb.oid.val) for vb in pdu.varbindlist]
        if not requested or len(requested) > _MAX_VARBINDS:
            return None
        mib = self._mib()
        varbinds: list[Any] = []
        for index, oid in enumerate(requested, start=1):
            key = _oid_key(oid)
            if isinstance(pdu, SNMPget):
                found = [(o, v) for k, o, v in mib if k == key]
            else:
                found = [(o, v) for k, o, v in mib if k > key][:1]
            if found:
                varbinds.append(SNMPvarbind(oid=ASN1_OID(found[0][0]), value=found[0][1]))
            elif version == SNMP_V1:
                response = SNMPresponse(
                    id=pdu.id.val, error=_NO_SUCH_NAME, error_index=index,
                    varbindlist=[SNMPvarbind(oid=o) for o in requested],
                )
                break
            elif isinstance(pdu, SNMPget):
                varbinds.append(SNMPvarbind(oid=oid, value=None, noSuchObject=0))
            else:
                varbinds.append(SNMPvarbind(oid=oid, value=None, endOfMibView=0))
        else:
            response = SNMPresponse(id=pdu.id.val, varbindlist=varbinds)
        return bytes(SNMP(version=version, community=message.community.val, PDU=response))


class StreamServer:
    """One TCP listener: runs its service per connection, caps and tracks the connections."""

    def __init__(self, service: StreamService) -> None:
        self.service = service
        self.connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self.server: asyncio.Server | None = None

    async def start(self, address: str, port: int, tls: ssl.SSLContext | None) -> None:
        self.server = await asyncio.start_server(
            self._handle, host=address, port=port, ssl=tls, limit=MAX_READ,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT if tls else None,
        )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or len(self.connections) >= MAX_CONNECTIONS:
            writer.transport.abort()
            return
        self.connections[task] = writer
        try:
            await self.service.serve(reader, writer)
        except _PEER_ERRORS as exc:
            log.debug("%s: connection ended: %r", type(self.service).__name__, exc)
        except Exception:
            log.exception("%s failed on a connection", type(self.service).__name__)
        finally:
            del self.connections[task]
            writer.close()

    async def stop(self) -> None:
        if self.server is None:
            return
        self.server.close()
        for writer in list(self.connections.values()):
            writer.transport.abort()
        if self.connections:
            _, stuck = await asyncio.wait(list(self.connections), timeout=HANDSHAKE_TIMEOUT)
            for task in stuck:
                task.cancel()
        try:
            await asyncio.wait_for(self.server.wait_closed(), HANDSHAKE_TIMEOUT)
        except TimeoutError:
            log.debug("listener still had handshakes in progress when it stopped")


class DatagramServer(asyncio.DatagramProtocol):
    """One UDP listener: each datagram gets the service's answer, or silence."""

    def __init__(self, service: DatagramService) -> None:
        self.service = service
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) > MAX_DATAGRAM or self.transport is None:
            return
        try:
            reply = self.service.answer(data)
        except Exception as exc:  # scapy and friends raise all sorts on garbage: drop it
            log.debug("%s: dropped a datagram: %r", type(self.service).__name__, exc)
            return
        if reply is None:
            return
        for datagram in [reply] if isinstance(reply, bytes) else reply:
            self.transport.sendto(datagram, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("%s: %r", type(self.service).__name__, exc)

    def stop(self) -> None:
        if self.transport is not None:
            self.transport.close()


def ports_of(listeners: Sequence[Listener]) -> list[dict[str, Any]]:
    """The listeners as they appear in the state file."""
    out: list[dict[str, Any]] = []
    for listener in listeners:
        entry: dict[str, Any] = {"transport": listener.transport, "port": listener.port}
        if isinstance(listener, TcpListener):
            entry["tls"] = listener.tls
        out.append(entry)
    return out
