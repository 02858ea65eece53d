"""The engine against the emulated lab: expectations, budgets, sharing, robustness, waivers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from probe.checks.base import CONTROL_COMMUNICATION, Check, Observations
from probe.checks.catalogue import catalogue
from probe.context import DeviceContext, ScanOptions
from probe.engine import Engine
from probe.lab.fleet import DeviceSpec, Fleet, plan_fleet, run_fleet
from probe.lab.personas import PERSONAS
from probe.model import Device, Finding, Severity, Status, Verdict, passed, verdict_of
from probe.observe.discovery import services
from probe.profile import Profile
from probe.profile_loader import load_profile
from probe.record.model import Record
from probe.record.schema import validate_record

EXPOSURE = ("clean-sensor", "telnet-camera", "ftp-gateway", "snmp-public", "tftp-sensor",
            "extra-ports", "hang", "dark")
NET_CHECKS = ("net.open-ports", "net.cleartext-management")


def write_profile(tmp_path: Path, text: str) -> Profile:
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    return load_profile(str(path))


NET_ONLY = """
id: net-only
title: exposure checks only
version: "1"
scan:
  tcp_ports: "21-23,80,443,1883,2323,5900,8080,8443,8883"
controls:
  27400-6.2:
    title: Secure communication
    checks:
      net.open-ports: {}
      net.cleartext-management: {}
"""


def devices_of(specs: Iterable[DeviceSpec]) -> list[Device]:
    return [Device(id=s.id, address=s.address, device_class=s.persona.device_class,
                   exclude_ports=(2024,)) for s in specs]


async def scan(profile: Profile, devices: list[Device], **options: Any) -> dict[str, Record]:
    outcomes: dict[str, Record] = {}

    def keep(outcome: Record) -> None:
        outcomes[outcome.device.id] = outcome

    settings = {"timeout": 1.0, "budget": 20.0, **options}
    await Engine(profile, ScanOptions(**settings)).run(devices, keep)
    for outcome in outcomes.values():
        validate_record(outcome.to_json())
    return outcomes


@pytest.fixture
async def exposure_fleet() -> AsyncIterator[tuple[DeviceSpec, ...]]:
    specs = plan_fleet([PERSONAS[name] for name in EXPOSURE], len(EXPOSURE), "127.61.0.1")
    fleet: Fleet = await run_fleet(specs)
    try:
        yield specs
    finally:
        await fleet.stop()


async def test_every_persona_gets_what_it_declares(
        exposure_fleet: tuple[DeviceSpec, ...], tmp_path: Path) -> None:
    profile = write_profile(tmp_path, NET_ONLY)
    outcomes = await scan(profile, devices_of(exposure_fleet))
    assert set(outcomes) == {s.id for s in exposure_fleet}
    for spec in exposure_fleet:
        outcome = outcomes[spec.id]
        for check_id in NET_CHECKS:
            got = {r.status.value for r in outcome.results if r.check == check_id}
            want = spec.persona.expect[check_id]
            assert want in got, f"{spec.id} {check_id}: expected {want}, got {got}"
        implied = _implied_verdict([spec.persona.expect[c] for c in NET_CHECKS])
        assert verdict_of(list(outcome.results)) is implied


async def test_unreachable_device_is_inconclusive_with_reason(
        exposure_fleet: tuple[DeviceSpec, ...], tmp_path: Path) -> None:
    profile = write_profile(tmp_path, NET_ONLY)
    dark = [s for s in exposure_fleet if s.persona.name == "dark"]
    outcome = (await scan(profile, devices_of(dark)))[dark[0].id]
    assert verdict_of(list(outcome.results)) is Verdict.INCONCLUSIVE
    assert {r.check for r in outcome.results} == set(NET_CHECKS)
    for result in outcome.results:
        assert result.status is Status.ERROR
        assert result.finding.evidence["reason"] == "unreachable"


async def test_hanging_device_finishes_within_budget_with_errors(
        exposure_fleet: tuple[DeviceSpec, ...], tmp_path: Path) -> None:
    """Every read of the hang persona waits out the timeout: identification stops at half the
    budget, so its open ports are still judged from the port scan; a check still waiting when
    the budget runs out is cut off with an `error`."""
    async def never(ctx: DeviceContext) -> int:
        await asyncio.Event().wait()
        return 0

    stuck = Check(id="test.stuck", title="stuck", control=CONTROL_COMMUNICATION,
                  severity=Severity.LOW, needs=(never,), evaluate=lambda obs, params: [],
                  remediation="-")
    profile = _with_checks(write_profile(tmp_path, NET_ONLY), ["test.stuck"])
    hang = [s for s in exposure_fleet if s.persona.name == "hang"]
    outcomes: list[Record] = []
    await Engine(profile, ScanOptions(timeout=3.0, budget=1.0),
                 checks={**catalogue(), "test.stuck": stuck}).run(devices_of(hang),
                                                                   outcomes.append)
    results = {r.check: r for r in outcomes[0].results}
    assert set(results) == {*NET_CHECKS, "test.stuck"}
    assert results["net.open-ports"].status is Status.FAIL
    assert "tcp/23 (unknown)" in results["net.open-ports"].finding.summary
    assert results["net.cleartext-management"].status is Status.ERROR
    assert results["test.stuck"].status is Status.ERROR
    assert results["test.stuck"].finding.evidence["reason"] == "budget"
    assert verdict_of(list(outcomes[0].results)) is Verdict.NONCONFORMANT


async def test_checks_share_one_observation(
        exposure_fleet: tuple[DeviceSpec, ...], tmp_path: Path) -> None:
    """Two checks need the same collector: it runs once per device, and both read its result."""
    gathered: list[str] = []
    evaluated: list[str] = []

    async def open_port_count(ctx: DeviceContext) -> int:
        gathered.append(ctx.device.id)
        found = await ctx.observe(services)
        return len(found.tcp)

    def counting(name: str) -> Check:
        def evaluate(obs: Observations, params: Any) -> list[Finding]:
            evaluated.append(name)
            return [passed(f"{obs[open_port_count]} tcp ports")]
        return Check(id=name, title=name, control=CONTROL_COMMUNICATION,
                     severity=Severity.LOW, needs=(open_port_count,), evaluate=evaluate,
                     remediation="-")

    checks = {**catalogue(), "test.one": counting("test.one"), "test.two": counting("test.two")}
    profile = _with_checks(write_profile(tmp_path, NET_ONLY), ["test.one", "test.two"])
    spec = next(s for s in exposure_fleet if s.persona.name == "extra-ports")
    outcomes: list[Record] = []
    await Engine(profile, ScanOptions(timeout=1.0, budget=20.0), checks=checks).run(
        devices_of([spec]), outcomes.append)
    assert gathered == [spec.id]
    assert sorted(evaluated) == ["test.one", "test.two"]
    summaries = {r.finding.summary for r in outcomes[0].results if r.check.startswith("test.")}
    assert summaries == {"3 tcp ports"}


async def test_a_broken_check_costs_one_result_not_the_scan(
        exposure_fleet: tuple[DeviceSpec, ...], tmp_path: Path) -> None:
    def explode(obs: Observations, params: Any) -> list[Finding]:
        raise RuntimeError("bug in a check")

    broken = Check(id="test.broken", title="broken", control=CONTROL_COMMUNICATION,
                   severity=Severity.LOW, needs=(services,), evaluate=explode, remediation="-")
    profile = _with_checks(write_profile(tmp_path, NET_ONLY), ["test.broken"])
    engine = Engine(profile, ScanOptions(timeout=1.0, budget=20.0),
                    checks={**catalogue(), "test.broken": broken})
    outcomes: list[Record] = []
    live = [s for s in exposure_fleet if s.persona.name in {"clean-sensor", "telnet-camera"}]
    await engine.run(devices_of(live), outcomes.append)
    assert len(outcomes) == 2
    for outcome in outcomes:
        bad = [r for r in outcome.results if r.check == "test.broken"]
        assert [r.status for r in bad] == [Status.ERROR]
        assert bad[0].finding.evidence["reason"] == "internal"
        assert any(r.check == "net.open-ports" and r.status is not Status.ERROR
                   for r in outcome.results)


async def test_waiver_turns_failure_into_waived_fail(
        exposure_fleet: tuple[DeviceSpec, ...], tmp_path: Path) -> None:
    spec = next(s for s in exposure_fleet if s.persona.name == "extra-ports")
    (tmp_path / "profile-net.yaml").write_text(NET_ONLY)
    profile = write_profile(tmp_path, f"""
id: waived
title: waived
version: "1"
extends: ./profile-net.yaml
waivers:
  - check: net.open-ports
    device: {spec.id}
    justification: vendor ships a fix in 4.2
    expires: 2099-12-31
  - check: net.open-ports
    device: {spec.id}
    justification: an old waiver
    expires: 2001-01-01
""")
    outcome = (await scan(profile, devices_of([spec])))[spec.id]
    ports = next(r for r in outcome.results if r.check == "net.open-ports")
    assert ports.status is Status.FAIL
    assert ports.waived is not None and ports.waived.expires == "2099-12-31"
    assert verdict_of(list(outcome.results)) is Verdict.CONFORMANT
    record = outcome.to_json()
    assert record["verdict"] == "conformant"
    assert record["results"][0]["waived"]["justification"] == "vendor ships a fix in 4.2"


async def test_intrusive_checks_are_skipped_unless_asked(
        exposure_fleet: tuple[DeviceSpec, ...], tmp_path: Path) -> None:
    ran: list[bool] = []

    def evaluate(obs: Observations, params: Any) -> list[Finding]:
        ran.append(True)
        return [passed("ran")]

    intrusive = Check(id="test.intrusive", title="t", control=CONTROL_COMMUNICATION,
                      severity=Severity.LOW, needs=(services,), evaluate=evaluate,
                      remediation="-", intrusive=True)
    checks = {**catalogue(), "test.intrusive": intrusive}
    profile = _with_checks(write_profile(tmp_path, NET_ONLY), ["test.intrusive"])
    device = devices_of([s for s in exposure_fleet if s.persona.name == "clean-sensor"])
    for flag, expected in ((False, Status.SKIPPED), (True, Status.PASS)):
        outcomes: list[Record] = []
        await Engine(profile, ScanOptions(timeout=1.0, intrusive=flag),
                     checks=checks).run(device, outcomes.append)
        got = [r for r in outcomes[0].results if r.check == "test.intrusive"]
        assert [r.status for r in got] == [expected]
    assert ran == [True]


def _implied_verdict(statuses: list[str]) -> Verdict:
    if "fail" in statuses:
        return Verdict.NONCONFORMANT
    return Verdict.INCONCLUSIVE if "error" in statuses else Verdict.CONFORMANT


def _with_checks(profile: Profile, extra: list[str]) -> Profile:
    from dataclasses import replace

    from probe.profile import CheckConfig

    added = tuple(CheckConfig(id=c, control=CONTROL_COMMUNICATION, severity=Severity.LOW)
                  for c in extra)
    return replace(profile, checks=profile.checks + added)

