"""Fleet checks as a kind of check: the scan's fleet stage judges every planned fleet check the
same way. A second fleet check declared here, `test.shared-port`, runs through the loop beside
`fleet.unique-keys` against real mosquitto brokers on 127.161.1.x (two sharing one key pair on
8883, one with its own, one in cleartext on 1883); the stage's resume, re-decision and failure
paths are shown on records as the engine hands them over."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import MappingProxyType

import pytest

from probe import __version__
from probe.api import device_context, judge_check, run_check
from probe.catalogue_doc import catalogue_data
from probe.checks.base import CONTROL_COMMUNICATION, Check, FleetJudge, fleet_check
from probe.checks.catalogue import catalogue, validate
from probe.checks.params import CheckParams, Port
from probe.context import ScanOptions
from probe.engine import Engine
from probe.errors import InputError
from probe.model import (
    Device,
    Finding,
    Result,
    Service,
    Severity,
    Status,
    Waiver,
    failed,
    not_applicable,
    passed,
)
from probe.profile import CheckConfig, Control, Profile
from probe.profile_loader import load_profile
from probe.record.files import record_text
from probe.record.model import ProbeInfo, ProfileRef, Record, record_of
from probe.record.schema import validate_record
from probe.run import FileSink, FleetStage, ScanRun
from probe.store.db import open_store
from probe.sweep import StoreSink
from tests.daemons import certificate, mosquitto

SHARED_PORT = "test.shared-port"
UNIQUE_KEYS = "fleet.unique-keys"
MOMENT = dt.datetime(2026, 12, 6, 12, tzinfo=dt.UTC)


class SharedPortParams(CheckParams):
    port: Port = 8883


class SharedPort:
    """Which devices of the scan have `port` open; a device fails when another one has too."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.holders: list[str] = []
        self.observed: list[str] = []

    def _serves(self, record: Record) -> bool:
        return any(s.transport == "tcp" and s.port == self.port for s in record.services)

    def observe(self, record: Record) -> None:
        self.observed.append(record.device.id)
        if self._serves(record) and record.device.id not in self.holders:
            self.holders.append(record.device.id)

    def decide(self, record: Record) -> list[Finding]:
        target = f"tcp/{self.port}"
        if not self._serves(record):
            return [not_applicable(f"{target} is not open")]
        others = sorted(set(self.holders) - {record.device.id})
        if others:
            return [failed(f"{target} is open on {len(others)} other device(s)", target,
                           devices=others)]
        return [passed(f"{target} is open here only", target)]

    def final(self) -> list[str]:
        return sorted(self.holders) if len(self.holders) > 1 else []


JUDGES: list[SharedPort] = []
"""Every judge the factory made, newest last (what the fleet stage was given)."""


@fleet_check(SHARED_PORT, title="No other device has the port open",
             control=CONTROL_COMMUNICATION, severity=Severity.LOW, remediation="Close it.",
             params=SharedPortParams)
def shared_port(params: SharedPortParams) -> FleetJudge:
    """Pass: no other device of the scan has the port open.
    Fail: another device has; the finding names them.
    Not applicable: the port is not open on this device."""
    JUDGES.append(SharedPort(params.port))
    return JUDGES[-1]


class Broken:
    """A judge whose decision raises: its device gets an `error` result, the scan goes on."""

    def observe(self, record: Record) -> None:
        pass

    def decide(self, record: Record) -> list[Finding]:
        raise ZeroDivisionError

    def final(self) -> list[str]:
        return []


BROKEN = dataclasses.replace(shared_port, id="test.broken", judge=lambda params: Broken())


def checks(*extra: Check) -> Mapping[str, Check]:
    return MappingProxyType({**catalogue(), **{c.id: c for c in extra}})


def config(check_id: str, **params: object) -> CheckConfig:
    return CheckConfig(check_id, CONTROL_COMMUNICATION, Severity.HIGH, params)


def profile(*configs: CheckConfig, waivers: tuple[Waiver, ...] = ()) -> Profile:
    return Profile(id="fleet-test", title="fleet checks", version="1",
                   digest="sha256:" + "0" * 64, source="<test>",
                   controls=(Control(CONTROL_COMMUNICATION, "communication"),),
                   checks=configs, waivers=waivers)


PLAN = (config("net.open-ports", allowed_tcp=[1883, 8883]), config(SHARED_PORT, port=8883),
        config("tls.certificate-strength"), config(UNIQUE_KEYS))
"""Both fleet checks planned among per-device checks: each has its slot in the results."""


@contextlib.contextmanager
def brokers(tmp: Path) -> Iterator[dict[str, str]]:
    """mosquitto on 8883 for twin-1 and twin-2 (one key pair) and solo (its own), on 1883 in
    cleartext for plain: device id -> address."""
    shared, own = certificate(tmp, "shared"), certificate(tmp, "own")
    devices = {"twin-1": ("127.161.1.1", 8883, shared), "twin-2": ("127.161.1.2", 8883, shared),
               "solo": ("127.161.1.3", 8883, own), "plain": ("127.161.1.4", 1883, None)}
    with contextlib.ExitStack() as stack:
        for name, (address, port, tls) in devices.items():
            home = tmp / name
            home.mkdir()
            stack.enter_context(mosquitto(home, address, port, tls=tls))
        yield {name: address for name, (address, _, _) in devices.items()}


def statuses(record: Record) -> list[tuple[str, str]]:
    return [(r.check, r.status.value) for r in record.results]


async def test_two_fleet_checks_judge_real_brokers_through_one_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine runs no fleet check; the stage gives each planned one a judge made from the
    profile's params, puts its results at its plan slot, re-decides the devices `final` names
    and applies the profile's waiver to a failure only."""
    waiver = Waiver(SHARED_PORT, "the twins are a test rig", "2099-01-01", device="twin-2")
    plan = profile(*PLAN, waivers=(waiver,))
    options = ScanOptions(timeout=3.0, budget=90.0, tcp_ports=(1883, 8883), udp=False,
                          exclude_ports=(2024,))
    engine = Engine(plan, options, checks=checks(shared_port))
    handed: dict[str, Record] = {}
    with brokers(tmp_path) as addresses:
        ids = {address: name for name, address in addresses.items()}
        devices = [Device(name, address) for name, address in addresses.items()]
        sink = FileSink(tmp_path / "out", jsonl=False)
        scan = ScanRun(engine, sink, fail_on=Severity.HIGH)
        finished = scan.finished

        async def keep(record: Record) -> None:
            handed[record.device.id] = record
            await finished(record)

        monkeypatch.setattr(scan, "finished", keep)
        await scan.run(devices, len(devices), quiet=True)
    assert set(ids.values()) == set(handed)
    for record in handed.values():
        assert {r.check for r in record.results} == {"net.open-ports",
                                                     "tls.certificate-strength"}
    [judge] = JUDGES[-1:]
    assert judge.port == 8883 and sorted(judge.observed) == sorted(handed)
    records = {r.device.id: r for r in sink.records()}
    for record in records.values():
        validate_record(record.to_json())
        order = [c for c, _ in statuses(record)]
        assert order == sorted(order, key=[c.id for c in PLAN].index), "results in plan order"
    fleet = {name: {c: s for c, s in statuses(r) if c in (SHARED_PORT, UNIQUE_KEYS)}
             for name, r in records.items()}
    assert fleet == {
        "twin-1": {SHARED_PORT: "fail", UNIQUE_KEYS: "fail"},
        "twin-2": {SHARED_PORT: "fail", UNIQUE_KEYS: "fail"},
        "solo": {SHARED_PORT: "fail", UNIQUE_KEYS: "pass"},
        "plain": {SHARED_PORT: "not_applicable", UNIQUE_KEYS: "not_applicable"}}
    [first] = records["twin-1"].of_check(SHARED_PORT)
    assert first.finding.evidence["devices"] == ["solo", "twin-2"], "re-decided after the last"
    assert first.waived is None and first.duration_ms == 0
    assert records["twin-2"].of_check(SHARED_PORT)[0].waived is not None
    assert [r.waived for r in records["twin-2"].of_check(UNIQUE_KEYS)] == [None]
    [key] = records["twin-1"].of_check(UNIQUE_KEYS)
    assert key.finding.evidence["devices"] == ["twin-1", "twin-2"]
    assert key.remediation == catalogue()[UNIQUE_KEYS].remediation


def handed_over(name: str, *, port: int, key: str | None = None,
                summary: str = "certificate") -> Record:
    """A device's record as the engine hands it over: `port` open, a certificate result
    (its key, else an error whose summary is `summary`), no fleet result."""
    certificate_finding = (Finding(Status.PASS, summary, f"tcp/{port}",
                                   {"public_key_sha256": key}) if key else
                           Finding(Status.ERROR, summary, f"tcp/{port}"))
    return record_of(
        device=Device(name, "127.161.2.1"), address="127.161.2.1",
        profile=ProfileRef("fleet-test", "1", "sha256:" + "0" * 64),
        probe=ProbeInfo(__version__, False), started_at=MOMENT, finished_at=MOMENT,
        services=(Service("tcp", port, "mqtts", True),),
        results=(Result("net.open-ports", CONTROL_COMMUNICATION, Severity.HIGH,
                        passed("ok"), "fix", {}, 1),
                 Result("tls.certificate-strength", CONTROL_COMMUNICATION, Severity.HIGH,
                        certificate_finding, "fix", {}, 1)))


def stored_again(record: Record) -> Record:
    """`record` as a sink gives it back: read from its JSON text."""
    return Record.from_json(json.loads(record_text(record.to_json())))


async def test_a_resumed_sweep_gives_every_judge_the_stored_devices(tmp_path: Path) -> None:
    plan = profile(*PLAN)
    engine = Engine(plan, ScanOptions(), checks=checks(shared_port))
    store = open_store(str(tmp_path / "s.sqlite"))
    number = store.begin_sweep(inventory="i", devices=3, profile=plan, intrusive=False).number
    with ThreadPoolExecutor(1) as writer:
        first = ScanRun(engine, StoreSink(store, number, writer), fail_on=Severity.LOW)
        await first.finished(handed_over("a", port=8883, key="aa" * 32))
        await first.finished(handed_over("b", port=1883, key="bb" * 32))
        resumed = ScanRun(engine, StoreSink(store, number, writer), fail_on=Severity.LOW)
        for record in store.records(number):
            resumed.remember(record)
        await resumed.finished(handed_over("c", port=8883, key="aa" * 32))
        await resumed.settle_fleet()
    records = {r.device.id: r for r in store.records(number)}
    store.close()
    assert {name: r.statuses() for name, r in records.items()} == {
        "a": {"net.open-ports": Status.PASS, SHARED_PORT: Status.FAIL,
              "tls.certificate-strength": Status.PASS, UNIQUE_KEYS: Status.FAIL},
        "b": {"net.open-ports": Status.PASS, SHARED_PORT: Status.NOT_APPLICABLE,
              "tls.certificate-strength": Status.PASS, UNIQUE_KEYS: Status.PASS},
        "c": {"net.open-ports": Status.PASS, SHARED_PORT: Status.FAIL,
              "tls.certificate-strength": Status.PASS, UNIQUE_KEYS: Status.FAIL}}


def test_only_the_checks_final_names_are_decided_again() -> None:
    """Each judge's `final` names its own devices, and only those checks are decided again:
    `a` shares a key with `c` and is the only one without port 1883, which `b`, `c` and `d`
    all have open."""
    stage = FleetStage(profile(config("net.open-ports"), config(SHARED_PORT, port=1883),
                               config("tls.certificate-strength"), config(UNIQUE_KEYS)),
                       checks(shared_port))
    judge = JUDGES[-1]
    settled = {name: stage.settle(handed_over(name, port=port, key=key)) for name, port, key in
               (("a", 8883, "aa" * 32), ("b", 1883, "bb" * 32), ("c", 1883, "aa" * 32),
                ("d", 1883, "dd" * 32))}
    assert judge.port == 1883 and judge.final() == ["b", "c", "d"]
    assert stage.to_amend() == {"a": [UNIQUE_KEYS], "b": [SHARED_PORT],
                                "c": [SHARED_PORT, UNIQUE_KEYS], "d": [SHARED_PORT]}
    a = stage.amend(stored_again(settled["a"]), [UNIQUE_KEYS])
    assert a is not None and a.statuses()[UNIQUE_KEYS] is Status.FAIL
    assert a.of_check(SHARED_PORT) == stored_again(settled["a"]).of_check(SHARED_PORT)
    assert stage.amend(stored_again(settled["d"]), [SHARED_PORT]) is None, "decided last"
    c = stage.amend(stored_again(settled["c"]), [SHARED_PORT, UNIQUE_KEYS])
    assert c is not None
    assert [r.finding.evidence["devices"] for r in c.of_check(SHARED_PORT)] == [["b", "d"]]
    assert c.of_check(UNIQUE_KEYS) == stored_again(settled["c"]).of_check(UNIQUE_KEYS)
    assert [r.check for r in c.results] == [
        "net.open-ports", SHARED_PORT, "tls.certificate-strength", UNIQUE_KEYS]


def test_an_amended_fleet_result_quotes_the_devices_text_escaped_once() -> None:
    """A device shares a key on 8883 and its certificate errored on 8884 with a backslash and
    a control character in the summary: the result re-decided from the stored record quotes
    the error as the first decision did (it used to be escaped a second time)."""
    stage = FleetStage(profile(config(UNIQUE_KEYS)), catalogue())
    odd = "handshake: alert a\\b\x07"

    def device(name: str) -> Record:
        record = handed_over(name, port=8883, key="ee" * 32)
        error = handed_over(name, port=8884, summary=odd).results[1]
        return dataclasses.replace(record, results=(*record.results, error))

    first = stage.settle(device("x"))
    stage.settle(device("y"))
    amended = stage.amend(stored_again(first), [UNIQUE_KEYS])
    assert amended is not None
    before = {r.finding.target: r.finding.summary for r in first.of_check(UNIQUE_KEYS)}
    after = {r.finding.target: r.finding.summary for r in amended.of_check(UNIQUE_KEYS)}
    assert after["tcp/8884"] == before["tcp/8884"]
    assert after["tcp/8884"].endswith("a\\\\b\\x07")
    assert before["tcp/8883"] != after["tcp/8883"]


def test_a_judge_that_raises_gives_its_device_an_error() -> None:
    stage = FleetStage(profile(config("test.broken"), config(UNIQUE_KEYS)),
                       checks(BROKEN))
    settled = stage.settle(handed_over("a", port=8883, key="aa" * 32))
    [broken] = settled.of_check("test.broken")
    assert broken.status is Status.ERROR and broken.finding.evidence == {"reason": "internal"}
    assert settled.statuses()[UNIQUE_KEYS] is Status.PASS


async def test_one_device_alone_gets_the_fleet_checks_single_answer(tmp_path: Path) -> None:
    """run_check and judge_check answer a fleet check without touching the device."""
    address = "127.161.3.1"
    options = ScanOptions(timeout=3.0, tcp_ports=(1883,), exclude_ports=(2024,), udp=False)
    with mosquitto(tmp_path, address, 1883), device_context(address, options) as ctx:
        [alone] = await run_check(UNIQUE_KEYS, address, context=ctx)
        assert ctx.connections == 0
        assert [f.status for f in await run_check("mqtt.anonymous-access", address,
                                                  context=ctx)] == [Status.FAIL]
    assert alone.status is Status.SKIPPED and alone.evidence == {"reason": "fleet"}
    assert judge_check(UNIQUE_KEYS, {}, address) == [alone]


def test_a_profile_cannot_give_a_fleet_check_per_class_parameters(tmp_path: Path) -> None:
    """One judge spans every device class: per-class values would never reach it, so a profile
    that writes them is refused when it loads, naming the file, line and field."""
    path = tmp_path / "p.yaml"
    path.write_text('id: p\ntitle: P\nversion: "1"\ncontrols:\n  27400-6.2:\n    checks:\n'
                    "      fleet.unique-keys:\n        classes: {camera: {}}\n")
    with pytest.raises(InputError) as caught:
        load_profile(str(path))
    error = caught.value
    assert (error.line, error.field) == (
        8, "controls['27400-6.2'].checks['fleet.unique-keys'].classes")
    assert "fleet check" in error.message
    path.write_text(path.read_text().replace("classes: {camera: {}}", "params: {}"))
    assert [c.id for c in load_profile(str(path)).checks] == [UNIQUE_KEYS]


def test_the_catalogue_is_listed_with_its_fleet_check_and_refuses_a_check_of_both_kinds() -> None:
    assert [c.id for c in catalogue().values() if c.fleet] == [UNIQUE_KEYS]
    assert catalogue()[UNIQUE_KEYS].evaluate is None
    assert not any(c.fleet for c in catalogue().values() if c.evaluate is not None)
    assert {e["id"] for e in catalogue_data() if e["fleet"]} == {UNIQUE_KEYS}
    validate((shared_port, BROKEN))
    per_device = catalogue()["net.open-ports"]
    for wrong in (dataclasses.replace(per_device, judge=shared_port.judge),
                  dataclasses.replace(shared_port, judge=None)):
        with pytest.raises(RuntimeError, match="either an evaluation or a fleet judge"):
            validate((wrong,))
