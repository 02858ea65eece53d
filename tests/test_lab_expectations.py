"""The lab's expectations by check id (probe.lab.expectations): what the devices of both labs
write, what the catalogue implies for the rest, and what a new check costs. No traffic: the
scans that hold the devices to these expectations are the self-test and the lab tests."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import pytest

from probe.checks.base import Check
from probe.checks.catalogue import catalogue
from probe.lab.expectations import DEFAULT, INTRUSIVE, Declares, Scan, expected, resolve
from probe.lab.personas import PERSONAS
from probe.lab.real import REAL, REAL_DEVICES
from probe.lab.selftest import (
    coverage,
    every_declared,
    implied_verdict,
    persona_declared,
    render_unjudged,
)
from probe.model import Status

DEVICES: tuple[Declares, ...] = (*PERSONAS.values(), *REAL_DEVICES)
SCANS = (DEFAULT, INTRUSIVE, Scan(monitored=True), Scan(intrusive=True, monitored=True))


def test_every_device_resolves_every_check_or_says_why_not() -> None:
    """Every catalogue check gets, on every device of both labs and in every scan, a status
    (written or derived) or the reason it is not compared; never both, never neither."""
    checks = catalogue()
    for device in DEVICES:
        for scan in SCANS:
            resolved = resolve(device, scan)
            assert set(resolved.statuses) | set(resolved.unjudged) == set(checks), device.name
            assert not set(resolved.statuses) & set(resolved.unjudged), device.name
            assert all(reason for reason in resolved.unjudged.values()), device.name
            assert list(resolved.statuses) == [c for c in checks if c in resolved.statuses]


def test_a_device_that_resolves_every_check_declares_the_verdict_they_imply() -> None:
    """A device whose statuses cover the catalogue must declare the verdict they imply. The
    real lab is not forced to write a status for a check added later (a new check costs its
    module, its test and a persona line): such a device is simply not compared on it, and the
    self-test counts those pairs by reason."""
    complete = 0
    for device in DEVICES:
        statuses = expected(device)
        if len(statuses) == len(catalogue()):
            complete += 1
            assert implied_verdict(statuses.values()) == device.expect_verdict, device.name
    assert complete > 0


def test_the_rules_fill_in_what_the_catalogue_tells() -> None:
    """Rule 1 (intrusive: skipped), rule 2 (no listener offers the services: not
    applicable), rule 3 (with --intrusive, a family without any endpoint: not applicable)."""
    coap_sensor, open_broker = PERSONAS["coap-sensor"], PERSONAS["mqtt-open-broker"]
    assert "tls.cipher-suites" not in coap_sensor.expect
    assert expected(coap_sensor)["tls.cipher-suites"] is Status.NOT_APPLICABLE
    assert expected(coap_sensor)["mqtt.default-credentials"] is Status.SKIPPED
    assert expected(coap_sensor, INTRUSIVE)["mqtt.default-credentials"] is \
        Status.NOT_APPLICABLE
    assert expected(open_broker)["mqtt.client-certificate"] is Status.NOT_APPLICABLE
    assert expected(open_broker, INTRUSIVE)["mqtt.default-credentials"] is Status.FAIL
    assert expected(REAL["broker-open"], INTRUSIVE)["coap.unauthenticated-write"] is \
        Status.NOT_APPLICABLE
    assert "coap.unauthenticated-write" in resolve(open_broker, INTRUSIVE).unjudged
    hang = resolve(PERSONAS["hang"], INTRUSIVE)
    assert hang.statuses["mqtt.default-credentials"] is Status.ERROR
    garbage = resolve(PERSONAS["hostile-garbage"], INTRUSIVE)
    assert garbage.statuses["tls.protocol-versions"] is Status.ERROR
    assert "mqtt.default-credentials" in garbage.unjudged  # undecided ports: an error, not n/a
    bench = resolve(PERSONAS["bench-device"])
    assert bench.unjudged["fleet.unique-keys"].startswith("no status written")


def test_monitored_and_intrusive_expectations_are_fields_of_the_persona() -> None:
    unreported = PERSONAS["monitor-unreported"]
    assert expected(unreported)["monitor.heartbeat"] is Status.SKIPPED
    assert expected(unreported, Scan(monitored=True))["monitor.heartbeat"] is Status.FAIL
    assert expected(unreported, Scan(intrusive=True))["monitor.bruteforce-throttling"] is \
        Status.FAIL
    assert expected(REAL["web-strong"], INTRUSIVE)["monitor.bruteforce-throttling"] is \
        Status.PASS


def test_listeners_offer_the_services_the_catalogue_names() -> None:
    assert PERSONAS["skewed-clock"].offers == {"http", "tls", "https"}
    assert PERSONAS["clean-sensor"].offers == {"tls", "mqtts"}
    assert PERSONAS["mqtt-mutual-tls"].offers == {"tls", "mqtts"}
    assert PERSONAS["weak-webui"].offers == {"http", "tls", "https"}
    assert PERSONAS["hostile-endless"].offers == {"mqtt", "http"}
    assert PERSONAS["hostile-garbage"].offers == frozenset()
    assert PERSONAS["coap-sensor"].offers == frozenset()
    assert REAL["web-basic"].offers == {"http", "tls", "https"}
    assert REAL["broker-open"].offers == {"mqtt"}
    assert REAL["coaps-psk"].offers == frozenset()
    names = frozenset[str]().union(*(c.applies_to for c in catalogue().values()))
    assert all(device.offers <= names for device in DEVICES)


@pytest.mark.parametrize(("written", "message"), [
    ({"expect": {"tls.no-such-check": Status.PASS}}, "tls.no-such-check is not a check"),
    ({"expect_intrusive": {"tls.cipher-suites": Status.PASS}},
     "tls.cipher-suites is not intrusive"),
    ({"expect_monitored": {"monitor.heartbat": Status.PASS}}, "monitor.heartbat is not a check"),
])
def test_a_written_id_the_catalogue_does_not_know_names_persona_and_check(
        written: Mapping[str, Mapping[str, Status]], message: str) -> None:
    persona = dataclasses.replace(PERSONAS["clean-sensor"], **written)
    with pytest.raises(ValueError, match=re.escape(f"clean-sensor: {message}")):
        resolve(persona, Scan(intrusive=True, monitored=True))


def test_an_intrusive_status_that_would_never_be_used_is_an_error() -> None:
    dark = dataclasses.replace(PERSONAS["dark"],
                               expect_intrusive={"mqtt.default-credentials": Status.FAIL})
    with pytest.raises(ValueError,
                       match=re.escape("dark: mqtt.default-credentials is error without")):
        resolve(dark, INTRUSIVE)


def test_a_status_must_be_a_status() -> None:
    with pytest.raises(TypeError, match="Status values"):
        dataclasses.replace(PERSONAS["clean-sensor"], expect={"net.open-ports": "pass"})


def _with(base: str, new_id: str, **changes: object) -> dict[str, Check]:
    """The catalogue plus a throw-away check: a copy of `base`'s declaration under `new_id`."""
    extra = dataclasses.replace(catalogue()[base], id=new_id, **changes)
    return {**catalogue(), new_id: extra}


def test_a_new_check_needs_one_persona_line() -> None:
    """A check added to the catalogue (test-only: `http.server-banner`, judging cleartext HTTP
    and HTTPS) resolves on every device of both labs with one persona line: not applicable
    where nothing offers a web service, the written status on the persona that exercises it,
    and on the other web devices not compared, with the reason."""
    checks = _with("http.authentication", "http.server-banner")
    banner = "http.server-banner"
    weak = dataclasses.replace(PERSONAS["weak-webui"],
                               expect={**PERSONAS["weak-webui"].expect, banner: Status.FAIL})
    devices = [weak if d.name == "weak-webui" else d for d in DEVICES]
    for device in devices:
        for scan in SCANS:
            resolved = resolve(device, scan, checks)
            assert banner in resolved.statuses or banner in resolved.unjudged
    assert expected(weak, DEFAULT, checks)[banner] is Status.FAIL
    assert expected(PERSONAS["clean-sensor"], DEFAULT, checks)[banner] is Status.NOT_APPLICABLE
    assert expected(REAL["coap-plain"], DEFAULT, checks)[banner] is Status.NOT_APPLICABLE
    skewed = resolve(PERSONAS["skewed-clock"], DEFAULT, checks)
    assert skewed.unjudged[banner] == "no status written, and the device offers http, https"
    declared = [d for d in every_declared(checks) if d.name != "weak-webui"]
    declared.append(persona_declared(weak, checks))
    assert [name for _, name in coverage(declared, checks).failing[banner]] == ["weak-webui"]


def test_a_new_intrusive_check_needs_one_persona_line() -> None:
    """An intrusive check (test-only: `mqtt.will-abuse`) is skipped everywhere without
    --intrusive and, with it, not applicable wherever there is no MQTT endpoint."""
    checks = _with("mqtt.default-credentials", "mqtt.will-abuse")
    will = "mqtt.will-abuse"
    broker = dataclasses.replace(PERSONAS["mqtt-open-broker"], expect_intrusive={
        **PERSONAS["mqtt-open-broker"].expect_intrusive, will: Status.FAIL})
    assert all(expected(d, DEFAULT, checks)[will] is Status.SKIPPED for d in DEVICES)
    assert expected(broker, INTRUSIVE, checks)[will] is Status.FAIL
    assert expected(PERSONAS["good-webui"], INTRUSIVE, checks)[will] is Status.NOT_APPLICABLE
    assert expected(REAL["telnet"], INTRUSIVE, checks)[will] is Status.NOT_APPLICABLE
    assert resolve(PERSONAS["clean-sensor"], INTRUSIVE, checks).unjudged[will] == \
        "no status written for a scan with --intrusive"


def test_the_selftest_counts_what_it_does_not_compare_and_why() -> None:
    emulated = [d for d in every_declared() if d.lab == "emulated"]
    lines = render_unjudged(emulated)
    total = sum(len(d.unjudged) for d in emulated)
    assert lines[0].startswith(f"not compared: {total} (device, check) pair(s)")
    assert any(line.endswith("no status written for a scan with --intrusive") for line in lines)
    assert render_unjudged([]) == [
        "not compared: 0 (device, check) pair(s) without a declared status in a scan"]


def test_a_device_that_bursts_break_is_compared_on_its_intrusive_checks_only() -> None:
    fragile = PERSONAS["fragile-camera"]
    default, intrusive = resolve(fragile), resolve(fragile, INTRUSIVE)
    assert default.statuses["http.cleartext"] is Status.FAIL
    assert "http.cleartext" not in intrusive.statuses
    assert "bursts" in intrusive.unjudged["http.cleartext"]
    assert all(catalogue()[c].intrusive for c in intrusive.statuses)
    steady = dataclasses.replace(fragile, bursts_break_it=False)
    assert resolve(steady, INTRUSIVE).statuses["http.cleartext"] is Status.FAIL
