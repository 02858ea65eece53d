"""net.open-ports and net.cleartext-management, each seen to pass and to fail on real peers."""

from __future__ import annotations

from pathlib import Path

from daemons import (
    Listener,
    certificate,
    mosquitto,
    nginx,
    scan_context,
    silent,
    snmpd,
    telnetd,
    tftpd,
    vsftpd,
)

from probe.api import judge_check
from probe.checks.base import Observations
from probe.model import Status
from probe.observe.discovery import services


async def _observe(address: str, ports: tuple[int, ...]) -> Observations:
    with scan_context(address, ports, timeout=1.0) as ctx:
        found = await ctx.observe(services)
        return Observations(ctx.device, {services: found})


async def test_open_ports_pass_when_only_allowed_ports_answer(tmp_path: Path) -> None:
    with nginx(tmp_path, "127.77.6.1", 443, certificate(tmp_path)):
        obs = await _observe("127.77.6.1", (22, 23, 443))
    (finding,) = judge_check("net.open-ports", obs)
    assert finding.status is Status.PASS
    assert finding.target == "device"
    assert finding.evidence["open_tcp"] == [
        {"port": 443, "protocol": "http", "tls": True, "detail": "HTTP/1.1 200 OK"}]
    assert finding.evidence["allowed_tcp"] == [443, 8443, 8883]


async def test_open_ports_fail_lists_each_port_outside_the_allow_list(tmp_path: Path) -> None:
    with nginx(tmp_path, "127.77.6.2", 443, certificate(tmp_path)), \
            telnetd(tmp_path, "127.77.6.2"), snmpd(tmp_path, "127.77.6.2"):
        obs = await _observe("127.77.6.2", (22, 23, 443))
    (finding,) = judge_check("net.open-ports", obs)
    assert finding.status is Status.FAIL
    assert finding.evidence["not_allowed"] == ["tcp/23 (telnet)", "udp/161 (snmp)"]
    assert "tcp/23 (telnet)" in finding.summary
    assert [u["protocol"] for u in finding.evidence["udp_services"]] == ["snmp"]
    (widened,) = judge_check("net.open-ports", obs, allowed_tcp=[23, 443], allowed_udp=[161])
    assert widened.status is Status.PASS


async def test_cleartext_management_passes_on_encrypted_services(tmp_path: Path) -> None:
    cert = certificate(tmp_path)
    with nginx(tmp_path, "127.77.6.3", 443, cert), mosquitto(tmp_path, "127.77.6.3", 8883, cert):
        obs = await _observe("127.77.6.3", (21, 23, 443, 513, 8883))
    (finding,) = judge_check("net.cleartext-management", obs)
    assert finding.status is Status.PASS
    assert [t["port"] for t in finding.evidence["open_tcp"]] == [443, 8883]


async def test_cleartext_management_fails_per_endpoint(tmp_path: Path) -> None:
    with telnetd(tmp_path, "127.77.6.4"), vsftpd(tmp_path, "127.77.6.4"), \
            tftpd(tmp_path, "127.77.6.4"), snmpd(tmp_path, "127.77.6.4"):
        async with Listener("127.77.6.4", 513, silent):
            obs = await _observe("127.77.6.4", (21, 22, 23, 443, 513))
    findings = judge_check("net.cleartext-management", obs)
    assert {f.target: f.status for f in findings} == {
        "tcp/21": Status.FAIL, "tcp/23": Status.FAIL, "tcp/513": Status.FAIL,
        "udp/69": Status.FAIL, "udp/161": Status.FAIL,
    }
    by_target = {f.target: f for f in findings}
    assert by_target["tcp/23"].evidence["protocol"] == "telnet"
    assert by_target["tcp/513"].evidence["protocol"] == "rlogin"
    assert by_target["udp/161"].evidence["answered"][0]["community"] == "public"


async def test_cleartext_management_cannot_decide_a_silent_telnet_port(tmp_path: Path) -> None:
    with nginx(tmp_path, "127.77.6.5", 443, certificate(tmp_path)):
        async with Listener("127.77.6.5", 2323, silent):
            obs = await _observe("127.77.6.5", (443, 2323))
    (finding,) = judge_check("net.cleartext-management", obs)
    assert (finding.status, finding.target) == (Status.ERROR, "tcp/2323")
    assert finding.evidence["silent"] is True
