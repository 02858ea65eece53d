"""The 6.5 monitoring checks end to end over the emulated lab (127.66.x.y): the engine, a
profile loaded from YAML, devices whose inventory declares their monitoring sinks, every
persona's declared expectations, records validated against the schema."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from daemons import certificate

from probe.context import ScanOptions
from probe.engine import Engine
from probe.lab import PERSONAS, plan_fleet, run_fleet
from probe.lab.expectations import Scan, expected
from probe.lab.personas.base import Persona
from probe.lab.personas.monitor import MONITOR_ACCOUNT, THROTTLING, lab_monitor
from probe.model import Device
from probe.profile import Profile
from probe.profile_loader import load_profile
from probe.record.schema import validate_record
from probe.secrets import Secret

PROFILE = """\
id: monitor-lab
title: Monitoring checks over the lab
version: "1"
scan:
  tcp_ports: "21,23,80,443,1883,8080,8443,8883"
controls:
  27400-6.2:
    title: Secure communication
    checks:
      net.open-ports:
        classes:
          sensor: {allowed_tcp: [8883], allowed_udp: [5684]}
          camera: {allowed_tcp: [443, 554, 8883], allowed_udp: [5684]}
      net.cleartext-management:
      mqtt.cleartext-listener:
      mqtt.anonymous-access:
      mqtt.default-credentials:
      mqtt.topic-authorization:
      mqtt.client-certificate:
  27400-6.5:
    title: Security monitoring and incident response
    references:
      iso-27400-2022: ["7.1.2.12"]
    checks:
      monitor.auth-failure-event:
        params: {event_timeout: 3}
        references: {etsi-en-303-645: ["5.10-1"], owasp-isvs: ["1.4.1", "1.4.2"]}
      monitor.event-transport:
        references: {etsi-en-303-645: ["5.5-6"]}
      monitor.bruteforce-throttling:
        params: {attempts: 10, max_rate: 20.0}
      monitor.heartbeat:
        params: {grace_seconds: 1.0}
"""
MINE = [p for p in PERSONAS.values() if p.name.startswith("monitor-")]
MONITOR_PASSWORD = Secret(MONITOR_ACCOUNT[1], "env:LAB_MONITOR_PASSWORD")


def profile(tmp_path: Path, without: Sequence[str] = ()) -> Profile:
    path = tmp_path / "monitor-lab.yaml"
    lines = [ln for ln in PROFILE.splitlines() if ln.strip().rstrip(":") not in without]
    path.write_text("\n".join(lines) + "\n")
    return load_profile(str(path))


async def scan(tmp_path: Path, personas: Sequence[Persona], base: str, *,
               monitored: bool, intrusive: bool = False) -> dict[str, dict[str, Any]]:
    """Run the personas as a fleet, scan it with the engine, return validated records by
    persona name. Intrusive scans leave out mqtt.default-credentials: its failed logins,
    concurrent with the burst, would start the throttling persona's tarpit early."""
    resolved = profile(tmp_path, without=("mqtt.default-credentials",) if intrusive else ())
    sink = certificate(tmp_path, "sink")
    specs = plan_fleet(list(personas), len(personas), base)
    records: dict[str, dict[str, Any]] = {}
    names = {s.id: s.persona.name for s in specs}

    async def keep(outcome: Any) -> None:
        record = outcome.to_json()
        validate_record(record)
        records[names[record["device"]["id"]]] = record

    async with await run_fleet(specs):
        devices = [Device(id=s.id, address=s.address, device_class=s.persona.device_class,
                          monitor=lab_monitor(s.persona.name, s.address, str(sink.cert),
                                              str(sink.key), MONITOR_PASSWORD)
                          if monitored else {}, exclude_ports=(2024,)) for s in specs]
        options = ScanOptions(timeout=3.0, budget=60.0, intrusive=intrusive,
                              exclude_ports=(2024,), udp=False)
        await Engine(resolved, options).run(devices, keep)
    return records


def statuses(record: dict[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for result in record["results"]:
        out.setdefault(result["check"], set()).add(result["status"])
    return out


def results(record: dict[str, Any], check_id: str) -> list[dict[str, Any]]:
    return [r for r in record["results"] if r["check"] == check_id]


async def test_without_sinks_every_persona_meets_its_declared_expectations(
        tmp_path: Path) -> None:
    """As `iotprobe lab up` inventories them (no `monitor:`): the 6.5 checks are skipped with
    the reason, and every other declared expectation and the verdict hold."""
    records = await scan(tmp_path, MINE, "127.66.0.1", monitored=False)
    checks = {c.id for c in profile(tmp_path).checks}
    mismatches = []
    for persona in MINE:
        record = records[persona.name]
        found = statuses(record)
        assert set(persona.expect) <= checks
        mismatches += [(persona.name, c, s, found[c]) for c, s in expected(persona).items()
                       if c in checks and found[c] != {s}]
        if record["verdict"] != persona.expect_verdict:
            mismatches.append((persona.name, "verdict", persona.expect_verdict,
                               record["verdict"]))
    assert mismatches == []
    (event,) = results(records["monitor-syslog-tls"], "monitor.auth-failure-event")
    assert "no monitoring sink is declared" in event["summary"]
    (throttle,) = results(records["monitor-throttled"], "monitor.bruteforce-throttling")
    assert "--intrusive" in throttle["summary"]


async def test_with_sinks_every_persona_meets_its_monitored_expectations(
        tmp_path: Path) -> None:
    records = await scan(tmp_path, MINE, "127.66.1.1", monitored=True)
    mismatches = []
    for persona in MINE:
        found = statuses(records[persona.name])
        wanted = expected(persona, Scan(monitored=True))
        mismatches += [(persona.name, c, s, found[c])
                       for c, s in wanted.items() if c.startswith("monitor.") and c in found
                       and found[c] != {s}]
    assert mismatches == []

    (tls,) = results(records["monitor-syslog-tls"], "monitor.auth-failure-event")
    assert tls["severity"] == "high" and tls["control"] == "27400-6.5"
    assert tls["references"]["etsi-en-303-645"] == ["5.10-1"]
    assert tls["references"]["owasp-isvs"] == ["1.4.1", "1.4.2"]
    nonce = tls["evidence"]["nonce"]
    (event,) = tls["evidence"]["events"]
    assert nonce in event["text"] and event["encrypted"] is True
    assert event["format"] == "rfc5424" and event["sink"] == "syslog"
    assert event["delay_seconds"] >= 0
    (attempt,) = tls["evidence"]["attempts"]
    assert attempt["protocol"] == "mqtt" and attempt["outcome"] == "denied"

    (clear,) = results(records["monitor-cleartext"], "monitor.event-transport")
    assert "cleartext" in clear["summary"] and "UDP" in clear["summary"]
    (web,) = results(records["monitor-cleartext"], "monitor.auth-failure-event")
    assert web["evidence"]["attempts"][0]["protocol"] == "http"
    assert web["evidence"]["events"][0]["format"] == "rfc3164"

    (mqtt,) = results(records["monitor-mqtt-events"], "monitor.auth-failure-event")
    assert mqtt["evidence"]["events"][0]["topic"] == "security/auth"
    (beat,) = results(records["monitor-mqtt-events"], "monitor.heartbeat")
    assert beat["evidence"]["received_topic"] == "devices/heartbeat"

    (silent,) = results(records["monitor-unreported"], "monitor.auth-failure-event")
    assert "events" not in silent["evidence"] and silent["evidence"]["event_timeout"] == 3
    (none,) = results(records["monitor-unreported"], "monitor.event-transport")
    assert none["evidence"]["reason"] == "no-event"
    for record in records.values():
        assert MONITOR_ACCOUNT[1] not in str(record)


async def test_intrusive_throttling_over_the_lab(tmp_path: Path) -> None:
    records = await scan(tmp_path, MINE, "127.66.2.1", monitored=False, intrusive=True)
    found = {p.name: statuses(records[p.name])["monitor.bruteforce-throttling"] for p in MINE}
    assert found == {p.name: {p.expect_intrusive[THROTTLING]} for p in MINE}
    (slowed,) = results(records["monitor-throttled"], "monitor.bruteforce-throttling")
    assert 2 <= len(slowed["evidence"]["attempts"]) <= 10
    (plain,) = results(records["monitor-syslog-tls"], "monitor.bruteforce-throttling")
    assert len(plain["evidence"]["attempts"]) == 10
    assert all(t["outcome"] == "denied" for t in plain["evidence"]["attempts"])
