"""Benchmark (not a test): iotprobe's TLS checks, sslyze and nmap on the same loopback endpoints.

Run as root from the repository: `.venv/bin/python bench/tls.py`. It starts a handful of nginx
and `openssl s_server` endpoints on 127.93.9.x (good and weak, certificates from a fresh CA),
then, endpoint by endpoint and one tool at a time:

- iotprobe: the six `tls.*` checks (after discovery, timed apart), through the engine's
  collectors with the CA as trust anchor;
- sslyze 6, in this process through its `Scanner` (no interpreter start-up counted), with the
  scan commands the same verdicts need: every cipher-suite command (SSL 2.0 to TLS 1.3),
  certificate info with the CA as custom trust store, Heartbleed, CCS injection, ROBOT,
  renegotiation and compression; its results are judged by the catalogue's rules;
- `nmap -n -Pn --script ssl-enum-ciphers`, which can speak only to versions and suites.

Connections are counted by a sniffer in a child process (SYNs to the endpoint, on `lo`), so
every tool is counted the same way; iotprobe's own count is shown beside it. Both sslyze and
iotprobe are warmed up first on a separate endpoint (imports, trust stores). Times are wall
clock on a loaded machine: read them as ratios, not absolutes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from daemons import (  # noqa: E402
    Certificate,
    Daemon,
    device_context,
    issue,
    make_ca,
    nginx_site,
    openssl_server,
)

from probe.api import run_check  # noqa: E402
from probe.observe.discovery import services  # noqa: E402
from probe.protocols.tls.codec import catalogue  # noqa: E402

NET = "127.93.9.0/24"
CHECKS = ("tls.protocol-versions", "tls.cipher-suites", "tls.certificate-validity",
          "tls.certificate-trust", "tls.certificate-strength", "tls.known-vulnerabilities")
SHORT = {"tls.protocol-versions": "ver", "tls.cipher-suites": "suites",
         "tls.certificate-validity": "valid", "tls.certificate-trust": "trust",
         "tls.certificate-strength": "key", "tls.known-vulnerabilities": "flaws"}
MIN_DAYS = 30
MODERN = "ECDHE+AESGCM:ECDHE+CHACHA20"
SETTLE = 1.5
"""Seconds of quiet (untimed) before each tool: s_server stalls the connection that follows a
refused renegotiation by a second; no tool should pay for the one before it."""


# ---------------------------------------------------------------------------------------------
# Connection counting: a sniffer in a child process (no GIL shared with the tools)
# ---------------------------------------------------------------------------------------------


def sniff(net: str) -> None:
    """Child mode: count SYNs to `net` on lo per "ip:port"; on each line read from stdin,
    print the counts since the last one as JSON and start again."""
    import threading

    from scapy.all import AsyncSniffer, conf

    conf.bufsize = 1 << 24  # sslyze opens hundreds of connections in bursts: drop none
    counts: dict[str, set[tuple[int, int]]] = {}
    lock = threading.Lock()

    def seen(packet: Any) -> None:
        key = f"{packet['IP'].dst}:{packet['TCP'].dport}"
        with lock:  # each packet shows twice on lo: keep (source port, sequence) once
            counts.setdefault(key, set()).add((packet["TCP"].sport, packet["TCP"].seq))

    sniffer = AsyncSniffer(iface="lo", store=False, prn=seen, filter=(
        f"tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0 and dst net {net}"))
    sniffer.start()
    print("ready", flush=True)
    for _ in sys.stdin:
        time.sleep(0.3)  # let the last packets of the run arrive
        with lock:
            print(json.dumps({k: len(v) for k, v in counts.items()}), flush=True)
            counts.clear()
    sniffer.stop()


class Counter:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--sniff", NET], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the sniffer did not start")

    def take(self, endpoint: str) -> int:
        """SYNs to `endpoint` since the last call."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return int(json.loads(self.process.stdout.readline()).get(endpoint, 0))

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait(10)


# ---------------------------------------------------------------------------------------------
# Endpoints
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str
    address: str
    port: int
    start: Callable[[Path], Daemon]

    @property
    def key(self) -> str:
        return f"{self.address}:{self.port}"


def nginx_tls(tmp: Path, address: str, port: int, cert: Certificate, ciphers: str = MODERN,
              protocols: str = "TLSv1.2 TLSv1.3") -> Daemon:
    return nginx_site(tmp, address, [port], f"""
      server {{ listen {address}:{port} ssl; ssl_certificate {cert.cert};
        ssl_certificate_key {cert.key}; ssl_protocols {protocols}; ssl_ciphers {ciphers};
        location / {{ return 200 "ok\\n"; }} }}""", name=f"{address}-{port}")


def endpoints(tmp: Path, issuer: Any) -> list[Endpoint]:
    def leaf(name: str, address: str, **options: Any) -> Certificate:
        return issue(tmp, name, issuer if options.pop("signed", True) else None,
                     names=[address], **options)[0]

    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
    return [
        Endpoint("nginx modern", "127.93.9.1", 443, lambda t: nginx_tls(
            t, "127.93.9.1", 443, leaf("modern", "127.93.9.1"))),
        Endpoint("nginx static RSA", "127.93.9.2", 443, lambda t: nginx_tls(
            t, "127.93.9.2", 443, leaf("rsa", "127.93.9.2", key="rsa2048"),
            ciphers="ECDHE+AESGCM:AES128-GCM-SHA256")),
        Endpoint("s_server TLS 1.0+", "127.93.9.3", 4433, lambda t: openssl_server(
            t, "127.93.9.3", 4433, leaf("legacy", "127.93.9.3"), "-www",
            "-min_protocol", "TLSv1", "-cipher", "DEFAULT:@SECLEVEL=0")),
        Endpoint("s_server weak", "127.93.9.4", 4433, lambda t: openssl_server(
            t, "127.93.9.4", 4433, leaf("weak", "127.93.9.4", key="rsa2048"), "-www",
            "-no_tls1_3", "-client_renegotiation", "-cipher", "ALL:eNULL:@SECLEVEL=0")),
        Endpoint("nginx expired", "127.93.9.5", 443, lambda t: nginx_tls(
            t, "127.93.9.5", 443, leaf("expired", "127.93.9.5", valid_from=past,
                                       valid_days=60))),
        Endpoint("s_server RSA-1024/SHA-1", "127.93.9.6", 4433, lambda t: openssl_server(
            t, "127.93.9.6", 4433, leaf("rsa1024", "127.93.9.6", key="rsa1024", sha1=True),
            "-www", "-cipher", "DEFAULT:@SECLEVEL=0")),
    ]


# ---------------------------------------------------------------------------------------------
# The three tools
# ---------------------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    connections: int
    verdicts: dict[str, str]
    own_count: int | None = None


async def iotprobe(endpoint: Endpoint, anchor: Path, counter: Counter) -> tuple[Run, float]:
    with device_context(endpoint.address, (endpoint.port,), trust=anchor, timeout=3.0) as ctx:
        begin = time.perf_counter()
        await ctx.observe(services)
        discovery = time.perf_counter() - begin
        counter.take(endpoint.key)
        before = ctx.connections
        begin = time.perf_counter()
        findings = {cid: await run_check(cid, ctx.device, context=ctx) for cid in CHECKS}
        seconds = time.perf_counter() - begin
        own = ctx.connections - before
    verdicts = {cid: "/".join(sorted({f.status.value for f in found}))
                for cid, found in findings.items()}
    return Run(seconds, counter.take(endpoint.key), verdicts, own), discovery


def sslyze_scan(endpoint: Endpoint, anchor: Path) -> Any:
    import sslyze

    commands = {
        sslyze.ScanCommand.SSL_2_0_CIPHER_SUITES, sslyze.ScanCommand.SSL_3_0_CIPHER_SUITES,
        sslyze.ScanCommand.TLS_1_0_CIPHER_SUITES, sslyze.ScanCommand.TLS_1_1_CIPHER_SUITES,
        sslyze.ScanCommand.TLS_1_2_CIPHER_SUITES, sslyze.ScanCommand.TLS_1_3_CIPHER_SUITES,
        sslyze.ScanCommand.CERTIFICATE_INFO, sslyze.ScanCommand.HEARTBLEED,
        sslyze.ScanCommand.OPENSSL_CCS_INJECTION, sslyze.ScanCommand.ROBOT,
        sslyze.ScanCommand.SESSION_RENEGOTIATION, sslyze.ScanCommand.TLS_COMPRESSION,
    }
    request = sslyze.ServerScanRequest(
        server_location=sslyze.ServerNetworkLocation(endpoint.address, endpoint.port,
                                                     ip_address=endpoint.address),
        scan_commands=commands,
        scan_commands_extra_arguments=sslyze.ScanCommandsExtraArguments(
            certificate_info=sslyze.CertificateInfoExtraArgument(custom_ca_file=anchor)))
    scanner = sslyze.Scanner()
    scanner.queue_scans([request])
    (result,) = list(scanner.get_results())
    return result


def errors(result: Any) -> list[str]:
    scan = result.scan_result
    if scan is None:
        return ["no connectivity"]
    out = []
    for name in ("certificate_info", "heartbleed", "openssl_ccs_injection", "robot",
                 "session_renegotiation", "tls_compression", "tls_1_2_cipher_suites"):
        attempt = getattr(scan, name)
        if attempt.status.name != "COMPLETED":
            out.append(f"{name}: {attempt.error_reason} {attempt.error_trace.exc_type}")
    return out


def _result(attempt: Any) -> Any:
    return attempt.result if attempt is not None and attempt.status.name == "COMPLETED" else None


def sslyze_verdicts(result: Any) -> dict[str, str]:
    """sslyze's results judged by the catalogue's rules."""
    scan = result.scan_result
    if scan is None:
        return {cid: "error" for cid in CHECKS}
    versions = {"SSL 2.0": scan.ssl_2_0_cipher_suites, "SSL 3.0": scan.ssl_3_0_cipher_suites,
                "TLS 1.0": scan.tls_1_0_cipher_suites, "TLS 1.1": scan.tls_1_1_cipher_suites,
                "TLS 1.2": scan.tls_1_2_cipher_suites, "TLS 1.3": scan.tls_1_3_cipher_suites}
    accepted = {name: [s.cipher_suite.name for s in r.accepted_cipher_suites]
                for name, attempt in versions.items() if (r := _result(attempt)) is not None}
    out = {}
    on = {name for name, names in accepted.items() if names}
    if len(accepted) < len(versions):
        out["tls.protocol-versions"] = "error"
    elif on & {"SSL 2.0", "SSL 3.0", "TLS 1.0", "TLS 1.1"} or not on & {"TLS 1.2", "TLS 1.3"}:
        out["tls.protocol-versions"] = "fail"
    else:
        out["tls.protocol-versions"] = "pass"
    by_name = {suite.name: suite for suite in catalogue().values()}
    weak = any(by_name[n].weak_classes for names in accepted.values() for n in names
               if n in by_name)
    plain = any(not by_name[n].forward_secret for n in accepted.get("TLS 1.2", [])
                if n in by_name)
    out["tls.cipher-suites"] = "fail" if weak or plain else "pass"
    out |= _certificates(_result(scan.certificate_info))
    out["tls.known-vulnerabilities"] = _flaws(scan)
    return out


def _certificates(info: Any) -> dict[str, str]:
    if info is None:
        return {cid: "error" for cid in CHECKS[2:5]}
    deployments = list(info.certificate_deployments)
    if info.certificate_deployment_with_sni_disabled is not None:
        deployments.append(info.certificate_deployment_with_sni_disabled)
    now = dt.datetime.now(dt.UTC)
    valid = trusted = strong = True
    for deployment in deployments:
        leaf = deployment.received_certificate_chain[0]
        if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc - dt.timedelta(
                days=MIN_DAYS):
            valid = False
        custom = [r for r in deployment.path_validation_results
                  if r.trust_store.name == "Supplied CA file"]
        if not custom or not custom[0].was_validation_successful:
            trusted = False
        key = leaf.public_key()
        size = getattr(key, "key_size", None) or getattr(getattr(key, "curve", None),
                                                         "key_size", 0)
        kind = type(key).__name__
        digest = leaf.signature_hash_algorithm
        if ("RSA" in kind and size < 2048) or ("Elliptic" in kind and size < 256) or (
                digest is not None and digest.name in ("md5", "sha1")):
            strong = False
    return {"tls.certificate-validity": "pass" if valid else "fail",
            "tls.certificate-trust": "pass" if trusted else "fail",
            "tls.certificate-strength": "pass" if strong else "fail"}


def _flaws(scan: Any) -> str:
    parts = {
        "heartbleed": (_result(scan.heartbleed), lambda r: r.is_vulnerable_to_heartbleed),
        "ccs": (_result(scan.openssl_ccs_injection),
                lambda r: r.is_vulnerable_to_ccs_injection),
        "robot": (_result(scan.robot), lambda r: r.robot_result.name.startswith("VULNERABLE")),
        "reneg": (_result(scan.session_renegotiation),
                  lambda r: not r.supports_secure_renegotiation
                  or r.client_renegotiations_success_count > 0),
        "compression": (_result(scan.tls_compression), lambda r: r.supports_compression),
    }
    if any(result is not None and judge(result) for result, judge in parts.values()):
        return "fail"
    return "error" if any(result is None for result, _ in parts.values()) else "pass"


def nmap(endpoint: Endpoint) -> tuple[float, dict[str, str]]:
    begin = time.perf_counter()
    out = subprocess.run(["nmap", "-n", "-Pn", "--script", "ssl-enum-ciphers", "-p",
                          str(endpoint.port), endpoint.address], capture_output=True,
                         text=True, timeout=600, check=False).stdout
    seconds = time.perf_counter() - begin
    versions = set(re.findall(r"\|\s+(SSLv2|SSLv3|TLSv1\.[0-3]):", out))
    names = set(re.findall(r"\b(TLS_[A-Z0-9_]+)\b", out))
    by_name = {suite.name: suite for suite in catalogue().values()}
    legacy = versions & {"SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"}
    verdicts = {
        "tls.protocol-versions": "fail" if legacy or not versions & {"TLSv1.2", "TLSv1.3"}
        else "pass",
        "tls.cipher-suites": "fail" if any(
            by_name[n].weak_classes or (not by_name[n].forward_secret and n in _tls12(out))
            for n in names if n in by_name) else "pass",
    }
    return seconds, verdicts


def _tls12(out: str) -> set[str]:
    section = re.search(r"TLSv1\.2:(.*?)(?:\|\s+TLSv1\.3:|\|_)", out, re.DOTALL)
    return set(re.findall(r"\b(TLS_[A-Z0-9_]+)\b", section.group(1))) if section else set()


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


@contextmanager
def running(tmp: Path, chosen: list[Endpoint]) -> Iterator[None]:
    with ExitStack() as stack:
        for endpoint in chosen:
            stack.enter_context(endpoint.start(tmp))
        yield


def agree(a: dict[str, str], b: dict[str, str]) -> str:
    differ = [SHORT[c] for c in b if a.get(c) != b[c]]
    return "yes" if not differ else "no: " + ",".join(differ)


async def main() -> None:
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="iotprobe-bench-"))
    anchor, issuer = make_ca(tmp)
    chosen = endpoints(tmp, issuer)
    warm = Endpoint("warm-up", "127.93.9.200", 443, lambda t: nginx_tls(
        t, "127.93.9.200", 443, issue(t, "warm", issuer, names=["127.93.9.200"])[0]))
    counter = Counter()
    rows = []
    try:
        with running(tmp, [*chosen, warm]):
            await iotprobe(warm, anchor.cert, counter)
            sslyze_scan(warm, anchor.cert)
            counter.take(warm.key)
            for endpoint in chosen:
                await asyncio.sleep(SETTLE)
                mine, discovery = await iotprobe(endpoint, anchor.cert, counter)
                await asyncio.sleep(SETTLE)
                begin = time.perf_counter()
                result = sslyze_scan(endpoint, anchor.cert)
                theirs = Run(time.perf_counter() - begin, counter.take(endpoint.key),
                             sslyze_verdicts(result))
                for problem in errors(result):
                    print(f"{endpoint.name}: sslyze {problem}", file=sys.stderr)
                await asyncio.sleep(SETTLE)
                nmap_seconds, nmap_verdicts = nmap(endpoint)
                nmap_connections = counter.take(endpoint.key)
                rows.append((endpoint, mine, discovery, theirs, nmap_seconds, nmap_connections,
                             nmap_verdicts))
    finally:
        counter.stop()
    report(rows)


def report(rows: list[Any]) -> None:
    header = (f"{'endpoint':26} {'iotprobe s':>10} {'conns':>9} {'sslyze s':>9} {'conns':>6} "
              f"{'nmap s':>7} {'conns':>6} {'speed-up':>8}  {'= sslyze':10} {'= nmap':8} "
              "iotprobe verdicts")
    print(header)
    print("-" * len(header))
    total_mine = total_theirs = 0.0
    for endpoint, mine, _discovery, theirs, nmap_s, nmap_c, nmap_v in rows:
        total_mine += mine.seconds
        total_theirs += theirs.seconds
        verdicts = " ".join(f"{SHORT[c]}={v}" for c, v in mine.verdicts.items())
        print(f"{endpoint.name:26} {mine.seconds:10.2f} {mine.connections:>4} ({mine.own_count:>2})"
              f" {theirs.seconds:9.2f} {theirs.connections:6} {nmap_s:7.2f} {nmap_c:6} "
              f"{theirs.seconds / mine.seconds:7.1f}x  {agree(mine.verdicts, theirs.verdicts):10}"
              f" {agree(mine.verdicts, nmap_v):8} {verdicts}")
    print("-" * len(header))
    print(f"{'total':26} {total_mine:10.2f} {'':9} {total_theirs:9.2f} {'':6} {'':7} {'':6} "
          f"{total_theirs / total_mine:7.1f}x")
    print("\nconns: SYNs seen on lo (in parentheses: connections iotprobe counted itself). "
          "iotprobe times exclude discovery (port scan and identification: "
          + ", ".join(f"{r[2]:.2f}" for r in rows) + " s).")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--sniff"]:
        sniff(sys.argv[2])
    else:
        asyncio.run(main())
