"""Exposure checks (27400-6.2): what the device exposes, and whether it manages itself in clear."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from probe.checks.base import CONTROL_COMMUNICATION, Observations, check
from probe.checks.params import CheckParams, NoParams, Ports
from probe.model import Finding, Severity, errored, failed, passed
from probe.observe.discovery import Identification, Services, UdpService, services

CLEARTEXT_TCP = {"telnet": "Telnet", "ftp": "FTP", "rlogin": "rlogin", "rsh": "rsh"}
UNDECIDED_PORTS = frozenset({21, 23, 2323})


class OpenPortsParams(CheckParams):
    allowed_tcp: Ports = (443, 8443, 8883)
    """The TCP ports that may be open."""
    allowed_udp: Ports = (5684,)
    """The UDP ports that may answer."""


def _tcp(ident: Identification) -> dict[str, Any]:
    out: dict[str, Any] = {"port": ident.port, "protocol": ident.protocol, "tls": ident.tls}
    if ident.detail:
        out["detail"] = ident.detail
    return out


def _udp(service: UdpService) -> dict[str, Any]:
    return {"port": service.port, "protocol": service.protocol, "detail": service.detail}


def _scanned(found: Services, port: int) -> str:
    """An open port as the port scan found it, named by its identification when there is one
    (identification never decides whether a port counts: the scan does)."""
    ident = found.tcp_port(port)
    return f"tcp/{port} ({ident.protocol if ident else 'unknown'})"


def _ports(ports: tuple[int, ...]) -> list[int]:
    return sorted({int(p) for p in ports})


@check(
    "net.open-ports",
    title="Only allowed ports are open",
    control=CONTROL_COMMUNICATION,
    severity=Severity.MEDIUM,
    needs=(services,),
    remediation="Close or firewall every TCP port and UDP service the device class does not need "
                "(debug consoles, vendor daemons, discovery protocols), or, if a service is "
                "required, add it to the profile's allow-list for the device class.",
    params=OpenPortsParams,
)
def open_ports(obs: Observations, params: OpenPortsParams) -> Iterable[Finding]:
    """Pass: every TCP port the port scan found open, and every UDP service that answered
    discovery (CoAP, SNMP, SSDP, mDNS, TFTP, BACnet), is on the allow-list (`allowed_tcp`,
    `allowed_udp`).
    Fail: any one is not, whether or not its service could be identified; the finding names
    them. Decided from the scan alone, so it is never not applicable."""
    found: Services = obs[services]
    allowed_tcp, allowed_udp = _ports(params.allowed_tcp), _ports(params.allowed_udp)
    extra = [_scanned(found, port) for port in found.scan.open if port not in allowed_tcp]
    extra += [f"udp/{u.port} ({u.protocol})" for u in found.udp if u.port not in allowed_udp]
    evidence: dict[str, Any] = {
        "open_tcp": [_tcp(i) for i in found.tcp], "udp_services": [_udp(u) for u in found.udp],
        "allowed_tcp": allowed_tcp, "allowed_udp": allowed_udp,
        "scan": {"method": found.scan.method, "scanned": found.scan.scanned,
                 "filtered": len(found.scan.filtered)},
    }
    if extra:
        yield failed(f"{len(extra)} open port(s) outside the allow-list: " + ", ".join(extra),
                     not_allowed=extra, **evidence)
    else:
        yield passed("every open port and answering UDP service is on the allow-list", **evidence)


def _snmp_community(service: UdpService) -> bool:
    return service.protocol == "snmp" and bool(service.evidence.get("answered"))


@check(
    "net.cleartext-management",
    title="No cleartext management protocol answers",
    control=CONTROL_COMMUNICATION,
    severity=Severity.HIGH,
    needs=(services,),
    remediation="Disable Telnet, FTP, TFTP and rlogin/rsh; manage the device over SSH, HTTPS or "
                "another authenticated, encrypted channel. Disable SNMP v1/v2c or at least the "
                "well-known communities 'public' and 'private'; use SNMPv3 with authPriv.",
)
def cleartext_management(obs: Observations, params: NoParams) -> Iterable[Finding]:
    """Pass: no Telnet, FTP, rlogin or rsh answers over TCP without TLS, no TFTP answers, and
    SNMP answers no well-known community (public, private).
    Fail: one of them answers; one finding per port.
    Error: tcp/21, tcp/23 or tcp/2323 is open but could not be identified, so it may be a
    cleartext management service."""
    found: Services = obs[services]
    findings: list[Finding] = []
    for ident in found.tcp:
        target = f"tcp/{ident.port}"
        if ident.protocol in CLEARTEXT_TCP and not ident.tls:
            name = CLEARTEXT_TCP[ident.protocol]
            findings.append(failed(f"{name} answers on {target}: {ident.detail}", target,
                                   **_tcp(ident), identified_by=dict(ident.evidence)))
        elif ident.port in UNDECIDED_PORTS and ident.protocol == "unknown":
            findings.append(errored(
                f"{target} is open but could not be identified ({ident.detail}); it may be a "
                "cleartext management service", target, **_tcp(ident), silent=ident.silent,
                identified_by=dict(ident.evidence)))
    for service in found.udp:
        target = f"udp/{service.port}"
        if service.protocol == "tftp":
            findings.append(failed(f"TFTP answers on {target}: {service.detail}", target,
                                   **_udp(service), reply=dict(service.evidence)))
        elif _snmp_community(service):
            findings.append(failed(f"{service.detail} on {target}", target, **_udp(service),
                                   answered=list(service.evidence["answered"])))
    if findings:
        return findings
    return [passed("no Telnet, FTP, TFTP, rlogin/rsh or SNMP with a well-known community "
                   "answers", open_tcp=[_tcp(i) for i in found.tcp],
                   udp_services=[_udp(u) for u in found.udp])]


CHECKS = (open_ports, cleartext_management)
