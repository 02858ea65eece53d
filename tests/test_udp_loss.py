"""UDP over a lossy link: real servers behind a relay in this event loop that loses chosen
datagrams, on 127.146.x.y. The verdict must be the one the same server gets over a lossless link.

Loopback loses nothing, so the loss is scripted, but every answer comes from a real stack:
libcoap's coap-server-openssl with a PSK, `openssl s_server -dtls` (which accepts DTLS 1.0) and
net-snmp's snmpd. Once, a ClientHello was sent once: a lost hello read as "no DTLS endpoint"
(coap.dtls failed with "cleartext only"), a lost cookie exchange left a version undecided, and a
lost DTLS 1.0 hello let a server that accepts DTLS 1.0 pass. Discovery's SNMP requests were sent
once too: lost, the agent vanished and net.open-ports and net.cleartext-management passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemons import Listener, certificate, coap_server, scan_context, silent, snmpd, start

from probe.checks.base import Observations
from probe.checks.catalogue import catalogue
from probe.model import Finding, Status
from probe.observe import dtls, udp_endpoints
from probe.observe.discovery import services, udp_services

PSK = "iotprobe-test-psk"
TIMEOUT = 3.0
MAX_DATAGRAM = 65535
MAX_DRAIN = 64
"""Datagrams the relay reads from one socket per wake-up (the rest wait for the next)."""

Direction = str  # "to server" or "to client"
Drop = Callable[[Direction, bytes], bool]


class Relay:
    """A UDP relay from `address` to the same ports on `server`: each client address and port
    gets its own upstream socket (a DTLS server binds its cookie to the client's address and
    port), and `drop` decides, datagram by datagram, which are lost."""

    def __init__(self, address: str, server: str, ports: tuple[int, ...]) -> None:
        self.address, self.server = address, server
        self.drop: Drop = lambda direction, data: False
        self.delay = 0.0
        """Seconds each datagram from the server is held back (a slow device)."""
        self.dropped: list[tuple[Direction, bytes]] = []
        self.to_server: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self._sockets: list[socket.socket] = []
        self._upstream: dict[tuple[int, tuple[str, int]], socket.socket] = {}
        self._listening = {port: self._socket((address, port)) for port in ports}
        for port, sock in self._listening.items():
            self._loop.add_reader(sock.fileno(), self._from_client, port, sock)

    def _socket(self, bind: tuple[str, int]) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(bind)
        self._sockets.append(sock)
        return sock

    def _lost(self, direction: Direction, data: bytes) -> bool:
        if self.drop(direction, data):
            self.dropped.append((direction, data))
            return True
        return False

    def _from_client(self, port: int, listening: socket.socket) -> None:
        for _ in range(MAX_DRAIN):
            try:
                data, client = listening.recvfrom(MAX_DATAGRAM)
            except OSError:
                return
            self.to_server.append(data)
            if self._lost("to server", data):
                continue
            upstream = self._upstream.get((port, client))
            if upstream is None:
                upstream = self._upstream[(port, client)] = self._socket((self.address, 0))
                upstream.connect((self.server, port))
                self._loop.add_reader(upstream.fileno(), self._from_server, upstream,
                                      listening, client)
            with contextlib.suppress(OSError):
                upstream.send(data)

    def _from_server(self, upstream: socket.socket, listening: socket.socket,
                     client: tuple[str, int]) -> None:
        for _ in range(MAX_DRAIN):
            try:
                data = upstream.recv(MAX_DATAGRAM)
            except OSError:
                return
            if not self._lost("to client", data):
                self._loop.call_later(self.delay, self._deliver, listening, data, client)

    def _deliver(self, listening: socket.socket, data: bytes, client: tuple[str, int]) -> None:
        if listening.fileno() != -1:
            with contextlib.suppress(OSError):
                listening.sendto(data, client)

    def close(self) -> None:
        for sock in self._sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()


@contextlib.asynccontextmanager
async def relay(address: str, server: str, ports: tuple[int, ...]) -> AsyncIterator[Relay]:
    link = Relay(address, server, ports)
    try:
        yield link
    finally:
        link.close()


# --- what a datagram is ----------------------------------------------------------------------


def handshake_type(data: bytes) -> int | None:
    """The type of the first handshake message of an epoch-0 DTLS datagram."""
    return data[13] if len(data) > 13 and data[0] == dtls.HANDSHAKE else None


def hello_cookie(data: bytes) -> bytes:
    body = data[25:]
    at = 35 + body[34]
    return body[at + 1:at + 1 + body[at]]


def hello_version(data: bytes) -> int:
    return int.from_bytes(data[25:27], "big")


def record_sequence(data: bytes) -> int:
    return int.from_bytes(data[5:11], "big")


def first(wanted: Callable[[Direction, bytes], bool]) -> Drop:
    """Lose the first datagram `wanted` picks, and nothing else."""
    lost: list[bytes] = []

    def drop(direction: Direction, data: bytes) -> bool:
        if lost or not wanted(direction, data):
            return False
        lost.append(data)
        return True

    return drop


def first_transmissions() -> Drop:
    """Lose the first transmission of every distinct datagram to the server."""
    seen: set[bytes] = set()

    def drop(direction: Direction, data: bytes) -> bool:
        if direction != "to server" or data in seen:
            return False
        seen.add(data)
        return True

    return drop


def client_hello(direction: Direction, data: bytes, *, cookie: bool,
                 version: int | None = None) -> bool:
    return (direction == "to server" and handshake_type(data) == dtls.CLIENT_HELLO
            and bool(hello_cookie(data)) is cookie
            and version in (None, hello_version(data)))


def from_server(kind: int) -> Drop:
    return first(lambda direction, data: direction == "to client"
                 and handshake_type(data) == kind)


LOSSES: dict[str, Callable[[], Drop]] = {
    "the first ClientHello": lambda: first(
        lambda d, data: client_hello(d, data, cookie=False)),
    "the first HelloVerifyRequest": lambda: from_server(dtls.HELLO_VERIFY_REQUEST),
    "the first ClientHello with a cookie": lambda: first(
        lambda d, data: client_hello(d, data, cookie=True)),
    "the first DTLS 1.0 ClientHello": lambda: first(
        lambda d, data: client_hello(d, data, cookie=False, version=dtls.DTLS_1_0)),
    "the first DTLS 1.0 ClientHello with a cookie": lambda: first(
        lambda d, data: client_hello(d, data, cookie=True, version=dtls.DTLS_1_0)),
}


# --- the scans -------------------------------------------------------------------------------


@contextlib.contextmanager
def libcoap(tmp: Path, server: str) -> Iterator[None]:
    argv = ["coap-server-openssl", "-A", server, "-p", "5683", "-k", PSK]
    with start("coap-server", argv, tmp, server, [(5683, "udp"), (5684, "udp")]):
        yield


@contextlib.contextmanager
def legacy(tmp: Path, server: str) -> Iterator[None]:
    """Plain CoAP beside `openssl s_server` accepting DTLS 1.0 (and 1.2) on 5684."""
    cert = certificate(tmp)
    argv = ["openssl", "s_server", "-dtls", "-accept", f"{server}:5684", "-cert", str(cert.cert),
            "-key", str(cert.key), "-cipher", "ALL:@SECLEVEL=0", "-quiet"]
    with coap_server(tmp, server), start("s_server", argv, tmp, server, [(5684, "udp")]):
        yield


SERVERS = {"libcoap": libcoap, "s_server": legacy}


def judged(obs: Observations) -> dict[str, list[Finding]]:
    return {check_id: list(catalogue()[check_id].evaluate(obs, catalogue()[check_id].defaults))
            for check_id in ("coap.dtls", "coap.cleartext")}


async def scan(address: str) -> dict[str, list[Finding]]:
    with scan_context(address, timeout=TIMEOUT) as ctx:
        values: dict[Any, Any] = {
            udp_services: await ctx.observe(udp_services),
            udp_endpoints.coap_survey: await ctx.observe(udp_endpoints.coap_survey),
            udp_endpoints.dtls_survey: await ctx.observe(udp_endpoints.dtls_survey),
        }
    return judged(Observations(ctx.device, values))


def without_counts(value: Any) -> Any:
    """Evidence minus how many ClientHellos went out (a loss adds one, nothing else may
    change)."""
    if isinstance(value, dict):
        return {k: without_counts(v) for k, v in value.items() if k != "client_hellos"}
    if isinstance(value, list):
        return [without_counts(v) for v in value]
    return value


def sent(found: dict[str, list[Finding]]) -> int:
    """The ClientHellos coap.dtls says went out."""
    return sum(hello["client_hellos"] for finding in found["coap.dtls"]
               for hello in finding.evidence.get("handshakes", []))


def verdicts(found: dict[str, list[Finding]]) -> dict[str, list[tuple[Any, ...]]]:
    """coap.dtls whole, coap.cleartext by status and target (libcoap's /time changes)."""
    return {"coap.dtls": [(f.status, f.target, f.summary, without_counts(f.evidence))
                          for f in found["coap.dtls"]],
            "coap.cleartext": [(f.status, f.target) for f in found["coap.cleartext"]]}


CASES = [
    ("libcoap", "the first ClientHello", 1),
    ("libcoap", "the first HelloVerifyRequest", 2),
    ("libcoap", "the first ClientHello with a cookie", 3),
    ("libcoap", "the first DTLS 1.0 ClientHello", 4),
    ("s_server", "the first DTLS 1.0 ClientHello", 5),
    ("s_server", "the first DTLS 1.0 ClientHello with a cookie", 6),
]


@pytest.mark.parametrize(("server", "loss", "subnet"), CASES,
                         ids=[f"{server}: {loss}" for server, loss, _ in CASES])
async def test_one_lost_datagram_leaves_the_verdict_as_it_is(
        tmp_path: Path, server: str, loss: str, subnet: int) -> None:
    device, behind = f"127.146.{subnet}.1", f"127.146.{subnet}.2"
    with SERVERS[server](tmp_path, behind):
        async with relay(device, behind, (5683, 5684)) as link:
            lossless = await scan(device)
            link.drop = LOSSES[loss]()
            link.to_server.clear()
            lossy = await scan(device)
    ((_, lost),) = link.dropped  # the loss happened, once
    assert verdicts(lossy) == verdicts(lossless)
    hellos = [data for data in link.to_server if handshake_type(data) == dtls.CLIENT_HELLO]
    if handshake_type(lost) == dtls.CLIENT_HELLO:
        # RFC 6347 4.2.4: the same handshake message (message_seq included) went out again,
        # in the record with the next sequence number.
        again = hellos[hellos.index(lost) + 1]
        assert again[13:] == lost[13:]
        assert record_sequence(again) == record_sequence(lost) + 1
    # Every ClientHello counts in the evidence: one more than over the lossless link when a
    # hello or its answer was lost.
    assert sent(lossy) == sent(lossless) + 1


async def test_a_slow_server_is_not_undecided_by_its_answers_to_retransmissions(
        tmp_path: Path) -> None:
    # Every answer comes 0.6 timeouts late: each hello is sent again at half the timeout, so
    # the server answers the first hello and its retransmission with the same
    # HelloVerifyRequest, and the second one arrives after the hello with the cookie went out.
    # It repeats the first and is passed over; taken as the answer, it left the version
    # undecided.
    device, behind = "127.146.7.1", "127.146.7.2"
    with libcoap(tmp_path, behind):
        async with relay(device, behind, (5684,)) as link:
            prompt = await scan(device)
            link.delay = 0.6 * TIMEOUT
            slow = await scan(device)
    assert verdicts(slow) == verdicts(prompt)
    assert sent(slow) > sent(prompt)  # the retransmissions happened and are counted


async def test_an_snmp_agent_whose_first_requests_are_lost_is_still_found(
        tmp_path: Path) -> None:
    # Every first transmission to udp/161 is lost (all four GetRequests); the agent must still
    # count against the allow-list and as SNMP with a well-known community. A silent TCP port
    # keeps the device reachable whatever UDP finds.
    device, behind = "127.146.8.1", "127.146.8.2"
    with snmpd(tmp_path, behind):
        async with Listener(device, 443, silent), relay(device, behind, (161,)) as link:
            lossless = await exposure(device)
            link.drop = first_transmissions()
            lossy = await exposure(device)
    assert len(link.dropped) == 4
    assert lossy == lossless
    assert lossless["net.open-ports"][0][0] is Status.FAIL
    assert lossless["net.cleartext-management"][0][0] is Status.FAIL


async def exposure(address: str) -> dict[str, list[tuple[Status, str]]]:
    """net.open-ports and net.cleartext-management: status and summary of each finding."""
    with scan_context(address, tcp_ports=(443,), timeout=TIMEOUT) as ctx:
        obs = Observations(ctx.device, {services: await ctx.observe(services)})
    return {check_id: [(f.status, f.summary) for f in catalogue()[check_id].evaluate(
        obs, catalogue()[check_id].defaults)]
        for check_id in ("net.open-ports", "net.cleartext-management")}
