"""The inputs of the record goldens (tests/golden/records/): what the engine hands over for a
few canonical devices, built by hand so that the golden bytes depend on the record code alone."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from probe.escaping import MAX_ITEMS, MAX_TEXT
from probe.model import Device, Finding, Result, Service, Severity, Status, Waiver
from probe.secrets import Secret

MOMENT = dt.datetime(2026, 11, 29, 3, 25, 42, tzinfo=dt.UTC)
REFS = {"iso-27400-2022": ("6.2",), "etsi-en-303-645": ("5.1-1", "5.1-2")}
SECRET = "hunter2-golden-secret"
KEY = "ab" * 32
"""A certificate's public-key fingerprint two devices of the fleet case share."""


@dataclass(frozen=True)
class Case:
    """One device as the engine finished it."""

    device: Device
    address: str
    services: tuple[Service, ...]
    results: tuple[Result, ...]
    intrusive: bool = False
    started_at: dt.datetime = MOMENT
    finished_at: dt.datetime = MOMENT + dt.timedelta(seconds=2)


def _result(check: str, status: Status, summary: str, target: str = "device",
            evidence: dict[str, object] | None = None, waived: Waiver | None = None,
            severity: Severity = Severity.HIGH) -> Result:
    return Result(check, "27400-6.2", severity, Finding(status, summary, target, evidence or {}),
                  "Fix it.", REFS, 7, waived)


def waived_fail() -> Case:
    """A failure under a device waiver, a pass, nested evidence and non-ASCII text."""
    waiver = Waiver("net.open-ports", "vendor fix due", "2099-01-01", device="cam-1")
    return Case(
        Device("cam-1", "127.0.0.9", hostname="cam", device_class="camera", site="é"),
        "127.0.0.9",
        (Service("tcp", 23, "telnet"), Service("tcp", 443, "https", True, "nginx")),
        (_result("net.open-ports", Status.FAIL, "tcp/23 is open", "tcp/23",
                 {"open": [23, 80], "banner": {"23": "Login: café"}}, waiver),
         _result("tls.protocol-versions", Status.PASS, "TLS 1.2 and 1.3 only", "tcp/443",
                 {"offered": ("TLSv1.2", "TLSv1.3"), "ratio": 0.5}, severity=Severity.MEDIUM)),
        intrusive=True)


def budget_error() -> Case:
    """Checks the device budget cut short: `error` results, an inconclusive verdict."""
    late = "the device budget of 90 s ran out before this check finished"
    return Case(
        Device("plug-2", "127.0.0.10"), "127.0.0.10", (Service("tcp", 1883, "mqtt"),),
        (_result("mqtt.authentication", Status.ERROR, late, evidence={"reason": "budget"}),
         _result("mqtt.tls", Status.NOT_APPLICABLE, "no TLS", "tcp/1883"),
         _result("net.open-ports", Status.SKIPPED, "intrusive", evidence={"reason": "x"})))


def resolved_name() -> Case:
    """A device given by name: the record keeps the name and the address it resolved to."""
    return Case(Device("gw-3", "gw-3.lab", site="hall"), "127.0.0.11", (),
                (_result("net.open-ports", Status.PASS, "nothing open"),))


def hostile() -> Case:
    """Device text meant to break outputs: controls, bidi, backslashes, secrets, long strings
    and lists, all escaped, redacted and bounded by the record."""
    text = f"a\\b\x00\x1b[31m\u202e\ud800 {SECRET} \u2028end"
    device = Device("evil-4", "127.0.0.12", hostname=text, site=text, credentials={
        "mqtt": {"username": "alice", "password": Secret(SECRET, "env:GOLDEN")}})
    evidence: dict[str, object] = {
        "banner": text, "long": "x" * (MAX_TEXT + 10), text: [text] * (MAX_ITEMS + 5),
        "nested": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": text}}}}}}}}}}
    return Case(device, "127.0.0.12", (Service("tcp", 80, "http", False, text * 200),),
                (_result("http.authentication", Status.FAIL, f"banner {text}", f"http:http://127.0.0.12/{text}",
                         evidence),
                 _result("http.hsts", Status.PASS, "z" * (MAX_TEXT * 2))))


def fleet_pair() -> tuple[Case, Case]:
    """Two devices serving a certificate with the same public key: the first one's record is
    rewritten by the fleet stage once the second has finished. The engine's records hold no
    fleet result: the fleet stage places it."""
    def device(name: str, address: str) -> Case:
        return Case(Device(name, address), address, (Service("tcp", 443, "https", True),),
                    (_result("tls.certificate-validity", Status.PASS, "valid", "tcp/443",
                             {"public_key_sha256": KEY}),))
    return device("twin-a", "127.0.0.13"), device("twin-b", "127.0.0.14")


def fleet_error() -> Case:
    """A device whose certificate check errored with device text in its summary: the fleet
    result quotes that summary, escaped once."""
    return Case(Device("odd-5", "127.0.0.15"), "127.0.0.15", (),
                (_result("tls.certificate-validity", Status.ERROR,
                         "handshake: alert a\\b\x07\u202e", "tcp/443"),))


SINGLE = {"waived-fail": waived_fail, "budget-error": budget_error,
          "resolved-name": resolved_name, "hostile": hostile}
"""Golden name -> the device whose record it holds."""
