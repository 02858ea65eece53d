"""TLS collectors: the device's TLS endpoints, what their handshakes accept, their certificates
and their known weaknesses.

Endpoints come from discovery (`services`): every port where a TLS handshake succeeded, whatever
runs inside (HTTPS, MQTT over TLS, other); every port discovery could not identify that answers
one raw ClientHello with a ServerHello; and ports that are TLS by convention or by inventory
(443, 8883, `https`, `mqtts`, ...) but accepted a connection and never answered a ClientHello
(those already cost discovery a timeout and are not probed again).

Versions and cipher classes (`tls_handshakes`) are decided by raw ClientHellos
(`probe.protocols.tls.codec`) over `ctx.ask`, one bare connection each, none offering more than
`MAX_OFFER` suites (`offer`: a larger offer is asked in chunks, until one is accepted; it is
refused only when every chunk is): one offer per version; then, at
the highest accepted version below TLS 1.3, the whole class of weak suites, minus whatever the
server picked, until it refuses (k offending suites cost k + 1 handshakes per chunk); at each lower
accepted version, the weak suites not found yet; at TLS 1.2, the suites without forward
secrecy that the weak run has not already seen accepted; and, beside those, one hello at the
highest accepted version up to TLS 1.2 that offers the suite it chose and DEFLATE compression
before null. Two
known flaws are read from these hellos: secure renegotiation (RFC 5746) from whether the
ServerHello to that version's hello (every hello offers renegotiation_info) answers with the
renegotiation_info extension, and TLS compression from the method the DEFLATE hello got.
The certificate chains (`served_chains`) come from three more hellos at the highest version up
to TLS 1.2, read on to the Certificate message (in clear below TLS 1.3), as sslyze's
certificate jobs ask for them. Their validation (`tls_certificates`), and the other known
vulnerabilities (`tls_vulnerabilities`), are `probe.protocols.tls.sslyze_scan`'s: sslyze
runs only on endpoints whose handshakes showed a TLS server, so a silent listener costs no
sslyze time, and gets the certificates only where the hellos cannot (TLS 1.3 only).

The server name sent is the device's `hostname` when the inventory gives one, else none;
connections always go to the device's address.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from probe.context import DeviceContext
from probe.observe.discovery import Services, services
from probe.observe.tcp import service_ports
from probe.protocols.tls.codec import (
    DEFLATE,
    NULL_COMPRESSION,
    RSA_AUTHENTICATED,
    SMALL_OFFER,
    SSL2,
    SSL3,
    TLS10,
    TLS11,
    TLS12,
    TLS13,
    VERSION_NAMES,
    ServerReply,
    catalogue,
    chain_complete,
    chunks,
    classic_suites,
    client_hello,
    non_forward_secret_suites,
    other_certificate_suites,
    parse_reply,
    reply_complete,
    rsa_authenticated_suites,
    served_certificates,
    sslv2_suites,
    suite_name,
    tls13_suites,
    weak_suites,
)
from probe.protocols.tls.ident import PORTS as TLS_PORTS
from probe.stamps import stamp

MAX_REPLY = 32 * 1024
MAX_CHAIN_REPLY = 128 * 1024
"""What a hello whose certificate chain is kept reads at most: the ServerHello and a
Certificate message of up to `MAX_CHAIN`."""
MAX_ROUNDS = 64
"""At most this many handshakes per elimination (a server that keeps picking is cut off)."""
PROTOCOL_VERSION_ALERT = 70
TLS_SERVICE_NAMES = frozenset({"https", "mqtts", "rtsps", "tls", "ssl", "amqps", "wss", "ftps"})
CLASSIC = (SSL3, TLS10, TLS11, TLS12)


@dataclass(frozen=True)
class TlsEndpoint:
    port: int
    protocol: str  # what runs inside: http, mqtt, tls (nothing identified)
    silent: bool  # accepted the connection and never answered during discovery
    detail: str
    client_certificate: str  # "required", "requested" or "" (not asked)

    @property
    def target(self) -> str:
        return f"tcp/{self.port}"


async def tls_endpoints(ctx: DeviceContext) -> tuple[TlsEndpoint, ...]:
    """Collector: the device's TLS endpoints. Discovery's findings, plus every open port it
    could not identify that answers a ClientHello (TLS 1.2, every suite, in chunks) with a
    ServerHello: a server whose handshake the ssl module cannot finish is still a TLS
    endpoint."""
    found: Services = await ctx.observe(services)
    named = service_ports(ctx, udp=False)
    unknown = [i.port for i in found.tcp if i.protocol == "unknown" and not i.silent]
    replies = [reply for reply, _ in await asyncio.gather(
        *(offer(ctx, port, TLS12, classic_suites()) for port in unknown))]
    answered = {port: reply for port, reply in zip(unknown, replies, strict=True)
                if reply.outcome == "hello"}
    out = []
    for ident in found.tcp:
        conventional = ident.port in TLS_PORTS or named.get(ident.port) in TLS_SERVICE_NAMES
        silent = ident.protocol == "unknown" and ident.silent and conventional
        if ident.port in answered:
            out.append(TlsEndpoint(ident.port, "tls", False,
                                   f"{answered[ident.port].describe()} (raw ClientHello)", ""))
            continue
        if not ident.tls and not silent:
            continue
        evidence = ident.evidence
        certificate = ("required" if evidence.get("client_certificate_required") else
                       "requested" if evidence.get("client_certificate_requested") else "")
        protocol = ident.protocol if ident.tls else "tls"
        out.append(TlsEndpoint(ident.port, protocol, silent, ident.detail, certificate))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Raw handshakes: versions and cipher classes
# ---------------------------------------------------------------------------------------------


async def hello(ctx: DeviceContext, port: int, version: int, suites: Sequence[int],
                compression: Sequence[int] = (NULL_COMPRESSION,)) -> ServerReply:
    """Offer `suites` (and the `compression` methods) at `version` on a fresh connection and
    read the first answer."""
    payload = client_hello(version, suites, ctx.device.hostname, compression)
    answer = await _exchange(ctx, port, payload, MAX_REPLY, reply_complete)
    if isinstance(answer, ServerReply):
        return answer
    data, stalled = answer
    return dataclasses.replace(parse_reply(data, timed_out=stalled), offered=len(suites))


async def _exchange(ctx: DeviceContext, port: int, payload: bytes, max_bytes: int,
                    until: Callable[[bytes], bool]) -> tuple[bytes, bool] | ServerReply:
    """`payload` sent on a fresh connection (`ctx.ask`): what came back and whether the
    timeout cut it short, or the answer a failed connection is."""
    try:
        return await ctx.ask(port, payload, max_bytes, until=until)
    except ConnectionRefusedError:
        return ServerReply("refused")
    except (ConnectionError, EOFError):
        return ServerReply("closed")
    except TimeoutError:
        return ServerReply("timeout")
    except OSError:
        return ServerReply("refused")


async def offer(ctx: DeviceContext, port: int, version: int,
                suites: Sequence[int]) -> tuple[ServerReply, int]:
    """Whether the server takes `version` with any of `suites`, asked in `chunks` one after
    the other; the answer and the hellos it cost. The first ServerHello decides; a
    protocol_version alert refuses the version whatever was offered; otherwise the version is
    refused only if every chunk was, and any undecided answer (an alert complaining about the
    hello, no connection, not TLS) leaves it undecided, that answer named."""
    if version == SSL2:
        return await hello(ctx, port, version, suites), 1
    answers: list[ServerReply] = []
    cost = 0
    for chunk in chunks(suites):
        reply, spent = await _ask(ctx, port, version, chunk)
        answers.append(reply)
        cost += spent
        if reply.outcome == "hello" or reply.alert_code == PROTOCOL_VERSION_ALERT:
            return reply, cost
    unsure = [reply for reply in answers if reply.undecided]
    return (unsure or answers)[0], cost


async def _ask(ctx: DeviceContext, port: int, version: int,
               chunk: Sequence[int]) -> tuple[ServerReply, int]:
    """One chunk offered; if the answer is an alert complaining about the hello, the chunk
    again in pieces of `SMALL_OFFER` suites (the same rules as `offer`); the answer and the
    hellos it cost."""
    reply = await hello(ctx, port, version, chunk)
    if not (reply.undecided and reply.outcome == "alert") or len(chunk) <= SMALL_OFFER:
        return reply, 1
    answers: list[ServerReply] = []
    for piece in chunks(chunk, SMALL_OFFER):
        answers.append(await hello(ctx, port, version, piece))
        if answers[-1].outcome == "hello" or answers[-1].alert_code == PROTOCOL_VERSION_ALERT:
            break
    decided = [answer for answer in answers if answer.outcome == "hello"]
    unsure = [answer for answer in answers if answer.undecided]
    return (decided or unsure or answers)[0], 1 + len(answers)


@dataclass(frozen=True)
class Elimination:
    """Suites of one class offered at one version, minus each pick, until a refusal."""

    version: int
    accepted: tuple[tuple[int, int], ...]  # (negotiated version, suite), in pick order
    end: ServerReply  # the answer that ended it
    handshakes: int

    @property
    def complete(self) -> bool:
        return not self.end.undecided


async def eliminate(ctx: DeviceContext, port: int, version: int,
                    suites: Sequence[int]) -> Elimination:
    """`suites` offered at `version` in `chunks`, each eliminated until refused; complete
    only when every chunk ended in a refusal (the first undecided end is the run's end)."""
    accepted: list[tuple[int, int]] = []
    ends: list[ServerReply] = []
    rounds = 0
    for chunk in chunks(suites) if suites else []:
        run = await _eliminate_chunk(ctx, port, version, chunk, MAX_ROUNDS - rounds)
        accepted += run.accepted
        ends.append(run.end)
        rounds += run.handshakes
    unsure = [end for end in ends if end.undecided]
    end = unsure[0] if unsure else ends[-1] if ends else ServerReply("closed")
    return Elimination(version, tuple(accepted), end, rounds)


async def _eliminate_chunk(ctx: DeviceContext, port: int, version: int, suites: Sequence[int],
                           budget: int) -> Elimination:
    """One chunk offered, minus each pick, until a refusal (at most `budget` handshakes)."""
    remaining = list(suites)
    accepted: list[tuple[int, int]] = []
    end = ServerReply("closed")
    rounds = 0
    while remaining and rounds < budget:
        rounds += 1
        end = await hello(ctx, port, version, remaining)
        chosen, negotiated = end.suite, end.version
        if end.outcome != "hello" or negotiated is None or negotiated > version:
            break
        if chosen is None or chosen not in remaining:
            accepted.append((negotiated, chosen or 0))
            end = ServerReply("not-tls")  # picked a suite it was not offered
            break
        accepted.append((negotiated, chosen))
        remaining.remove(chosen)
    else:
        if remaining:
            end = ServerReply("timeout")  # cut off after MAX_ROUNDS picks
    return Elimination(version, tuple(accepted), end, rounds)


@dataclass(frozen=True)
class Handshakes:
    """What one TLS endpoint accepts: versions, weak suites, suites without forward secrecy,
    compression."""

    endpoint: TlsEndpoint
    versions: Mapping[int, ServerReply] = field(default_factory=dict)
    weak: tuple[Elimination, ...] = ()
    forward_secrecy: Elimination | None = None
    compression: ServerReply | None = None  # the answer to the DEFLATE hello (`classic`)
    handshakes: int = 0

    @property
    def accepted(self) -> tuple[int, ...]:
        return tuple(v for v, reply in sorted(self.versions.items()) if reply.accepts(v))

    @property
    def undecided(self) -> tuple[int, ...]:
        return tuple(v for v, reply in sorted(self.versions.items()) if reply.undecided)

    @property
    def speaks_tls(self) -> bool:
        return bool(self.accepted)

    @property
    def highest(self) -> int | None:
        return max(self.accepted, default=None)

    @property
    def classic(self) -> int | None:
        """The highest accepted version from SSL 3.0 to TLS 1.2: the one renegotiation and
        compression exist at (None: the endpoint accepts TLS 1.3 or SSL 2.0 only)."""
        return max((v for v in self.accepted if v in CLASSIC), default=None)

    def secure_renegotiation(self) -> bool:
        """Whether the ServerHello at `classic` answered renegotiation_info (RFC 5746). With
        TLS 1.3 only there is no renegotiation at all, which counts as secure (sslyze's
        verdict too)."""
        version = self.classic
        return version is None or self.versions[version].renegotiation_info

    def compression_enabled(self) -> bool | None:
        """Whether the server chose DEFLATE when offered it before null at `classic`: False
        with TLS 1.3 only (it has no compression; sslyze's verdict too), None when the hello
        got no ServerHello."""
        if self.classic is None:
            return False
        reply = self.compression
        if reply is None or reply.outcome != "hello":
            return None
        return reply.compression != NULL_COMPRESSION

    def offending(self) -> list[tuple[int, int]]:
        """Every accepted weak suite as (version, suite), each once."""
        seen: dict[tuple[int, int], None] = {}
        reply = self.versions.get(SSL2)
        if reply is not None and reply.accepts(SSL2):
            seen.update({(SSL2, code): None for code in reply.sslv2_suites})
        for run in self.weak:
            seen.update({pick: None for pick in run.accepted})
        return list(seen)

    def without_forward_secrecy(self) -> list[tuple[int, int]]:
        return list(self.forward_secrecy.accepted) if self.forward_secrecy else []

    def rsa_key_exchange(self) -> bool | None:
        """Whether a TLS 1.2 suite with RSA key exchange is accepted (None: not known)."""
        run = self.forward_secrecy
        if run is None:
            return None
        if any(catalogue()[code].rsa_key_exchange for _, code in run.accepted
               if code in catalogue()):
            return True
        return False if run.complete else None


def _version_offer(version: int) -> Sequence[int]:
    if version == SSL2:
        return sslv2_suites()
    return tls13_suites() if version == TLS13 else classic_suites()


async def endpoint_handshakes(ctx: DeviceContext, port: int) -> Handshakes:
    """Collector (per port): versions first (TLS 1.2 and 1.3, then the legacy ones only if the
    endpoint answered at all), then the eliminations and the compression hello (see the
    module's description)."""
    known = {e.port: e for e in await ctx.observe(tls_endpoints)}
    endpoint = known.get(port) or TlsEndpoint(port, "tls", False, "", "")
    if endpoint.silent:
        return Handshakes(endpoint)

    costs: dict[int, int] = {}

    async def probe(version: int) -> tuple[int, ServerReply]:
        reply, costs[version] = await offer(ctx, port, version, _version_offer(version))
        return version, reply

    versions = dict(await asyncio.gather(probe(TLS12), probe(TLS13)))
    if all(reply.undecided for reply in versions.values()):
        return Handshakes(endpoint, versions, handshakes=sum(costs.values()))
    versions.update(await asyncio.gather(*(probe(v) for v in (SSL2, SSL3, TLS10, TLS11))))
    count = sum(costs.values())
    accepted = [v for v in reversed(CLASSIC) if versions[v].accepts(v)]
    if not accepted:
        return Handshakes(endpoint, versions, handshakes=count)
    chosen = [versions[accepted[0]].suite or 0]
    head, compression = await asyncio.gather(
        eliminate(ctx, port, accepted[0], weak_suites()),
        hello(ctx, port, accepted[0], chosen, (DEFLATE, NULL_COMPRESSION)))
    weak, forward = await asyncio.gather(
        _lower_versions(ctx, port, accepted[1:], head),
        _forward_secrecy(ctx, port, head) if accepted[0] == TLS12 else _nothing())
    count += 1 + sum(run.handshakes for run in (*weak, *([forward] if forward else [])))
    return Handshakes(endpoint, versions, weak, forward, compression, count)


async def _lower_versions(ctx: DeviceContext, port: int, versions: Sequence[int],
                          head: Elimination) -> tuple[Elimination, ...]:
    """The weak suites at each lower accepted version, offering only those no higher version
    accepted already (each suite is named once, at the highest version that takes it)."""
    runs = [head]
    found = {code for _, code in head.accepted}
    for version in versions:
        run = await eliminate(ctx, port, version, [c for c in weak_suites() if c not in found])
        found |= {code for _, code in run.accepted}
        runs.append(run)
    return tuple(runs)


async def _forward_secrecy(ctx: DeviceContext, port: int, weak12: Elimination) -> Elimination:
    """The TLS 1.2 suites without forward secrecy: those the weak run already saw accepted,
    plus an elimination over the rest."""
    seen = [(v, code) for v, code in weak12.accepted
            if code in catalogue() and not catalogue()[code].forward_secret]
    skip = {code for _, code in seen}
    run = await eliminate(ctx, port, TLS12,
                          [c for c in non_forward_secret_suites() if c not in skip])
    return Elimination(TLS12, (*seen, *run.accepted), run.end, run.handshakes)


async def _nothing() -> None:
    return None


async def tls_handshakes(ctx: DeviceContext) -> tuple[Handshakes, ...]:
    """Collector: `endpoint_handshakes` for every TLS endpoint of the device."""
    endpoints = await ctx.observe(tls_endpoints)
    return tuple(await asyncio.gather(*(ctx.observe(endpoint_handshakes, e.port)
                                        for e in endpoints)))


def version_name(version: int) -> str:
    return VERSION_NAMES.get(version, f"0x{version:04X}")


def pick_evidence(picks: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    out = []
    for version, code in picks:
        entry: dict[str, Any] = {"version": version_name(version), "suite": suite_name(code)}
        suite = catalogue().get(code)
        if suite is not None and suite.weak_classes:
            entry["classes"] = list(suite.weak_classes)
        out.append(entry)
    return out


# ---------------------------------------------------------------------------------------------
# Certificate chains from raw hellos
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedChain:
    """One certificate chain a hello got, as served (DER, leaf first)."""

    certificates: tuple[bytes, ...]
    server_name: bool  # the hello sent a server name


async def chain_hello(ctx: DeviceContext, port: int, version: int, suites: Sequence[int],
                      server_name: str | None) -> tuple[ServerReply, tuple[bytes, ...] | None]:
    """`hello` with `server_name` (or none), read on past the ServerHello to the message that
    follows it: the answer, and the certificates it served (see `served_certificates`; None
    but for a ServerHello)."""
    payload = client_hello(version, suites, server_name)
    answer = await _exchange(ctx, port, payload, MAX_CHAIN_REPLY, chain_complete)
    if isinstance(answer, ServerReply):
        return answer, None
    data, stalled = answer
    reply = dataclasses.replace(parse_reply(data, timed_out=stalled), offered=len(suites))
    return reply, served_certificates(data) if reply.outcome == "hello" else None


async def _chain_offer(ctx: DeviceContext, port: int, version: int, suites: Sequence[int],
                       server_name: str | None) -> ServedChain | bool | None:
    """`suites` offered at `version` in `chunks` until a ServerHello: its chain; False when
    every chunk was refused or the suite has no certificate (the server serves none to such
    a client); None when the answers decide nothing (an undecided answer, a ServerHello at
    another version or for a suite not offered, a chain cut short)."""
    for chunk in chunks(suites):
        reply, certificates = await chain_hello(ctx, port, version, chunk, server_name)
        if reply.outcome == "hello":
            if reply.version != version or reply.suite not in chunk or certificates is None:
                return None
            return ServedChain(certificates, server_name is not None) if certificates \
                else False
        if reply.undecided:
            return None
        if reply.alert_code == PROTOCOL_VERSION_ALERT:
            return False
    return False


async def served_chains(ctx: DeviceContext, port: int) -> tuple[ServedChain, ...] | None:
    """Collector (per port): the certificate chains the endpoint serves, read from raw hellos
    at the highest version up to TLS 1.2 it accepts (there the Certificate message is in
    clear), as sslyze's certificate jobs ask for them: to a client offering only suites with
    RSA authentication and to one offering only the other suites with a certificate, both
    sending the server name sslyze sends (the device's hostname, else its address), the one
    of the default hello's suite first; and to a client offering every suite without a
    server name. A chain is kept once (by its leaf), marked served with a server name if
    either of the first two got it. None where these hellos cannot stand for sslyze's
    handshakes: an endpoint that accepts TLS 1.3 but not TLS 1.2 (sslyze asks at TLS 1.3 and
    1.2 there), any of the three answers undecided or cut short, or no chain at all."""
    found: Handshakes = await ctx.observe(endpoint_handshakes, port)
    version = found.classic
    if version is None or (found.highest == TLS13 and version != TLS12):
        return None
    default = catalogue().get(found.versions[version].suite or 0)
    order = [rsa_authenticated_suites(), other_certificate_suites()]
    if default is not None and default.key_exchange not in RSA_AUTHENTICATED:
        order.reverse()
    name = device_identity(ctx)
    answers = await asyncio.gather(*(_chain_offer(ctx, port, version, suites, name)
                                     for suites in order),
                                   _chain_offer(ctx, port, version, classic_suites(), None))
    if any(answer is None for answer in answers):
        return None
    chains: dict[bytes, ServedChain] = {}
    for answer in answers:
        if isinstance(answer, ServedChain):
            leaf = answer.certificates[0]
            chains.setdefault(leaf, answer)
    return tuple(chains.values()) or None


# ---------------------------------------------------------------------------------------------
# Certificate facts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeafFacts:
    """What the served leaf certificate says, parsed with `cryptography`."""

    subject: str
    issuer: str
    self_signed: bool
    not_before: dt.datetime
    not_after: dt.datetime
    key_type: str  # RSA, EC, Ed25519, Ed448, DSA, other
    key_bits: int
    curve: str | None
    signature_hash: str | None  # sha256, sha1, md5, ...; None for EdDSA
    names: tuple[str, ...]  # subjectAltName DNS names and IP addresses
    identity: str  # what the certificate must name: the hostname, else the address
    identity_matches: bool
    fingerprint: str  # SHA-256 of the SubjectPublicKeyInfo, hex (fleet.unique-keys)

    def days_left(self, now: dt.datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400

    def evidence(self, now: dt.datetime) -> dict[str, Any]:
        key = f"{self.key_type} {self.key_bits}" + (f" ({self.curve})" if self.curve else "")
        return {
            "subject": self.subject, "issuer": self.issuer, "self_signed": self.self_signed,
            "not_before": stamp(self.not_before), "not_after": stamp(self.not_after),
            "days_left": round(self.days_left(now), 1), "key": key,
            "signature_hash": self.signature_hash, "names": list(self.names),
            "public_key_sha256": self.fingerprint,
        }


def _key(cert: x509.Certificate) -> tuple[str, int, str | None]:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size, None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size, key.curve.name
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256, None
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456, None
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size, None
    return type(key).__name__, 0, None


def _names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    dns = [str(name) for name in san.get_values_for_type(x509.DNSName)]
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return dns, ips


def _dns_match(pattern: str, name: str) -> bool:
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:] and "." in rest
    return pattern == name


def identity_matches(cert: x509.Certificate, identity: str) -> bool:
    """Whether the subjectAltName names `identity` (an IP address, or a DNS name with the
    usual one-label wildcard); the subject CN is not consulted (RFC 9525)."""
    dns, ips = _names(cert)
    try:
        address = ipaddress.ip_address(identity)
    except ValueError:
        return any(_dns_match(pattern, identity) for pattern in dns)
    return any(ipaddress.ip_address(ip) == address for ip in ips)


def leaf_facts(cert: x509.Certificate, identity: str) -> LeafFacts:
    key_type, bits, curve = _key(cert)
    dns, ips = _names(cert)
    digest = cert.signature_hash_algorithm
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return LeafFacts(
        subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
        self_signed=cert.subject == cert.issuer,
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        key_type=key_type, key_bits=bits, curve=curve,
        signature_hash=digest.name if digest is not None else None,
        names=tuple(dns + ips), identity=identity,
        identity_matches=identity_matches(cert, identity),
        fingerprint=hashlib.sha256(spki).hexdigest(),
    )


def device_identity(ctx: DeviceContext) -> str:
    """The name a device certificate must carry: the inventory hostname, else the address."""
    return ctx.device.hostname or ctx.address
