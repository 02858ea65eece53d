"""The raw TLS hellos over a bare socket (`DeviceContext.ask`): the same answers as over
asyncio's streams, the same connection count and pacing, and an end of the connection.

Real peer: `openssl s_server` (Debian `openssl`) on 127.187.1.x, its certificate followed by
a chain long enough that its first flight (over 32 KiB) outgrows one read of a hello's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from probe.context import RECONNECTS, DeviceContext
from probe.protocols.tls.codec import (
    SSL3,
    TLS12,
    TLS13,
    client_hello,
    parse_reply,
    reply_complete,
    tls13_suites,
)
from probe.protocols.tls.collectors import MAX_REPLY, hello
from tests.daemons import Daemon, certificate, device_context, openssl_server

ADDRESS = "127.187.1.1"
CLOSED = "127.187.1.2"
LONG_FLIGHT = "127.187.1.3"
OVERLOADED = "127.187.1.4"
OVERLOADED_STREAMS = "127.187.1.5"
PORT = 4433
PADDING_CERTIFICATES = 50
ECDSA_SUITES = (0xC02B, 0xC02C, 0xC009, 0xC00A)  # the ECDHE-ECDSA suites of the P-256 key
RETRY_TIMEOUT = 30.0
"""Long enough for every retry of a refusal (3.75 s of waits, the halved pace's tokens)."""
EXIT_WAIT = 15.0  # s_server exits once its one connection is over


def _padding_chain(tmp: Path) -> Path:
    """`PADDING_CERTIFICATES` self-signed certificates (one key): about 45 KiB on the wire."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    pems = []
    for n in range(PADDING_CERTIFICATES):
        name = x509.Name([x509.NameAttribute(oid, f"padding {n} " + "x" * 50)
                          for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME,
                                      NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.LOCALITY_NAME)])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(n + 1)
                .not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
        pems.append(cert.public_bytes(serialization.Encoding.PEM))
    path = tmp / "padding.pem"
    path.write_bytes(b"".join(pems))
    return path


@contextlib.contextmanager
def _server(tmp: Path, address: str, *extra: str) -> Iterator[Daemon]:
    with openssl_server(tmp, address, PORT, certificate(tmp), "-cert_chain",
                        str(_padding_chain(tmp)), *extra) as daemon:
        yield daemon


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Daemon]:
    with _server(tmp_path, ADDRESS) as daemon:
        yield daemon


async def _over_streams(ctx: DeviceContext, version: int, suites: tuple[int, ...]) -> bytes:
    async with ctx.connect(PORT) as (reader, writer):
        writer.write(client_hello(version, suites, None))
        await writer.drain()
        data, _ = await ctx.read(reader, MAX_REPLY, until=reply_complete)
    return data


def _answer(data: bytes) -> object:
    """A parsed answer without what differs on every handshake (random, session id)."""
    reply = parse_reply(data)
    return dataclasses.replace(reply, offered=0)


@pytest.mark.parametrize(("version", "suites"), [(TLS12, ECDSA_SUITES),
                                                 (TLS13, tls13_suites()),
                                                 (SSL3, ECDSA_SUITES)])
async def test_a_hello_over_a_bare_socket_reads_as_over_streams(
        server: Daemon, version: int, suites: tuple[int, ...]) -> None:
    with device_context(ADDRESS, (PORT,)) as ctx:
        bare, _ = await ctx.ask(PORT, client_hello(version, suites, None), MAX_REPLY,
                                until=reply_complete)
        streamed = await _over_streams(ctx, version, suites)
        assert ctx.connections == 2
    assert reply_complete(bare)
    assert _answer(bare) == _answer(streamed)


async def test_a_long_first_flight_is_decided_by_its_start_and_the_connection_ends(
        tmp_path: Path) -> None:
    """The ServerHello decides the answer long before the 45 KiB chain is read; what has
    arrived of the rest is drained and the connection closed, so s_server, which takes this
    one connection, sees it end and exits. (Whether it ends with a FIN or a reset depends on
    how much of the flight had arrived at the close, as over asyncio's streams: not asserted.)"""
    with _server(tmp_path, LONG_FLIGHT, "-naccept", "1") as daemon, \
            device_context(LONG_FLIGHT, (PORT,)) as ctx:
        reply = await hello(ctx, PORT, TLS12, ECDSA_SUITES)
        assert await asyncio.to_thread(daemon.process.wait, EXIT_WAIT) == 0
    assert reply.outcome == "hello" and reply.suite in ECDSA_SUITES


async def test_a_closed_port_is_refused_and_counted() -> None:
    with device_context(CLOSED, (PORT,)) as ctx:
        reply = await hello(ctx, PORT, TLS12, ECDSA_SUITES)
        assert ctx.connections == 1
    assert reply.outcome == "refused"


async def _ask_hello(ctx: DeviceContext) -> None:
    await ctx.ask(PORT, client_hello(TLS12, ECDSA_SUITES, None), MAX_REPLY,
                  until=reply_complete)


async def _stream_hello(ctx: DeviceContext) -> None:
    await _over_streams(ctx, TLS12, ECDSA_SUITES)


@pytest.mark.parametrize(("address", "path"), [(OVERLOADED, _ask_hello),
                                               (OVERLOADED_STREAMS, _stream_hello)])
async def test_an_overload_refusal_is_retried_and_backs_off_as_over_streams(
        tmp_path: Path, address: str, path: Callable[[DeviceContext], Awaitable[None]]) -> None:
    """A port that accepted a hello and then refuses (s_server took its one connection and
    exited) looks like a device whose connection table is full: `ask` makes the connection
    again RECONNECTS times, halving the device's pace each time, exactly as the stream path
    does (the same refusals, counted the same, then ConnectionRefusedError)."""
    with _server(tmp_path, address, "-naccept", "1") as daemon, \
            device_context(address, (PORT,), timeout=RETRY_TIMEOUT) as ctx:
        await path(ctx)
        assert await asyncio.to_thread(daemon.process.wait, EXIT_WAIT) == 0
        assert ctx.lane.device is not None and ctx.lane.device.backoffs == 0
        with pytest.raises(ConnectionRefusedError):
            await path(ctx)
        assert ctx.connections == 2 + RECONNECTS
        assert ctx.lane.device.backoffs == 1 + RECONNECTS
