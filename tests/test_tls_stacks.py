"""The TLS checks against embedded-class TLS stacks: lighttpd over wolfSSL (Debian's
lighttpd-mod-wolfssl), the regressions of issue 15 (defects 1-3), plus a scripted peer for the
one behaviour no stack shows here once hellos are small (a decoding complaint to a legacy
hello). Everything talks to 127.131.x.y only."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from daemons import (
    Certificate,
    Listener,
    device_context,
    issue,
    lighttpd_tls,
    make_ca,
)
from scapy.layers.tls.handshake import TLSClientHello, TLSServerHello

from probe.api import run_check
from probe.model import Status
from probe.protocols.tls import codec as tls_hello
from probe.protocols.tls.codec import (
    MAX_OFFER,
    TLS10,
    TLS12,
    TLS13,
    classic_suites,
    client_hello,
    tls13_suites,
)
from probe.protocols.tls.collectors import endpoint_handshakes, hello

TLS_CHECKS = ("tls.protocol-versions", "tls.cipher-suites", "tls.certificate-validity",
              "tls.certificate-trust", "tls.certificate-strength", "tls.known-vulnerabilities")
MODERN = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
          "ECDHE-RSA-AES128-GCM-SHA256:"
          "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305")


@pytest.fixture
def ca(tmp_path: Path) -> tuple[Certificate, Any]:
    return make_ca(tmp_path)


async def test_wolfssl_refuses_a_large_hello_with_decode_error_which_decides_nothing(
        tmp_path: Path, ca: Any) -> None:
    """Defect 1: 327 suites in one hello draw decode_error, which is no refusal; no hello of
    the probe offers more than MAX_OFFER suites, and those get a ServerHello."""
    _, issuer = ca
    cert, _ = issue(tmp_path, "wolf", issuer, names=["127.131.1.1"])
    with lighttpd_tls(tmp_path, "127.131.1.1", 443, cert, ciphers=MODERN), \
            device_context("127.131.1.1", (443,)) as ctx:
        large = await hello(ctx, 443, TLS12, classic_suites())
        found = await ctx.observe(endpoint_handshakes, 443)
    assert large.alert_code == 50 and large.undecided
    assert found.versions[TLS12].accepts(TLS12)
    assert len(classic_suites()) > MAX_OFFER


async def test_wolfssl_good_passes_every_tls_check(tmp_path: Path, ca: Any) -> None:
    """Defects 1-3 together: TLS 1.2 seen through small hellos, TLS 1.3 through real key
    shares, the certificate read without an OCSP stapling request."""
    anchor, issuer = ca
    cert, _ = issue(tmp_path, "wolf-good", issuer, names=["127.131.1.2"])
    with lighttpd_tls(tmp_path, "127.131.1.2", 443, cert, ciphers=MODERN), \
            device_context("127.131.1.2", (443,), trust=anchor.cert) as ctx:
        results = {cid: await run_check(cid, ctx.device, context=ctx) for cid in TLS_CHECKS}
    assert {cid: [f.status for f in found] for cid, found in results.items()} == {
        cid: [Status.PASS] for cid in TLS_CHECKS}
    (versions,) = results["tls.protocol-versions"]
    assert versions.evidence["accepted"] == ["TLS 1.2", "TLS 1.3"]
    (trust,) = results["tls.certificate-trust"]
    assert trust.evidence["certificates"][0]["identity_matches"] is True


async def test_wolfssl_tls13_is_seen_whatever_key_pair_the_process_made(
        tmp_path: Path, ca: Any) -> None:
    """Defect 2: wolfSSL drops an x25519 share whose top bit is set; random bytes had that half
    of the time. Eight fresh key pairs (and templates) are all accepted."""
    _, issuer = ca
    cert, _ = issue(tmp_path, "wolf-13", issuer, names=["127.131.1.3"])
    replies = []
    with lighttpd_tls(tmp_path, "127.131.1.3", 443, cert), \
            device_context("127.131.1.3", (443,)) as ctx:
        for _ in range(8):
            tls_hello._key_shares.cache_clear()
            tls_hello._template.cache_clear()
            replies.append(await hello(ctx, 443, TLS13, tls13_suites()))
    assert [reply.describe() for reply in replies if not reply.accepts(TLS13)] == []
    shares = TLSClientHello(client_hello(TLS13, tls13_suites())[5:]).ext[-1].client_shares
    assert [(int(share.group), len(share.key_exchange)) for share in shares] == [
        (29, 32), (23, 65)]


async def test_wolfssl_self_signed_certificate_is_read_and_judged(tmp_path: Path) -> None:
    """Defect 3: sslyze's status_request made wolfSSL drop the handshake, so the certificate
    checks said error; the chain is now read, and judged."""
    cert, _ = issue(tmp_path, "wolf-self", None, names=["127.131.1.4"], key="rsa1024",
                    valid_days=10)
    with lighttpd_tls(tmp_path, "127.131.1.4", 443, cert, ciphers=MODERN), \
            device_context("127.131.1.4", (443,), trust=cert.cert) as ctx:
        (validity,) = await run_check("tls.certificate-validity", ctx.device, context=ctx)
        (strength,) = await run_check("tls.certificate-strength", ctx.device, context=ctx)
    with lighttpd_tls(tmp_path, "127.131.1.5", 443, cert, ciphers=MODERN), \
            device_context("127.131.1.5", (443,)) as ctx:
        (trust,) = await run_check("tls.certificate-trust", ctx.device, context=ctx)
    assert validity.status is Status.FAIL and "less than 30" in validity.summary
    assert strength.status is Status.FAIL and "RSA 1024-bit key" in strength.summary
    assert trust.status is Status.FAIL and "self-signed" in trust.summary


def complaining(version_accepted: int, alert: int) -> Any:
    """A peer that takes `version_accepted` with TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 only
    (else handshake_failure) and answers any other version with the fatal `alert`."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await asyncio.wait_for(reader.read(65536), 5)
        if not data or data[0] != 0x16:
            return
        offered = TLSClientHello(data[5:])
        if int(offered.version) != version_accepted or offered.ext[-1].type == 51:
            writer.write(b"\x15\x03\x01\x00\x02\x02" + bytes([alert]))
        elif 0xC02F in list(offered.ciphers):
            body = bytes(TLSServerHello(version=version_accepted, cipher=0xC02F))
            writer.write(b"\x16\x03\x03" + len(body).to_bytes(2, "big") + body)
        else:
            writer.write(b"\x15\x03\x01\x00\x02\x02\x28")  # handshake_failure
        await writer.drain()
    return serve


@pytest.mark.parametrize("alert", [50, 47, 80])
async def test_a_decoding_complaint_to_a_legacy_hello_is_undecided_never_a_pass(
        alert: int) -> None:
    """decode_error and illegal_parameter to SSL 3.0-TLS 1.1 say nothing about those
    versions, even when every small piece of the offer draws them: error, the answer named,
    and the suites of a version left open are unknown. An internal_error that persists on
    hellos of SMALL_OFFER suites is a refusal."""
    async with Listener("127.131.2.1", 443, complaining(TLS12, alert)):
        with device_context("127.131.2.1", (443,), timeout=2.0) as ctx:
            found = await ctx.observe(endpoint_handshakes, 443)
            (versions,) = await run_check("tls.protocol-versions", ctx.device, context=ctx)
            (suites,) = await run_check("tls.cipher-suites", ctx.device, context=ctx)
    name = tls_hello._ALERTS[alert]
    assert found.accepted == (TLS12,)
    if alert == 80:  # an internal_error to a hello of SMALL_OFFER suites is a refusal
        assert not found.versions[TLS10].undecided
        assert versions.status is Status.PASS
        return
    assert found.versions[TLS10].undecided
    assert versions.status is Status.ERROR
    assert f"TLS 1.0 (alert {name} ({alert}))" in versions.summary
    assert versions.evidence["undecided"] == ["SSL 3.0", "TLS 1.0", "TLS 1.1"]
    assert suites.status is Status.ERROR and "suites are unknown" in suites.summary
