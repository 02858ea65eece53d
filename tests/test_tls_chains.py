"""Certificate chains from the probe's raw hellos (`served_chains`) instead of sslyze's four
certificate handshakes: the same chains, served with or without a server name, as sslyze's
jobs get from the same endpoint; sslyze's jobs where the hellos cannot stand for them (TLS
1.3 only); and the Certificate message read as hostile data (bounded, exactly framed).

Real peers: nginx (Debian `nginx`) with an RSA and an ECDSA certificate for one server name and
another certificate for clients without it, nginx with TLS 1.3 only, and `openssl s_server`
with a 45 KiB chain, on 127.187.3.x; the reference is sslyze's own certificate jobs
(`_sslyze_chains`), run against the same endpoint in the same test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from scapy.layers.tls.extensions import TLS_Ext_ServerName
from scapy.layers.tls.record import TLS
from test_tls_ask import _padding_chain

from probe.api import run_check
from probe.context import DeviceContext
from probe.model import Status
from probe.protocols.tls.codec import (
    CERTIFICATE,
    HANDSHAKE,
    MAX_CHAIN,
    SERVER_HELLO,
    SSL3,
    TLS12,
    TLS13,
    chain_complete,
    client_hello,
    served_certificates,
)
from probe.protocols.tls.collectors import endpoint_handshakes, served_chains
from probe.protocols.tls.sslyze_scan import Chains, _parsed, _sslyze_chains, certificate_scan
from tests.daemons import (
    Daemon,
    device_context,
    issue,
    make_ca,
    nginx_site,
    openssl_server,
)

DUAL = "127.187.3.1"
TLS13_ONLY = "127.187.3.2"
LONG_CHAIN = "127.187.3.3"
HOSTNAME = "camera.test"
CHECKS = ("tls.certificate-validity", "tls.certificate-trust", "tls.certificate-strength")


@pytest.fixture
def dual(tmp_path: Path) -> Iterator[Daemon]:
    """nginx: for `HOSTNAME`, an RSA certificate under an intermediate CA (served with it) and
    an ECDSA one; for any other client (no server name, or another), a third, RSA."""
    _, issuer = make_ca(tmp_path, "anchor")
    intermediate, middle = issue(tmp_path, "intermediate", issuer, key="rsa2048", ca=True)
    rsa, _ = issue(tmp_path, "rsa", middle, names=[HOSTNAME], key="rsa2048")
    rsa_chain = tmp_path / "rsa-chain.crt"
    rsa_chain.write_bytes(rsa.cert.read_bytes() + intermediate.cert.read_bytes())
    ecdsa, _ = issue(tmp_path, "ecdsa", issuer, names=[HOSTNAME])
    default, _ = issue(tmp_path, "default", issuer, names=[DUAL], key="rsa2048")
    with nginx_site(tmp_path, DUAL, [443], f"""
      server {{ listen {DUAL}:443 ssl default_server; ssl_certificate {default.cert};
        ssl_certificate_key {default.key}; }}
      server {{ listen {DUAL}:443 ssl; server_name {HOSTNAME};
        ssl_certificate {rsa_chain}; ssl_certificate_key {rsa.key};
        ssl_certificate {ecdsa.cert}; ssl_certificate_key {ecdsa.key}; }}""",
                    name="dual") as daemon:
        yield daemon


def _der(chains: Chains) -> list[tuple[list[bytes], bool]]:
    return [([c.public_bytes(serialization.Encoding.DER) for c in chain], sni)
            for chain, sni in chains.values()]


async def _both(ctx: DeviceContext, port: int) -> tuple[Chains | None, Chains | str]:
    """The chains of the raw hellos, and those of sslyze's certificate jobs."""
    served = await ctx.observe(served_chains, port)
    found = await ctx.observe(endpoint_handshakes, port)
    return (None if served is None else _parsed(served)), await _sslyze_chains(ctx, found)


@pytest.mark.parametrize(("hostname", "expected"), [
    (HOSTNAME, [2, 1, 1]),  # RSA with its intermediate, ECDSA, the default without a name
    (None, [1]),  # the address as server name finds the default server only: its RSA one
])
async def test_the_raw_hellos_get_the_chains_sslyze_gets(
        dual: Daemon, tmp_path: Path, hostname: str | None, expected: list[int]) -> None:
    with device_context(DUAL, (443,), hostname=hostname, trust=tmp_path / "anchor.crt",
                        timeout=5.0) as ctx:
        raw, reference = await _both(ctx, 443)
        before = ctx.connections
        findings = {check: await run_check(check, ctx.device, context=ctx) for check in CHECKS}
        own = ctx.connections - before
    assert raw is not None and not isinstance(reference, str)
    assert sorted(_der(raw)) == sorted(_der(reference))
    assert sorted(len(chain) for chain, _ in _der(raw)) == sorted(expected)
    assert own == 0, "the checks read the chains the collectors already have"
    trust = findings["tls.certificate-trust"][0]
    served = trust.evidence["certificates"]
    assert [c["chain_length"] for c in served] == [len(chain) for chain, _ in _der(raw)]
    # the chain served without a server name names the address, not the hostname
    assert trust.status is (Status.PASS if hostname is None else Status.FAIL)
    assert [f.status for f in findings["tls.certificate-validity"]] == [Status.PASS]
    assert [f.status for f in findings["tls.certificate-strength"]] == [Status.PASS]


async def test_a_tls13_only_endpoint_keeps_sslyze_s_handshakes(tmp_path: Path) -> None:
    """TLS 1.3 encrypts the Certificate message: no raw hello reads it, sslyze's jobs do."""
    cert, _ = issue(tmp_path, "tls13", None, names=[TLS13_ONLY])
    with nginx_site(tmp_path, TLS13_ONLY, [443], f"""
      server {{ listen {TLS13_ONLY}:443 ssl; ssl_certificate {cert.cert};
        ssl_certificate_key {cert.key}; ssl_protocols TLSv1.3; }}""", name="tls13"), \
            device_context(TLS13_ONLY, (443,), trust=cert.cert, timeout=5.0) as ctx:
        assert await ctx.observe(served_chains, 443) is None
        scan = await ctx.observe(certificate_scan, 443)
        (trust,) = await run_check("tls.certificate-trust", ctx.device, context=ctx)
    assert scan.error is None and len(scan.deployments) == 1
    assert trust.status is Status.PASS


async def test_a_long_chain_over_many_records_is_read_whole(tmp_path: Path) -> None:
    """A 45 KiB chain (51 certificates) spans several records and reads: the same chain as
    sslyze's."""
    own, _ = issue(tmp_path, "long", None, names=[LONG_CHAIN])
    with openssl_server(tmp_path, LONG_CHAIN, 4433, own, "-cert_chain",
                        str(_padding_chain(tmp_path))), \
            device_context(LONG_CHAIN, (4433,), timeout=5.0) as ctx:
        raw, reference = await _both(ctx, 4433)
    assert raw is not None and not isinstance(reference, str)
    assert _der(raw) == _der(reference)
    assert [len(chain) for chain, _ in _der(raw)] == [51]


# ---------------------------------------------------------------------------------------------
# The Certificate message as hostile data
# ---------------------------------------------------------------------------------------------


def _message(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


def _records(stream: bytes, size: int = 16384) -> bytes:
    return b"".join(bytes([HANDSHAKE]) + TLS12.to_bytes(2, "big")
                    + len(stream[at:at + size]).to_bytes(2, "big") + stream[at:at + size]
                    for at in range(0, len(stream), size))


SERVER_HELLO_MESSAGE = _message(SERVER_HELLO, TLS12.to_bytes(2, "big") + bytes(32) + b"\x00"
                                + b"\xc0\x2f" + b"\x00")


def _certificate(entries: list[bytes], total: int | None = None) -> bytes:
    body = b"".join(len(e).to_bytes(3, "big") + e for e in entries)
    size = len(body) if total is None else total
    return _message(CERTIFICATE, size.to_bytes(3, "big") + body)


def test_a_certificate_message_is_read_exactly() -> None:
    entries = [b"leaf" * 100, b"ca" * 3000]
    data = _records(SERVER_HELLO_MESSAGE + _certificate(entries), size=1000)
    assert chain_complete(data)
    assert served_certificates(data) == tuple(entries)
    assert not chain_complete(data[:-1]) and served_certificates(data[:-1]) is None


@pytest.mark.parametrize("message", [
    _certificate([b"leaf"], total=3),  # the list length lies
    _message(CERTIFICATE, (9).to_bytes(3, "big") + (99).to_bytes(3, "big") + b"leaf12"),
    _message(CERTIFICATE, (3).to_bytes(3, "big") + (0).to_bytes(3, "big")),  # empty entry
    _certificate([b"x" * (MAX_CHAIN // 2), b"y" * (MAX_CHAIN // 2)]),  # over MAX_CHAIN
])
def test_a_certificate_message_that_does_not_frame_gives_no_chain(message: bytes) -> None:
    data = _records(SERVER_HELLO_MESSAGE + message)
    assert chain_complete(data)
    assert served_certificates(data) is None


def test_a_server_hello_without_certificate_serves_none() -> None:
    data = _records(SERVER_HELLO_MESSAGE + _message(14, b""))  # ServerHelloDone: anonymous
    assert chain_complete(data) and served_certificates(data) == ()


@pytest.mark.parametrize("version", [SSL3, TLS12, TLS13])
@pytest.mark.parametrize("name", ["camera.test", DUAL, "bücher.example"])
def test_the_spliced_server_name_is_the_one_scapy_reads(version: int, name: str) -> None:
    """The server name is spliced into a template without one (a fleet's names cost no scapy
    build): scapy reads it back as the first extension, and every length around it frames."""
    data = client_hello(version, (0xC02F, 0x009C), name)
    hello = TLS(data).msg[0]
    first = hello.ext[0]
    assert isinstance(first, TLS_Ext_ServerName)
    assert first.servernames[0].servername == name.encode("idna")
    assert bytes(TLS(data)) == data
    assert hello.ciphers == [0xC02F, 0x009C]
    assert client_hello(version, (0xC02F,), None) != client_hello(version, (0xC02F,), name)
