"""Personas: the kinds of emulated device, each with the results a correct probe must report.

A persona declares what it runs (its listeners, on the device's own address) and `expect`, the
status each check must get under the probe's default, non-intrusive profile. `expect` names the
checks the persona was built to exercise; `expect_verdict` is the verdict those results imply.
This module holds the Persona type and the expectation helpers the persona modules share; the
personas themselves are in one module per family, listed in `probe.lab.personas.ALL`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from probe.lab.servers import Listener
from probe.model import Status, Verdict

OPEN_PORTS = "net.open-ports"
CLEARTEXT_MANAGEMENT = "net.cleartext-management"
MQTT_CLEARTEXT = "mqtt.cleartext-listener"
MQTT_ANONYMOUS = "mqtt.anonymous-access"
MQTT_DEFAULT_CREDENTIALS = "mqtt.default-credentials"
MQTT_TOPICS = "mqtt.topic-authorization"
MQTT_CLIENT_CERTIFICATE = "mqtt.client-certificate"


def mqtt_expect(cleartext: str, anonymous: str, topics: str, certificate: str,
                default_credentials: str = "skipped") -> dict[str, str]:
    """The MQTT checks' statuses; default credentials are `skipped` without --intrusive."""
    return {MQTT_CLEARTEXT: cleartext, MQTT_ANONYMOUS: anonymous,
            MQTT_DEFAULT_CREDENTIALS: default_credentials, MQTT_TOPICS: topics,
            MQTT_CLIENT_CERTIFICATE: certificate}


TLS_CHECKS = {"versions": "tls.protocol-versions", "suites": "tls.cipher-suites",
              "validity": "tls.certificate-validity", "trust": "tls.certificate-trust",
              "strength": "tls.certificate-strength", "flaws": "tls.known-vulnerabilities"}
WEB_CHECKS = {"cleartext": "http.cleartext", "authentication": "http.authentication",
              "default_credentials": "http.default-credentials", "hsts": "http.hsts",
              "clock": "monitor.clock-sync", "disclosure": "monitor.vulnerability-disclosure"}


def tls_expect(status: str = "pass", **overrides: str) -> dict[str, str]:
    """Every TLS check at `status`, except those named (versions, suites, validity, trust,
    strength, flaws). Trust assumes the scan's trust anchor is the lab CA."""
    return {check: overrides.get(short, status) for short, check in TLS_CHECKS.items()}


def web_expect(status: str = "not_applicable", *, default_credentials: str = "skipped",
               **overrides: str) -> dict[str, str]:
    """Every HTTP(S) check at `status`, except those named (cleartext, authentication, hsts,
    clock, disclosure); default credentials are `skipped` without --intrusive."""
    out = {check: overrides.get(short, status) for short, check in WEB_CHECKS.items()}
    out[WEB_CHECKS["default_credentials"]] = default_credentials
    return out


GOOD_TLS = tls_expect("pass")
NO_WEB = web_expect()
PAGE_OVER_HTTPS = web_expect(cleartext="not_applicable", authentication="fail", hsts="fail",
                             clock="fail", disclosure="fail")
"""`HttpPage` behind TLS: 200 on every path, no HSTS, no Date header, no security.txt."""

NO_MQTT = mqtt_expect("not_applicable", "not_applicable", "not_applicable", "not_applicable")
REFUSING_MQTTS = mqtt_expect("pass", "pass", "skipped", "fail")
"""MQTT over TLS that refuses anonymous clients but wants no client certificate; the lab
inventory has no credentials, so topic authorization is skipped."""


@dataclass(frozen=True)
class Persona:
    name: str
    description: str
    device_class: str
    listeners: tuple[Listener, ...]
    expect: Mapping[str, str] = field(hash=False)
    expect_verdict: str

    def __post_init__(self) -> None:
        statuses = {s.value for s in Status}
        for check_id, status in self.expect.items():
            if status not in statuses:
                raise ValueError(f"persona {self.name}: {check_id}: unknown status {status!r}")
        if self.expect_verdict not in {v.value for v in Verdict}:
            raise ValueError(f"persona {self.name}: unknown verdict {self.expect_verdict!r}")
        seen: set[tuple[str, int]] = set()
        for listener in self.listeners:
            key = (listener.transport, listener.port)
            if key in seen:
                raise ValueError(f"persona {self.name}: {key[0]}/{key[1]} listed twice")
            seen.add(key)
        object.__setattr__(self, "expect", MappingProxyType(dict(self.expect)))
