"""The adaptive rate (probe.ratelimit, docs/rate.md): a device that breaks under load gets, at
the default settings, the results of a scan slow enough not to break it, which a fixed fast
rate does not give it; and the paces grow and halve as documented.

The fragile devices are the lab's `fragile-camera` persona, run in a thread of the test on
127.167.0.x (one device per scan, so that no scan meets a device another one overloaded); the
probe is the `iotprobe` command in a subprocess.
"""

from __future__ import annotations

import asyncio
import errno
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import load_records
from test_hostile import REPO, ThreadLab, loop_thread

from probe.context import DeviceContext, Network, ScanOptions, _Collecting
from probe.lab import PERSONAS, Fleet, plan_fleet, run_fleet
from probe.lab.servers_fragile import FragileServer
from probe.model import Device
from probe.ratelimit import DEVICE, FIXED, Lanes, Pace, network_key

SLOW = ("--rate-mode", "fixed", "--rate", "2")
"""Slow enough for the fragile camera: its 4 connections a second are never exceeded."""
FAST = ("--rate-mode", "fixed", "--rate", "500")
"""The probe's rate before it adapted."""


@pytest.fixture
def lab() -> Iterator[ThreadLab]:
    with loop_thread() as running:
        yield running


def _fragile(lab: ThreadLab, address: str) -> Fleet:
    fleet: Fleet = lab.run(run_fleet(plan_fleet([PERSONAS["fragile-camera"]], 1, address)))
    lab.fleets.append(fleet)
    return fleet


def _overloads(fleet: Fleet) -> int:
    servers = [s for s in fleet._streams if isinstance(s, FragileServer)]
    assert servers
    return servers[0].table.overloads


def _scan(tmp_path: Path, name: str, address: str, *flags: str) -> subprocess.Popen[str]:
    inventory = tmp_path / f"{name}.yaml"
    inventory.write_text(yaml.safe_dump({"defaults": {"exclude_ports": [2024]}, "devices": [
        {"id": "fragile", "address": address, "class": "camera"}]}))
    return subprocess.Popen(
        [sys.executable, "-m", "probe", "scan", "-i", str(inventory), "-o",
         str(tmp_path / name), "--exclude-ports", "2024", "-q", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        cwd=REPO)


def _record(tmp_path: Path, name: str, process: subprocess.Popen[str]) -> dict[str, Any]:
    _, err = process.communicate(timeout=600)
    assert process.returncode == 1, err
    return load_records(tmp_path / name)["fragile"]


def _statuses(record: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for result in record["results"]:
        out.setdefault(result["check"], []).append(result["status"])
    return {check: sorted(statuses) for check, statuses in out.items()}


def test_a_fragile_device_gets_the_slow_scans_results_at_the_default_rate(
        lab: ThreadLab, tmp_path: Path) -> None:
    fleets = {name: _fragile(lab, f"127.167.0.{i}")
              for i, name in enumerate(("slow", "default", "fast", "short"), start=1)}
    scans = {"slow": _scan(tmp_path, "slow", "127.167.0.1", *SLOW),
             "default": _scan(tmp_path, "default", "127.167.0.2"),
             "fast": _scan(tmp_path, "fast", "127.167.0.3", *FAST),
             # a timeout as long as the camera's pause: the retries of a refused connection
             # must outlast the pause, or every one of them lands inside it
             "short": _scan(tmp_path, "short", "127.167.0.4", "--timeout", "2")}
    records = {name: _record(tmp_path, name, process) for name, process in scans.items()}
    slow, default, fast = records["slow"], records["default"], records["fast"]
    assert _statuses(records["short"]) == _statuses(slow)

    assert _overloads(fleets["slow"]) == 0, "the reference scan must not overload the device"
    assert slow["probe"]["rate"] == {"mode": "fixed", "final": 2.0, "backoffs": 0}
    assert not any(r["status"] == "error" for r in slow["results"]), slow["results"]

    assert _overloads(fleets["default"]) >= 1, "the default scan never met the fragility"
    assert default["probe"]["rate"]["mode"] == "adaptive"
    assert default["probe"]["rate"]["backoffs"] >= 1
    assert default["probe"]["rate"]["final"] < DEVICE.start
    assert _statuses(default) == _statuses(slow)
    assert default["services"] == slow["services"]
    assert not any(r["evidence"].get("reason") == "budget" for r in default["results"])

    assert _overloads(fleets["fast"]) >= 1
    assert fast["probe"]["rate"] == {"mode": "fixed", "final": 500.0, "backoffs": 0}
    assert _statuses(fast) != _statuses(slow)
    refused = [r for r in fast["results"] if r["status"] == "error"]
    assert refused and all("Connect call failed" in r["summary"] for r in refused), refused


def test_a_pace_grows_while_answered_and_halves_once_a_round() -> None:
    pace = Pace(DEVICE, ceiling=100.0)
    assert pace.rate == DEVICE.start
    for _ in range(10):
        pace.succeeded()
    assert pace.rate == DEVICE.start + 10, "slow start: one more per answer"
    pace.congested(since=float("-inf"))
    halved = (DEVICE.start + 10) / 2
    assert (pace.rate, pace.threshold, pace.backoffs) == (halved, halved, 1)
    pace.congested(since=float("-inf"))
    assert pace.rate == halved, "an exchange of the round that already halved it counts once"
    pace.succeeded()
    assert pace.rate == halved + 1 / halved, "above the threshold: one more per second"
    for _ in range(20):
        pace.congested(since=float("inf"))
    assert pace.rate == DEVICE.floor
    for _ in range(1000):
        pace.succeeded()
    assert pace.rate <= 100.0, "never above the ceiling"


def test_the_ceiling_caps_where_paces_start() -> None:
    slow = Pace(DEVICE, ceiling=5.0)
    assert (slow.rate, slow.floor) == (5.0, DEVICE.floor)
    assert Lanes(FIXED, 42.0).start == 42.0


def test_a_network_is_the_site_else_the_24_or_64() -> None:
    assert network_key("127.167.3.9", "plant-2") == "site:plant-2"
    assert network_key("127.167.3.9", None) == "127.167.3.0/24"
    assert network_key("::1", None) == "::/64"


def test_devices_of_one_network_share_its_pace_while_any_is_scanned() -> None:
    lanes = Lanes("adaptive", 1000.0)
    with lanes.lane("127.167.1.1", None) as first, lanes.lane("127.167.1.2", None) as second:
        assert first.network is second.network and first.device is not second.device
        with lanes.lane("127.167.2.1", None) as other:
            assert other.network is not first.network
    with lanes.lane("127.167.1.3", None) as later:
        assert later.network is not first.network, "a network no device uses is forgotten"
    with Lanes(FIXED, 1000.0).lane("127.167.1.1", None) as fixed:
        assert not fixed.adaptive and fixed.final == 1000.0


def test_an_icmp_unreachable_on_a_datagram_is_congestion_and_a_refusal_an_answer() -> None:
    async def run() -> tuple[float, int, float]:
        network = Network(ScanOptions(rate=1000.0))
        ctx = DeviceContext(Device(id="d", address="127.167.9.1"), "127.167.9.1",
                            network.options, network)
        assert ctx.lane.device is not None
        start = ctx.lane.device.rate
        refused = _Collecting(4, 1024)
        refused.error_received(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
        ctx.heard(refused, since=0.0)
        answered = ctx.lane.device.rate
        unreachable = _Collecting(4, 1024)
        unreachable.error_received(OSError(errno.EHOSTUNREACH, "no route to host"))
        ctx.heard(unreachable, since=0.0)
        network.close()
        return start, ctx.lane.device.backoffs, answered
    start, backoffs, answered = asyncio.run(run())
    assert answered == start + 1 and backoffs == 1
