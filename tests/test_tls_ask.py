"""The raw TLS hellos over a bare socket (`DeviceContext.ask`): the same answers as over
asyncio's streams, the same connection count, and an orderly end of the connection.

Real peer: `openssl s_server` (Debian `openssl`) on 127.178.1.x, its certificate followed by
a chain long enough that its first flight (over 32 KiB) outgrows one read of a hello's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from probe.context import DeviceContext
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

ADDRESS = "127.178.1.1"
CLOSED = "127.178.1.2"
LONG_FLIGHT = "127.178.1.3"
PORT = 4433
PADDING_CERTIFICATES = 50
ECDSA_SUITES = (0xC02B, 0xC02C, 0xC009, 0xC00A)  # the ECDHE-ECDSA suites of the P-256 key
EXIT_WAIT = 15.0  # s_server exits once its one connection is over
UNEXPECTED_EOF = "unexpected eof while reading"  # s_server on a FIN mid-handshake (not a reset)


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


async def test_a_long_first_flight_still_ends_with_a_fin(tmp_path: Path) -> None:
    """The ServerHello decides the answer long before the 45 KiB chain is read: what is left
    unread is drained, so the connection closes with a FIN (s_server reports an unexpected
    EOF), not a reset (which it does not report). s_server takes this one connection and
    exits, which writes out its report."""
    with _server(tmp_path, LONG_FLIGHT, "-naccept", "1") as daemon, \
            device_context(LONG_FLIGHT, (PORT,)) as ctx:
        reply = await hello(ctx, PORT, TLS12, ECDSA_SUITES)
        assert await asyncio.to_thread(daemon.process.wait, EXIT_WAIT) == 0
    assert reply.outcome == "hello"
    assert UNEXPECTED_EOF in daemon.log.read_text(errors="replace")


async def test_a_closed_port_is_refused_and_counted() -> None:
    with device_context(CLOSED, (PORT,)) as ctx:
        reply = await hello(ctx, PORT, TLS12, ECDSA_SUITES)
        assert ctx.connections == 1
    assert reply.outcome == "refused"
