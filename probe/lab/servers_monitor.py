"""Emulated security monitoring for lab personas: devices that report their failed logins (or
do not), throttle brute force (or do not) and publish a heartbeat.

- `SyslogReporter` sends one auth-facility warning per failed login, RFC 5424 or RFC 3164, over
  UDP, TCP or TLS (RFC 5425, octet counting), in the background: a device does not wait for its
  log collector, and a missing collector costs nothing. Its collector is a fixed address, or by
  default the device's own address (a lab device reports to `<its address>:<port>`, so that
  devices, and labs run side by side, never share a collector port).
- `ReportingBroker` is the lab's `MqttBroker` plus monitoring: every refused CONNECT (client
  id, user name, source address and port) goes to its `SyslogReporter` and/or is published on
  its own `event_topic`; a `Throttle` tarpits a source that failed too often; a heartbeat is
  published on `heartbeat_topic` every `heartbeat_every` seconds while a client is connected.
- `BasicAuthSite` is a small HTTP/1.1 server whose `protected` prefix asks for Basic
  credentials, reporting each refused user name like an access log would.

The collector's certificate is not verified (a lab device trusts its collector blindly); that
is the device's business, not what the probe checks.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import datetime as dt
import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from probe.lab.servers import IDLE_TIMEOUT, speaking
from probe.lab.servers_mqtt import MqttBroker, _Hello, matches

log = logging.getLogger(__name__)

AUTH_WARNING = 4 * 8 + 4  # facility auth (4), severity warning (4)
SEND_TIMEOUT = 5.0
MAX_PENDING = 64
MAX_HEADERS = 64
SD_ID = "auth@32473"
_BEATS = 100_000

_PEER: contextvars.ContextVar[tuple[str, str, int]] = contextvars.ContextVar("lab_peer")


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


@dataclass(frozen=True)
class SyslogReporter:
    """Where and how a device sends its security events (`address` None: the device's own)."""

    port: int
    address: str | None = None
    transport: Literal["udp", "tcp", "tls"] = "udp"
    format: Literal["rfc5424", "rfc3164"] = "rfc5424"
    app: str = "authd"
    pending: set[asyncio.Task[None]] = field(default_factory=set, compare=False, repr=False)

    def message(self, hostname: str, text: str, data: Mapping[str, str]) -> bytes:
        now = dt.datetime.now(dt.UTC)
        if self.format == "rfc3164":
            stamp = f"{now:%b} {now.day:2d} {now:%H:%M:%S}"
            return f"<{AUTH_WARNING}>{stamp} {hostname} {self.app}[1]: {text}".encode()
        params = " ".join(f'{k}="{_sd_escape(v)}"' for k, v in data.items())
        stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return (f"<{AUTH_WARNING}>1 {stamp} {hostname} {self.app} 1 AUTHFAIL "
                f"[{SD_ID} {params}] {text}").encode()

    def report(self, device: str, text: str, data: Mapping[str, str]) -> None:
        """Send one event of the device at address `device` in the background; dropped when
        MAX_PENDING sends are under way."""
        if len(self.pending) >= MAX_PENDING:
            return
        task = asyncio.get_running_loop().create_task(
            self._send(self.address or device, device, self.message(device, text, data)))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _send(self, address: str, device: str, message: bytes) -> None:
        """Send from the device's own address, as a device on a network would: the probe
        accepts syslog only from the device or a declared forwarder."""
        source = (device, 0)
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                if self.transport == "udp":
                    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                        asyncio.DatagramProtocol, remote_addr=(address, self.port),
                        local_addr=source)
                    transport.sendto(message)
                    transport.close()
                    return
                context = None
                if self.transport == "tls":
                    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                _, writer = await asyncio.open_connection(address, self.port, ssl=context,
                                                          local_addr=source)
                try:
                    writer.write(str(len(message)).encode() + b" " + message)
                    await writer.drain()
                finally:
                    writer.close()
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            log.debug("syslog to %s:%d not sent: %r", address, self.port, exc)


@dataclass(frozen=True)
class Throttle:
    """After `after` failed logins from one source within `window` seconds, every new
    connection from it waits `delay` seconds before it is answered."""

    after: int = 5
    delay: float = 0.3
    window: float = 30.0
    failures: dict[tuple[str, str], list[float]] = field(default_factory=dict, compare=False,
                                                         repr=False)

    def _recent(self, key: tuple[str, str]) -> list[float]:
        now = time.monotonic()
        kept = [t for t in self.failures.get(key, []) if now - t < self.window][-self.after:]
        self.failures[key] = kept
        return kept

    def record(self, local: str, source: str) -> None:
        key = (local, source)
        self._recent(key).append(time.monotonic())

    def delay_for(self, local: str, source: str) -> float:
        return self.delay if len(self._recent((local, source))) >= self.after else 0.0


def _peer(writer: asyncio.StreamWriter) -> tuple[str, str, int]:
    local = writer.get_extra_info("sockname")
    peer = writer.get_extra_info("peername")
    return (str(local[0]) if local else "?", str(peer[0]) if peer else "?",
            int(peer[1]) if peer else 0)


@dataclass(frozen=True)
class ReportingBroker(MqttBroker):
    """`MqttBroker` that reports refused logins, may throttle, may send a heartbeat."""

    syslog: SyslogReporter | None = None
    event_topic: str | None = None
    throttle: Throttle | None = None
    heartbeat_topic: str | None = None
    heartbeat_every: float = 1.0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer(writer)
        if self.throttle is not None:
            delay = self.throttle.delay_for(peer[0], peer[1])
            if delay:
                await asyncio.sleep(delay)
        token = _PEER.set(peer)
        beat = (asyncio.get_running_loop().create_task(self._beat(peer[0]))
                if self.heartbeat_topic is not None else None)
        try:
            await super().serve(reader, writer)
        finally:
            _PEER.reset(token)
            if beat is not None:
                beat.cancel()

    def _admit(self, hello: _Hello) -> int:
        code = super()._admit(hello)
        if code != 0:
            self._refused(hello)
        return code

    def _refused(self, hello: _Hello) -> None:
        local, source, port = _PEER.get(("?", "?", 0))
        if self.throttle is not None:
            self.throttle.record(local, source)
        user = hello.username if hello.username is not None else "-"
        text = (f"MQTT login failed for client {hello.client_id or '-'} user {user} from "
                f"{source}:{port}: not authorised")
        if self.syslog is not None:
            self.syslog.report(local, text, {"client_id": hello.client_id, "user": user,
                                             "source": f"{source}:{port}"})
        if self.event_topic is not None:
            self._announce(local, self.event_topic, text.encode())

    def _announce(self, local: str, topic: str, payload: bytes) -> None:
        hub = self.hubs.get(local)
        if hub is None:
            return
        for session in list(hub.by_task.values()):
            if any(matches(f, topic) for f in session.filters):
                session.deliver(topic, payload)

    async def _beat(self, local: str) -> None:
        assert self.heartbeat_topic is not None
        for count in range(_BEATS):
            await asyncio.sleep(self.heartbeat_every)
            self._announce(local, self.heartbeat_topic,
                          f'{{"status": "ok", "beat": {count}}}'.encode())


def _basic_user(value: str) -> tuple[str, str] | None:
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(token.strip(), validate=True).decode(
            "utf-8", "replace").partition(":")
    except (binascii.Error, ValueError):
        return None
    return user, password


@dataclass(frozen=True)
class BasicAuthSite:
    """HTTP/1.1, one request per connection: `protected` paths want Basic credentials from
    `accounts` (401 otherwise, reported to `syslog` when credentials were given), every other
    path serves a small page."""

    protected: str = "/admin"
    accounts: tuple[tuple[str, str], ...] = ()
    syslog: SyslogReporter | None = None
    title: str = "Device"
    realm: str = "device"

    def offers(self, tls: bool) -> frozenset[str]:
        return speaking("http", tls)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(IDLE_TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        headers = {}
        for line in lines[1:MAX_HEADERS]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        extra: list[str] = []
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            status, body = "400 Bad Request", b""
        elif parts[1].split("?", 1)[0].startswith(self.protected):
            given = _basic_user(headers.get("authorization", ""))
            if given is not None and given in self.accounts:
                status, body = "200 OK", f"<h1>{self.title} settings</h1>\n".encode()
            else:
                status, body = "401 Unauthorized", b"authentication required\n"
                extra.append(f'WWW-Authenticate: Basic realm="{self.realm}"')
                if given is not None:
                    self._refused(writer, parts[0], parts[1], given[0])
        else:
            status, body = "200 OK", f"<!doctype html><title>{self.title}</title>\n".encode()
        now = dt.datetime.now(dt.UTC)
        response = [f"HTTP/1.1 {status}", "Server: iotprobe-lab",
                    f"Date: {now:%a, %d %b %Y %H:%M:%S} GMT",
                    "Content-Type: text/html; charset=utf-8", f"Content-Length: {len(body)}",
                    "Connection: close", *extra]
        writer.write(("\r\n".join(response) + "\r\n\r\n").encode() + body)
        await writer.drain()

    def _refused(self, writer: asyncio.StreamWriter, method: str, target: str,
                 user: str) -> None:
        if self.syslog is None:
            return
        local, source, port = _peer(writer)
        text = f'{source} - {user} "{method} {target[:200]} HTTP/1.1" 401 login failed'
        self.syslog.report(local, text, {"user": user, "source": f"{source}:{port}"})
