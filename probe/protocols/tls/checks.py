"""TLS checks (27400-6.2): versions, cipher suites, certificates and known flaws of every TLS
endpoint of the device (HTTPS, MQTT over TLS, any other port that answered a ClientHello)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any, TypeVar

from pydantic import Field

from probe.checks.base import CONTROL_COMMUNICATION, Observations, check
from probe.checks.params import CheckParams, NoParams
from probe.model import Finding, Severity, errored, failed, not_applicable, passed, skipped
from probe.protocols.tls.codec import LEGACY_VERSIONS, TLS12, TLS13, suite_name
from probe.protocols.tls.collectors import (
    CLASSIC,
    Handshakes,
    LeafFacts,
    TlsEndpoint,
    pick_evidence,
    tls_endpoints,
    tls_handshakes,
    version_name,
)
from probe.protocols.tls.sslyze_scan import (
    CertificateScan,
    Deployment,
    VulnerabilityScan,
    tls_certificates,
    tls_vulnerabilities,
)
from probe.stamps import stamp

NO_ENDPOINT = "no TLS endpoint: no port of the device answered a TLS handshake"
WEAK_HASHES = frozenset({"md5", "sha1"})
MIN_BITS = {"RSA": 2048, "EC": 256, "Ed25519": 0, "Ed448": 0}

T = TypeVar("T")


class CipherSuitesParams(CheckParams):
    require_forward_secrecy: bool = True
    """Whether a TLS 1.2 suite without forward secrecy fails the check."""


class ValidityParams(CheckParams):
    min_days_remaining: Annotated[float, Field(ge=0)] = 30
    """The fewest days a certificate may have left before it expires."""


def _endpoint(endpoint: TlsEndpoint) -> dict[str, Any]:
    return {"port": endpoint.port, "protocol": endpoint.protocol}


def _silent(endpoint: TlsEndpoint) -> Finding:
    return errored(f"{endpoint.target} accepted the connection and never answered a TLS "
                   "ClientHello during discovery, so nothing about its TLS could be decided",
                   endpoint.target, reason="silent", **_endpoint(endpoint))


def _no_handshake(found: Handshakes) -> Finding | None:
    """The `error` finding for an endpoint whose handshakes decided nothing, else None."""
    endpoint = found.endpoint
    if endpoint.silent:
        return _silent(endpoint)
    if found.speaks_tls:
        return None
    answers = {version_name(v): r.describe() for v, r in found.versions.items()}
    return errored(f"{endpoint.target} completed a TLS handshake during discovery but none of "
                   "the probe's ClientHellos was accepted", endpoint.target, reason="no-hello",
                   answers=answers, **_endpoint(endpoint))


def _unanswered(found: Handshakes, versions: Iterable[int]) -> dict[str, str]:
    """Those of `versions` the hellos left undecided (an alert complaining about the hello, an
    answer that is not TLS, a connection refused mid-scan), each with the answer it got.
    Silence is no acceptance: a hello left unanswered counts as refused."""
    return {version_name(v): found.versions[v].describe() for v in found.undecided
            if v in versions and found.versions[v].outcome != "timeout"}


def _per_endpoint(items: Sequence[T], judge: Callable[[T], Finding]) -> list[Finding]:
    return [judge(item) for item in items] or [not_applicable(NO_ENDPOINT)]


@check(
    "tls.protocol-versions",
    applies_to=("tls",),
    title="Only TLS 1.2 and 1.3 are accepted",
    control=CONTROL_COMMUNICATION,
    severity=Severity.HIGH,
    needs=(tls_handshakes,),
    remediation="Disable SSL 2.0, SSL 3.0, TLS 1.0 and TLS 1.1 on every TLS endpoint (for "
                "OpenSSL-based servers: MinProtocol = TLSv1.2; nginx: ssl_protocols TLSv1.2 "
                "TLSv1.3; mosquitto: tls_version tlsv1.2) and keep TLS 1.2 or 1.3 enabled.",
)
def protocol_versions(obs: Observations, params: NoParams) -> Iterable[Finding]:
    """Pass: every TLS endpoint refuses SSL 2.0, SSL 3.0, TLS 1.0 and TLS 1.1 and accepts TLS
    1.2 or 1.3 (a hello left unanswered counts as refused).
    Fail: a legacy version is accepted, or neither TLS 1.2 nor 1.3 is.
    Not applicable: no port answered a TLS handshake.
    Error: a legacy version got an answer that decides nothing (an alert complaining about the
    hello, something not TLS), the endpoint never answered a ClientHello, or none of the probe's
    hellos was accepted."""
    return _per_endpoint(obs[tls_handshakes], _versions)


def _versions(found: Handshakes) -> Finding:
    problem = _no_handshake(found)
    if problem is not None:
        return problem
    target = found.endpoint.target
    accepted = [version_name(v) for v in found.accepted]
    evidence: dict[str, Any] = {
        **_endpoint(found.endpoint), "accepted": accepted,
        "answers": {version_name(v): r.describe() for v, r in sorted(found.versions.items())},
        "handshakes": found.handshakes,
    }
    legacy = [version_name(v) for v in found.accepted if v in LEGACY_VERSIONS]
    if legacy:
        return failed(f"{target} accepts {', '.join(legacy)}", target, legacy=legacy,
                      **evidence)
    undecided = _unanswered(found, LEGACY_VERSIONS)
    if undecided:
        what = ", ".join(f"{name} ({answer})" for name, answer in undecided.items())
        return errored(f"{target}: no decisive answer to {what}", target,
                       reason="undecided", undecided=list(undecided), **evidence)
    if not {TLS12, TLS13} & set(found.accepted):
        return failed(f"{target} accepts neither TLS 1.2 nor TLS 1.3", target, **evidence)
    return passed(f"{target} accepts only {' and '.join(accepted)}", target, **evidence)


@check(
    "tls.cipher-suites",
    applies_to=("tls",),
    title="No weak cipher suite is accepted",
    control=CONTROL_COMMUNICATION,
    severity=Severity.HIGH,
    needs=(tls_handshakes,),
    remediation="Restrict the server's cipher suites to AEAD suites with ephemeral (EC)DHE key "
                "exchange (TLS 1.2: ECDHE-ECDSA/RSA with AES-GCM or ChaCha20-Poly1305; TLS 1.3 "
                "suites are all fine); remove NULL, anonymous, EXPORT, RC4, DES, 3DES and "
                "MD5-based suites and static RSA key exchange.",
    params=CipherSuitesParams,
)
def cipher_suites(obs: Observations, params: CipherSuitesParams) -> Iterable[Finding]:
    """Pass: no accepted suite is NULL, anonymous, EXPORT, RC4, DES, 3DES or MD5-MAC, and (with
    `require_forward_secrecy`) every accepted TLS 1.2 suite has ECDHE or DHE key exchange.
    Fail: a weak suite, or a TLS 1.2 suite without forward secrecy, is accepted; the finding
    names them.
    Not applicable: no TLS endpoint.
    Error: a version's answer decided nothing, or the weak-suite handshakes did not finish, so
    the suites are unknown."""
    require = bool(params.require_forward_secrecy)
    return _per_endpoint(obs[tls_handshakes], lambda found: _suites(found, require))


def _suites(found: Handshakes, require_forward_secrecy: bool) -> Finding:
    problem = _no_handshake(found)
    if problem is not None:
        return problem
    target = found.endpoint.target
    chosen = {version_name(v): suite_name(r.suite or 0) for v, r in sorted(found.versions.items())
              if r.accepts(v) and r.suite is not None}
    offending = found.offending()
    plain = found.without_forward_secrecy() if require_forward_secrecy else []
    evidence: dict[str, Any] = {
        **_endpoint(found.endpoint), "chosen": chosen, "handshakes": found.handshakes,
        "require_forward_secrecy": require_forward_secrecy,
    }
    if offending or plain:
        parts = []
        if offending:
            names = sorted({suite_name(code) for _, code in offending})
            parts.append(f"{len(names)} weak suite(s): {', '.join(names)}")
        if plain:
            names = sorted({suite_name(code) for _, code in plain})
            parts.append(f"{len(names)} TLS 1.2 suite(s) without forward secrecy: "
                         f"{', '.join(names)}")
        return failed(f"{target} accepts " + "; ".join(parts), target,
                      offending_suites=pick_evidence(offending),
                      without_forward_secrecy=pick_evidence(plain), **evidence)
    unanswered = _unanswered(found, CLASSIC)
    if unanswered:
        what = ", ".join(f"{name} ({answer})" for name, answer in unanswered.items())
        return errored(f"{target}: no decisive answer to {what}, so its suites are unknown",
                       target, reason="undecided", undecided=list(unanswered), **evidence)
    runs = [*found.weak, *([found.forward_secrecy] if found.forward_secrecy and
                           require_forward_secrecy else [])]
    unfinished = [run for run in runs if not run.complete]
    if unfinished:
        where = ", ".join(f"{version_name(r.version)} ({r.end.describe()})" for r in unfinished)
        return errored(f"{target}: the weak-suite handshakes did not finish: {where}", target,
                       reason="undecided", **evidence)
    what = "no weak suite" + (" and only forward-secret TLS 1.2 suites"
                              if require_forward_secrecy and found.forward_secrecy else "")
    return passed(f"{target} accepts {what}", target, **evidence)


def _certificates(obs: Observations,
                  judge: Callable[[CertificateScan], Finding]) -> list[Finding]:
    endpoints = {e.port: e for e in obs[tls_endpoints]}

    def one(scan: CertificateScan) -> Finding:
        endpoint = endpoints[scan.port]
        if endpoint.silent:
            return _silent(endpoint)
        if scan.error is not None:
            return errored(f"{endpoint.target}: the certificate could not be obtained: "
                           f"{scan.error}", endpoint.target, reason="tls",
                           **_endpoint(endpoint))
        return judge(scan)

    return _per_endpoint(obs[tls_certificates], one)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@check(
    "tls.certificate-validity",
    applies_to=("tls",),
    title="The certificate is valid and not about to expire",
    control=CONTROL_COMMUNICATION,
    severity=Severity.HIGH,
    needs=(tls_endpoints, tls_certificates),
    remediation="Install a current certificate and renew it automatically (ACME, EST or the "
                "fleet's certificate management) well before it expires; check the device "
                "clock if a fresh certificate is reported as not yet valid.",
    params=ValidityParams,
)
def certificate_validity(obs: Observations, params: ValidityParams) -> Iterable[Finding]:
    """Pass: the leaf certificate of every TLS endpoint is valid now and for at least
    `min_days_remaining` more days.
    Fail: it is not yet valid, expired, or expires sooner.
    Not applicable: no TLS endpoint.
    Error: the certificate could not be obtained, or the endpoint never answered a ClientHello."""
    minimum = float(params.min_days_remaining)
    return _certificates(obs, lambda scan: _validity(scan, minimum))


def _validity(scan: CertificateScan, minimum: float) -> Finding:
    now = _now()
    target = f"tcp/{scan.port}"
    problems = []
    for deployment in scan.deployments:
        leaf = deployment.leaf
        days = leaf.days_left(now)
        if now < leaf.not_before:
            problems.append(f"not valid before {leaf.evidence(now)['not_before']}")
        elif days < 0:
            problems.append(f"expired {-days:.0f} day(s) ago ({leaf.evidence(now)['not_after']})")
        elif days < minimum:
            problems.append(f"expires in {days:.0f} day(s), less than {minimum:g}")
    evidence = {"certificates": [_validity_evidence(d, now) for d in scan.deployments],
                "min_days_remaining": minimum}
    if problems:
        return failed(f"{target}: the certificate " + "; ".join(problems), target, **evidence)
    days = min(d.leaf.days_left(now) for d in scan.deployments)
    return passed(f"{target}: the certificate is valid for {days:.0f} more day(s)", target,
                  **evidence)


def _validity_evidence(deployment: Deployment, now: dt.datetime) -> dict[str, Any]:
    facts = deployment.leaf.evidence(now)
    return {key: facts[key] for key in ("subject", "not_before", "not_after", "days_left",
                                        "public_key_sha256")}


@check(
    "tls.certificate-trust",
    applies_to=("tls",),
    title="The certificate chains to the trust anchor and names the device",
    control=CONTROL_COMMUNICATION,
    severity=Severity.HIGH,
    needs=(tls_endpoints, tls_certificates),
    remediation="Serve a certificate issued by the fleet's CA (the inventory's trust_anchor), "
                "with the complete intermediate chain, naming the device's host name (or its "
                "address) in subjectAltName; replace self-signed and vendor default "
                "certificates at provisioning.",
)
def certificate_trust(obs: Observations, params: NoParams) -> Iterable[Finding]:
    """Pass: the served chain validates to the trust anchor (inventory or command line
    `trust_anchor`, else the system store) and the leaf names the device (`hostname`, else its
    address).
    Fail: validation fails (self-signed, unknown issuer, incomplete chain, wrong name, outside
    its dates); the summary says why in words and which trust anchors were used, the evidence
    keeps the validator's text (`validation_error`).
    Not applicable: no TLS endpoint.
    Error: the trust anchor cannot be read, or the certificate could not be obtained."""
    return _certificates(obs, _trust)


def _trust(scan: CertificateScan) -> Finding:
    now = _now()
    target = f"tcp/{scan.port}"
    if scan.anchor is None:
        return errored(f"{target}: the chain cannot be validated: {scan.anchor_source}", target,
                       reason="trust-anchor", anchor=scan.anchor_source)
    evidence: dict[str, Any] = {"anchor": scan.anchor_source, "certificates": []}
    errors = []
    for deployment in scan.deployments:
        leaf = deployment.leaf
        evidence["certificates"].append({
            "subject": leaf.subject, "issuer": leaf.issuer, "self_signed": leaf.self_signed,
            "names": list(leaf.names), "identity": leaf.identity,
            "identity_matches": leaf.identity_matches, "chain_length": deployment.chain_length,
            "served_with_server_name": deployment.sni,
            "validation_error": deployment.validation_error,
            "not_after": leaf.evidence(now)["not_after"],
            "public_key_sha256": leaf.fingerprint,
        })
        if deployment.validation_error is not None:
            errors.append(_untrusted(leaf, deployment.validation_error, now))
    if errors:
        return failed(f"{target}: " + "; ".join(dict.fromkeys(errors)) + "; "
                      + _anchors_advice(scan), target, **evidence)
    identity = scan.deployments[0].leaf.identity
    return passed(f"{target}: the chain validates to the {scan.anchor_source} and names "
                  f"{identity}", target, **evidence)


NO_PATH = "all candidates exhausted with no interior errors"
"""The validator's words (cryptography's X.509 verifier, through sslyze) for: no chain from
the leaf reaches a trust anchor."""


def _untrusted(leaf: LeafFacts, validation_error: str, now: dt.datetime) -> str:
    """Why a chain that failed validation is not trusted, in words: the first of its dates,
    its names, its issuer that explains it (the validator's own text stays in the evidence)."""
    what = f"the {'self-signed ' if leaf.self_signed else ''}certificate {leaf.subject}"
    if now < leaf.not_before:
        return f"{what} is not valid before {stamp(leaf.not_before)}"
    if leaf.not_after < now:
        return f"{what} expired on {stamp(leaf.not_after)}"
    if not leaf.identity_matches:
        return (f"{what} does not name the device ({leaf.identity}): set the device's "
                "hostname in the inventory, or serve a certificate that names it")
    if NO_PATH not in validation_error:
        return (f"the chain of {what} does not validate to a trusted root (the validator's "
                "reason is in the evidence: validation_error)")
    if leaf.self_signed:
        return f"{what} is not one of the trust anchors"
    return f"the chain of {what} does not lead to a trusted root"


def _anchors_advice(scan: CertificateScan) -> str:
    """Which trust anchors the chain was validated against, and how to choose others."""
    if scan.anchor_source == "system store":
        return "trust anchors: the system store; pass --trust-anchor for a fleet CA"
    where = "--trust-anchor" if "command line" in scan.anchor_source else \
        "the inventory's trust_anchor"
    return f"trust anchors: {where} {scan.anchor}"


@check(
    "tls.certificate-strength",
    applies_to=("tls",),
    title="The certificate key and signature are strong",
    control=CONTROL_COMMUNICATION,
    severity=Severity.MEDIUM,
    needs=(tls_endpoints, tls_certificates),
    remediation="Issue device certificates with an RSA key of at least 2048 bits or an EC key "
                "on P-256 or stronger, signed with SHA-256 or better; retire MD5- and "
                "SHA-1-signed certificates.",
)
def certificate_strength(obs: Observations, params: NoParams) -> Iterable[Finding]:
    """Pass: the leaf key is RSA of at least 2048 bits, EC of at least 256 bits, Ed25519 or
    Ed448, and the signature hash is neither MD5 nor SHA-1.
    Fail: a shorter or other key, an MD5 or SHA-1 signature, or a signature hash that cannot be
    told.
    Not applicable: no TLS endpoint.
    Error: the certificate could not be obtained."""
    return _certificates(obs, _strength)


def _strength(scan: CertificateScan) -> Finding:
    target = f"tcp/{scan.port}"
    problems = []
    certificates = []
    for deployment in scan.deployments:
        leaf = deployment.leaf
        key = f"{leaf.key_type} {leaf.key_bits}"
        minimum = MIN_BITS.get(leaf.key_type)
        if minimum is None:
            problems.append(f"{leaf.key_type} key")
        elif leaf.key_bits < minimum:
            problems.append(f"{key}-bit key (< {minimum})")
        digest = leaf.signature_hash
        if digest in WEAK_HASHES:
            problems.append(f"signed with {digest.upper()}")
        elif digest is None and leaf.key_type not in ("Ed25519", "Ed448"):
            problems.append("signature hash unknown")
        certificates.append({"subject": leaf.subject, "key": key, "curve": leaf.curve,
                             "signature_hash": digest, "public_key_sha256": leaf.fingerprint})
    if problems:
        return failed(f"{target}: the certificate has a " + ", ".join(problems), target,
                      certificates=certificates)
    return passed(f"{target}: strong key and signature ("
                  + "; ".join(f"{c['key']}, {c['signature_hash'] or 'EdDSA'}"
                              for c in certificates) + ")", target, certificates=certificates)


@check(
    "tls.known-vulnerabilities",
    applies_to=("tls",),
    title="No known TLS implementation flaw",
    control=CONTROL_COMMUNICATION,
    severity=Severity.HIGH,
    needs=(tls_endpoints, tls_vulnerabilities),
    remediation="Update the TLS library of the device (Heartbleed, CCS injection and ROBOT are "
                "fixed in every maintained release); enable secure renegotiation (RFC 5746), "
                "refuse client-initiated renegotiation and disable TLS compression (CRIME).",
)
def known_vulnerabilities(obs: Observations, params: NoParams) -> Iterable[Finding]:
    """Pass: not vulnerable to Heartbleed, OpenSSL CCS injection or ROBOT; secure renegotiation
    supported, client-initiated renegotiation refused, TLS compression off.
    Fail: any one of these flaws.
    Not applicable: no TLS endpoint.
    Error: the scan failed, or a test could not be decided.
    Skipped: a test needs a client certificate the endpoint accepts and the inventory has none
    (`credentials.tls_client`)."""
    endpoints = {e.port: e for e in obs[tls_endpoints]}
    return _per_endpoint(obs[tls_vulnerabilities], lambda scan: _flaws(scan, endpoints))


def _flaws(scan: VulnerabilityScan, endpoints: dict[int, TlsEndpoint]) -> Finding:
    endpoint = endpoints[scan.port]
    target = endpoint.target
    if endpoint.silent:
        return _silent(endpoint)
    if scan.error is not None:
        return errored(f"{target}: not tested: {scan.error}", target, reason="tls",
                       **_endpoint(endpoint))
    tests = [flaw.evidence() for flaw in scan.flaws]
    vulnerable = [flaw for flaw in scan.flaws if flaw.vulnerable]
    if vulnerable:
        return failed(f"{target}: " + ", ".join(f"{f.name}: {f.detail}" for f in vulnerable),
                      target, tests=tests, **_endpoint(endpoint))
    blocked = [flaw.name for flaw in scan.flaws if flaw.needs_client_certificate]
    if blocked:
        return skipped(f"{target}: not tested ({', '.join(blocked)}): the endpoint requires "
                       "a client certificate and the inventory has none that it accepts "
                       "(credentials.tls_client)", target, reason="credentials", tests=tests,
                       **_endpoint(endpoint))
    undecided = [f"{flaw.name} ({flaw.error})" for flaw in scan.flaws if flaw.vulnerable is None]
    if undecided:
        return errored(f"{target}: not decided: {', '.join(undecided)}", target,
                       reason="undecided", tests=tests, **_endpoint(endpoint))
    return passed(f"{target}: not vulnerable to Heartbleed, CCS injection or ROBOT; secure "
                  "renegotiation on, client renegotiation refused, compression off", target,
                  tests=tests, **_endpoint(endpoint))


CHECKS = (protocol_versions, cipher_suites, certificate_validity, certificate_trust,
          certificate_strength, known_vulnerabilities)
