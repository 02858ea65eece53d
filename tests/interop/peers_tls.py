"""The TLS peers of the interoperability matrix (see `interop`): HTTPS on port 443 from
OpenSSL (nginx, `openssl s_server`) and from the embedded-class stacks behind lighttpd
(wolfSSL, mbed TLS, GnuTLS), each good and bad in the ways that stack can be configured to be.

The reference tool is sslyze (Python API, the peer's address as `ip_address`): its cipher-suite
scans per version give the accepted versions and suites, read with the probe's own rules
(legacy versions fail; a weak suite at any version, or a TLS 1.2 suite without forward
secrecy, fails); its certificate scan (with its OCSP stapling request) gives the served chain,
validated against the peer's CA.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from daemons import Certificate, Daemon, issue, lighttpd_tls, make_ca, nginx_site, openssl_server

from interop import Peer, Protocol, Reading, Setup, debian_version
from probe.model import Status
from probe.protocols.tls.codec import LEGACY_VERSIONS, SSL2, SSL3, TLS10, TLS11, TLS12, TLS13
from probe.protocols.tls.codec import catalogue as suite_catalogue

PORT = 443
VERSIONS = "tls.protocol-versions"
SUITES = "tls.cipher-suites"
VALIDITY = "tls.certificate-validity"
TRUST = "tls.certificate-trust"
STRENGTH = "tls.certificate-strength"
FLAWS = "tls.known-vulnerabilities"
CHECKS = (VERSIONS, SUITES, VALIDITY, TRUST, STRENGTH, FLAWS)
OPENSSL_MODERN = "ECDHE+AESGCM:ECDHE+CHACHA20"
WOLFSSL_MODERN = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                  "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:"
                  "ECDHE-ECDSA-CHACHA20-POLY1305")

Serve = Callable[[Path, str, Certificate], Daemon]


def _all(status: Status) -> dict[str, Status]:
    return dict.fromkeys(CHECKS, status)


def _expect(versions: Status, suites: Status, validity: Status, trust: Status,
            strength: Status, flaws: Status = Status.PASS) -> dict[str, Status]:
    return dict(zip(CHECKS, (versions, suites, validity, trust, strength, flaws), strict=True))


@contextlib.contextmanager
def _served(tmp: Path, address: str, serve: Serve, *, ca_signed: bool = True,
            **certificate: Any) -> Iterator[Setup]:
    """A certificate naming `address` (signed by a fresh CA, else self-signed), served by
    `serve`; the CA is the device's trust anchor either way."""
    anchor, issuer = make_ca(tmp)
    cert, _ = issue(tmp, "device", issuer if ca_signed else None, names=[address],
                    **certificate)
    with serve(tmp, address, cert):
        yield Setup(inventory={"ports": [PORT], "trust_anchor": str(anchor.cert)})


def _nginx(protocols: str, ciphers: str) -> Serve:
    def serve(tmp: Path, address: str, cert: Certificate) -> Daemon:
        return nginx_site(tmp, address, [PORT], f"""
          server {{ listen {address}:{PORT} ssl; ssl_certificate {cert.cert};
            ssl_certificate_key {cert.key}; ssl_protocols {protocols};
            ssl_ciphers {ciphers}; location / {{ return 200 "device\\n"; }} }}""", name="tls")
    return serve


def _s_server(*options: str) -> Serve:
    def serve(tmp: Path, address: str, cert: Certificate) -> Daemon:
        return openssl_server(tmp, address, PORT, cert, "-www", *options)
    return serve


def _lighttpd(module: str, protocols: tuple[str, str] = ("TLSv1.2", "TLSv1.3"),
              ciphers: str | None = None) -> Serve:
    def serve(tmp: Path, address: str, cert: Certificate) -> Daemon:
        return lighttpd_tls(tmp, address, PORT, cert, module=module, protocols=protocols,
                            ciphers=ciphers)
    return serve


def _starter(serve: Serve, **certificate: Any) -> Callable[[Path, str], Any]:
    def start(tmp: Path, address: str) -> Any:
        return _served(tmp, address, serve, **certificate)
    return start


EXPIRED = {"valid_from": dt.datetime(2020, 1, 1, tzinfo=dt.UTC), "valid_days": 365}
WEAK_KEY = {"key": "rsa1024", "sha1": True}


# ---------------------------------------------------------------------------------------------
# The reference: sslyze
# ---------------------------------------------------------------------------------------------

_SCANS = {SSL2: "ssl_2_0_cipher_suites", SSL3: "ssl_3_0_cipher_suites",
          TLS10: "tls_1_0_cipher_suites", TLS11: "tls_1_1_cipher_suites",
          TLS12: "tls_1_2_cipher_suites", TLS13: "tls_1_3_cipher_suites"}
_NAMES = {"SSL 2.0": SSL2, "SSL 3.0": SSL3, "TLS 1.0": TLS10, "TLS 1.1": TLS11,
          "TLS 1.2": TLS12, "TLS 1.3": TLS13}


def _version_label(version: int) -> str:
    return next(name for name, value in _NAMES.items() if value == version)


def sslyze_reading(address: str, setup: Setup) -> Mapping[str, Reading]:
    """sslyze's scan of the peer, read as the probe's checks would read it."""
    import sslyze

    location = sslyze.ServerNetworkLocation(hostname=address, port=PORT, ip_address=address)
    commands = {sslyze.ScanCommand.CERTIFICATE_INFO, sslyze.ScanCommand.SSL_2_0_CIPHER_SUITES,
                sslyze.ScanCommand.SSL_3_0_CIPHER_SUITES,
                sslyze.ScanCommand.TLS_1_0_CIPHER_SUITES,
                sslyze.ScanCommand.TLS_1_1_CIPHER_SUITES,
                sslyze.ScanCommand.TLS_1_2_CIPHER_SUITES,
                sslyze.ScanCommand.TLS_1_3_CIPHER_SUITES}
    extra = sslyze.ScanCommandsExtraArguments(certificate_info=sslyze.CertificateInfoExtraArgument(
        custom_ca_file=Path(setup.inventory["trust_anchor"])))
    scanner = sslyze.Scanner()
    scanner.queue_scans([sslyze.ServerScanRequest(
        server_location=location, scan_commands=commands, scan_commands_extra_arguments=extra)])
    (result,) = list(scanner.get_results())
    if result.scan_result is None:
        said = f"could not connect: {result.connectivity_error_trace}".splitlines()[0][:160]
        return {VERSIONS: Reading(Status.ERROR, said), SUITES: Reading(Status.ERROR, said)}
    accepted: dict[int, list[str]] = {}
    for version, attribute in _SCANS.items():
        attempt = getattr(result.scan_result, attribute)
        if attempt.result is None:
            return {VERSIONS: Reading(Status.ERROR, f"{attribute} failed"),
                    SUITES: Reading(Status.ERROR, f"{attribute} failed")}
        names = [s.cipher_suite.name for s in attempt.result.accepted_cipher_suites]
        if names:
            accepted[version] = names
    return {VERSIONS: _versions_reading(accepted), SUITES: _suites_reading(accepted),
            **_certificate_readings(result.scan_result.certificate_info)}


def _versions_reading(accepted: Mapping[int, list[str]]) -> Reading:
    names = [_version_label(v) for v in sorted(accepted)]
    legacy = [_version_label(v) for v in sorted(accepted) if v in LEGACY_VERSIONS]
    if legacy:
        return Reading(Status.FAIL, f"accepts {', '.join(names)}")
    if not names:
        return Reading(Status.ERROR, "no version accepted")
    return Reading(Status.PASS, f"accepts {', '.join(names)}")


def _suites_reading(accepted: Mapping[int, list[str]]) -> Reading:
    by_name = {suite.name: suite for suite in suite_catalogue().values()}
    weak, plain = set(), set()
    for version, names in accepted.items():
        for name in names:
            suite = by_name.get(name)
            if suite is None:
                continue
            if suite.weak_classes:
                weak.add(name)
            elif version == TLS12 and not suite.forward_secret:
                plain.add(name)
    if weak or plain:
        parts = [f"{len(weak)} weak suite(s)"] if weak else []
        parts += [f"TLS 1.2 without forward secrecy: {', '.join(sorted(plain))}"] if plain else []
        return Reading(Status.FAIL, "; ".join(parts))
    total = sum(len(names) for names in accepted.values())
    return Reading(Status.PASS, f"{total} suite(s), none weak, all TLS 1.2 ones forward-secret")


def _certificate_readings(attempt: Any) -> dict[str, Reading]:
    if attempt.result is None:
        said = f"no certificate: {attempt.error_reason}"
        return {name: Reading(Status.ERROR, said) for name in (VALIDITY, TRUST, STRENGTH)}
    deployment = attempt.result.certificate_deployments[0]
    leaf = deployment.received_certificate_chain[0]
    trusted = any(v.was_validation_successful for v in deployment.path_validation_results)
    now = dt.datetime.now(dt.UTC)
    days = (leaf.not_valid_after_utc - now).days
    key = leaf.public_key()
    bits = getattr(key, "key_size", 0)
    digest = leaf.signature_hash_algorithm.name if leaf.signature_hash_algorithm else "none"
    weak = (type(key).__name__.startswith("RSA") and bits < 2048) or digest in ("sha1", "md5")
    return {
        VALIDITY: Reading(Status.FAIL if days < 30 else Status.PASS,
                          "expired" if days < 0 else "valid 30 days or more"
                          if days >= 30 else "expires within 30 days"),
        TRUST: Reading(Status.PASS if trusted else Status.FAIL,
                       "chain validates to the CA" if trusted else "chain does not validate"),
        STRENGTH: Reading(Status.FAIL if weak else Status.PASS,
                          f"{type(key).__name__.removeprefix('_')} {bits} bits, {digest}"),
    }


NO_STAPLING = ("sslyze's certificate scan asks for OCSP stapling (status_request) and wolfSSL "
               "drops that handshake when it has nothing to staple; the probe reads the chain "
               "without the request, as any browser would get it")
NO_PSK = ("sslyze never offers PSK suites (its OpenSSL client has no PSK); wolfSSL's default "
          "list answers the probe's hello with ServerHello + ServerHelloDone for "
          "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256 (no forward secrecy), which the probe reads as "
          "accepted: the hello cannot see whether a key is provisioned (here none is, and the "
          "handshake would fail later)")


def _peer(implementation: str, package: str, configuration: str, serve: Serve,
          expect: Mapping[str, Status], notes: Mapping[str, str] | None = None,
          **certificate: Any) -> Peer:
    return Peer(Protocol.TLS, implementation, debian_version(package), configuration,
                _starter(serve, **certificate), dict(expect), "sslyze", sslyze_reading,
                dict(notes or {}))


P, F = Status.PASS, Status.FAIL

PEERS: list[Peer] = [
    _peer("nginx + OpenSSL", "nginx", "TLS 1.2-1.3, ECDHE AEAD suites, CA-signed P-256",
          _nginx("TLSv1.2 TLSv1.3", OPENSSL_MODERN), _all(P)),
    _peer("openssl s_server", "openssl", "TLS 1.0-1.3, every suite, RSA-1024 SHA-1 certificate",
          _s_server("-min_protocol", "TLSv1", "-cipher", "ALL:@SECLEVEL=0"),
          _expect(F, F, P, F, F), **WEAK_KEY),
    _peer("lighttpd + wolfSSL", "lighttpd-mod-wolfssl",
          "TLS 1.2-1.3, ECDHE AEAD suites, CA-signed P-256",
          _lighttpd("wolfssl", ciphers=WOLFSSL_MODERN), _all(P),
          notes={VALIDITY: NO_STAPLING, TRUST: NO_STAPLING, STRENGTH: NO_STAPLING}),
    _peer("lighttpd + wolfSSL", "lighttpd-mod-wolfssl",
          "TLS 1.2-1.3, default suites, self-signed expired RSA-1024 SHA-1",
          _lighttpd("wolfssl"), _expect(P, F, F, F, F),
          notes={SUITES: NO_PSK, VALIDITY: NO_STAPLING, TRUST: NO_STAPLING,
                 STRENGTH: NO_STAPLING},
          ca_signed=False, **EXPIRED, **WEAK_KEY),
    _peer("lighttpd + mbed TLS", "lighttpd-mod-mbedtls",
          "TLS 1.2, default suites, CA-signed P-256", _lighttpd("mbedtls"), _all(P)),
    _peer("lighttpd + mbed TLS", "lighttpd-mod-mbedtls",
          "TLS 1.0-1.2, RSA key exchange allowed, expired certificate",
          _lighttpd("mbedtls", ("TLSv1.0", "TLSv1.3"), "HIGH:AES128:AES256"),
          _expect(F, F, F, F, P), key="rsa2048", **EXPIRED),
    _peer("lighttpd + GnuTLS", "lighttpd-mod-gnutls",
          "TLS 1.2-1.3, default suites, CA-signed P-256", _lighttpd("gnutls"), _all(P)),
    _peer("lighttpd + GnuTLS", "lighttpd-mod-gnutls",
          "TLS 1.0-1.3, RSA key exchange allowed, self-signed",
          _lighttpd("gnutls", ("TLSv1.0", "TLSv1.3"), "HIGH:AES128:AES256"),
          _expect(F, F, P, F, P), ca_signed=False, key="rsa2048"),
]
