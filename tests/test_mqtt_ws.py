"""MQTT over WebSockets (`ws` and `wss`) against real amqtt and aedes brokers on 127.177.x.y.

amqtt (PyPI) serves its `ws` listeners with the `websockets` library, aedes (npm) with the `ws`
package: open (anonymous, no ACL) they fail every MQTT check, locked (passwords and a topic
ACL, `wss` only) they pass them, except `mqtt.client-certificate`, which amqtt cannot require
and which a `wss` listener that requires one hides from discovery (docs/mqtt-websockets.md).
What no broker does on purpose (an upgrade to `mqtt` followed by garbage or silence, an
upgrade that omits the subprotocol) comes from listeners on the test's own loop; an HTTP
server that knows no WebSockets is real nginx.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from conftest import load_records
from daemons import Listener, nginx, silent
from interop import brokers_mqtt
from interop.brokers_mqtt_ws import aedes_ws, amqtt_ws
from test_mqtt import (
    MQTT_CHECKS,
    credentials,
    device,
    no_secret_in,
    run,
    statuses,
)

from probe.model import Finding, Status
from probe.observe.discovery import services
from probe.protocols.mqtt.collectors import endpoints
from probe.protocols.mqtt.websocket import PATHS

FAST = {"pace_seconds": 0.0, "window_seconds": 0.5}
ACCOUNTS = {"probe": "pr0be-Zq8-secret-Xv3", "canary": "can4ry-Wm5-secret-Lk9"}
"""test_mqtt's passwords (its `credentials` names them)."""
ACL = {"probe": ("devices/probe/#",), "canary": ("iotprobe/canary/#",)}
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def _all(ctx: object) -> dict[str, list[Finding]]:
    return {check_id: await run(check_id, ctx) for check_id in MQTT_CHECKS}  # type: ignore[arg-type]


async def test_open_amqtt_fails_every_check_on_ws_and_wss(tmp_path: Path) -> None:
    address = "127.177.0.1"
    tls = brokers_mqtt.broker_tls(tmp_path, address)
    with amqtt_ws(tmp_path, address, {8080: False, 8443: True}, tls=tls), \
            device(address, (8080, 8443), creds=credentials(probe=False), **FAST) as ctx:
        found = await ctx.observe(endpoints)
        results = await _all(ctx)
    ws, wss = "tcp/8080 ws /mqtt", "tcp/8443 wss /mqtt"
    assert [(e.target, e.transport) for e in found] == [(ws, "ws"), (wss, "wss")]
    assert {f.target: f.status for f in results["mqtt.cleartext-listener"]} == {
        ws: Status.FAIL, wss: Status.PASS}
    for check_id in ("mqtt.anonymous-access", "mqtt.default-credentials",
                     "mqtt.topic-authorization"):
        assert {f.target: f.status for f in results[check_id]} == {
            ws: Status.FAIL, wss: Status.FAIL}, check_id
    assert {f.target: f.status for f in results["mqtt.client-certificate"]} == {
        wss: Status.FAIL}
    (cleartext, _) = results["mqtt.cleartext-listener"]
    assert cleartext.evidence["transport"] == "ws" and cleartext.evidence["path"] == "/mqtt"
    assert "tcp/8080 ws /mqtt answers a CONNECT in cleartext" in cleartext.summary
    topics = results["mqtt.topic-authorization"][0]
    assert topics.evidence["received"]["canary_received"] is True


async def test_bruteforce_throttling_logs_in_over_the_websocket(tmp_path: Path) -> None:
    address = "127.177.0.7"
    with amqtt_ws(tmp_path, address, {8080: False}), \
            device(address, (8080,), timeout=2.0) as ctx:
        findings = await run("monitor.bruteforce-throttling", ctx)
    (mqtt,) = [f for f in findings if f.target == "tcp/8080 ws /mqtt"]
    assert mqtt.status is Status.FAIL  # the open broker accepts the random password
    assert "accepted a random password" in mqtt.summary


async def test_locked_amqtt_over_wss_passes(tmp_path: Path) -> None:
    address = "127.177.0.2"
    tls = brokers_mqtt.broker_tls(tmp_path, address)
    with amqtt_ws(tmp_path, address, {8443: True}, users=ACCOUNTS, acl=ACL, tls=tls), \
            device(address, (8443,), creds=credentials(canary=True), **FAST) as ctx:
        results = await _all(ctx)
    wss = "tcp/8443 wss /mqtt"
    for check_id in ("mqtt.cleartext-listener", "mqtt.anonymous-access",
                     "mqtt.default-credentials", "mqtt.topic-authorization"):
        assert {f.target: f.status for f in results[check_id]} == {wss: Status.PASS}, (
            check_id, [f.summary for f in results[check_id]])
    (topics,) = results["mqtt.topic-authorization"]
    assert topics.evidence["identity"] == "probe"
    assert {f: c["code"] >= 0x80 for f, c in topics.evidence["suback"].items()} == {
        "#": True, "$SYS/#": True}
    (certificate,) = results["mqtt.client-certificate"]
    assert certificate.status is Status.FAIL  # amqtt never requires a client certificate
    for findings in results.values():
        no_secret_in(findings)


async def test_aedes_open_on_ws_fails_and_locked_on_wss_passes(tmp_path: Path) -> None:
    address = "127.177.0.8"
    tls = brokers_mqtt.broker_tls(tmp_path, address)
    with aedes_ws(tmp_path / "open", address, {8080: ("/ws", False)}), \
            aedes_ws(tmp_path / "locked", address, {8443: ("/mqtt", True)}, users=ACCOUNTS,
                     acl=ACL, tls=tls), \
            device(address, (8080, 8443), creds=credentials(canary=True), **FAST) as ctx:
        results = await _all(ctx)
    ws, wss = "tcp/8080 ws /ws", "tcp/8443 wss /mqtt"  # aedes upgrades on its own path only
    assert {f.target: f.status for f in results["mqtt.cleartext-listener"]} == {
        ws: Status.FAIL, wss: Status.PASS}
    assert {f.target: f.status for f in results["mqtt.anonymous-access"]} == {
        ws: Status.FAIL, wss: Status.PASS}
    assert {f.target: f.status for f in results["mqtt.default-credentials"]} == {
        ws: Status.FAIL, wss: Status.PASS}
    topics = {f.target: f for f in results["mqtt.topic-authorization"]}
    assert topics[wss].status is Status.PASS
    # the open broker admits the probe identity too: it is granted # and gets the canary's nonce
    assert topics[ws].status is Status.FAIL
    assert topics[ws].evidence["received"]["canary_received"] is True
    assert {f.target: f.status for f in results["mqtt.client-certificate"]} == {
        wss: Status.FAIL}
    for findings in results.values():
        no_secret_in(findings)


async def test_a_websocket_only_listener_refuses_plain_gets_with_426(tmp_path: Path) -> None:
    """amqtt (`websockets`) and aedes (`ws`) answer a GET without an upgrade 426 Upgrade
    Required: no resource served, so http.authentication passes there instead of erring on
    every path; the listener's MQTT is judged by the MQTT checks (they fail: open brokers)."""
    address = "127.177.0.14"
    with amqtt_ws(tmp_path / "amqtt", address, {8080: False}), \
            aedes_ws(tmp_path / "aedes", address, {8081: ("/ws", False)}), \
            device(address, (8080, 8081)) as ctx:
        authentication = {f.target: f for f in await run("http.authentication", ctx)}
        anonymous = await statuses(ctx, "mqtt.anonymous-access")
    assert {t: f.status for t, f in authentication.items()} == {
        "tcp/8080": Status.PASS, "tcp/8081": Status.PASS}
    for finding in authentication.values():
        whys = {p["why"] for p in finding.evidence["paths"]}
        assert all(w.startswith("426: served only after a protocol upgrade") for w in whys), whys
    assert anonymous == {"tcp/8080 ws /mqtt": Status.FAIL, "tcp/8081 ws /ws": Status.FAIL}


async def test_a_wss_listener_that_requires_a_client_certificate(tmp_path: Path) -> None:
    """Found only with the inventory's certificate: TLS refuses identification without one."""
    address = "127.177.0.9"
    tls = brokers_mqtt.broker_tls(tmp_path, address)
    tls_client = credentials(probe=False, tls=tls)
    with aedes_ws(tmp_path, address, {8443: ("/mqtt", True)}, users=ACCOUNTS, tls=tls,
                  require_certificate=True):
        with device(address, (8443,), creds=tls_client, **FAST) as ctx:
            results = await _all(ctx)
        with device(address, (8443,), **FAST) as ctx:
            unseen = await ctx.observe(endpoints)
    wss = "tcp/8443 wss /mqtt"
    for check_id in ("mqtt.client-certificate", "mqtt.anonymous-access",
                     "mqtt.cleartext-listener", "mqtt.default-credentials"):
        assert {f.target: f.status for f in results[check_id]} == {wss: Status.PASS}, check_id
    (certificate,) = results["mqtt.client-certificate"]
    assert "certificate required" in certificate.summary
    assert unseen == ()


def _accept(request: bytes, protocol: bool = True) -> bytes | None:
    """The 101 to a WebSocket upgrade; None for any other request."""
    key = next((line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")), None)
    if key is None:
        return None
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n"
            + (b"Sec-WebSocket-Protocol: mqtt\r\n" if protocol else b"") + b"\r\n")


Then = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def upgrading(then: Then, protocol: bool = True, masks: list[bool] | None = None,
              with_101: bytes = b""
              ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """Answer the upgrade with 101 (naming `mqtt` when `protocol`) and `with_101` in the same
    write, note whether the client's first frame is masked, then `then`; answer any other HTTP
    request 426, as `websockets` does, and anything else not at all."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError):
            await answer(reader, writer)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        upgraded = _accept(request, protocol)
        if upgraded is None:
            writer.write(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        writer.write(upgraded + with_101)
        await writer.drain()
        head = await reader.readexactly(2)
        if masks is not None:
            masks.append(bool(head[1] & 0x80))
        await then(reader, writer)
    return serve


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"\xff" * 32)  # reserved bits and an unknown opcode: no frame
    await writer.drain()
    await silent(reader, writer)


async def text(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"\x81\x04" + b"\x20\x02\x00\x00")  # a CONNACK, but in a text message
    await writer.drain()
    await silent(reader, writer)


async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One binary message that claims 2**40 bytes, sent 64 KiB at a time (bounded here too)."""
    writer.write(b"\x82\x7f" + (1 << 40).to_bytes(8, "big") + b"\x30\xff\xff\xff\x7f")
    for _ in range(256):  # 16 MiB at most, far past the probe's read limit
        writer.write(b"\x00" * 65536)
        await writer.drain()


@pytest.mark.parametrize("then, with_101, reason", [
    (garbage, b"", "not-mqtt"), (text, b"", "not-mqtt"), (silent, b"", "timeout"),
    (flood, b"", "not-mqtt"),
    (silent, b"\xff" * 8, "not-mqtt")])  # garbage in the 101's own segment is not lost
async def test_an_upgraded_listener_that_answers_garbage_or_hangs_is_an_error_for_it_only(
        tmp_path: Path, then: Then, with_101: bytes, reason: str) -> None:
    address = "127.177.0.3"
    masks: list[bool] = []
    with amqtt_ws(tmp_path, address, {8080: False}):
        async with Listener(address, 8081, upgrading(then, masks=masks, with_101=with_101)):
            with device(address, (8080, 8081), creds=credentials(probe=False),
                        timeout=1.0, **FAST) as ctx:
                found = await ctx.observe(endpoints)
                cleartext = await statuses(ctx, "mqtt.cleartext-listener")
                (hostile,) = [f for f in await run("mqtt.anonymous-access", ctx)
                              if f.target == "tcp/8081 ws /mqtt"]
    assert [e.target for e in found] == ["tcp/8080 ws /mqtt", "tcp/8081 ws /mqtt"]
    assert cleartext == {"tcp/8080 ws /mqtt": Status.FAIL, "tcp/8081 ws /mqtt": Status.ERROR}
    assert hostile.status is Status.ERROR and hostile.evidence["reason"] == reason
    assert masks and all(masks)  # RFC 6455 5.3: every client frame is masked


async def accept_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                            ) -> None:
    """CONNACK 0 in a binary message, then a close frame (1000) in the same segment."""
    await reader.read(4096)  # the rest of the CONNECT's frame
    writer.write(b"\x82\x04\x20\x02\x00\x00" + b"\x88\x02\x03\xe8")
    await writer.drain()
    await silent(reader, writer)


async def test_a_websocket_closed_after_the_connack_ends_the_exchange_as_an_error(
        tmp_path: Path) -> None:
    address = "127.177.0.12"
    async with Listener(address, 8081, upgrading(accept_then_close)):
        with device(address, (8081,), timeout=1.0, **FAST) as ctx:
            (topics,) = await run("mqtt.topic-authorization", ctx)
    assert topics.target == "tcp/8081 ws /mqtt"
    assert topics.status is Status.ERROR, topics.summary
    assert "the broker closed the websocket" in topics.summary


async def test_an_upgrade_without_the_mqtt_subprotocol_is_no_mqtt_endpoint(
        tmp_path: Path) -> None:
    address = "127.177.0.4"
    async with Listener(address, 8081, upgrading(silent, protocol=False)) as listener:
        with device(address, (8081,), timeout=1.0) as ctx:
            await ctx.observe(services)
            identified = listener.accepted
            found = await ctx.observe(endpoints)
            (finding,) = await run("mqtt.anonymous-access", ctx)
    assert found == ()
    assert finding.status is Status.NOT_APPLICABLE
    assert listener.accepted - identified == len(PATHS)  # each path asked once


async def _hangs_on_upgrades(reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                             ) -> None:
    request = await reader.readuntil(b"\r\n\r\n")
    if _accept(request) is None:
        writer.write(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        return
    await silent(reader, writer)


async def test_a_port_that_hangs_on_the_upgrade_is_asked_one_path_and_is_no_endpoint(
        tmp_path: Path) -> None:
    address = "127.177.0.10"
    async with Listener(address, 8081, _hangs_on_upgrades) as listener:
        with device(address, (8081,), timeout=1.0) as ctx:
            await ctx.observe(services)
            identified = listener.accepted
            found = await ctx.observe(endpoints)
            (finding,) = await run("mqtt.cleartext-listener", ctx)
    assert found == ()
    assert finding.status is Status.NOT_APPLICABLE  # never MQTT without an `mqtt` upgrade
    assert listener.accepted - identified == 1


BACKLOG = 4


class Saturating:
    """A real listening socket that answers HTTP on threads while `serving`, then stops
    accepting: filler connections fill its accept queue and the kernel drops further SYNs, so
    a connection the probe opens later never completes (a device past what it can take)."""

    def __init__(self, address: str, port: int) -> None:
        self.sock = socket.create_server((address, port), backlog=BACKLOG)
        self.sock.settimeout(0.05)
        self.serving = threading.Event()
        self.serving.set()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.fillers: list[socket.socket] = []

    def _accept(self) -> None:
        while self.serving.is_set() and not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    @staticmethod
    def _answer(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(3.0)
            with contextlib.suppress(OSError):
                if conn.recv(4096):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                                 b"Content-Type: text/plain\r\n\r\nhello")

    def saturate(self) -> None:
        """Stop accepting and fill the queue: Linux queues `BACKLOG + 1` connections; the
        first connect past that is left unanswered (bounded: one more than that at most)."""
        self.serving.clear()
        self.thread.join(timeout=5)
        for _ in range(BACKLOG + 2):
            filler = socket.socket()
            self.fillers.append(filler)
            filler.settimeout(0.5)
            try:
                filler.connect(self.sock.getsockname()[:2])
            except TimeoutError:
                return
        raise AssertionError("the accept queue never filled")

    def __enter__(self) -> Saturating:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        for filler in self.fillers:
            filler.close()
        self.sock.close()


async def test_an_http_port_whose_connections_stop_completing_is_no_mqtt_endpoint(
        tmp_path: Path) -> None:
    """The fragile camera's case: identified as HTTP, then past its capacity. A connection that
    never completes asked no upgrade, so it makes no `ws` endpoint (it once did: a `timeout` of
    the MQTT layer was taken for a listener that upgraded, and every MQTT check erred)."""
    address = "127.177.0.13"
    with Saturating(address, 8080) as listener, \
            device(address, (8080,), timeout=1.0) as ctx:
        (http,) = (await ctx.observe(services)).tcp
        listener.saturate()
        found = await ctx.observe(endpoints)
        (finding,) = await run("mqtt.cleartext-listener", ctx)
    assert http.protocol == "http"
    assert found == ()
    assert finding.status is Status.NOT_APPLICABLE


async def test_http_without_websockets_is_no_mqtt_endpoint(tmp_path: Path) -> None:
    """nginx answers each upgrade 404 and keeps the connection: every path is asked on one."""
    address = "127.177.0.5"
    with nginx(tmp_path, address, 8080), device(address, (8080,)) as ctx:
        await ctx.observe(services)
        identified = ctx.connections
        found = await ctx.observe(endpoints)
        asked = ctx.connections - identified
        results = await _all(ctx)
    assert found == ()
    assert asked == 1
    assert {f.status for findings in results.values() for f in findings} == {
        Status.NOT_APPLICABLE}


def test_the_command_line_names_the_transport_in_schema_valid_records(tmp_path: Path) -> None:
    address = "127.177.0.6"
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(json.dumps({"devices": [
        {"id": "open-ws", "address": address, "ports": [8080]}]}))
    with amqtt_ws(tmp_path / "broker", address, {8080: False}):
        done = subprocess.run(
            [sys.executable, "-m", "probe", "scan", "-i", str(inventory), "-o",
             str(tmp_path / "out"), "--exclude-ports", "2024", "--timeout", "3", "--budget",
             "90", "--no-udp", "--checks", "mqtt.*"],
            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr
    record = load_records(tmp_path / "out")["open-ws"]  # validated against the schema
    judged = {(r["check"], r["target"]): r["status"] for r in record["results"]}
    assert judged[("mqtt.cleartext-listener", "tcp/8080 ws /mqtt")] == "fail"
    assert judged[("mqtt.anonymous-access", "tcp/8080 ws /mqtt")] == "fail"
