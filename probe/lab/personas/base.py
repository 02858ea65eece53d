"""Personas: the kinds of emulated device, each with the results a correct probe must report.

A persona declares what it runs (its listeners, on the device's own address, each offering
the services the check catalogue names) and its expectations, keyed by check id with `Status`
values (probe.lab.expectations says how they resolve for every check of the catalogue):

- `expect`: the default, non-intrusive scan of the inventory `iotprobe lab up` writes. It
  holds only what the catalogue cannot tell: an intrusive check is `skipped` there, and a
  check whose services no listener offers is `not_applicable`, without a line;
- `expect_intrusive`: the intrusive checks with --intrusive (those not written, where the
  persona has no endpoint of their kind, are `not_applicable`; the others are not compared);
- `expect_monitored`: the statuses that change when the inventory declares the persona's
  monitoring sinks (`probe.lab.personas.monitor.lab_monitor`);
- `expect_verdict`: the verdict of the default scan.

A check added to the catalogue needs no persona line where the rules decide it; a persona
that exercises it writes its status, and the others that offer its services are not compared
on it (the self-test lists them). This module holds the Persona type and the bundles the
persona modules share (`{id: Status.PASS for id in TLS_CHECKS}`); the personas themselves are
in one module per family, listed in `probe.lab.personas.ALL`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from probe.checks.catalogue import catalogue
from probe.lab.expectations import statuses
from probe.lab.servers import Listener
from probe.model import Status, Verdict

FAIL, ERROR, PASS = Status.FAIL, Status.ERROR, Status.PASS
SKIPPED, NOT_APPLICABLE = Status.SKIPPED, Status.NOT_APPLICABLE

OPEN_PORTS = "net.open-ports"
CLEARTEXT_MANAGEMENT = "net.cleartext-management"
MQTT_CLEARTEXT = "mqtt.cleartext-listener"
MQTT_ANONYMOUS = "mqtt.anonymous-access"
MQTT_DEFAULT_CREDENTIALS = "mqtt.default-credentials"
MQTT_TOPICS = "mqtt.topic-authorization"
MQTT_CLIENT_CERTIFICATE = "mqtt.client-certificate"
HTTP_CLEARTEXT = "http.cleartext"
HTTP_AUTHENTICATION = "http.authentication"
HTTP_DEFAULT_CREDENTIALS = "http.default-credentials"
HTTP_HSTS = "http.hsts"
CLOCK_SYNC = "monitor.clock-sync"
DISCLOSURE = "monitor.vulnerability-disclosure"
TLS_VERSIONS = "tls.protocol-versions"
TLS_SUITES = "tls.cipher-suites"
TLS_VALIDITY = "tls.certificate-validity"
TLS_TRUST = "tls.certificate-trust"
TLS_FLAWS = "tls.known-vulnerabilities"


def family(name: str) -> tuple[str, ...]:
    """The catalogue's non-intrusive checks of family `name` (`tls` -> tls.*), in catalogue
    order: a bundle over them covers a check the family gains."""
    return tuple(c for c, check in catalogue().items()
                 if c.startswith(f"{name}.") and not check.intrusive)


def every(checks: tuple[str, ...], status: Status) -> dict[str, Status]:
    return {check_id: status for check_id in checks}


TLS_CHECKS = family("tls")
MQTT_CHECKS = family("mqtt")
WEB_CHECKS = (HTTP_CLEARTEXT, HTTP_AUTHENTICATION, HTTP_HSTS, CLOCK_SYNC, DISCLOSURE)
"""The non-intrusive checks of a web interface: http.* and the 6.5 checks read over HTTP."""

GOOD_TLS = every(TLS_CHECKS, PASS)
"""Every TLS check passes; trust assumes the scan's trust anchor is the lab CA."""
PAGE_OVER_HTTPS = {HTTP_AUTHENTICATION: FAIL, HTTP_HSTS: FAIL, CLOCK_SYNC: FAIL, DISCLOSURE: FAIL}
"""`HttpPage` behind TLS: 200 on every path, no HSTS, no Date header, no security.txt."""
REFUSING_MQTTS = {MQTT_CLEARTEXT: PASS, MQTT_ANONYMOUS: PASS, MQTT_TOPICS: SKIPPED,
                  MQTT_CLIENT_CERTIFICATE: FAIL}
"""MQTT over TLS that refuses anonymous clients but wants no client certificate; the lab
inventory has no credentials, so topic authorization is skipped."""


@dataclass(frozen=True)
class Persona:
    name: str
    description: str
    device_class: str
    listeners: tuple[Listener, ...]
    expect: Mapping[str, Status] = field(hash=False)
    expect_verdict: Verdict
    expect_intrusive: Mapping[str, Status] = field(default_factory=dict, hash=False)
    expect_monitored: Mapping[str, Status] = field(default_factory=dict, hash=False)
    bursts_break_it: bool = False
    """It stops answering under an intrusive scan's bursts (probe.lab.expectations)."""

    def __post_init__(self) -> None:
        if not isinstance(self.expect_verdict, Verdict):
            raise ValueError(f"persona {self.name}: the verdict must be a Verdict, not "
                             f"{self.expect_verdict!r}")
        seen: set[tuple[str, int]] = set()
        for listener in self.listeners:
            key = (listener.transport, listener.port)
            if key in seen:
                raise ValueError(f"persona {self.name}: {key[0]}/{key[1]} listed twice")
            seen.add(key)
        for name in ("expect", "expect_intrusive", "expect_monitored"):
            object.__setattr__(self, name, statuses(getattr(self, name)))

    @property
    def offers(self) -> frozenset[str]:
        """The catalogue's services its listeners offer."""
        return frozenset[str]().union(*(listener.offers for listener in self.listeners))

    def reached_by(self, tcp_ports: Iterable[int]) -> bool:
        """Whether a scan of `tcp_ports` (UDP discovery included) finds any listener of it; a
        persona without listeners (unreachable on purpose) counts as reached."""
        ports = set(tcp_ports)
        return not self.listeners or any(
            listener.transport == "udp" or listener.port in ports for listener in self.listeners)


