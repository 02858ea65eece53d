"""Open ports that could not be identified (issue 15, defects 4 and 9), against real peers.

A port that may carry a judged service (by the inventory's name or its number) and whose
identification left that service open makes every check of the service `error` on that port,
never `not_applicable`; and identification of many silent ports never starves the port verdict.
Addresses: 127.136.0.x (one device each), 127.136.1.1 (the device with 300 silent ports).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from daemons import (
    Daemon,
    Listener,
    dropbear,
    greet,
    issue,
    make_ca,
    nginx,
    openssl_server,
    silent,
    start,
)
from daemons import device_context as context

from probe.api import run_check
from probe.context import ScanOptions
from probe.engine import Engine
from probe.escaping import MAX_ITEMS
from probe.model import Device, Finding, Status
from probe.profile_loader import load_profile
from probe.record.model import Record

WEB = ("http.authentication", "http.hsts", "monitor.clock-sync",
       "monitor.vulnerability-disclosure")
CHAIN_BYTES = 1_400_000
MANY = range(20000, 20300)


def socat_silent(tmp: Path, address: str, port: int) -> Daemon:
    """socat accepting on `address:port` and writing what it reads to /dev/null: it never
    sends a byte and keeps each connection until the client closes it."""
    argv = ["socat", "-u", f"TCP-LISTEN:{port},bind={address},fork,reuseaddr",
            "OPEN:/dev/null,wronly"]
    return start(f"socat-{port}", argv, tmp, address, [(port, "tcp")])


def oversized_chain_server(tmp: Path, address: str) -> Daemon:
    """`openssl s_server -www` on 443 whose chain (the CA certificate, many times) is about
    1.4 MB: more than a TLS client accepts in one Certificate message."""
    ca, issuer = make_ca(tmp)
    leaf, _ = issue(tmp, "device", issuer)
    pem = ca.cert.read_bytes()
    chain = tmp / "chain.pem"
    chain.write_bytes(pem * (CHAIN_BYTES // len(pem) + 1))
    return openssl_server(tmp, address, 443, leaf, "-cert_chain", str(chain), "-www")


async def _web(address: str, ports: tuple[int, ...]) -> dict[str, list[Finding]]:
    with context(address, ports, timeout=2.0) as ctx:
        return {check: await run_check(check, ctx.device, context=ctx) for check in WEB}


def _only_error_on(findings: list[Finding], target: str) -> Finding:
    (finding,) = findings
    assert (finding.status, finding.target) == (Status.ERROR, target), finding
    assert finding.evidence["reason"] == "unidentified"
    assert finding.evidence["may_serve"] == ["https"]
    return finding


async def test_a_silent_https_port_makes_the_web_checks_error(tmp_path: Path) -> None:
    with socat_silent(tmp_path, "127.136.0.1", 443):
        found = await _web("127.136.0.1", (22, 443))
    for check, findings in found.items():
        finding = _only_error_on(findings, "tcp/443")
        assert "tcp/443 is open but could not be identified: accepted but never answered " \
               "within 2 s" in finding.summary, check
        assert finding.evidence["silent"] is True


async def test_an_oversized_certificate_chain_makes_the_web_checks_error(tmp_path: Path) -> None:
    with oversized_chain_server(tmp_path, "127.136.0.2"):
        found = await _web("127.136.0.2", (22, 443))
    for check, findings in found.items():
        finding = _only_error_on(findings, "tcp/443")
        assert "the TLS handshake failed: excessive message size" in finding.summary, check
        assert finding.evidence["identified_by"]["tls_error"] == "excessive message size"


async def test_an_ssh_only_device_has_no_web_service(tmp_path: Path) -> None:
    with dropbear(tmp_path, "127.136.0.3"):
        found = await _web("127.136.0.3", (22, 443, 8080))
    for check, findings in found.items():
        assert [f.status for f in findings] == [Status.NOT_APPLICABLE], check


async def test_a_port_that_speaks_first_is_no_web_service() -> None:
    """A greeting before any request (here VNC's RFB banner; no Debian VNC server is in the
    test set) rules out TLS, HTTP and MQTT, whose servers never speak first."""
    async with Listener("127.136.0.5", 5900, greet(b"RFB 003.008\n")):
        found = await _web("127.136.0.5", (5900,))
    for check, findings in found.items():
        assert [f.status for f in findings] == [Status.NOT_APPLICABLE], check


async def test_a_silent_port_beside_a_served_one_keeps_both_verdicts(tmp_path: Path) -> None:
    _, issuer = make_ca(tmp_path)
    leaf, _ = issue(tmp_path, "device", issuer)
    with nginx(tmp_path, "127.136.0.4", 443, leaf), socat_silent(tmp_path, "127.136.0.4", 8443):
        found = await _web("127.136.0.4", (443, 8443))
    hsts = {f.target: f for f in found["http.hsts"]}
    assert hsts["tcp/443"].status is Status.FAIL  # nginx sends no Strict-Transport-Security
    assert hsts["tcp/8443"].status is Status.ERROR
    assert hsts["tcp/8443"].evidence["reason"] == "unidentified"
    authentication = {f.target: f.status for f in found["http.authentication"]}
    assert authentication == {"tcp/443": Status.FAIL, "tcp/8443": Status.ERROR}


@contextlib.asynccontextmanager
async def silent_ports(address: str, ports: range) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for port in ports:
            await stack.enter_async_context(Listener(address, port, silent))
        yield


def write_profile(tmp: Path) -> Path:
    path = tmp / "profile.yaml"
    path.write_text(f"""
id: many-ports
title: exposure, TLS and web checks
version: "1"
scan:
  tcp_ports: "{MANY[0]}-{MANY[-1]}"
controls:
  27400-6.2:
    title: Secure communication
    checks:
      net.open-ports: {{}}
      tls.protocol-versions: {{}}
      http.authentication: {{}}
""")
    return path


async def test_three_hundred_silent_ports_fail_open_ports_within_the_budget(
        tmp_path: Path) -> None:
    """Identifying them all would take about 100 s; the budget is 16 s. The port scan alone
    decides net.open-ports; the other checks name the ports they could not decide."""
    outcomes: list[Record] = []
    profile = load_profile(str(write_profile(tmp_path)))
    options = ScanOptions(timeout=1.0, budget=16.0, udp=False, exclude_ports=(2024,))
    device = Device(id="many", address="127.136.1.1", exclude_ports=(2024,))
    async with silent_ports("127.136.1.1", MANY):
        await Engine(profile, options).run([device], outcomes.append)
    (outcome,) = outcomes
    results = {r.check: r.finding for r in outcome.results}
    assert all(f.evidence.get("reason") != "budget" for f in results.values()), results
    ports = results["net.open-ports"]
    assert ports.status is Status.FAIL
    # the record keeps MAX_ITEMS of a list and counts the rest (probe.escaping)
    assert ports.evidence["not_allowed"] == [
        *(f"tcp/{p} (unknown)" for p in list(MANY)[:MAX_ITEMS]),
        f"…[+{len(MANY) - MAX_ITEMS} items]"]
    assert "300 open port(s) outside the allow-list" in ports.summary
    for check in ("tls.protocol-versions", "http.authentication"):
        assert results[check].status is Status.ERROR, check
        assert results[check].evidence["reason"] == "unidentified"
        assert results[check].evidence["count"] == len(MANY)
    assert {s.port for s in outcome.services} == set(MANY)
