"""DTLS on CoAPS endpoints: which versions a server accepts and which suite it picks.

No DTLS library and no credentials are needed for that: the probe builds ClientHello messages
itself, answers a HelloVerifyRequest with its cookie (over the same local port: servers bind the
cookie to the client's address and port), reads the ServerHello or the alert, and then ends the
handshake with a fatal `user_canceled` alert so the server drops its state at once (a
single-client server such as `openssl s_server` would otherwise wait for the rest of the
handshake). Each hello offers PSK, ECDHE-ECDSA, ECDHE-RSA, DHE-RSA and RSA suites, so a PSK
server and a certificate server both answer. A hello (the first, or the one with the cookie)
that draws nothing by half the timeout is retransmitted as RFC 6347 4.2.4 asks, within the same
wait, so one lost datagram decides nothing; every ClientHello sent counts in the evidence
(`client_hellos`).

Collectors: `handshake(ctx, port, offer)` (one hello; `discover`, discovery's DTLS probe, sends
the DTLS 1.2 one). `survey_endpoint` asks an endpoint with DTLS 1.2 and DTLS 1.0 hellos, and,
when the server picked a PSK suite, with a DTLS 1.2 hello without PSK suites to learn whether it
serves anything else; `probe.protocols.dtls.collectors.dtls_survey` runs it on every DTLS
endpoint discovery found (and the port after each cleartext CoAP port, CoAPS's convention).

A server may take the cookie exchange and then fall silent: libcoap over GnuTLS does so when the
first suite a hello offers needs credentials it lacks (a certificate for ECDHE-ECDSA), even
though a PSK suite follows. Such a hello decides nothing, so the version is asked again with PSK
suites only, then with certificate suites only; a version still undecided stays undecided (the
check says `error`, never that the version is refused).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from probe.context import Datagrams, DeviceContext, UdpConversation
from probe.observe.udp import UdpService, judge

DTLS_1_0, DTLS_1_2 = 0xFEFF, 0xFEFD
VERSIONS = {0xFEFF: "DTLS 1.0", 0xFEFD: "DTLS 1.2", 0xFEFC: "DTLS 1.3"}
CONTENT_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}
HANDSHAKE, ALERT = 22, 21
CLIENT_HELLO, SERVER_HELLO, HELLO_VERIFY_REQUEST = 1, 2, 3
HANDSHAKE_TYPES = {1: "client_hello", 2: "server_hello", 3: "hello_verify_request",
                   11: "certificate", 12: "server_key_exchange", 13: "certificate_request",
                   14: "server_hello_done"}
ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
          22: "record_overflow", 40: "handshake_failure", 42: "bad_certificate",
          43: "unsupported_certificate", 47: "illegal_parameter", 48: "unknown_ca",
          49: "access_denied", 50: "decode_error", 51: "decrypt_error", 70: "protocol_version",
          71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback",
          90: "user_canceled", 109: "missing_extension", 110: "unsupported_extension",
          112: "unrecognized_name", 115: "unknown_psk_identity"}
FATAL, USER_CANCELED = 2, 90
RECORD_HEADER, HANDSHAKE_HEADER = 13, 12

# The suites offered, by IANA name, in the order offered: CoAP's mandatory suites first
# (RFC 7252 9.1.3: TLS_PSK_WITH_AES_128_CCM_8 and TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8).
SUITES: dict[int, str] = {
    0xC0AE: "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
    0xC0A8: "TLS_PSK_WITH_AES_128_CCM_8",
    0xC0AC: "TLS_ECDHE_ECDSA_WITH_AES_128_CCM",
    0xC0A4: "TLS_PSK_WITH_AES_128_CCM",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAC: "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0x00A8: "TLS_PSK_WITH_AES_128_GCM_SHA256",
    0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    0xC037: "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256",
    0x00AE: "TLS_PSK_WITH_AES_128_CBC_SHA256",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256",
    0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC035: "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA",
    0x008C: "TLS_PSK_WITH_AES_128_CBC_SHA",
    0x008D: "TLS_PSK_WITH_AES_256_CBC_SHA",
    0x0033: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
}
# DTLS 1.0 has no AEAD and no SHA-256 PRF suites: offer the CBC-SHA ones only.
DTLS_1_0_SUITES = (0xC009, 0xC00A, 0xC013, 0xC014, 0xC035, 0x008C, 0x008D, 0x0033, 0x002F,
                   0x0035)


def is_psk(suite: int) -> bool:
    return "_PSK_" in SUITES.get(suite, "")


Offer = Literal["dtls1.2", "dtls1.2-psk", "dtls1.2-certificate", "dtls1.0", "dtls1.0-psk",
                "dtls1.0-certificate"]
OFFERS: dict[Offer, tuple[int, tuple[int, ...]]] = {
    "dtls1.2": (DTLS_1_2, tuple(SUITES)),
    "dtls1.2-psk": (DTLS_1_2, tuple(s for s in SUITES if is_psk(s))),
    "dtls1.2-certificate": (DTLS_1_2, tuple(s for s in SUITES if not is_psk(s))),
    "dtls1.0": (DTLS_1_0, DTLS_1_0_SUITES),
    "dtls1.0-psk": (DTLS_1_0, tuple(s for s in DTLS_1_0_SUITES if is_psk(s))),
    "dtls1.0-certificate": (DTLS_1_0, tuple(s for s in DTLS_1_0_SUITES if not is_psk(s))),
}
RETRIES: dict[Offer, tuple[Offer, ...]] = {
    "dtls1.2": ("dtls1.2-psk", "dtls1.2-certificate"),
    "dtls1.0": ("dtls1.0-psk", "dtls1.0-certificate"),
}
"""The narrower hellos that ask a version again when the full offer decided nothing."""
_GROUPS = (0x001D, 0x0017, 0x0018)  # x25519, secp256r1, secp384r1
_SIGNATURE_ALGORITHMS = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0203, 0x0201)


def _u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def vector(body: bytes, size: int) -> bytes:
    return len(body).to_bytes(size, "big") + body


def _extension(kind: int, body: bytes) -> bytes:
    return _u16(kind) + vector(body, 2)


def record(content_type: int, version: int, sequence: int, body: bytes, epoch: int = 0) -> bytes:
    """One DTLS record (RFC 6347 4.1)."""
    return (bytes([content_type]) + _u16(version) + _u16(epoch) + sequence.to_bytes(6, "big")
            + vector(body, 2))


def handshake_message(kind: int, message_seq: int, body: bytes) -> bytes:
    """One unfragmented DTLS handshake message (RFC 6347 4.2.2)."""
    size = len(body).to_bytes(3, "big")
    return bytes([kind]) + size + _u16(message_seq) + b"\x00\x00\x00" + size + body


def hello_message(version: int, suites: tuple[int, ...], random: bytes, cookie: bytes = b"",
                  message_seq: int = 0) -> bytes:
    """A ClientHello handshake message: `version` as the highest version, `suites` in that
    order."""
    extensions = (_extension(0x000A, vector(b"".join(map(_u16, _GROUPS)), 2))
                  + _extension(0x000B, b"\x01\x00")
                  + _extension(0x000D, vector(b"".join(map(_u16, _SIGNATURE_ALGORITHMS)), 2))
                  + _extension(0x0017, b"") + _extension(0xFF01, b"\x00"))
    body = (_u16(version) + random + vector(b"", 1) + vector(cookie, 1)
            + vector(b"".join(map(_u16, suites)), 2) + vector(b"\x00", 1)
            + vector(extensions, 2))
    return handshake_message(CLIENT_HELLO, message_seq, body)


def hello_record(message: bytes, sequence: int) -> bytes:
    """A ClientHello message in the record numbered `sequence`; the record layer says DTLS 1.0
    on a first flight, whatever the hello offers."""
    return record(HANDSHAKE, DTLS_1_0, sequence, message)


@dataclass(frozen=True)
class Record:
    content_type: int
    version: int
    body: bytes


def records(datagram: bytes) -> Iterator[Record]:
    """The complete DTLS records of a datagram; stops at the first one that is not."""
    offset = 0
    while offset + RECORD_HEADER <= len(datagram):
        content_type = datagram[offset]
        version = int.from_bytes(datagram[offset + 1:offset + 3], "big")
        length = int.from_bytes(datagram[offset + 11:offset + 13], "big")
        end = offset + RECORD_HEADER + length
        if content_type not in CONTENT_TYPES or version not in VERSIONS or end > len(datagram):
            return
        yield Record(content_type, version, datagram[offset + RECORD_HEADER:end])
        offset = end


@dataclass(frozen=True)
class ServerMessage:
    """What decides a handshake attempt: a handshake message or an alert from the server."""

    record: Record
    handshake: int | None = None
    cookie: bytes = b""
    version: int | None = None
    suite: int | None = None
    alert: int | None = None
    alert_level: int | None = None


def _handshake(rec: Record) -> ServerMessage:
    kind = rec.body[0]
    body = rec.body[HANDSHAKE_HEADER:]
    if kind == HELLO_VERIFY_REQUEST and len(body) >= 3:
        return ServerMessage(rec, kind, cookie=body[3:3 + body[2]],
                             version=int.from_bytes(body[:2], "big"))
    if kind == SERVER_HELLO and len(body) >= 35 and len(body) >= 35 + body[34] + 2:
        at = 35 + body[34]
        return ServerMessage(rec, kind, version=int.from_bytes(body[:2], "big"),
                             suite=int.from_bytes(body[at:at + 2], "big"))
    return ServerMessage(rec, kind)


def server_messages(datagrams: tuple[bytes, ...]) -> list[ServerMessage]:
    """The epoch-0 handshake messages and alerts of a server flight, in order."""
    found = []
    for datagram in datagrams:
        for rec in records(datagram):
            if rec.content_type == HANDSHAKE and len(rec.body) >= HANDSHAKE_HEADER:
                found.append(_handshake(rec))
            elif rec.content_type == ALERT and len(rec.body) == 2:
                found.append(ServerMessage(rec, alert=rec.body[1], alert_level=rec.body[0]))
    return found


def alert_name(code: int) -> str:
    return ALERTS.get(code, f"alert {code}")


Outcome = Literal["server_hello", "alert", "hello_verify_request", "other", "no_answer",
                  "not_dtls"]


@dataclass(frozen=True)
class Handshake:
    """How a server answered one ClientHello (after its HelloVerifyRequest, if it sent one)."""

    port: int
    offer: str
    offered_version: int
    outcome: Outcome
    replies: tuple[bytes, ...] = ()
    """Every datagram of the server's first answer, as received."""
    cookie: bool = False
    """The server sent a HelloVerifyRequest and the hello was repeated with its cookie."""
    decided_by: ServerMessage | None = None
    sent: int = 1
    """ClientHello records sent, retransmissions included (one to four)."""

    @property
    def answered(self) -> bool:
        return bool(self.replies)

    @property
    def version(self) -> int | None:
        return self.decided_by.version if self.outcome == "server_hello" and \
            self.decided_by is not None else None

    @property
    def suite(self) -> int | None:
        return self.decided_by.suite if self.decided_by is not None else None

    @property
    def accepted(self) -> bool:
        """The server agreed to the offered version."""
        return self.outcome == "server_hello" and self.version == self.offered_version

    @property
    def decided(self) -> bool:
        """The server accepted or refused this hello (a ServerHello or an alert)."""
        return self.outcome in ("server_hello", "alert")

    @property
    def alert(self) -> str | None:
        message = self.decided_by
        if message is None or message.alert is None:
            return None
        return alert_name(message.alert)

    def summary(self) -> dict[str, object]:
        """The evidence: what was offered and what came back."""
        out: dict[str, object] = {"offered": VERSIONS[self.offered_version],
                                  "outcome": self.outcome, "hello_verify_request": self.cookie,
                                  "client_hellos": self.sent}
        if self.version is not None:
            out["version"] = VERSIONS.get(self.version, hex(self.version))
        if self.outcome == "server_hello" and self.suite is not None:
            out["suite"] = SUITES.get(self.suite, f"0x{self.suite:04X}")
        if self.alert is not None:
            out["alert"] = self.alert
        return out

    def discovery(self) -> tuple[str, dict[str, object]] | None:
        """How discovery describes the endpoint (None: no DTLS record came back)."""
        message = self.decided_by
        if message is None:
            return None
        rec = message.record
        version = VERSIONS[rec.version]
        evidence: dict[str, object] = {"record": CONTENT_TYPES[rec.content_type],
                                       "version": version, "client_hellos": self.sent}
        if message.alert is not None:
            evidence["alert"] = message.alert
            what = f"alert {alert_name(message.alert)}"
        else:
            what = HANDSHAKE_TYPES.get(message.handshake or 0, f"type {message.handshake}")
            evidence["handshake"] = what
            if message.handshake == SERVER_HELLO and message.suite is not None:
                evidence["suite"] = SUITES.get(message.suite, f"0x{message.suite:04X}")
                what += f" ({evidence['suite']})"
        return f"{version} {what} to a {VERSIONS[self.offered_version]} ClientHello", evidence


def _decide(port: int, offer: str, version: int, replies: tuple[bytes, ...],
            flight: tuple[bytes, ...], cookie: bool, sent: int) -> Handshake:
    messages = server_messages(flight)
    for message in messages:
        if message.alert is not None:
            return Handshake(port, offer, version, "alert", replies, cookie, message, sent)
        if message.handshake == SERVER_HELLO and message.suite is not None:
            return Handshake(port, offer, version, "server_hello", replies, cookie, message,
                             sent)
    if messages:
        last = messages[-1]
        outcome: Outcome = "hello_verify_request" \
            if last.handshake == HELLO_VERIFY_REQUEST else "other"
        return Handshake(port, offer, version, outcome, replies, cookie, last, sent)
    return Handshake(port, offer, version, "not_dtls", replies, cookie, sent=sent)


MAX_STALE = 4
"""Repeated HelloVerifyRequests passed over while waiting for the answer to one hello."""


def _repeats(datagram: bytes, cookie: bytes) -> bool:
    """Whether `datagram` holds nothing but a HelloVerifyRequest carrying `cookie`: a late
    answer to the retransmission of the hello before, not an answer to the one with it."""
    messages = server_messages((datagram,))
    return bool(cookie) and bool(messages) and all(
        m.handshake == HELLO_VERIFY_REQUEST and m.cookie == cookie for m in messages)


class _Flight:
    """The client's side of one handshake on one conversation.

    Every record gets the next record sequence number, a retransmission too (RFC 6347 4.1
    numbers records, not messages, and a server's replay window drops a number it has seen);
    a retransmitted hello keeps its message bytes, message_seq included (RFC 6347 4.2.2).
    """

    def __init__(self, ctx: DeviceContext, conversation: UdpConversation) -> None:
        self._ctx = ctx
        self._conversation = conversation
        self.sequence = 0
        self.hellos = 0
        """ClientHello records sent so far."""

    async def _send(self, message: bytes) -> None:
        await self._conversation.send(hello_record(message, self.sequence))
        self.sequence += 1
        self.hellos += 1

    async def _answer(self, until: float, repeated: bytes) -> Datagrams:
        """What came back by `until`, the datagrams that only repeat the HelloVerifyRequest
        with the cookie `repeated` passed over (the wait goes on after them)."""
        loop = asyncio.get_running_loop()
        got = Datagrams(())
        for _ in range(MAX_STALE + 1):
            got = await self._conversation.receive(wait=max(until - loop.time(), 0.0))
            fresh = tuple(d for d in got.replies if not _repeats(d, repeated))
            if fresh or not got.replies or loop.time() >= until:
                return Datagrams(fresh, got.refused, got.truncated)
        return Datagrams((), got.refused, got.truncated)

    async def hello(self, message: bytes, repeated: bytes = b"") -> Datagrams:
        """Send the ClientHello `message` and wait up to the timeout for the answer; when
        nothing at all (no datagram, no ICMP refusal) came back by half of it, send the same
        message again (RFC 6347 4.2.4) and wait out the rest."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ctx.timeout
        await self._send(message)
        got = await self._answer(loop.time() + self._ctx.timeout / 2, repeated)
        if got.answered or got.refused or loop.time() >= deadline:
            return got
        await self._send(message)
        return await self._answer(deadline, repeated)


async def handshake(ctx: DeviceContext, port: int, offer: Offer) -> Handshake:
    """Collector: the server's answer on `port` to the ClientHello `offer` (see OFFERS).

    The hello, and the hello with the cookie, are each sent once more when nothing came back
    by half the timeout (see `_Flight.hello`): one lost datagram, the hello or the server's
    answer, does not read as "no DTLS endpoint" or as a version left undecided.
    """
    version, suites = OFFERS[offer]
    random = secrets.token_bytes(32)
    async with ctx.udp_conversation(port) as conversation:
        flight = _Flight(ctx, conversation)
        first = await flight.hello(hello_message(version, suites, random))
        if not first.answered:
            return Handshake(port, offer, version, "no_answer", sent=flight.hellos)
        answer, cookie = first.replies, False
        verify = next((m for m in server_messages(first.replies)
                       if m.handshake == HELLO_VERIFY_REQUEST), None)
        if verify is not None:
            second = await flight.hello(
                hello_message(version, suites, random, verify.cookie, message_seq=1),
                repeated=verify.cookie)
            cookie = True
            if second.answered:
                answer = second.replies
        result = _decide(port, offer, version, first.replies, answer, cookie, flight.hellos)
        if result.outcome == "server_hello":
            abort = record(ALERT, version, flight.sequence, bytes([FATAL, USER_CANCELED]))
            await conversation.send(abort)
        return result


async def discover(ctx: DeviceContext, port: int) -> UdpService | None:
    """Discovery's DTLS probe (`probe.observe.discovery`): what a DTLS 1.2 hello on `port`
    drew, or None when nothing answered."""
    hello = await ctx.observe(handshake, port, "dtls1.2")
    if not hello.answered:
        return None
    described = hello.discovery()
    if described is None:
        return judge(port, "dtls", hello.replies, lambda data: None)
    detail, evidence = described
    return UdpService(port, "dtls", detail,
                      {**evidence, "reply_bytes": sum(map(len, hello.replies))})


@dataclass(frozen=True)
class DtlsEndpoint:
    port: int
    dtls12: Handshake
    """The DTLS 1.2 hello that decided the version (the full offer, or the narrower one asked
    after it decided nothing); the full offer when none did."""
    dtls10: Handshake
    """Likewise for DTLS 1.0."""
    certificate: Handshake | None = None
    """The DTLS 1.2 hello without PSK suites, sent when the server chose a PSK suite."""
    undecided: tuple[Handshake, ...] = ()
    """The hellos the server took the cookie exchange for and then left unanswered."""

    @property
    def answers_dtls12(self) -> bool:
        """The server takes part in a DTLS 1.2 handshake (a cookie exchange, a ServerHello)."""
        return self.dtls12.accepted or self.dtls12.outcome == "hello_verify_request"

    @property
    def dtls10_unknown(self) -> bool:
        """Whether DTLS 1.0 is accepted is unknown: every DTLS 1.0 hello got a cookie exchange
        and then nothing."""
        return self.dtls10.outcome == "hello_verify_request"

    @property
    def psk_only(self) -> bool | None:
        """Whether the server serves PSK suites only (None: it chose no suite)."""
        if not self.dtls12.accepted or self.dtls12.suite is None:
            return None
        if not is_psk(self.dtls12.suite):
            return False
        return self.certificate is not None and not self.certificate.accepted


async def _version(ctx: DeviceContext, port: int, offer: Offer) -> list[Handshake]:
    """The hellos of one version, in order: the full offer, then, while the server takes the
    cookie exchange and decides nothing, the narrower offers (RETRIES)."""
    asked = [await ctx.observe(handshake, port, offer)]
    for narrower in RETRIES[offer]:
        if asked[-1].outcome != "hello_verify_request":
            break
        asked.append(await ctx.observe(handshake, port, narrower))
    return asked


def _deciding(asked: list[Handshake]) -> Handshake:
    return next((hello for hello in asked if hello.decided), asked[0])


async def survey_endpoint(ctx: DeviceContext, port: int) -> DtlsEndpoint:
    """The endpoint on `port` asked with DTLS 1.2 and DTLS 1.0 hellos (and without PSK suites
    when it picked one)."""
    # One after the other: a device may serve one handshake at a time.
    asked12 = await _version(ctx, port, "dtls1.2")
    asked10 = await _version(ctx, port, "dtls1.0")
    dtls12, dtls10 = _deciding(asked12), _deciding(asked10)
    certificate = None
    if dtls12.accepted and dtls12.suite is not None and is_psk(dtls12.suite):
        certificate = await ctx.observe(handshake, port, "dtls1.2-certificate")
    undecided = tuple(hello for hello in asked12 + asked10
                      if hello.outcome == "hello_verify_request")
    return DtlsEndpoint(port, dtls12, dtls10, certificate, undecided)
