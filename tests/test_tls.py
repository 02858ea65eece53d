"""The TLS checks against real peers: nginx and `openssl s_server`, good and weak, with
certificates made here; plus scripted peers for what Debian's OpenSSL cannot serve (3DES, RC4,
SSL 2.0, SSL 3.0, TLS compression, no secure renegotiation). Everything talks to 127.93.1.x
only."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from daemons import (
    Certificate,
    Listener,
    device_context,
    issue,
    make_ca,
    mosquitto,
    nginx_site,
    openssl_server,
    silent,
)
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.tls.extensions import TLS_Ext_RenegotiationInfo, TLS_Ext_SupportedVersion_SH
from scapy.layers.tls.handshake import TLSClientHello, TLSServerHello
from scapy.layers.tls.handshake_sslv2 import SSLv2ServerHello
from scapy.layers.tls.record_sslv2 import SSLv2

from probe.api import run_check
from probe.context import DeviceContext
from probe.model import Status
from probe.protocols.tls import codec as tls_hello
from probe.protocols.tls.codec import (
    DEFLATE,
    NULL_COMPRESSION,
    SSL2,
    SSL3,
    TLS10,
    TLS12,
    TLS13,
    chunks,
    classic_suites,
    client_hello,
    non_forward_secret_suites,
    parse_reply,
    reply_complete,
    sslv2_client_hello,
    sslv2_suites,
    weak_suites,
)
from probe.protocols.tls.collectors import endpoint_handshakes, hello, identity_matches
from probe.protocols.tls.sslyze_scan import run_command, server_info

TLS_CHECKS = ("tls.protocol-versions", "tls.cipher-suites", "tls.certificate-validity",
              "tls.certificate-trust", "tls.certificate-strength", "tls.known-vulnerabilities")
MODERN = "ECDHE+AESGCM:ECDHE+CHACHA20"
WEAK_OPENSSL = "ALL:eNULL:@SECLEVEL=0"


async def statuses(ctx: DeviceContext, *check_ids: str) -> dict[str, list[Status]]:
    return {cid: [f.status for f in await run_check(
        cid, ctx.device, context=ctx)] for cid in check_ids}


def nginx_tls(tmp: Path, address: str, port: int, cert: Certificate, *,
              protocols: str = "TLSv1.2 TLSv1.3", ciphers: str = MODERN) -> Any:
    return nginx_site(tmp, address, [port], f"""
      server {{ listen {address}:{port} ssl; ssl_certificate {cert.cert};
        ssl_certificate_key {cert.key}; ssl_protocols {protocols}; ssl_ciphers {ciphers};
        location / {{ return 200 "device\\n"; }} }}""", name=f"tls-{port}")


def expected_suites(cipher_string: str, *flags: str) -> set[int]:
    """The TLS 1.2 suites `openssl ciphers` lists for `cipher_string` that an RSA certificate
    can serve (no PSK, SRP, DSS or ECDSA authentication): what s_server accepts."""
    out = subprocess.run(["openssl", "ciphers", "-V", *flags, cipher_string], check=True,
                         capture_output=True, text=True, timeout=30).stdout
    codes = set()
    for line in out.splitlines():
        fields = line.split()
        hi, lo = fields[0].split(",")
        if any(part in line for part in ("PSK", "SRP", "Au=DSS", "Au=ECDSA")):
            continue
        codes.add(int(hi, 16) << 8 | int(lo, 16))
    return codes


# ---------------------------------------------------------------------------------------------
# ClientHello and reply logic
# ---------------------------------------------------------------------------------------------


def test_suite_classes_follow_the_iana_names() -> None:
    table = tls_hello.catalogue()
    assert table[0x000A].weak_classes == ("3DES",)
    assert table[0x0005].weak_classes == ("RC4",)
    assert table[0x0004].weak_classes == ("RC4", "MD5-MAC")
    assert table[0x0009].weak_classes == ("DES",)
    assert "EXPORT" in table[0x0003].weak_classes
    assert table[0x0002].weak_classes == ("NULL",)
    assert "anonymous" in table[0x0034].weak_classes
    assert table[0xC02F].weak_classes == () and table[0xC02F].forward_secret
    assert not table[0x009C].forward_secret and table[0x009C].rsa_key_exchange
    assert table[0xC050].name == "TLS_RSA_WITH_ARIA_128_GCM_SHA256"
    assert table[0x1301].forward_secret
    assert all(table[c].weak_classes for c in sslv2_suites())


def test_client_hello_offers_exactly_the_suites_asked() -> None:
    offer = [0x000A, 0x0005, 0xC02F]
    record = client_hello(TLS12, offer, "device.test")
    assert record[0] == 22 and int.from_bytes(record[3:5], "big") == len(record) - 5
    parsed = TLSClientHello(record[5:])
    assert list(parsed.ciphers) == offer
    assert parsed.version == TLS12
    assert b"device.test" in record
    tls13 = TLSClientHello(client_hello(TLS13, [0x1301])[5:])
    assert tls13.version == TLS12 and list(tls13.ciphers) == [0x1301]
    assert client_hello(TLS10, offer)[1:3] == b"\x03\x01"
    assert client_hello(SSL3, offer)[1:3] == b"\x03\x00"
    assert sslv2_client_hello()[2] == 1  # SSL 2.0 CLIENT-HELLO
    assert list(parsed.comp) == [NULL_COMPRESSION]
    assert any(int(e.type) == 0xFF01 for e in parsed.ext)  # renegotiation_info (RFC 5746)
    deflate = TLSClientHello(client_hello(TLS12, offer, "device.test",
                                          (DEFLATE, NULL_COMPRESSION))[5:])
    assert list(deflate.comp) == [DEFLATE, NULL_COMPRESSION] and list(deflate.ciphers) == offer


def test_replies_parse_and_complete() -> None:
    server_hello = bytes(TLSServerHello(version=TLS12, cipher=0x000A))
    record = b"\x16\x03\x03" + len(server_hello).to_bytes(2, "big") + server_hello
    assert not reply_complete(record[:7])
    assert reply_complete(record)
    reply = parse_reply(record)
    assert (reply.outcome, reply.version, reply.suite) == ("hello", TLS12, 0x000A)
    alert = parse_reply(b"\x15\x03\x03\x00\x02\x02\x28")
    assert alert.outcome == "alert" and alert.alert == "handshake_failure (40)"
    assert parse_reply(b"HTTP/1.1 400 Bad Request\r\n").outcome == "not-tls"
    assert parse_reply(b"").outcome == "closed"
    assert parse_reply(b"", timed_out=True).outcome == "timeout"
    assert parse_reply(b"\x16\x03\x03\x00\x05\x02\x00\x00\x01").outcome == "closed"
    sslv2 = bytes(SSLv2(msg=[SSLv2ServerHello(ciphers=[0x010080], connection_id=b"x" * 16)]))
    assert reply_complete(sslv2)
    parsed = parse_reply(sslv2)
    assert parsed.accepts(SSL2) and parsed.sslv2_suites == (0x010080,)


def _record(message: bytes) -> bytes:
    return b"\x16\x03\x03" + len(message).to_bytes(2, "big") + message


@given(version=st.sampled_from([SSL3, TLS10, TLS12]), suite=st.integers(0, 0xFFFF),
       sid=st.binary(max_size=32), chosen=st.one_of(st.none(), st.sampled_from([TLS12, TLS13])),
       renegotiation=st.booleans(), compression=st.integers(0, 255))
def test_server_hello_reads_as_scapy_reads_it(version: int, suite: int, sid: bytes,
                                              chosen: int | None, renegotiation: bool,
                                              compression: int) -> None:
    """The ServerHello is read by hand (scapy is slow at it): same version, suite and
    compression method as scapy's dissection, supported_versions and renegotiation_info
    extensions included."""
    extensions: list[Any] = [] if chosen is None else [TLS_Ext_SupportedVersion_SH(version=chosen)]
    if renegotiation:
        extensions.insert(0, TLS_Ext_RenegotiationInfo())
    message = bytes(TLSServerHello(version=version, cipher=suite, sid=sid, comp=compression,
                                   ext=extensions or None))
    reply = parse_reply(_record(message))
    dissected = TLSServerHello(message)
    assert (reply.outcome, reply.suite) == ("hello", int(dissected.cipher))
    assert reply.version == (chosen if chosen is not None else int(dissected.version))
    assert [reply.compression] == list(dissected.comp) == [compression]
    assert reply.renegotiation_info is renegotiation


def test_renegotiation_info_and_compression_are_read_from_the_server_hello() -> None:
    def reply(comp: int = NULL_COMPRESSION, extensions: bytes | None = None) -> Any:
        message = bytes(TLSServerHello(version=TLS12, cipher=0xC02F, comp=comp))
        if extensions is not None:
            message += len(extensions).to_bytes(2, "big") + extensions
            message = message[:1] + (len(message) - 4).to_bytes(3, "big") + message[4:]
        return parse_reply(_record(message))

    plain = reply()
    assert (plain.compression, plain.renegotiation_info) == (NULL_COMPRESSION, False)
    secure = reply(DEFLATE, bytes.fromhex("ff01000100"))
    assert (secure.outcome, secure.compression, secure.renegotiation_info) == (
        "hello", DEFLATE, True)
    assert "DEFLATE compression" in secure.describe()
    # A renegotiated_connection in an initial handshake is no support (RFC 5746 3.6), nor
    # is another extension.
    assert not reply(extensions=bytes.fromhex("ff010003026162")).renegotiation_info
    assert not reply(extensions=bytes.fromhex("00170000")).renegotiation_info
    assert reply(extensions=bytes.fromhex("ff0100")).outcome == "not-tls"


@given(st.binary(min_size=1, max_size=120))
def test_a_mangled_server_hello_is_not_tls_never_an_exception(tail: bytes) -> None:
    message = b"\x02" + len(tail).to_bytes(3, "big") + tail
    reply = parse_reply(_record(message))
    assert reply.outcome in ("hello", "not-tls")


# ---------------------------------------------------------------------------------------------
# Scripted peers: suites and versions Debian's OpenSSL cannot serve
# ---------------------------------------------------------------------------------------------


def scripted(suites_by_preference: list[int], versions: set[int],
             mute_sslv2: bool = False, *, renegotiation_info: bool = False,
             deflate: bool = False) -> Any:
    """A TLS peer that answers a ClientHello with a ServerHello (the first of its suites that
    is offered, at the offered version if it has that version; with `renegotiation_info`, the
    RFC 5746 extension; with `deflate`, DEFLATE compression whenever it is offered) or a
    handshake_failure alert; SSL 2.0 CLIENT-HELLOs get an SSL 2.0 SERVER-HELLO when SSL2 is in
    `versions`, silence until the client goes with `mute_sslv2`, else the connection
    closes."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await asyncio.wait_for(reader.read(65536), 5)
        if not data or (data[0] != 0x16 and not data[0] & 0x80):
            return
        if data[0] & 0x80:
            while mute_sslv2 and await asyncio.wait_for(reader.read(4096), 5):
                pass
            if SSL2 in versions:
                writer.write(bytes(SSLv2(msg=[SSLv2ServerHello(
                    ciphers=list(sslv2_suites()[:2]), connection_id=os.urandom(16))])))
            await writer.drain()
            return
        offered = TLSClientHello(data[5:])
        version = int(offered.version)
        chosen = next((s for s in suites_by_preference if s in list(offered.ciphers)), None)
        if version not in versions or chosen is None:
            writer.write(b"\x15\x03\x01\x00\x02\x02\x28")
        else:
            comp = DEFLATE if deflate and DEFLATE in list(offered.comp) else NULL_COMPRESSION
            body = bytes(TLSServerHello(
                version=version, cipher=chosen, comp=comp,
                ext=[TLS_Ext_RenegotiationInfo()] if renegotiation_info else None))
            writer.write(b"\x16" + version.to_bytes(2, "big") + len(body).to_bytes(2, "big")
                         + body)
        await writer.drain()
    return serve


async def test_elimination_names_every_3des_and_rc4_suite_in_k_plus_one() -> None:
    weak = [0x000A, 0x0005, 0x0004]
    async with Listener("127.93.1.1", 8443, scripted([0xC02F, *weak], {TLS12})) as peer:
        with device_context("127.93.1.1", (8443,), timeout=2.0) as ctx:
            found = await ctx.observe(endpoint_handshakes, 8443)
            (finding,) = await run_check("tls.cipher-suites", ctx.device, context=ctx)
            counted = ctx.connections
    assert found.accepted == (TLS12,)
    (run12,) = found.weak
    assert [code for _, code in run12.accepted] == weak
    assert run12.handshakes == len(weak) + 1
    assert finding.status is Status.FAIL
    named = {entry["suite"] for entry in finding.evidence["offending_suites"]}
    assert named == {"TLS_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_RSA_WITH_RC4_128_SHA",
                     "TLS_RSA_WITH_RC4_128_MD5"}
    assert peer.accepted == counted  # every connection went through the device context
    # TLS 1.2, TLS 1.3 and SSL 2.0 one hello each; SSL 3.0, TLS 1.0 and TLS 1.1 refused
    # (handshake_failure) in every chunk of the suites; the weak suites; the other suites
    # without PFS (one refusal per chunk); the DEFLATE hello
    legacy = 3 * len(chunks(classic_suites()))
    others = [c for c in non_forward_secret_suites() if c not in weak]
    assert found.handshakes == 3 + legacy + 4 + len(chunks(others)) + 1
    assert [code for _, code in found.without_forward_secrecy()] == weak


async def test_ssl2_and_ssl3_are_found_and_failed() -> None:
    peer_suites = [0x002F, 0x0005]
    async with Listener("127.93.1.2", 443, scripted(peer_suites, {SSL2, SSL3, TLS12})):
        with device_context("127.93.1.2", (443,), timeout=2.0) as ctx:
            found = await ctx.observe(endpoint_handshakes, 443)
            (versions,) = await run_check("tls.protocol-versions", ctx.device, context=ctx)
            (ciphers,) = await run_check("tls.cipher-suites", ctx.device, context=ctx)
    assert found.accepted == (SSL2, SSL3, TLS12)
    assert versions.status is Status.FAIL
    assert versions.evidence["legacy"] == ["SSL 2.0", "SSL 3.0"]
    assert ciphers.status is Status.FAIL
    offending = {(e["version"], e["suite"]) for e in ciphers.evidence["offending_suites"]}
    assert ("SSL 2.0", "SSL_CK_RC4_128_WITH_MD5") in offending
    assert ("TLS 1.2", "TLS_RSA_WITH_RC4_128_SHA") in offending  # named at its highest version


async def test_compression_and_missing_secure_renegotiation_are_known_flaws() -> None:
    """Read from the raw hellos, not from sslyze (which cannot finish a handshake with these
    peers): one peer answers DEFLATE and renegotiation_info, the other null compression and no
    renegotiation_info. Every connection, sslyze's included, is counted."""
    tls12 = {TLS12}
    async with Listener("127.93.1.27", 443, scripted([0xC02F], tls12, renegotiation_info=True,
                                                     deflate=True)) as first, \
            Listener("127.93.1.28", 443, scripted([0xC02F], tls12)) as second:
        with device_context("127.93.1.27", (443,), timeout=2.0) as ctx:
            compressing = await ctx.observe(endpoint_handshakes, 443)
            (deflate,) = await run_check("tls.known-vulnerabilities", ctx.device, context=ctx)
            assert first.accepted == ctx.connections
        with device_context("127.93.1.28", (443,), timeout=2.0) as ctx:
            (insecure,) = await run_check("tls.known-vulnerabilities", ctx.device, context=ctx)
            assert second.accepted == ctx.connections
    assert compressing.compression is not None
    assert compressing.compression.accepts(TLS12)
    assert compressing.compression.compression == DEFLATE
    assert compressing.versions[TLS12].compression == NULL_COMPRESSION  # offered null only
    assert deflate.status is Status.FAIL and insecure.status is Status.FAIL
    assert deflate.summary == "tcp/443: TLS compression: enabled"
    assert insecure.summary == "tcp/443: secure renegotiation: not supported (RFC 5746)"
    for finding, vulnerable in ((deflate, (True, False)), (insecure, (False, True))):
        tests = {t["test"]: t for t in finding.evidence["tests"]}
        assert (tests["TLS compression"]["vulnerable"],
                tests["secure renegotiation"]["vulnerable"]) == vulnerable
        assert "error" not in tests["TLS compression"]
        assert "error" not in tests["secure renegotiation"]


async def test_an_unanswered_legacy_hello_is_a_refusal() -> None:
    async with Listener("127.93.1.3", 443, scripted([0xC02F], {TLS12}, mute_sslv2=True)):
        with device_context("127.93.1.3", (443,), timeout=0.5) as ctx:
            (finding,) = await run_check("tls.protocol-versions", ctx.device, context=ctx)
    assert finding.status is Status.PASS
    assert finding.evidence["answers"]["SSL 2.0"] == "no answer before the timeout"


# ---------------------------------------------------------------------------------------------
# Real peers
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def ca(tmp_path: Path) -> tuple[Certificate, Any]:
    return make_ca(tmp_path)


async def test_good_nginx_passes_every_tls_check(tmp_path: Path, ca: Any) -> None:
    anchor, issuer = ca
    cert, _ = issue(tmp_path, "good", issuer, names=["127.93.1.10"])
    with nginx_tls(tmp_path, "127.93.1.10", 443, cert), \
            device_context("127.93.1.10", (443,), trust=anchor.cert) as ctx:
        results = {cid: await run_check(cid, ctx.device, context=ctx) for cid in TLS_CHECKS}
        handshakes = (await ctx.observe(endpoint_handshakes, 443)).handshakes
    assert {cid: [f.status for f in found] for cid, found in results.items()} == {
        cid: [Status.PASS] for cid in TLS_CHECKS}
    (versions,) = results["tls.protocol-versions"]
    assert versions.target == "tcp/443"
    assert versions.evidence["accepted"] == ["TLS 1.2", "TLS 1.3"]
    # six versions (SSL 3.0 refused by handshake_failure in each of the four chunks), the weak
    # suites (one chunk), the suites without PFS (three chunks), the DEFLATE hello
    assert handshakes <= 14
    (strength,) = results["tls.certificate-strength"]
    assert strength.evidence["certificates"][0]["key"] == "EC 256"
    (trust,) = results["tls.certificate-trust"]
    assert trust.evidence["certificates"][0]["identity_matches"] is True


async def test_legacy_versions_fail(tmp_path: Path, ca: Any) -> None:
    _, issuer = ca
    cert, _ = issue(tmp_path, "legacy", issuer, names=["127.93.1.11"])
    with openssl_server(tmp_path, "127.93.1.11", 4433, cert, "-www", "-min_protocol", "TLSv1",
                        "-cipher", "DEFAULT:@SECLEVEL=0"), \
            device_context("127.93.1.11", (4433,)) as ctx:
        (finding,) = await run_check("tls.protocol-versions", ctx.device, context=ctx)
    assert finding.status is Status.FAIL
    assert finding.evidence["legacy"] == ["TLS 1.0", "TLS 1.1"]
    assert finding.evidence["accepted"] == ["TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3"]
    assert finding.target == "tcp/4433"


async def test_weak_suites_are_each_named(tmp_path: Path, ca: Any) -> None:
    _, issuer = ca
    cert, _ = issue(tmp_path, "weak-suites", issuer, names=["127.93.1.12"], key="rsa2048")
    with openssl_server(tmp_path, "127.93.1.12", 4433, cert, "-www", "-no_tls1_3",
                        "-cipher", WEAK_OPENSSL), \
            device_context("127.93.1.12", (4433,)) as ctx:
        found = await ctx.observe(endpoint_handshakes, 4433)
        (finding,) = await run_check("tls.cipher-suites", ctx.device, context=ctx)
        (lenient,) = await run_check(
            "tls.cipher-suites", ctx.device, context=ctx, require_forward_secrecy=False)
    served = expected_suites(WEAK_OPENSSL, "-tls1_2")
    weak_served = served & set(weak_suites())
    assert weak_served, "the peer should serve NULL and anonymous suites"
    assert {code for _, code in found.offending()} == weak_served
    plain = {code for _, code in found.without_forward_secrecy()}
    table = tls_hello.catalogue()
    assert plain == {c for c in served if c in table and not table[c].forward_secret}
    assert finding.status is Status.FAIL and lenient.status is Status.FAIL
    assert {e["suite"] for e in finding.evidence["offending_suites"]} == {
        table[c].name for c in weak_served}
    run12 = next(run for run in found.weak if run.version == TLS12)
    assert run12.handshakes == len(weak_served) + 1  # k offending suites: k + 1 handshakes


async def test_forward_secrecy_is_a_parameter(tmp_path: Path, ca: Any) -> None:
    _, issuer = ca
    cert, _ = issue(tmp_path, "rsa-kx", issuer, names=["127.93.1.13"], key="rsa2048")
    with nginx_tls(tmp_path, "127.93.1.13", 443, cert,
                   ciphers="ECDHE-RSA-AES128-GCM-SHA256:AES128-GCM-SHA256"), \
            device_context("127.93.1.13", (443,)) as ctx:
        (strict,) = await run_check("tls.cipher-suites", ctx.device, context=ctx)
        (lenient,) = await run_check(
            "tls.cipher-suites", ctx.device, context=ctx, require_forward_secrecy=False)
    assert strict.status is Status.FAIL
    assert [e["suite"] for e in strict.evidence["without_forward_secrecy"]] == [
        "TLS_RSA_WITH_AES_128_GCM_SHA256"]
    assert strict.evidence["offending_suites"] == []
    assert lenient.status is Status.PASS


async def test_expired_certificate_fails_validity_and_trust(tmp_path: Path, ca: Any) -> None:
    anchor, issuer = ca
    then = dt.datetime.now(dt.UTC) - dt.timedelta(days=100)
    cert, _ = issue(tmp_path, "expired", issuer, names=["127.93.1.14"], valid_from=then,
                    valid_days=50)
    with nginx_tls(tmp_path, "127.93.1.14", 443, cert), \
            device_context("127.93.1.14", (443,), trust=anchor.cert) as ctx:
        (validity,) = await run_check("tls.certificate-validity", ctx.device, context=ctx)
        (trust,) = await run_check("tls.certificate-trust", ctx.device, context=ctx)
        (strength,) = await run_check("tls.certificate-strength", ctx.device, context=ctx)
    assert validity.status is Status.FAIL and "expired" in validity.summary
    assert validity.evidence["certificates"][0]["days_left"] < -40
    assert trust.status is Status.FAIL and "expired" in trust.summary.lower()
    assert strength.status is Status.PASS


async def test_certificate_expiring_soon(tmp_path: Path, ca: Any) -> None:
    anchor, issuer = ca
    cert, _ = issue(tmp_path, "soon", issuer, names=["127.93.1.15"], valid_days=10)
    with nginx_tls(tmp_path, "127.93.1.15", 443, cert), \
            device_context("127.93.1.15", (443,), trust=anchor.cert) as ctx:
        (strict,) = await run_check("tls.certificate-validity", ctx.device, context=ctx)
        (lenient,) = await run_check(
            "tls.certificate-validity", ctx.device, context=ctx, min_days_remaining=5)
        (trust,) = await run_check("tls.certificate-trust", ctx.device, context=ctx)
    assert strict.status is Status.FAIL and "less than 30" in strict.summary
    assert lenient.status is Status.PASS
    assert trust.status is Status.PASS


async def test_self_signed_certificate_is_not_trusted(tmp_path: Path, ca: Any) -> None:
    anchor, _ = ca
    cert, _ = issue(tmp_path, "self", None, names=["127.93.1.16"])
    with nginx_tls(tmp_path, "127.93.1.16", 443, cert), \
            device_context("127.93.1.16", (443,), trust=anchor.cert) as ctx:
        (trust,) = await run_check("tls.certificate-trust", ctx.device, context=ctx)
        (validity,) = await run_check("tls.certificate-validity", ctx.device, context=ctx)
    assert trust.status is Status.FAIL and "self-signed" in trust.summary
    assert trust.evidence["certificates"][0]["self_signed"] is True
    assert validity.status is Status.PASS


async def test_rsa_1024_sha1_certificate_is_weak(tmp_path: Path, ca: Any) -> None:
    anchor, issuer = ca
    cert, issued = issue(tmp_path, "weak-key", issuer, names=["127.93.1.17"], key="rsa1024",
                         sha1=True)
    assert issued.cert.signature_hash_algorithm is not None
    assert issued.cert.signature_hash_algorithm.name == "sha1"
    with openssl_server(tmp_path, "127.93.1.17", 4433, cert, "-www",
                        "-cipher", "DEFAULT:@SECLEVEL=0"), \
            device_context("127.93.1.17", (4433,), trust=anchor.cert) as ctx:
        (strength,) = await run_check("tls.certificate-strength", ctx.device, context=ctx)
        (trust,) = await run_check("tls.certificate-trust", ctx.device, context=ctx)
    assert strength.status is Status.FAIL
    assert "RSA 1024-bit key" in strength.summary and "SHA1" in strength.summary
    assert trust.status is Status.FAIL


async def test_wrong_identity_fails_trust(tmp_path: Path, ca: Any) -> None:
    anchor, issuer = ca
    cert, issued = issue(tmp_path, "other", issuer, names=["127.93.1.99", "other.test"])
    assert identity_matches(issued.cert, "127.93.1.99")
    assert identity_matches(issued.cert, "OTHER.test.")
    assert not identity_matches(issued.cert, "127.93.1.18")
    with nginx_tls(tmp_path, "127.93.1.18", 443, cert), \
            device_context("127.93.1.18", (443,), trust=anchor.cert) as ctx:
        (trust,) = await run_check("tls.certificate-trust", ctx.device, context=ctx)
    assert trust.status is Status.FAIL
    (served,) = trust.evidence["certificates"]
    assert served["identity"] == "127.93.1.18" and served["identity_matches"] is False


async def test_hostname_is_the_identity_and_the_server_name(tmp_path: Path, ca: Any) -> None:
    anchor, issuer = ca
    cert, issued = issue(tmp_path, "named", issuer, names=["*.plant.test"])
    assert identity_matches(issued.cert, "cam-7.plant.test")
    assert not identity_matches(issued.cert, "a.b.plant.test")
    with nginx_tls(tmp_path, "127.93.1.19", 443, cert), \
            device_context("127.93.1.19", (443,), hostname="cam-7.plant.test",
                   trust=anchor.cert) as ctx:
        (trust,) = await run_check("tls.certificate-trust", ctx.device, context=ctx)
    with nginx_tls(tmp_path, "127.93.1.20", 443, cert), \
            device_context("127.93.1.20", (443,), trust=anchor.cert) as ctx:
        (by_address,) = await run_check("tls.certificate-trust", ctx.device, context=ctx)
    assert trust.status is Status.PASS
    assert trust.evidence["certificates"][0]["identity"] == "cam-7.plant.test"
    assert by_address.status is Status.FAIL


async def test_client_renegotiation_is_a_known_vulnerability(tmp_path: Path, ca: Any) -> None:
    _, issuer = ca
    cert, _ = issue(tmp_path, "reneg", issuer, names=["127.93.1.21"], key="rsa2048")
    with openssl_server(tmp_path, "127.93.1.21", 4433, cert, "-www", "-no_tls1_3",
                        "-client_renegotiation", "-cipher", "DEFAULT:@SECLEVEL=0"), \
            device_context("127.93.1.21", (4433,)) as ctx:
        (finding,) = await run_check("tls.known-vulnerabilities", ctx.device, context=ctx)
    assert finding.status is Status.FAIL
    assert "client-initiated renegotiation: accepted" in finding.summary
    tests = {t["test"]: t for t in finding.evidence["tests"]}
    assert tests["ROBOT"]["vulnerable"] is False  # RSA key exchange accepted: ROBOT ran
    assert "not_applicable" not in tests["ROBOT"]["detail"]


async def test_known_vulnerabilities_pass_on_nginx(tmp_path: Path, ca: Any) -> None:
    _, issuer = ca
    cert, _ = issue(tmp_path, "nginx-vulns", issuer, names=["127.93.1.22"])
    with nginx_tls(tmp_path, "127.93.1.22", 443, cert), \
            device_context("127.93.1.22", (443,)) as ctx:
        (finding,) = await run_check("tls.known-vulnerabilities", ctx.device, context=ctx)
    assert finding.status is Status.PASS
    tests = {t["test"]: t for t in finding.evidence["tests"]}
    assert set(tests) == {"Heartbleed", "OpenSSL CCS injection", "secure renegotiation",
                          "client-initiated renegotiation", "TLS compression", "ROBOT"}
    assert "no suite with RSA key exchange" in tests["ROBOT"]["detail"]


@pytest.mark.parametrize("server", ["nginx", "nginx TLS 1.3 only", "s_server TLS 1.0+"])
async def test_hello_flaws_are_sslyze_verdicts(tmp_path: Path, ca: Any, server: str) -> None:
    """Secure renegotiation and compression, read from the raw hellos, say what sslyze's own
    scan commands say on the same endpoint (TLS 1.3 only: supported and off), in the words the
    record has always used."""
    import sslyze

    _, issuer = ca
    address = {"nginx": "127.93.1.29", "nginx TLS 1.3 only": "127.93.1.30",
               "s_server TLS 1.0+": "127.93.1.31"}[server]
    cert, _ = issue(tmp_path, "flaws", issuer, names=[address], key="rsa2048")
    port = 4433 if server.startswith("s_server") else 443
    daemon = (openssl_server(tmp_path, address, port, cert, "-www", "-min_protocol", "TLSv1",
                             "-cipher", "DEFAULT:@SECLEVEL=0")
              if server.startswith("s_server") else
              nginx_tls(tmp_path, address, port, cert,
                        protocols="TLSv1.3" if "1.3" in server else "TLSv1.2 TLSv1.3"))
    with daemon, device_context(address, (port,)) as ctx:
        found = await ctx.observe(endpoint_handshakes, port)
        (finding,) = await run_check("tls.known-vulnerabilities", ctx.device, context=ctx)
        info = server_info(ctx, found)
        renegotiation = await run_command(
            ctx, info, sslyze.ScanCommand.SESSION_RENEGOTIATION,
            sslyze.SessionRenegotiationExtraArgument(client_renegotiation_attempts=1))
        compression = await run_command(ctx, info, sslyze.ScanCommand.TLS_COMPRESSION)
    tests = {t["test"]: t for t in finding.evidence["tests"]}
    assert finding.status is Status.PASS
    assert renegotiation.supports_secure_renegotiation is True
    assert compression.supports_compression is False
    assert tests["secure renegotiation"] == {"test": "secure renegotiation",
                                             "detail": "supported", "vulnerable": False}
    assert tests["TLS compression"] == {"test": "TLS compression", "detail": "off",
                                        "vulnerable": False}
    assert tests["client-initiated renegotiation"]["vulnerable"] is False
    assert found.classic == (None if "1.3" in server else TLS12)


async def test_mqtt_over_tls_is_a_tls_endpoint(tmp_path: Path, ca: Any) -> None:
    anchor, issuer = ca
    cert, _ = issue(tmp_path, "broker", issuer, names=["127.93.1.23"])
    with mosquitto(tmp_path, "127.93.1.23", 8883, cert), \
            device_context("127.93.1.23", (8883,), trust=anchor.cert) as ctx:
        found = await statuses(ctx, *TLS_CHECKS)
        (versions,) = await run_check("tls.protocol-versions", ctx.device, context=ctx)
    assert found == {cid: [Status.PASS] for cid in TLS_CHECKS}
    assert versions.evidence["protocol"] == "mqtt"


async def test_a_silent_tls_port_costs_no_sslyze_time() -> None:
    async with Listener("127.93.1.24", 8883, silent):
        with device_context("127.93.1.24", (8883,), timeout=0.5) as ctx:
            results = await statuses(ctx, *TLS_CHECKS)
            connections = ctx.connections
    assert results == {cid: [Status.ERROR] for cid in TLS_CHECKS}
    assert connections <= 6  # discovery only: no hello, no sslyze job


async def test_no_tls_endpoint_is_not_applicable(tmp_path: Path) -> None:
    with nginx_site(tmp_path, "127.93.1.25", [8080], """
          server { listen 127.93.1.25:8080; location / { return 200 "plain"; } }"""), \
            device_context("127.93.1.25", (8080,)) as ctx:
        results = await statuses(ctx, *TLS_CHECKS)
    assert results == {cid: [Status.NOT_APPLICABLE] for cid in TLS_CHECKS}


async def test_hello_to_a_closed_port_is_refused() -> None:
    with device_context("127.93.1.26", (443,), timeout=0.5) as ctx:
        reply = await hello(ctx, 443, TLS12, classic_suites())
    assert reply.outcome == "refused"
