"""The plant-protocol exposure check (27400-6.2): Modbus/TCP and BACnet/IP answer without any
authentication (neither protocol has any), so whoever reaches the port can read and write the
process. One check for both, with one allow-list of protocols per device class: the question
is the same, and an operator allows a gateway's protocols in one place.

One finding per endpoint that answers ("tcp/502", "udp/47808"), or one for the device."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from probe.checks.base import CONTROL_COMMUNICATION, Observations, check
from probe.checks.params import LIST, CheckParams
from probe.model import Finding, Severity, errored, failed, passed
from probe.observe.discovery import Services, services
from probe.protocols.bacnet.ident import SERVICE as BACNET
from probe.protocols.modbus.ident import PORTS as MODBUS_PORTS
from probe.protocols.modbus.ident import SERVICE as MODBUS

Protocol = Literal["modbus", "bacnet"]
NAMES = {MODBUS: "Modbus/TCP", BACNET: "BACnet/IP"}


class ExposureParams(CheckParams):
    allowed: Annotated[tuple[Protocol, ...], LIST] = ()
    """The plant protocols the device's class may expose (`modbus`, `bacnet`)."""


def _finding(target: str, protocol: str, detail: str, allowed: tuple[str, ...],
             evidence: dict[str, Any]) -> Finding:
    name = NAMES[protocol]
    if protocol in allowed:
        return passed(f"{name} answers on {target} without authentication, as the device's "
                      f"class allows: {detail}", target, protocol=protocol, allowed=True,
                      **evidence)
    return failed(f"{name} answers on {target} without authentication: {detail}", target,
                  protocol=protocol, allowed=False, **evidence)


@check(
    "plant.exposure",
    title="No unauthenticated plant protocol off the class's allow-list",
    control=CONTROL_COMMUNICATION,
    severity=Severity.HIGH,
    needs=(services,),
    remediation="Keep Modbus/TCP and BACnet/IP off every network but the control network "
                "that needs them (a firewall or a gateway in front of the device), or use "
                "their secured forms (Modbus/TCP Security over TLS on tcp/802, BACnet/SC); "
                "if the device's class must expose them, list them in the profile's "
                "`allowed` for that class.",
    params=ExposureParams,
)
def exposure(obs: Observations, params: ExposureParams) -> Iterable[Finding]:
    """Pass: no Modbus/TCP server answers Read Device Identification (function 43/14) and no
    BACnet/IP device answers Who-Is with I-Am, or those that answer are of protocols the
    device's class allows (`allowed`).
    Fail: one answers and its protocol is not allowed; one finding per endpoint.
    Error: tcp/502 (or a port the inventory names `modbus`) is open but could not be
    identified, so it may be Modbus/TCP."""
    found: Services = obs[services]
    allowed = params.allowed
    findings: list[Finding] = []
    for ident in found.tcp:
        target = f"tcp/{ident.port}"
        if ident.protocol == MODBUS:
            findings.append(_finding(target, MODBUS, ident.detail, allowed,
                                     {"tls": ident.tls, "identified_by": dict(ident.evidence)}))
        elif ident.protocol == "unknown" and ident.port in MODBUS_PORTS | _named(obs):
            findings.append(errored(f"{target} is open but could not be identified "
                                    f"({ident.detail}); it may be Modbus/TCP", target,
                                    silent=ident.silent, identified_by=dict(ident.evidence)))
    for service in found.udp:
        if service.protocol == BACNET:
            findings.append(_finding(f"udp/{service.port}", BACNET, service.detail, allowed,
                                     {"reply": dict(service.evidence)}))
    if findings:
        return findings
    return [passed("no Modbus/TCP or BACnet/IP answers", allowed=list(allowed),
                   open_tcp=list(found.scan.open))]


def _named(obs: Observations) -> frozenset[int]:
    """The TCP ports the inventory names `modbus`."""
    return frozenset(obs.device.services.get(MODBUS, ()))


CHECKS = (exposure,)
