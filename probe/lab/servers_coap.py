"""Emulated CoAP and DTLS for lab personas: a CoAP device over UDP and a DTLS server's hello.

`CoapDevice` answers CoAP requests (RFC 7252) from a fixed set of resources: GET of
/.well-known/core lists them in link format (RFC 6690), GET of a resource returns its value, PUT
stores a new value where the resource is writable (4.05 otherwise), and a protected resource
answers 4.01 to everything. It does not do block-wise transfers: a request carrying Block1 or
Block2 gets 4.02 Bad Option, as a small device's stack gives. Confirmable requests get
piggybacked ACKs, non-confirmable ones NON answers. Written values live in the service object,
so every device of one persona shares them.

`DtlsHello` plays a DTLS server's side of the hello exchange and no more: a HelloVerifyRequest
with a stateless cookie, then, for a hello that returns it, a ServerHello with the first suite it
shares with the client and a ServerHelloDone, or an alert: protocol_version for a version it does
not serve, handshake_failure when no suite is shared. Nothing after the hello is implemented,
so no session is ever established.

The parsing here is written apart from the probe's codecs (`probe.protocols.coap.wire`,
`probe.protocols.dtls.wire`) on purpose: a shared mistake would otherwise pass every lab test.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass, field

COAP_CON, COAP_NON, COAP_ACK, COAP_RST = 0, 1, 2, 3
GET, POST, PUT, DELETE = 1, 2, 3, 4
CONTENT, CHANGED = (2, 5), (2, 4)
BAD_OPTION, UNAUTHORIZED, NOT_FOUND, METHOD_NOT_ALLOWED = (4, 2), (4, 1), (4, 4), (4, 5)
OPT_URI_PATH, OPT_CONTENT_FORMAT, OPT_BLOCK2, OPT_BLOCK1 = 11, 12, 23, 27
# Critical options this device understands (RFC 7252 5.4.1: an unknown critical one is 4.02).
_KNOWN_CRITICAL = frozenset({1, 3, 7, 11, 15, 17, 35, 39})
LINK_FORMAT = 40
TEXT_PLAIN = 0


@dataclass(frozen=True)
class CoapResource:
    path: str
    value: bytes
    content_format: int | None = TEXT_PLAIN
    writable: bool = False
    protected: bool = False
    attributes: str = ""
    """Link-format attributes after the target, e.g. `;rt="temperature";obs`."""


class _Malformed(ValueError):
    pass


def _option_field(data: bytes, nibble: int, at: int) -> tuple[int, int]:
    if nibble == 13:
        if at >= len(data):
            raise _Malformed("truncated option")
        return 13 + data[at], at + 1
    if nibble == 14:
        if at + 2 > len(data):
            raise _Malformed("truncated option")
        return 269 + struct.unpack_from("!H", data, at)[0], at + 2
    if nibble == 15:
        raise _Malformed("reserved option nibble")
    return nibble, at


def _options(data: bytes, at: int) -> tuple[list[tuple[int, bytes]], bytes]:
    """The options from `at` on, and the payload after them."""
    found: list[tuple[int, bytes]] = []
    number = 0
    while at < len(data) and data[at] != 0xFF:
        first = data[at]
        delta, at = _option_field(data, first >> 4, at + 1)
        length, at = _option_field(data, first & 0x0F, at)
        number += delta
        if at + length > len(data):
            raise _Malformed("option runs past the datagram")
        found.append((number, data[at:at + length]))
        at += length
    return found, data[at + 1:]


@dataclass(frozen=True)
class CoapDevice:
    """A CoAP server with fixed resources; `discovery` replaces the generated link document."""

    resources: tuple[CoapResource, ...]
    discovery_protected: bool = False
    discovery: bytes | None = None
    values: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def link_document(self) -> bytes:
        if self.discovery is not None:
            return self.discovery
        return ",".join(f"<{r.path}>" + r.attributes
                        + (f";ct={r.content_format}" if r.content_format is not None else "")
                        for r in self.resources).encode()

    def _handle(self, method: int, path: str, options: list[tuple[int, bytes]],
                payload: bytes) -> tuple[tuple[int, int], int | None, bytes]:
        numbers = {number for number, _ in options}
        if {OPT_BLOCK1, OPT_BLOCK2} & numbers or \
                any(n % 2 and n not in _KNOWN_CRITICAL for n in numbers):
            return BAD_OPTION, None, b""
        if path == "/.well-known/core":
            if self.discovery_protected:
                return UNAUTHORIZED, None, b""
            if method != GET:
                return METHOD_NOT_ALLOWED, None, b""
            return CONTENT, LINK_FORMAT, self.link_document()
        resource = next((r for r in self.resources if r.path == path), None)
        if resource is None:
            return NOT_FOUND, None, b""
        if resource.protected:
            return UNAUTHORIZED, None, b""
        if method == GET:
            return CONTENT, resource.content_format, self.values.get(path, resource.value)
        if method == PUT and resource.writable:
            self.values[path] = payload
            return CHANGED, None, b""
        return METHOD_NOT_ALLOWED, None, b""

    def answer(self, request: bytes) -> bytes | None:
        if len(request) < 4 or request[0] >> 6 != 1:
            return None
        kind, token_length = (request[0] >> 4) & 3, request[0] & 0x0F
        code, mid = request[1], struct.unpack_from("!H", request, 2)[0]
        if kind not in (COAP_CON, COAP_NON) or token_length > 8 \
                or len(request) < 4 + token_length:
            return None
        if code == 0:  # a CoAP ping: the answer is a reset
            return bytes([0x40 | COAP_RST << 4]) + b"\x00" + request[2:4]
        if code >> 5 != 0:  # a response where a request belongs
            return None
        token = request[4:4 + token_length]
        try:
            options, payload = _options(request, 4 + token_length)
        except _Malformed:
            return bytes([0x40 | COAP_RST << 4]) + b"\x00" + request[2:4]
        segments = [value.decode("utf-8", "replace") for n, value in options if n == OPT_URI_PATH]
        path = "/" + "/".join(segments)
        (klass, detail), content_format, body = self._handle(code, path, options, payload)
        reply_kind, reply_mid = (COAP_ACK, mid) if kind == COAP_CON else \
            (COAP_NON, secrets.randbits(16))
        out = bytes([0x40 | reply_kind << 4 | len(token), klass << 5 | detail])
        out += struct.pack("!H", reply_mid) + token
        if content_format is not None:
            value = content_format.to_bytes((content_format.bit_length() + 7) // 8, "big")
            out += bytes([OPT_CONTENT_FORMAT << 4 | len(value)]) + value
        if body:
            out += b"\xff" + body
        return out


DTLS_1_0, DTLS_1_2 = 0xFEFF, 0xFEFD
_HANDSHAKE, _ALERT = 22, 21
_CLIENT_HELLO, _SERVER_HELLO, _HELLO_VERIFY, _SERVER_HELLO_DONE = 1, 2, 3, 14
PROTOCOL_VERSION, HANDSHAKE_FAILURE = 70, 40
PSK_AES_128_CCM_8, PSK_AES_128_CCM, PSK_AES_128_CBC_SHA256 = 0xC0A8, 0xC0A4, 0x00AE
PSK_AES_128_CBC_SHA, ECDHE_ECDSA_AES_128_CBC_SHA = 0x008C, 0xC009
_SCSV, _RENEGOTIATION_INFO = 0x00FF, 0xFF01
# Suites that exist before TLS 1.2 (CBC with SHA-1): the only ones a DTLS 1.0 hello can get.
_PRE_12_SUITES = frozenset({0x008C, 0x008D, 0xC009, 0xC00A, 0xC013, 0xC014, 0xC035, 0x002F,
                            0x0033, 0x0035})


def _dtls_record(content_type: int, version: int, sequence: int, body: bytes) -> bytes:
    return struct.pack("!BHH", content_type, version, 0) + sequence.to_bytes(6, "big") \
        + struct.pack("!H", len(body)) + body


def _dtls_handshake(kind: int, message_seq: int, body: bytes) -> bytes:
    length = len(body).to_bytes(3, "big")
    return bytes([kind]) + length + struct.pack("!H", message_seq) + b"\x00\x00\x00" + length \
        + body


@dataclass(frozen=True)
class _ClientHello:
    version: int
    random: bytes
    cookie: bytes
    suites: tuple[int, ...]
    record_seq: int
    secure_renegotiation: bool
    """The client signalled RFC 5746 (the SCSV or an empty renegotiation_info)."""


def _extension_types(data: bytes) -> set[int]:
    found: set[int] = set()
    at = 0
    while at + 4 <= len(data):
        kind, size = struct.unpack_from("!HH", data, at)
        found.add(kind)
        at += 4 + size
    return found


def _client_hello(datagram: bytes) -> _ClientHello | None:
    if len(datagram) < 25 or datagram[0] != _HANDSHAKE or datagram[13] != _CLIENT_HELLO:
        return None
    record_seq = int.from_bytes(datagram[5:11], "big")
    body = datagram[25:]
    if len(body) < 35:
        return None
    version, random = struct.unpack_from("!H", body)[0], body[2:34]
    at = 35 + body[34]
    if at >= len(body):
        return None
    cookie = body[at + 1:at + 1 + body[at]]
    at += 1 + body[at]
    if at + 2 > len(body):
        return None
    size = struct.unpack_from("!H", body, at)[0]
    raw = body[at + 2:at + 2 + size]
    if len(raw) != size or size % 2:
        return None
    suites = tuple(struct.unpack(f"!{size // 2}H", raw))
    at += 2 + size
    extensions: set[int] = set()
    if at < len(body):
        at += 1 + body[at]  # compression methods
        if at + 2 <= len(body):
            size = struct.unpack_from("!H", body, at)[0]
            extensions = _extension_types(body[at + 2:at + 2 + size])
    renegotiation = _SCSV in suites or _RENEGOTIATION_INFO in extensions
    return _ClientHello(version, random, cookie, suites, record_seq, renegotiation)


@dataclass(frozen=True)
class DtlsHello:
    """A DTLS server's hello: `versions` it serves, `suites` it picks from (client order)."""

    versions: frozenset[int] = frozenset({DTLS_1_2})
    suites: tuple[int, ...] = (PSK_AES_128_CCM_8, PSK_AES_128_CCM, PSK_AES_128_CBC_SHA256)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), compare=False,
                          repr=False)

    def _cookie(self, hello: _ClientHello) -> bytes:
        material = hello.random + struct.pack("!H", hello.version)
        return hmac.new(self.secret, material, hashlib.sha256).digest()[:16]

    def _alert(self, version: int, sequence: int, description: int) -> bytes:
        return _dtls_record(_ALERT, version, sequence, bytes([2, description]))

    def answer(self, request: bytes) -> bytes | None:
        hello = _client_hello(request)
        if hello is None:
            return None
        cookie = self._cookie(hello)
        if not hmac.compare_digest(hello.cookie, cookie):
            verify = struct.pack("!H", DTLS_1_0) + bytes([len(cookie)]) + cookie
            return _dtls_record(_HANDSHAKE, DTLS_1_0, hello.record_seq,
                                _dtls_handshake(_HELLO_VERIFY, 0, verify))
        # DTLS version numbers count down: 1.2 (0xFEFD) is newer than 1.0 (0xFEFF).
        usable = [v for v in self.versions if v >= hello.version]
        if not usable:
            return self._alert(DTLS_1_0, 1, PROTOCOL_VERSION)
        version = min(usable)
        allowed = [s for s in self.suites if version == DTLS_1_2 or s in _PRE_12_SUITES]
        suite = next((s for s in hello.suites if s in allowed), None)
        if suite is None:
            return self._alert(version, 1, HANDSHAKE_FAILURE)
        server_hello = (struct.pack("!H", version) + secrets.token_bytes(32) + b"\x00"
                        + struct.pack("!HB", suite, 0))
        if hello.secure_renegotiation:  # an empty renegotiation_info, as RFC 5746 asks
            server_hello += struct.pack("!HHHB", 5, _RENEGOTIATION_INFO, 1, 0)
        return (_dtls_record(_HANDSHAKE, version, 1,
                             _dtls_handshake(_SERVER_HELLO, 1, server_hello))
                + _dtls_record(_HANDSHAKE, version, 2,
                               _dtls_handshake(_SERVER_HELLO_DONE, 2, b"")))
