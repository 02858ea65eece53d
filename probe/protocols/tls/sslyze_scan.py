"""sslyze for what it does best: the known implementation flaws that need more than a
ServerHello (Heartbleed, OpenSSL CCS injection, ROBOT, client-initiated renegotiation); and the
certificate chains, validated against the trust anchor by cryptography's X.509 verifier, as
sslyze validates them.

The chains come from the probe's own raw hellos (`collectors.served_chains`: below TLS 1.3 the
Certificate message is in clear) wherever those stand for sslyze's four certificate jobs;
sslyze's jobs still run on TLS 1.3-only endpoints (the certificate is encrypted there), and
wherever the hellos' answers were undecided, cut short or not parseable by cryptography, so
that what sslyze would have said stays what the record says. A TLS 1.3 endpoint that also
accepts TLS 1.2 is read at TLS 1.2: sslyze's TLS 1.3 job is taken to get one of the
certificates the TLS 1.2 hellos get (a server picks a certificate by its key type, for the
suite or the signature scheme, whatever the version).

Two flaws in the record are not sslyze's: secure renegotiation (RFC 5746) and TLS compression
are read from the probe's raw hellos (`Handshakes.secure_renegotiation`,
`Handshakes.compression_enabled`), with sslyze's verdicts, TLS 1.3-only servers included;
sslyze paid a full handshake for each. Of its renegotiation command only the client-initiated
renegotiation job runs (it needs a completed handshake).

sslyze is driven one scan job at a time rather than through its `Scanner`: the probe's own
handshakes (`probe.protocols.tls.collectors`) already know the highest version and whether RSA
key exchange is accepted, so sslyze's connectivity test (several handshakes) is replaced by a
`ServerConnectivityInfo` built from those facts, and ROBOT is not run at all when no RSA key
exchange is accepted (ROBOT needs one). Per endpoint that leaves (besides the four certificate
jobs, where they still run) Heartbleed and CCS injection (none on a TLS 1.3 server: sslyze
skips both there), one client renegotiation job and ROBOT's. A job opens at most one connection
(sslyze's own three-attempt ROBOT test, run only to confirm a possible oracle, up to seven);
before each job is handed to sslyze the probe takes a rate token per connection and one of the
device's slots, counts the connections, and runs the job in the blocking-call pool under a cap
shared by every device of the scan (`gate`). Name lookups never happen: sslyze gets the
device's address as `ip_address`.

The certificate jobs are sslyze's, minus the OCSP stapling request (`_received_chain`): a
stack that cannot staple may drop a handshake that asks for it.

sslyze always sends a server name: the device's hostname when the inventory gives one, else
the address itself (and the certificate is then validated against that IP address).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import ipaddress
import math
import ssl
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from probe.context import DeviceContext
from probe.protocols.tls.codec import SSL2, SSL3, TLS10, TLS11, TLS12, TLS13, catalogue
from probe.protocols.tls.collectors import (
    Handshakes,
    LeafFacts,
    ServedChain,
    device_identity,
    endpoint_handshakes,
    leaf_facts,
    served_chains,
    tls_endpoints,
)
from probe.secrets import Secret

ROBOT_CONNECTIONS = 7
"""Connections one ROBOT job opens at most: two to find an RSA suite, five payloads."""
SYSTEM_STORES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                 "/etc/ssl/cert.pem")

_GATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary())


@functools.cache
def _sslyze() -> Any:
    """sslyze's public API, imported on first use (it is slow to import)."""
    import sslyze
    from sslyze.plugins import plugin_base, scan_commands
    from sslyze.server_connectivity import ServerConnectivityInfo

    class Api:
        lib = sslyze
        commands = scan_commands.ScanCommandsRepository
        Job = plugin_base.ScanJob
        JobResult = plugin_base.ScanJobResult
        ConnectivityInfo = ServerConnectivityInfo

    return Api


def gate(ctx: DeviceContext) -> asyncio.Semaphore:
    """The scan-wide cap on sslyze jobs running at once: half the blocking-call pool, so that
    other blocking work always finds a thread."""
    loop = asyncio.get_running_loop()
    found = _GATES.get(loop)
    if found is None:
        found = asyncio.Semaphore(max(1, ctx.options.blocking_threads // 2))
        _GATES[loop] = found
    return found


def trust_anchor(ctx: DeviceContext) -> tuple[str | None, str]:
    """(CA bundle path, how it was chosen): `--trust-anchor`, else the inventory's, else the
    system store; (None, why) when there is none."""
    if ctx.options.trust_anchor:
        return ctx.options.trust_anchor, "trust anchor (command line)"
    if ctx.device.trust_anchor:
        return ctx.device.trust_anchor, "trust anchor (inventory)"
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, *SYSTEM_STORES):
        if candidate and Path(candidate).is_file():
            return candidate, "system store"
    return None, "no trust anchor given and no system CA store found"


def _version_enum(version: int) -> Any:
    enum = _sslyze().lib.TlsVersionEnum
    return {SSL3: enum.SSL_3_0, TLS10: enum.TLS_1_0, TLS11: enum.TLS_1_1, TLS12: enum.TLS_1_2,
            TLS13: enum.TLS_1_3}[version]


def _client_credentials(ctx: DeviceContext) -> Any:
    entry = ctx.device.credentials.get("tls_client") or {}
    cert, key = entry.get("cert_file"), entry.get("key_file")
    if not isinstance(cert, str):
        return None
    password = entry.get("password")
    return _sslyze().lib.ClientAuthenticationCredentials(
        certificate_chain_path=Path(cert), key_path=Path(key if isinstance(key, str) else cert),
        key_password=password.reveal() if isinstance(password, Secret) else "")


def server_info(ctx: DeviceContext, found: Handshakes) -> Any:
    """sslyze's view of the endpoint, from the probe's own handshakes."""
    api = _sslyze().lib
    name = device_identity(ctx)
    location = api.ServerNetworkLocation(hostname=name, port=found.endpoint.port,
                                         ip_address=ctx.address)
    network = api.ServerNetworkConfiguration(
        tls_server_name_indication=name, tls_client_auth_credentials=_client_credentials(ctx),
        network_timeout=max(1, math.ceil(ctx.timeout)), network_max_retries=1)
    requirement = {"required": api.ClientAuthRequirementEnum.REQUIRED,
                   "requested": api.ClientAuthRequirementEnum.OPTIONAL}.get(
        found.endpoint.client_certificate, api.ClientAuthRequirementEnum.DISABLED)
    highest = found.highest
    assert highest is not None
    chosen = [catalogue().get(reply.suite or 0) for version, reply in found.versions.items()
              if reply.accepts(version)]
    ecdh = highest == TLS13 or any(s is not None and s.key_exchange.startswith("ECDH")
                                   for s in chosen)
    probing = api.ServerTlsProbingResult(
        highest_tls_version_supported=_version_enum(highest), cipher_suite_supported="",
        client_auth_requirement=requirement, supports_ecdh_key_exchange=ecdh)
    return _sslyze().ConnectivityInfo(server_location=location, network_configuration=network,
                                      tls_probing_result=probing)


async def run_jobs(ctx: DeviceContext, jobs: Sequence[Any],
                   connections_per_job: int = 1) -> list[Any]:
    """sslyze scan jobs, each under one of the device's slots, `connections_per_job` rate
    tokens and the scan-wide gate, in the blocking-call pool; their ScanJobResults."""
    api = _sslyze()
    limit = ctx.timeout * (connections_per_job + 1)

    async def one(job: Any) -> Any:
        async with gate(ctx), ctx.slot():
            for _ in range(connections_per_job):
                await ctx.network.rate.acquire()
            ctx.connections += connections_per_job
            try:
                async with asyncio.timeout(limit):
                    value = await ctx.blocking(job.function_to_call, *job.function_arguments)
            except Exception as exc:
                return api.JobResult(None, exc)
            return api.JobResult(value, None)

    return list(await asyncio.gather(*(one(job) for job in jobs)))


async def run_command(ctx: DeviceContext, info: Any, command: Any, extra: Any = None,
                      connections_per_job: int = 1) -> Any:
    """One sslyze scan command, its jobs at once through `run_jobs`; its result, or what it
    raised."""
    implementation = _sslyze().commands.get_implementation_cls(command)
    jobs = implementation.scan_jobs_for_scan_command(info, extra)
    results = await run_jobs(ctx, jobs, connections_per_job)
    return implementation.result_for_completed_scan_jobs(info, results)


def describe_error(exc: BaseException) -> str:
    """A short, secret-free description of what stopped an sslyze command."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(getattr(exc, "error_message", "") or exc).strip().splitlines()
    head = text[0] if text else ""
    return f"{type(exc).__name__}: {head}"[:200] if head else type(exc).__name__


def _unusable(found: Handshakes) -> str | None:
    """Why sslyze has nothing to do on this endpoint (None: it has)."""
    if found.endpoint.silent:
        return "the endpoint accepted the connection and never answered a ClientHello"
    if found.highest == SSL2:
        return "the endpoint accepts SSL 2.0 only"
    if not found.speaks_tls:
        answers = {f"{v:#06x}": r.describe() for v, r in found.versions.items()}
        if found.versions and all(r.outcome == "timeout" for r in found.versions.values()):
            return "no ClientHello of the probe got an answer before the timeout"
        return f"no ClientHello of the probe was accepted ({answers})"
    return None


# ---------------------------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    """One certificate chain the endpoint serves, and how it validated."""

    leaf: LeafFacts
    chain_length: int
    sni: bool  # served to a client that sent a server name
    validation_error: str | None  # None: the chain validates to the anchor, for the identity


@dataclass(frozen=True)
class CertificateScan:
    port: int
    anchor: str | None
    anchor_source: str
    deployments: tuple[Deployment, ...] = ()
    error: str | None = None


@functools.lru_cache(maxsize=16)
def _store(path: str, stamp: tuple[int, int]) -> Store:
    """The trust store of the CA bundle at `path` (`stamp`: its mtime and size, so an edited
    file is read again), as sslyze's `TrustStore` builds it."""
    from cryptography.utils import CryptographyDeprecationWarning

    with warnings.catch_warnings():  # system bundles hold a few pre-RFC 5280 roots
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return Store(x509.load_pem_x509_certificates(Path(path).read_bytes()))


def _subject(ctx: DeviceContext) -> x509.DNSName | x509.IPAddress:
    if ctx.device.hostname:
        return x509.DNSName(ctx.device.hostname)
    return x509.IPAddress(ipaddress.ip_address(ctx.address))


def _validate(store: Store, chain: Sequence[x509.Certificate],
              subject: x509.DNSName | x509.IPAddress) -> str | None:
    """Why `chain` (leaf first, as served) does not validate to `store` for `subject` now
    (None: it does): cryptography's X.509 verifier, exactly as sslyze's
    `TrustStore.verify_certificate_chain` runs it."""
    verifier = PolicyBuilder().store(store).time(dt.datetime.now(dt.UTC)).build_server_verifier(
        subject)
    try:
        verifier.verify(chain[0], list(chain[1:]))
    except VerificationError as exc:
        return str(exc.args[0] if exc.args else "validation failed")
    return None


def _received_chain(info: Any, custom_ca_file: Path | None, version: Any,
                    cipher_string: str | None,
                    server_name: bool) -> tuple[list[str], None, Path | None, bool]:
    """sslyze's certificate job (`get_certificate_chain`: one handshake, the chain as
    received) without its OCSP stapling request: wolfSSL cannot staple for a self-signed or
    private chain and drops a handshake that asks (status_request), although it serves the
    certificate to any other client. No check reads a stapled response."""
    from nassl.ssl_client import ClientCertificateRequested

    connection = info.get_preconfigured_tls_connection(
        override_tls_version=version, should_enable_server_name_indication=server_name)
    if cipher_string:
        connection.ssl_client.set_cipher_list(cipher_string)
    try:
        connection.connect()
        chain = connection.ssl_client.get_received_chain()
    except ClientCertificateRequested:
        chain = connection.ssl_client.get_received_chain()
    finally:
        connection.close()
    return chain, None, custom_ca_file, server_name


Chains = dict[bytes, tuple[list[x509.Certificate], bool]]
"""Every chain an endpoint serves by its leaf (DER): the chain, leaf first, and whether it
was served to a client that sent a server name."""


def _parsed(served: Sequence[ServedChain]) -> Chains | None:
    """The raw hellos' chains parsed (None if a certificate does not parse: sslyze's own
    handshakes then decide what the endpoint serves, as before)."""
    try:
        return {chain.certificates[0]: ([x509.load_der_x509_certificate(der)
                                          for der in chain.certificates], chain.server_name)
                for chain in served}
    except ValueError:
        return None


async def _sslyze_chains(ctx: DeviceContext, found: Handshakes) -> Chains | str:
    """The chains of sslyze's certificate jobs (with and without a server name, RSA and
    non-RSA authentication; `_received_chain`, without OCSP stapling), or why there are none."""
    api = _sslyze()
    try:
        info = server_info(ctx, found)
        implementation = api.commands.get_implementation_cls(
            api.lib.ScanCommand.CERTIFICATE_INFO)
        jobs = [api.Job(_received_chain, job.function_arguments)
                for job in implementation.scan_jobs_for_scan_command(info, None)]
        results = await run_jobs(ctx, jobs)
    except Exception as exc:
        return describe_error(exc)
    chains: dict[str, tuple[list[str], bool]] = {}
    failures: list[BaseException] = []
    for result in results:
        try:
            chain, _, _, sni = result.get_result()
        except Exception as exc:
            failures.append(exc)
            continue
        if chain:
            known = chains.get(chain[0])
            chains[chain[0]] = (chain, sni or (known is not None and known[1]))
    if not chains:
        return describe_error(failures[0]) if failures else "the server sent no certificate"
    parsed = {}
    for chain, sni in chains.values():
        certificates = [x509.load_pem_x509_certificate(pem.encode("ascii")) for pem in chain]
        parsed[certificates[0].public_bytes(serialization.Encoding.DER)] = (certificates, sni)
    return parsed


async def certificate_scan(ctx: DeviceContext, port: int) -> CertificateScan:
    """Collector (per port): every chain the endpoint serves, each validated against the trust
    anchor and the device identity (its hostname, else its address). The chains come from the
    probe's raw hellos (`served_chains`: the Certificate message of TLS 1.2 and below is in
    clear) where those stand for sslyze's certificate jobs, else from those jobs (TLS 1.3-only
    endpoints, chains cut short, certificates cryptography cannot parse, undecided answers)."""
    found = await ctx.observe(endpoint_handshakes, port)
    anchor, source = trust_anchor(ctx)
    problem = _unusable(found)
    if problem is not None:
        return CertificateScan(port, anchor, source, error=problem)
    served = await ctx.observe(served_chains, port)
    chains = _parsed(served) if served is not None else None
    if chains is None:
        from_sslyze = await _sslyze_chains(ctx, found)
        if isinstance(from_sslyze, str):
            return CertificateScan(port, anchor, source, error=from_sslyze)
        chains = from_sslyze
    store = None
    if anchor is not None:
        try:
            path = Path(anchor)
            stat = path.stat()
            store = _store(str(path), (stat.st_mtime_ns, stat.st_size))
        except (OSError, ValueError) as exc:
            source = f"{source}: unreadable ({describe_error(exc)})"
    identity, subject = device_identity(ctx), _subject(ctx)
    deployments = []
    for chain, sni in chains.values():
        error = _validate(store, chain, subject) if store is not None else source
        deployments.append(Deployment(leaf_facts(chain[0], identity), len(chain), sni, error))
    return CertificateScan(port, anchor if store is not None else None, source,
                           tuple(deployments))


async def tls_certificates(ctx: DeviceContext) -> tuple[CertificateScan, ...]:
    """Collector: `certificate_scan` for every TLS endpoint of the device."""
    endpoints = await ctx.observe(tls_endpoints)
    return tuple(await asyncio.gather(*(ctx.observe(certificate_scan, e.port)
                                        for e in endpoints)))


# ---------------------------------------------------------------------------------------------
# Known vulnerabilities
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flaw:
    """One known weakness tested on one endpoint."""

    name: str
    vulnerable: bool | None  # None: not decided (see `error`)
    detail: str
    error: str | None = None
    needs_client_certificate: bool = False

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"test": self.name, "detail": self.detail}
        out["vulnerable"] = self.vulnerable
        if self.error:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class VulnerabilityScan:
    port: int
    flaws: tuple[Flaw, ...] = ()
    error: str | None = None


def _client_certificate_error(exc: BaseException) -> bool:
    return "ClientCertificateRequested" in type(exc).__name__ or "client certificate" in str(
        exc).lower()


def _undecided(name: str, exc: BaseException) -> Flaw:
    return Flaw(name, None, "not decided", describe_error(exc), _client_certificate_error(exc))


async def _flaw(ctx: DeviceContext, info: Any, name: str, command: Any, extra: Any,
                judge: Any, connections: int = 1) -> list[Flaw]:
    try:
        result = await run_command(ctx, info, command, extra, connections)
    except Exception as exc:
        return [_undecided(name, exc)]
    return [judge(result)]


def _robot(result: Any) -> Flaw:
    verdict = result.robot_result.name
    vulnerable = verdict.startswith("VULNERABLE")
    if verdict.startswith("UNKNOWN"):
        return Flaw("ROBOT", None, verdict.lower(), "inconsistent answers to ROBOT payloads")
    return Flaw("ROBOT", vulnerable, verdict.lower())


async def _robot_flaw(ctx: DeviceContext, info: Any, highest: int) -> list[Flaw]:
    """ROBOT with sslyze's own payloads, faster: the RSA parameters, then the five payloads
    as five jobs at once (sslyze sends them one after the other, and each waits out a delayed
    ACK); only a server whose answers differ (a possible oracle) gets sslyze's full, three
    times repeated test. Without those sslyze internals, the full test runs directly."""
    command = _sslyze().lib.ScanCommand.ROBOT
    try:
        from sslyze.plugins.plugin_base import ScanJob
        from sslyze.plugins.robot import _robot_tester as robot

        payloads = list(robot.RobotPmsPaddingPayloadEnum)
        rsa_parameters, send = robot._get_rsa_parameters, robot._send_robot_payload
    except (ImportError, AttributeError):
        return await _flaw(ctx, info, "ROBOT", command, None, _robot, ROBOT_CONNECTIONS)
    version = _version_enum(min(highest, TLS12))
    ciphers = ["AES128-GCM-SHA256:AES256-GCM-SHA384", "RSA"] if highest >= TLS12 else ["RSA"]
    found = None
    for cipher in ciphers:
        (outcome,) = await run_jobs(ctx, [ScanJob(rsa_parameters, [info, version, cipher])])
        try:
            found = outcome.get_result()
        except Exception as exc:
            return [_undecided("ROBOT", exc)]
        if found is not None:
            break
    if found is None:
        return [Flaw("ROBOT", False, "not_vulnerable_rsa_not_supported")]
    jobs = [ScanJob(send, [info, version, cipher, payload, True, found.n, found.e])
            for payload in payloads]
    answers = []
    for outcome in await run_jobs(ctx, jobs):
        try:
            answers.append(str(outcome.get_result()))
        except Exception as exc:
            return [_undecided("ROBOT", exc)]
    if len(set(answers)) == 1:
        return [Flaw("ROBOT", False, "not_vulnerable_no_oracle (the five payloads got the "
                     "same answer)")]
    return await _flaw(ctx, info, "ROBOT", command, None, _robot, ROBOT_CONNECTIONS)


async def _client_renegotiation(ctx: DeviceContext, info: Any) -> Flaw:
    """sslyze's client-initiated renegotiation job alone (one renegotiation attempt), without
    the secure-renegotiation job of the same scan command. The job's function is private to
    sslyze's plugin: should a release rename it, the flaw is reported not decided."""
    name = "client-initiated renegotiation"
    try:
        from sslyze.plugins.plugin_base import ScanJob
        from sslyze.plugins.session_renegotiation_plugin import _test_client_renegotiation

        (outcome,) = await run_jobs(ctx, [ScanJob(_test_client_renegotiation, [info, 1])])
        _, (_, renegotiations) = outcome.get_result()
    except Exception as exc:
        return _undecided(name, exc)
    accepted = renegotiations > 0
    return Flaw(name, accepted, "accepted" if accepted else "refused")


def _hello_flaws(found: Handshakes) -> tuple[Flaw, Flaw]:
    """Secure renegotiation and TLS compression, from the probe's raw hellos."""
    secure = found.secure_renegotiation()
    renegotiation = Flaw("secure renegotiation", not secure,
                         "supported" if secure else "not supported (RFC 5746)")
    compressed = found.compression_enabled()
    if compressed is None:
        answer = found.compression.describe() if found.compression else "none"
        compression = Flaw("TLS compression", None, "not decided",
                           f"the hello offering DEFLATE got no ServerHello: {answer}")
    else:
        compression = Flaw("TLS compression", compressed, "enabled" if compressed else "off")
    return renegotiation, compression


async def vulnerability_scan(ctx: DeviceContext, port: int) -> VulnerabilityScan:
    """Collector (per port): Heartbleed, CCS injection and ROBOT from sslyze, secure
    renegotiation and compression from the raw hellos, then client-initiated renegotiation,
    last: a server may stall the next connection after a client renegotiation (openssl
    s_server does, for a second), so it runs once the endpoint's other sslyze work, the
    certificate scan included, is over."""
    found = await ctx.observe(endpoint_handshakes, port)
    problem = _unusable(found)
    if problem is not None:
        return VulnerabilityScan(port, error=problem)
    api = _sslyze()
    commands = api.lib.ScanCommand
    try:
        info = server_info(ctx, found)
    except Exception as exc:
        return VulnerabilityScan(port, error=describe_error(exc))
    early = 0 if found.highest == TLS13 else 1  # sslyze skips both on TLS 1.3 servers
    tests = [
        _flaw(ctx, info, "Heartbleed", commands.HEARTBLEED, None,
              lambda r: Flaw("Heartbleed", bool(r.is_vulnerable_to_heartbleed),
                             "vulnerable" if r.is_vulnerable_to_heartbleed else "not vulnerable"),
              early),
        _flaw(ctx, info, "OpenSSL CCS injection", commands.OPENSSL_CCS_INJECTION, None,
              lambda r: Flaw("OpenSSL CCS injection", bool(r.is_vulnerable_to_ccs_injection),
                             "vulnerable" if r.is_vulnerable_to_ccs_injection
                             else "not vulnerable"), early),
    ]
    known: list[Flaw] = []
    if found.rsa_key_exchange() is False:
        known.append(Flaw("ROBOT", False, "not applicable: no suite with RSA key exchange is "
                          "accepted at TLS 1.2 (seen in the probe's handshakes)"))
    else:
        tests.append(_robot_flaw(ctx, info, found.highest or TLS12))
    heartbleed, ccs, *robot = await asyncio.gather(*tests)
    await ctx.observe(certificate_scan, port)
    renegotiation, compression = _hello_flaws(found)
    client = await _client_renegotiation(ctx, info)
    flaws = [*heartbleed, *ccs, compression, *(f for r in robot for f in r), *known,
             renegotiation, client]
    return VulnerabilityScan(port, tuple(flaws))


async def tls_vulnerabilities(ctx: DeviceContext) -> tuple[VulnerabilityScan, ...]:
    """Collector: `vulnerability_scan` for every TLS endpoint of the device."""
    endpoints = await ctx.observe(tls_endpoints)
    return tuple(await asyncio.gather(*(ctx.observe(vulnerability_scan, e.port)
                                        for e in endpoints)))
