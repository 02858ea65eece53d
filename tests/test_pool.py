"""Worker processes (probe.pool): the same outcomes as one process, and a worker that dies costs
its own devices `error` results, never the scan."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from daemons import reaped, subreaper
from test_engine import NET_ONLY, devices_of, write_profile

from probe.context import ScanOptions
from probe.engine import Engine
from probe.lab.fleet import DeviceSpec, Fleet, plan_fleet, run_fleet
from probe.lab.personas import PERSONAS
from probe.model import Device, Status
from probe.pool import ProcessPool, worker_count
from probe.record.model import Record
from probe.record.schema import validate_record
from probe.secrets import Secret

PERSONA_NAMES = ("clean-sensor", "telnet-camera", "ftp-gateway", "snmp-public", "tftp-sensor",
                 "extra-ports", "dark")


@pytest.fixture
async def fleet() -> AsyncIterator[dict[str, DeviceSpec]]:
    names = (*PERSONA_NAMES, "hang")
    specs = plan_fleet([PERSONAS[name] for name in names], len(names), "127.66.0.1")
    running: Fleet = await run_fleet(specs)
    try:
        yield {s.persona.name: s for s in specs}
    finally:
        await running.stop()


def _shape(outcome: Record) -> list[tuple[str, str, str]]:
    return [(r.check, r.status.value, r.finding.summary) for r in outcome.results]


async def test_workers_give_the_outcomes_of_one_process(fleet: dict[str, DeviceSpec],
                                                        tmp_path: Path) -> None:
    profile = write_profile(tmp_path, NET_ONLY)
    devices = devices_of(fleet[name] for name in PERSONA_NAMES)
    secret = Secret("pool-secret-value", "env:POOL_TEST")
    devices[0] = Device(id=devices[0].id, address=devices[0].address, exclude_ports=(2024,),
                        credentials={"mqtt": {"username": "probe", "password": secret}})
    engine = Engine(profile, ScanOptions(timeout=1.0, budget=20.0, concurrency=4))
    alone: dict[str, Record] = {}
    pooled: dict[str, Record] = {}
    await engine.run(devices, lambda o: alone.__setitem__(o.device.id, o))
    await ProcessPool(engine, 2).run(devices, lambda o: pooled.__setitem__(o.device.id, o))
    assert set(pooled) == {d.id for d in devices}
    for device in devices:
        # the secret crossed to the worker; the record coming back holds the identity only
        assert pooled[device.id].device == alone[device.id].device
        assert not pooled[device.id].device.credentials
        assert _shape(pooled[device.id]) == _shape(alone[device.id]), device.id
        validate_record(pooled[device.id].to_json())


async def test_a_dead_worker_costs_its_devices_errors_not_the_scan(
        fleet: dict[str, DeviceSpec], tmp_path: Path) -> None:
    """The first device (the hang persona, waiting out long timeouts) goes to the first
    worker, the second to the other; once the second is done, the first worker is killed."""
    profile = write_profile(tmp_path, NET_ONLY)
    devices = devices_of([fleet["hang"], fleet["clean-sensor"]])
    engine = Engine(profile, ScanOptions(timeout=60.0, budget=120.0, concurrency=2))
    outcomes: dict[str, Record] = {}

    def keep(outcome: Record) -> None:
        outcomes[outcome.device.id] = outcome
        if outcome.device.id == devices[1].id:
            (first,) = [p for p in multiprocessing.active_children()
                        if p.name == "iotprobe-scan-1"]
            assert first.pid is not None
            os.kill(first.pid, signal.SIGKILL)

    await ProcessPool(engine, 2).run(devices, keep)
    clean, hang = outcomes[devices[1].id], outcomes[devices[0].id]
    assert {r.status for r in clean.results} == {Status.PASS}
    assert {r.check for r in hang.results} == {"net.open-ports", "net.cleartext-management"}
    for result in hang.results:
        assert result.status is Status.ERROR
        assert result.finding.evidence["reason"] == "internal"
        assert "exit code -9" in result.finding.summary
    validate_record(hang.to_json())


async def test_every_device_of_a_long_scan_gets_its_record(tmp_path: Path) -> None:
    """Issue 20: the number the pool gives each device it hands a worker was overwritten by
    the number of each record coming back, so numbers were given again to devices while a
    worker still held the first ones; once a worker held two devices under one number, the
    second record raised KeyError and ended the scan (2,517 records of 10,000). One worker
    scanning one device at a time hands its records back in order, so from the first record
    on every number was given again while still held: every device must get its record."""
    specs = plan_fleet([PERSONAS["clean-sensor"]] * 12, 12, "127.190.3.1")
    running: Fleet = await run_fleet(specs)
    try:
        profile = write_profile(tmp_path, NET_ONLY)
        devices = devices_of(specs)
        engine = Engine(profile, ScanOptions(timeout=2.0, budget=60.0, concurrency=1))
        outcomes: list[Record] = []
        await ProcessPool(engine, 1).run(devices, outcomes.append)
    finally:
        await running.stop()
    assert sorted(o.device.id for o in outcomes) == sorted(d.id for d in devices)
    for outcome in outcomes:
        assert {r.status for r in outcome.results} == {Status.PASS}, outcome.device.id


def test_worker_count() -> None:
    assert worker_count(3, 1) == 3
    assert worker_count(None, 10) == 1
    cores = len(os.sched_getaffinity(0))
    assert worker_count(None, 10_000) == cores
    assert worker_count(None, 60) == min(cores, 2)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


async def test_workers_of_a_killed_scan_exit_at_once(fleet: dict[str, DeviceSpec],
                                                     tmp_path: Path) -> None:
    """kill -9 of the scanning command: its workers see their pipe close and exit, instead of
    scanning on for nobody. This process becomes their subreaper so that it can reap them."""
    hang = fleet["hang"]
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("defaults:\n  exclude_ports: [2024]\ndevices:\n"
                         + "".join(f"  - {{id: d{i}, address: {hang.address}}}\n"
                                   for i in range(4)))
    with subreaper():
        scan = subprocess.Popen(
            [sys.executable, "-m", "probe", "scan", "-i", str(inventory), "-q", "-o",
             str(tmp_path / "out"), "--processes", "2", "--timeout", "60", "--budget", "120"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        workers: list[int] = []
        for _ in range(600):  # a guard against a hang, not a measure: at most a minute
            workers = [pid for pid in _children(scan.pid)
                       if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
            if len(workers) == 2:
                break
            await asyncio.sleep(0.1)
        assert len(workers) == 2
        workers = _children(scan.pid)  # multiprocessing's resource tracker too
        scan.kill()
        scan.wait()
        lingering = [pid for pid in workers if not reaped(pid, 60)]
        for pid in lingering:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        assert not lingering, "workers outlived their killed parent"
