"""ClientHellos that offer exactly the suites in question, and what the server answers.

A version or cipher-class question ("does this server accept TLS 1.0?", "any RC4 suite?") is
answered by one ClientHello offering exactly what is asked about and by reading the first answer:
a ServerHello (its version, the suite and compression method it picked, whether it answered the
hello's renegotiation_info extension), an alert, or a closed connection. No handshake is ever
completed. The hellos are built with scapy's TLS layer (imported on first use: it is slow to
import; each hello's template is built once); records are framed and the ServerHello read
here, so a reply that goes on to encrypted records or garbage is never taken for more than it
is.

Small stacks refuse large hellos: wolfSSL answers a ClientHello with more than 150 suites with
a decode_error alert. No hello offers more than `MAX_OFFER` suites; a larger question is asked
in `chunks`, the suites servers commonly pick first. An alert that complains about the hello
itself (decode_error, illegal_parameter, internal_error, ...) is no refusal: only
`REFUSAL_ALERTS`, a closed connection and silence are (`ServerReply.undecided`). A chunk
that draws such a complaint is asked again in pieces of `SMALL_OFFER` suites; an
internal_error to a hello that small is a refusal (OpenSSL 3 answers a TLS 1.1 hello with it
when it may not sign with SHA-1: no client gets that version).

Nothing a server checks is left to chance: the TLS 1.3 key shares are real X25519 and P-256
public keys (a random 32-byte x25519 share is dropped by wolfSSL whenever its top bit is set,
half of the time). The random, session id and SSL 2.0 challenge stay random: a server reads
nothing in them but their length.

The suite catalogue is scapy's copy of the IANA registry plus the ARIA suites (RFC 6209) it
lacks; each suite's key exchange, bulk cipher and MAC are read from its IANA name.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

SSL2, SSL3, TLS10, TLS11, TLS12, TLS13 = 0x0002, 0x0300, 0x0301, 0x0302, 0x0303, 0x0304
VERSION_NAMES = {SSL2: "SSL 2.0", SSL3: "SSL 3.0", TLS10: "TLS 1.0", TLS11: "TLS 1.1",
                 TLS12: "TLS 1.2", TLS13: "TLS 1.3"}
LEGACY_VERSIONS = (SSL2, SSL3, TLS10, TLS11)
"""The versions every TLS endpoint must refuse."""

HANDSHAKE, ALERT = 22, 21
SERVER_HELLO, CERTIFICATE = 2, 11
SUPPORTED_VERSIONS = 43  # the extension that carries a TLS 1.3 ServerHello's version
RENEGOTIATION_INFO = 0xFF01  # RFC 5746: a server that supports secure renegotiation answers it
NULL_COMPRESSION, DEFLATE = 0, 1
SSL2_SERVER_HELLO = 4
_RECORD_TYPES = frozenset({20, 21, 22, 23})
_HELLO_RETRY = bytes.fromhex(
    "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
_SCSV = frozenset({0x00FF, 0x5600})
_TLS13_CODES = range(0x1301, 0x1306)

MAX_OFFER = 100
"""The most suites one ClientHello offers (wolfSSL refuses more than 150 with decode_error)."""
COMMON_KEY_EXCHANGES = ("ECDHE_ECDSA", "ECDHE_RSA", "DHE_RSA", "RSA")
"""The key exchanges of the suites servers pick: their suites are offered in the first chunk."""
SMALL_OFFER = 25
"""The size of the pieces a chunk that drew a complaint is asked again in."""
REFUSAL_ALERTS = frozenset({0, 40, 70, 71})
INTERNAL_ERROR = 80
"""close_notify, handshake_failure, protocol_version, insufficient_security: the alerts that
refuse what a hello offered. Any other alert is a complaint about the hello (decode_error,
illegal_parameter, internal_error, unrecognized_name...) and decides nothing."""

MAX_CHAIN = 100 * 1024
"""The largest Certificate message read from a hello's answer: OpenSSL's default
max_cert_list, beyond which sslyze's client (nassl) gives up on the handshake."""
RSA_AUTHENTICATED = frozenset({"RSA", "RSA_EXPORT", "RSA_EXPORT1024", "DHE_RSA",
                               "DHE_RSA_EXPORT", "ECDHE_RSA", "SRP_SHA_RSA", "RSA_PSK"})
"""The key exchanges whose server proves itself with an RSA certificate (OpenSSL's aRSA)."""
OTHER_CERTIFICATES = frozenset({"ECDHE_ECDSA", "ECDH_ECDSA", "ECDH_RSA", "DHE_DSS",
                                "DHE_DSS_EXPORT", "DH_DSS", "DH_DSS_EXPORT", "DH_RSA",
                                "DH_RSA_EXPORT", "SRP_SHA_DSS"})
"""The other key exchanges with a server certificate (ECDSA, DSA, static DH and ECDH): a
server with more than one certificate serves the one the suite it picks needs."""

WEAK_CLASSES = ("NULL", "anonymous", "EXPORT", "RC4", "DES", "3DES", "MD5-MAC")

# Groups: x25519, secp256r1, secp384r1, secp521r1, x448, ffdhe2048, ffdhe3072.
_GROUPS = [29, 23, 24, 25, 30, 256, 257]
# Signature schemes from ecdsa/rsa-pss/ed25519 down to the legacy SHA-1 and MD5 ones, so that
# old servers find something to sign with.
_SIGNATURE_SCHEMES = [0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x0804, 0x0805, 0x0806,
                      0x0809, 0x080A, 0x080B, 0x0401, 0x0501, 0x0601, 0x0303, 0x0301,
                      0x0302, 0x0402, 0x0502, 0x0602, 0x0203, 0x0201, 0x0202, 0x0101]
_ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
           40: "handshake_failure", 42: "bad_certificate", 47: "illegal_parameter",
           48: "unknown_ca", 50: "decode_error", 51: "decrypt_error",
           70: "protocol_version", 71: "insufficient_security", 80: "internal_error",
           86: "inappropriate_fallback", 90: "user_canceled", 109: "missing_extension",
           110: "unsupported_extension", 112: "unrecognized_name",
           116: "certificate_required", 120: "no_application_protocol"}


@dataclass(frozen=True)
class Suite:
    code: int
    name: str
    key_exchange: str  # "ECDHE_RSA", "RSA", "DH_anon", ...; "" for TLS 1.3 and SSL 2.0
    bulk: str  # "AES_128_GCM", "RC4_128", "3DES_EDE_CBC", "NULL", ...
    mac: str  # "SHA256", "SHA", "MD5"; "" where the bulk cipher is an AEAD without one

    @property
    def weak_classes(self) -> tuple[str, ...]:
        """The classes of weak suites (`WEAK_CLASSES`) this one belongs to."""
        kx, bulk = self.key_exchange, self.bulk
        found = []
        if bulk.startswith("NULL"):
            found.append("NULL")
        if "anon" in kx or kx == "NULL":
            found.append("anonymous")
        if "EXPORT" in kx or "EXPORT" in self.name or re.search(r"_40(_|$)|DES40", bulk):
            found.append("EXPORT")
        if "RC4" in bulk:
            found.append("RC4")
        if re.match(r"DES(40)?_", bulk) and not bulk.startswith("DES_192"):
            found.append("DES")
        if bulk.startswith(("3DES", "DES_192")):
            found.append("3DES")
        if self.mac == "MD5":
            found.append("MD5-MAC")
        return tuple(found)

    @property
    def forward_secret(self) -> bool:
        """Ephemeral (EC)DH key exchange, or TLS 1.3 (which always has it)."""
        return self.code in _TLS13_CODES or self.key_exchange.startswith(("DHE", "ECDHE"))

    @property
    def rsa_key_exchange(self) -> bool:
        """The premaster secret travels RSA-encrypted (what ROBOT attacks)."""
        return self.key_exchange in ("RSA", "RSA_EXPORT", "RSA_EXPORT1024")


def _parse_name(code: int, name: str) -> Suite:
    if code in _TLS13_CODES:
        return Suite(code, name, "", name.removeprefix("TLS_").rpartition("_")[0], "")
    if name.startswith("SSL_CK_"):
        bulk, _, mac = name.removeprefix("SSL_CK_").partition("_WITH_")
        return Suite(code, name, "", bulk, mac)
    kx, _, rest = name.removeprefix("TLS_").partition("_WITH_")
    bulk, _, mac = rest.rpartition("_")
    if rest.endswith(("_CCM", "_CCM_8")) or mac == "OLD":
        bulk, mac = rest, ""
    return Suite(code, name, kx, bulk, mac)


def _aria() -> dict[int, str]:
    """The ARIA suites of RFC 6209 (0xC03C-0xC071), which scapy's registry lacks."""
    cbc = ["RSA", "DH_DSS", "DH_RSA", "DHE_DSS", "DHE_RSA", "DH_anon", "ECDHE_ECDSA",
           "ECDH_ECDSA", "ECDHE_RSA", "ECDH_RSA"]
    gcm = ["RSA", "DHE_RSA", "DH_RSA", "DHE_DSS", "DH_DSS", "DH_anon", "ECDHE_ECDSA",
           "ECDH_ECDSA", "ECDHE_RSA", "ECDH_RSA"]
    psk = [("PSK", "CBC"), ("DHE_PSK", "CBC"), ("RSA_PSK", "CBC"), ("PSK", "GCM"),
           ("DHE_PSK", "GCM"), ("RSA_PSK", "GCM"), ("ECDHE_PSK", "CBC")]
    layout = [(kx, "CBC") for kx in cbc] + [(kx, "GCM") for kx in gcm] + psk
    out = {}
    for index, (kx, mode) in enumerate(layout):
        for offset, (bits, mac) in enumerate(((128, "SHA256"), (256, "SHA384"))):
            out[0xC03C + 2 * index + offset] = f"TLS_{kx}_WITH_ARIA_{bits}_{mode}_{mac}"
    return out


@functools.cache
def catalogue() -> Mapping[int, Suite]:
    """Every known suite by code: TLS (two-byte codes) and SSL 2.0 (three-byte codes)."""
    from scapy.layers.tls.crypto.suites import _tls_cipher_suites

    names: dict[int, str] = {int(k): str(v) for k, v in _tls_cipher_suites.items()}
    names.update({k: v for k, v in _aria().items() if k not in names})
    return {code: _parse_name(code, name) for code, name in sorted(names.items())
            if code not in _SCSV}


def suite_name(code: int) -> str:
    suite = catalogue().get(code)
    return suite.name if suite is not None else f"0x{code:04X}"


@functools.cache
def classic_suites() -> tuple[int, ...]:
    """Every known suite of SSL 3.0 to TLS 1.2. (This and the lists below are cached: every
    TLS endpoint asks for them, and the catalogue they filter never changes.)"""
    return tuple(c for c in catalogue() if c <= 0xFFFF and c not in _TLS13_CODES)


@functools.cache
def tls13_suites() -> tuple[int, ...]:
    return tuple(c for c in catalogue() if c in _TLS13_CODES)


@functools.cache
def sslv2_suites() -> tuple[int, ...]:
    return tuple(c for c in catalogue() if c > 0xFFFF)


@functools.cache
def weak_suites() -> tuple[int, ...]:
    return tuple(c for c in classic_suites() if catalogue()[c].weak_classes)


@functools.cache
def non_forward_secret_suites() -> tuple[int, ...]:
    return tuple(c for c in classic_suites() if not catalogue()[c].forward_secret)


@functools.cache
def rsa_authenticated_suites() -> tuple[int, ...]:
    return tuple(c for c in classic_suites() if catalogue()[c].key_exchange in RSA_AUTHENTICATED)


@functools.cache
def other_certificate_suites() -> tuple[int, ...]:
    return tuple(c for c in classic_suites()
                 if catalogue()[c].key_exchange in OTHER_CERTIFICATES)


def chunks(suites: Sequence[int], most: int = MAX_OFFER) -> list[tuple[int, ...]]:
    """`suites` in hellos of at most `most` suites, of near-equal sizes: those with a common
    key exchange (`COMMON_KEY_EXCHANGES`) first, so that a server that takes the version
    usually picks from the first hello; otherwise in the given order."""
    table = catalogue()
    ordered = sorted(suites, key=lambda code: code not in table or (
        table[code].key_exchange not in COMMON_KEY_EXCHANGES))
    count = max(1, -(-len(ordered) // most))
    size = -(-len(ordered) // count)
    return [tuple(ordered[at:at + size]) for at in range(0, len(ordered), size)] or [()]


@functools.cache
def _key_shares() -> tuple[bytes, bytes]:
    """An X25519 and a P-256 (uncompressed point) public key, generated once per process: real
    keys, so that no server refuses a share by chance (no handshake is ever completed, the
    private halves are never used)."""
    from cryptography.hazmat.primitives.asymmetric import ec, x25519
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    x = x25519.X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw,
                                                                     PublicFormat.Raw)
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint)
    return x, p256


@functools.cache
def _scapy() -> Any:
    """scapy's TLS layer, imported once, on first use."""
    from scapy.layers.tls import (
        extensions,
        handshake,
        handshake_sslv2,
        keyexchange_tls13,
        record_sslv2,
    )
    from scapy.layers.tls import record as tls_record

    class Layer:
        ext = extensions
        hs = handshake
        hs2 = handshake_sslv2
        ks = keyexchange_tls13
        record = tls_record
        record2 = record_sslv2

    return Layer


def client_hello(version: int, suites: Sequence[int], server_name: str | None = None,
                 compression: Sequence[int] = (NULL_COMPRESSION,)) -> bytes:
    """One TLS record holding a ClientHello for `version` that offers exactly `suites` and the
    `compression` methods (by default only null), naming `server_name` if given.

    TLS 1.3 is offered through supported_versions with x25519 and secp256r1 key shares (real
    public keys, `_key_shares`); earlier versions through the legacy version field. Every
    hello offers an empty renegotiation_info extension (RFC 5746). scapy builds one hello per
    version and compression list (a few milliseconds each); the suite list of each hello sent,
    and the server name, are spliced into that template, so an elimination of k suites, or a
    fleet of devices with their own names, costs no scapy work. Random, session id and key
    shares repeat: no handshake is ever completed.
    """
    if version == SSL2:
        return sslv2_client_hello(suites)
    body, at = _template(version, tuple(compression))
    offer = b"".join(code.to_bytes(2, "big") for code in suites)
    extensions = at + 2 + len(offer) + 1 + len(compression)
    body = body[:at] + len(offer).to_bytes(2, "big") + offer + body[at + 2:]
    if server_name:
        name = _server_name(server_name)
        size = int.from_bytes(body[extensions:extensions + 2], "big") + len(name)
        body = body[:extensions] + size.to_bytes(2, "big") + name + body[extensions + 2:]
    message = bytes([body[0]]) + (len(body) - 4).to_bytes(3, "big") + body[4:]
    record_version = SSL3 if version == SSL3 else TLS10
    return bytes([HANDSHAKE]) + record_version.to_bytes(2, "big") + len(message).to_bytes(
        2, "big") + message


def _server_name(name: str) -> bytes:
    """The server_name extension (RFC 6066) naming `name` (one host_name entry), as scapy
    builds it: the first extension of a hello that sends one."""
    host = name.encode("idna")
    entry = b"\x00" + len(host).to_bytes(2, "big") + host
    listed = len(entry).to_bytes(2, "big") + entry
    return b"\x00\x00" + len(listed).to_bytes(2, "big") + listed


@functools.lru_cache(maxsize=64)
def _template(version: int, compression: tuple[int, ...]) -> tuple[bytes, int]:
    """A ClientHello message for `version` with an empty suite list and no server name, built
    by scapy, and the offset of that list's length field (the compression methods follow the
    suites, then the extensions). The server name, which differs from device to device, is
    spliced in by `client_hello`."""
    s = _scapy()
    ext: list[Any] = [s.ext.TLS_Ext_SupportedGroups(groups=_GROUPS),
                      s.ext.TLS_Ext_SupportedPointFormat(ecpl=[0]),
                      s.ext.TLS_Ext_RenegotiationInfo()]
    if version >= TLS12:
        ext.append(s.ext.TLS_Ext_SignatureAlgorithms(sig_algs=_SIGNATURE_SCHEMES))
    if version == TLS13:
        x25519, p256 = _key_shares()
        shares = [s.ks.KeyShareEntry(group=29, key_exchange=x25519),
                  s.ks.KeyShareEntry(group=23, key_exchange=p256)]
        ext += [s.ext.TLS_Ext_SupportedVersion_CH(versions=[TLS13]),
                s.ks.TLS_Ext_KeyShare_CH(client_shares=shares)]
    session = os.urandom(32) if version == TLS13 else b""
    hello = s.hs.TLSClientHello(
        version=min(version, TLS12), random_bytes=os.urandom(32), sid=session, ciphers=[],
        comp=list(compression), ext=ext)
    return bytes(hello), 4 + 2 + 32 + 1 + len(session)


def sslv2_client_hello(suites: Iterable[int] | None = None) -> bytes:
    """An SSL 2.0 CLIENT-HELLO offering version 2 and the SSL 2.0 cipher specs."""
    return _sslv2_hello(tuple(suites) if suites is not None else sslv2_suites())


@functools.lru_cache(maxsize=16)
def _sslv2_hello(specs: tuple[int, ...]) -> bytes:
    """Built by scapy once per suite list (milliseconds each, for every TLS endpoint); the
    challenge repeats like the TLS hellos' random: no handshake is ever completed."""
    s = _scapy()
    hello = s.hs2.SSLv2ClientHello(version=SSL2, ciphers=list(specs), challenge=os.urandom(16))
    return bytes(s.record2.SSLv2(msg=[hello]))


Outcome = Literal["hello", "alert", "closed", "timeout", "not-tls", "refused"]


@dataclass(frozen=True)
class ServerReply:
    """The server's first answer to one ClientHello."""

    outcome: Outcome
    version: int | None = None  # the version the ServerHello chose
    suite: int | None = None  # the suite it chose
    alert: str | None = None
    alert_code: int | None = None  # the TLS alert's description byte
    offered: int = 0  # how many suites the hello it answers offered (0: not known)
    retry: bool = False  # a TLS 1.3 HelloRetryRequest (the version is accepted)
    compression: int = NULL_COMPRESSION  # the compression method the ServerHello chose
    renegotiation_info: bool = False  # it answered renegotiation_info (RFC 5746 3.6)
    sslv2_suites: tuple[int, ...] = ()  # the cipher specs of an SSL 2.0 SERVER-HELLO

    def accepts(self, version: int) -> bool:
        return self.outcome == "hello" and self.version == version

    @property
    def undecided(self) -> bool:
        """Neither an acceptance nor a refusal: no connection, an answer that is not TLS,
        silence (a timeout: whether that counts as refusal is the check's to say), or an alert
        that complains about the hello rather than refusing what it offers."""
        if self.outcome == "alert":
            code = self.alert_code
            small = 0 < self.offered <= SMALL_OFFER
            return code is not None and code not in REFUSAL_ALERTS and not (
                code == INTERNAL_ERROR and small)
        return self.outcome in ("timeout", "not-tls", "refused")

    def describe(self) -> str:
        if self.outcome == "hello":
            what = VERSION_NAMES.get(self.version or 0, f"0x{self.version or 0:04X}")
            if self.version == SSL2:
                return f"SSL 2.0 SERVER-HELLO ({len(self.sslv2_suites)} cipher specs)"
            retry = " (HelloRetryRequest)" if self.retry else ""
            method = self.compression
            compressed = "" if method == NULL_COMPRESSION else (
                ", DEFLATE compression" if method == DEFLATE else f", compression {method}")
            return f"ServerHello {what}, {suite_name(self.suite or 0)}{compressed}{retry}"
        if self.outcome == "alert":
            return f"alert {self.alert}"
        return {"closed": "connection closed without an answer",
                "timeout": "no answer before the timeout",
                "refused": "the connection was refused",
                "not-tls": "an answer that is not TLS"}[self.outcome]


def _records(data: bytes) -> tuple[list[tuple[int, bytes]], bool]:
    """The complete TLS records at the start of `data`, and whether `data` looks like TLS."""
    out: list[tuple[int, bytes]] = []
    offset = 0
    while len(data) - offset >= 5:
        kind, length = data[offset], int.from_bytes(data[offset + 3:offset + 5], "big")
        if kind not in _RECORD_TYPES or data[offset + 1] != 3 or length > 18432:
            return out, False
        if len(data) - offset - 5 < length:
            break
        out.append((kind, data[offset + 5:offset + 5 + length]))
        offset += 5 + length
    if offset < len(data) and (data[offset] not in _RECORD_TYPES
                               or (len(data) > offset + 1 and data[offset + 1] != 3)):
        return out, False
    return out, True


def _sslv2(data: bytes) -> bool:
    return len(data) >= 3 and data[0] & 0x80 != 0


def _first_message(records: list[tuple[int, bytes]]) -> tuple[str, bytes] | None:
    """("alert", body) or ("handshake", first handshake message), once one is complete."""
    handshake = b""
    for kind, body in records:
        if kind == ALERT and not handshake:
            return ("alert", body) if len(body) >= 2 else None
        if kind == HANDSHAKE:
            handshake += body
            if len(handshake) >= 4:
                size = int.from_bytes(handshake[1:4], "big")
                if len(handshake) >= 4 + size:
                    return "handshake", handshake[:4 + size]
        elif not handshake:
            return "other", body
    return None


def reply_complete(data: bytes) -> bool:
    """Whether `data` already decides the answer (for `ctx.read(until=...)`)."""
    if _sslv2(data):
        return len(data) >= 2 + (((data[0] & 0x7F) << 8) | data[1])
    records, tls = _records(data)
    return not tls or _first_message(records) is not None


def parse_reply(data: bytes, *, timed_out: bool = False) -> ServerReply:
    """The answer `data` holds: a ServerHello, an alert, silence or something else."""
    if not data:
        return ServerReply("timeout" if timed_out else "closed")
    if _sslv2(data):
        return _parse_sslv2(data)
    records, tls = _records(data)
    first = _first_message(records)
    if first is None:
        return ServerReply("not-tls" if not tls else ("timeout" if timed_out else "closed"))
    kind, body = first
    if kind == "alert":
        code = body[1]
        return ServerReply("alert", alert=f"{_ALERTS.get(code, 'alert')} ({code})",
                           alert_code=code)
    if kind != "handshake" or body[0] != SERVER_HELLO:
        return ServerReply("not-tls")
    return _parse_server_hello(body)


def _parse_server_hello(message: bytes) -> ServerReply:
    """A ServerHello message, header included (RFC 5246 7.4.1.3, RFC 8446 4.1.3): its version,
    or the one its supported_versions extension names, the suite and compression method it
    picked, and whether it carries the renegotiation_info extension with the empty
    renegotiated_connection an initial handshake requires (RFC 5746 3.6). Read here rather than
    by scapy: this runs for every ClientHello, and scapy takes half a millisecond for it;
    anything that does not frame exactly is not TLS."""
    body = message[4:]
    sid_end = 35 + (body[34] if len(body) > 34 else 0)
    if len(body) < sid_end + 3:
        return ServerReply("not-tls")
    version = int.from_bytes(body[0:2], "big")
    suite = int.from_bytes(body[sid_end:sid_end + 2], "big")
    compression = body[sid_end + 2]
    renegotiation = False
    extensions = body[sid_end + 3:]
    if extensions:
        if len(extensions) < 2 or int.from_bytes(extensions[:2], "big") != len(extensions) - 2:
            return ServerReply("not-tls")
        offset = 2
        while offset < len(extensions):
            if len(extensions) - offset < 4:
                return ServerReply("not-tls")
            kind = int.from_bytes(extensions[offset:offset + 2], "big")
            size = int.from_bytes(extensions[offset + 2:offset + 4], "big")
            data = extensions[offset + 4:offset + 4 + size]
            if len(data) != size:
                return ServerReply("not-tls")
            if kind == SUPPORTED_VERSIONS and size == 2:
                version = int.from_bytes(data, "big")
            elif kind == RENEGOTIATION_INFO:
                renegotiation = data == b"\x00"
            offset += 4 + size
    return ServerReply("hello", version=version, suite=suite,
                       retry=message[6:38] == _HELLO_RETRY, compression=compression,
                       renegotiation_info=renegotiation)


def _parse_sslv2(data: bytes) -> ServerReply:
    s = _scapy()
    try:
        record = s.record2.SSLv2(data)
        message = record.msg[0] if record.msg else None
    except Exception:  # scapy raises all sorts on malformed input
        return ServerReply("not-tls")
    if message is None or int(getattr(message, "msgtype", 0)) != SSL2_SERVER_HELLO:
        return ServerReply("alert", alert="SSL 2.0 error")
    specs = tuple(int(c) for c in (message.ciphers or []))
    return ServerReply("hello", version=SSL2, suite=specs[0] if specs else None,
                       sslv2_suites=specs)


def _messages(data: bytes) -> tuple[list[bytes], bool]:
    """The complete handshake messages (headers included) that open `data`'s records, and
    whether the handshake stream has ended there (another record type follows, or the rest is
    not TLS)."""
    records, tls = _records(data)
    stream = bytearray()
    ended = not tls
    for kind, body in records:
        if kind != HANDSHAKE:
            ended = True
            break
        stream += body
    out = []
    at = 0
    while len(stream) - at >= 4:
        size = int.from_bytes(stream[at + 1:at + 4], "big")
        if len(stream) - at - 4 < size:
            break
        out.append(bytes(stream[at:at + 4 + size]))
        at += 4 + size
    return out, ended


def chain_complete(data: bytes) -> bool:
    """Whether `data` holds the answer and, after a ServerHello below TLS 1.3, the message
    that follows it (the Certificate, when the suite has one): `until` for a hello whose
    certificate chain is kept."""
    if _sslv2(data):
        return reply_complete(data)
    messages, ended = _messages(data)
    if ended or len(messages) >= 2:
        return True
    return bool(messages) and (messages[0][0] != SERVER_HELLO
                               or _parse_server_hello(messages[0]).version == TLS13)


def served_certificates(data: bytes) -> tuple[bytes, ...] | None:
    """The certificates (DER, as served: leaf first) of the Certificate message that follows
    the ServerHello in `data`; () when the server sent none (the next message is another one:
    an anonymous or PSK suite); None when that is not known: no complete message after the
    ServerHello (cut short, too long, a silence), a list that does not frame exactly or a
    message over `MAX_CHAIN`."""
    messages, _ = _messages(data)
    if len(messages) < 2 or messages[0][0] != SERVER_HELLO:
        return None
    if messages[1][0] != CERTIFICATE:
        return ()
    body = messages[1][4:]
    if len(body) > MAX_CHAIN or len(body) < 3 or int.from_bytes(body[:3], "big") != len(body) - 3:
        return None
    certificates = []
    at = 3
    while at < len(body):
        size = int.from_bytes(body[at:at + 3], "big") if len(body) - at >= 3 else 0
        if size == 0 or len(body) - at - 3 < size:
            return None
        certificates.append(body[at + 3:at + 3 + size])
        at += 3 + size
    return tuple(certificates)
