"""Hostile devices: the scan of each ends on its own, says `error` with the cause (or the verdict
its data supports), keeps the probe's memory bounded, and leaves the other devices' records
as they are when scanned alone.

The lab runs in the background (`iotprobe lab up` on 127.95.x.y) or, for the device that
vanishes, in a thread of the test; the probe is always the `iotprobe` command in a subprocess,
whose peak RSS `measured` reads. Helpers here (`Lab`, `iotprobe`, `PROFILE`...) are shared by
the other reliability tests (faults, scope, secrets).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import load_records

from probe.lab import PERSONAS, Fleet, plan_fleet, run_fleet
from probe.lab.expectations import expected
from probe.lab.personas.base import Persona
from probe.lab.personas.hostile import vanishing
from probe.lab.servers_hostile import (
    HUGE_CONNACK,
    MALFORMED_CONNACK,
    STALLED_RECORD,
    CoapFlood,
    Countdown,
    junk,
)

REPO = Path(__file__).resolve().parent.parent
HOSTILE = ("hang", "hostile-drip", "hostile-garbage", "hostile-bad-connack", "hostile-endless",
           "hostile-tls-stall", "hostile-coap-flood", "hostile-reset")
GOOD = ("clean-sensor", "telnet-camera", "mqtt-open-broker", "coap-sensor", "ftp-gateway")
WORST_FIRST = ("fail", "error", "skipped", "pass", "not_applicable")
TIMEOUT = "1"
BUDGET = "60"
MEMORY_RATIO = 1.5
"""Peak RSS of a scan of the hostile devices over that of a scan of as many clean ones."""

PROFILE = """\
id: reliability
title: Every check a lab persona declares
version: "1"
scan:
  tcp_ports: "21,22,23,80,443,1883,5900,8080,8443,8883"
controls:
  27400-6.2:
    title: Secure communication
    checks:
      net.open-ports:
        classes:
          sensor: {allowed_tcp: [8883], allowed_udp: [5684]}
          camera: {allowed_tcp: [443, 554, 8883], allowed_udp: [5684]}
          gateway: {allowed_tcp: [443, 8443, 8883], allowed_udp: [5683, 5684]}
          broker: {allowed_tcp: [8883], allowed_udp: []}
      net.cleartext-management:
      mqtt.cleartext-listener:
      mqtt.anonymous-access:
      mqtt.default-credentials:
        params: {pace_seconds: 0.02}
      mqtt.topic-authorization:
        params: {window_seconds: 0.5}
      mqtt.client-certificate:
      coap.cleartext:
      coap.dtls:
      coap.unauthenticated-write:
      coap.amplification:
      tls.protocol-versions:
      tls.cipher-suites:
      tls.certificate-validity:
      tls.certificate-trust:
      tls.certificate-strength:
      tls.known-vulnerabilities:
      http.cleartext:
      http.authentication:
      http.default-credentials:
        params: {pace_seconds: 0.02}
      http.hsts:
  27400-6.5:
    title: Security monitoring and incident response
    checks:
      monitor.clock-sync:
      monitor.vulnerability-disclosure:
"""


def write_profile(directory: Path) -> Path:
    path = directory / "reliability.yaml"
    path.write_text(PROFILE)
    return path


def iotprobe(*args: str, env: dict[str, str] | None = None, timeout: float = 600,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          stdin=subprocess.DEVNULL, cwd=cwd or REPO)


_PEAK = ("import resource, subprocess, sys\n"
         "code = subprocess.run(sys.argv[1:]).returncode\n"
         "print('peak-rss-kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
         " file=sys.stderr)\n"
         "sys.exit(code)\n")


def measured(*args: str, env: dict[str, str] | None = None,
             timeout: float = 600) -> tuple[subprocess.CompletedProcess[str], int]:
    """`iotprobe ARGS` under a parent of its own, so that its peak RSS (KiB) is all that
    parent's RUSAGE_CHILDREN holds."""
    run = subprocess.run([sys.executable, "-c", _PEAK, sys.executable, "-m", "probe", *args],
                         capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, cwd=REPO)
    line = next(ln for ln in reversed(run.stderr.splitlines()) if ln.startswith("peak-rss-kib"))
    return run, int(line.split()[1])


class Lab:
    """`iotprobe lab up` in the background with a private state directory; `down()` stops it."""

    def __init__(self, root: Path, base: str, personas: Sequence[str]) -> None:
        self.root = root
        self.state = root / "state"
        self.inventory = root / "lab.yaml"
        self.env = {"IOTPROBE_STATE_DIR": str(self.state)}
        up = iotprobe("lab", "up", "--base", base, "--personas", ",".join(personas),
                      "--inventory-out", str(self.inventory), env=self.env, timeout=180)
        assert up.returncode == 0, up.stderr
        self.output = up.stdout + up.stderr
        state = json.loads((self.state / "lab.json").read_text())
        self.trust_anchor = str(state["trust_anchor"])
        self.devices: dict[str, dict[str, Any]] = {d["id"]: d for d in state["devices"]}

    def address(self, persona: str) -> str:
        return next(d["address"] for d in self.devices.values() if d["persona"] == persona)

    def subset(self, path: Path, personas: Sequence[str], **defaults: Any) -> Path:
        """An inventory of the devices of these personas (first of each), with `defaults`."""
        chosen = [d for d in self.devices.values() if d["persona"] in personas]
        path.write_text(yaml.safe_dump({
            "defaults": {"exclude_ports": [2024], **defaults},
            "devices": [{"id": d["id"], "address": d["address"], "class": d["class"]}
                        for d in chosen]}))
        return path

    def down(self) -> str:
        down = iotprobe("lab", "down", env=self.env, timeout=180)
        assert down.returncode == 0, down.stderr
        return down.stdout + down.stderr


def worst(record: dict[str, Any]) -> dict[str, str]:
    """Each check's status in a record; with several results, the worst of them."""
    found: dict[str, list[str]] = {}
    for result in record["results"]:
        found.setdefault(result["check"], []).append(result["status"])
    return {check: min(statuses, key=WORST_FIRST.index) for check, statuses in found.items()}


def within(record: dict[str, Any], persona: Persona) -> dict[str, str]:
    """What the persona must get for the checks the record holds (probe.lab.expectations)."""
    checks = {r["check"] for r in record["results"]}
    return {c: s.value for c, s in expected(persona).items() if c in checks}


def mismatches(record: dict[str, Any], expect: dict[str, str]) -> list[tuple[str, str, str]]:
    found = worst(record)
    return [(check, status, found.get(check, "-")) for check, status in expect.items()
            if check in found and found[check] != status]


def scan_args(inventory: Path, outdir: Path, profile: Path, lab: Lab) -> tuple[str, ...]:
    return ("scan", "-i", str(inventory), "-p", str(profile), "-o", str(outdir),
            "--trust-anchor", lab.trust_anchor, "--timeout", TIMEOUT, "--budget", BUDGET,
            "--exclude-ports", "2024", "-q")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    running = Lab(tmp_path_factory.mktemp("hostile"), "127.95.0.1", HOSTILE + GOOD)
    try:
        yield running
    finally:
        running.down()


@dataclass
class Scans:
    hostile: dict[str, dict[str, Any]]
    together: dict[str, dict[str, Any]]
    alone: dict[str, dict[str, Any]]
    clean: dict[str, dict[str, Any]]
    rss: dict[str, int]


@pytest.fixture(scope="module")
def scans(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Scans:
    """Four scans of the lab: the hostile devices, hostile and good together, the good ones
    alone, and as many clean devices as there are hostile ones (the memory baseline)."""
    root = tmp_path_factory.mktemp("scans")
    profile = write_profile(root)
    records: dict[str, dict[str, dict[str, Any]]] = {}
    rss: dict[str, int] = {}
    clean = (GOOD * 2)[:len(HOSTILE)]
    for name, personas in (("hostile", HOSTILE), ("together", HOSTILE + GOOD), ("alone", GOOD),
                           ("clean", clean)):
        inventory = root / f"{name}.yaml"
        if name == "clean":
            devices = [lab.devices[f"{p}-1"] for p in GOOD]
            inventory.write_text(yaml.safe_dump({"defaults": {"exclude_ports": [2024]}, "devices": [
                {"id": f"clean-{i}", "address": devices[i % len(devices)]["address"],
                 "class": devices[i % len(devices)]["class"]} for i in range(len(clean))]}))
        else:
            lab.subset(inventory, personas)
        run, rss[name] = measured(*scan_args(inventory, root / name, profile, lab))
        assert run.returncode in (1, 3), run.stderr
        assert "Traceback" not in run.stderr
        records[name] = load_records(root / name)
    return Scans(records["hostile"], records["together"], records["alone"], records["clean"],
                 rss)


@pytest.mark.parametrize("persona", HOSTILE)
def test_a_hostile_device_gets_its_declared_results(scans: Scans, persona: str) -> None:
    record = scans.hostile[f"{persona}-1"]
    expected = within(record, PERSONAS[persona])
    assert mismatches(record, expected) == []
    assert set(worst(record)) >= set(PERSONAS[persona].expect)
    assert record["verdict"] == PERSONAS[persona].expect_verdict


@pytest.mark.parametrize("persona", HOSTILE)
def test_a_hostile_device_finishes_before_its_budget(scans: Scans, persona: str) -> None:
    """Every check ended on its own: none was cut by the device budget, and every `error`
    names its cause."""
    record = scans.hostile[f"{persona}-1"]
    for result in record["results"]:
        assert result["evidence"].get("reason") != "budget", result
        if result["status"] == "error":
            assert result["summary"] and result["evidence"].get("reason") != "internal", result


def test_errors_name_the_cause(scans: Scans) -> None:
    def summaries(persona: str, check: str) -> str:
        return " ".join(r["summary"] for r in scans.hostile[f"{persona}-1"]["results"]
                        if r["check"] == check)

    assert "reset every connection" in summaries("hostile-reset", "mqtt.anonymous-access")
    assert "four bytes" in summaries("hostile-bad-connack", "mqtt.anonymous-access")
    assert "268435455" in summaries("hostile-endless", "mqtt.cleartext-listener")
    assert "never answered" in summaries("hostile-tls-stall", "tls.protocol-versions")
    assert "never answered" in summaries("hostile-drip", "mqtt.anonymous-access")
    assert "could not be identified" in summaries("hostile-garbage", "net.cleartext-management")
    (flood,) = [r for r in scans.hostile["hostile-coap-flood-1"]["results"]
                if r["check"] == "coap.amplification"]
    assert flood["status"] == "fail"


def test_memory_stays_bounded(scans: Scans) -> None:
    """The hostile devices stream 256 MB claims and endless bodies, flood datagrams and drip:
    the probe's peak RSS stays within a ratio of a scan of as many clean devices."""
    ratio = scans.rss["hostile"] / scans.rss["clean"]
    print(f"peak RSS: hostile {scans.rss['hostile']} KiB, clean {scans.rss['clean']} KiB, "
          f"together {scans.rss['together']} KiB, ratio {ratio:.2f}")
    assert ratio < MEMORY_RATIO


def test_good_devices_are_unaffected_by_hostile_neighbours(scans: Scans) -> None:
    for persona in GOOD:
        device = f"{persona}-1"
        alone, together = scans.alone[device], scans.together[device]
        assert worst(together) == worst(alone), device
        assert together["verdict"] == alone["verdict"] == PERSONAS[persona].expect_verdict
        assert mismatches(together, within(together, PERSONAS[persona])) == []
    for persona in HOSTILE:
        assert worst(scans.together[f"{persona}-1"]) == worst(scans.hostile[f"{persona}-1"])


# ------------------------------------------------------------------ the device that vanishes


@dataclass
class ThreadLab:
    loop: asyncio.AbstractEventLoop
    fleets: list[Fleet]

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(120)


@pytest.fixture
def thread_lab() -> Iterator[ThreadLab]:
    with loop_thread() as lab:
        yield lab


@contextlib.contextmanager
def loop_thread() -> Iterator[ThreadLab]:
    """An event loop in a thread for in-process fleets; every fleet is stopped at the end."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    lab = ThreadLab(loop, [])
    try:
        yield lab
    finally:
        for fleet in lab.fleets:
            lab.run(fleet.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(60)
        loop.close()


def test_a_device_that_vanishes_mid_scan(thread_lab: ThreadLab, tmp_path: Path) -> None:
    """The device serves the port scan's connections, then resets every connection and its
    listeners close; the device scanned beside it keeps its results."""
    countdown = Countdown(3)
    specs = plan_fleet([vanishing(countdown)], 1, "127.95.3.1")
    specs += plan_fleet([PERSONAS["clean-sensor"]], 1, "127.95.3.2")

    async def start() -> tuple[Fleet, Fleet]:
        going, staying = await run_fleet(specs[:1]), await run_fleet(specs[1:])

        async def disappear() -> None:
            await countdown.gone.wait()
            await going.stop()

        asyncio.get_running_loop().create_task(disappear())
        return going, staying

    fleets = thread_lab.run(start())
    thread_lab.fleets.extend(fleets)
    anchor = tmp_path / "ca.pem"
    anchor.write_bytes(fleets[1].ca_pem)
    inventory = tmp_path / "v.yaml"
    inventory.write_text(yaml.safe_dump({"defaults": {"exclude_ports": [2024]}, "devices": [
        {"id": s.id, "address": s.address, "class": s.persona.device_class} for s in specs]}))
    run = iotprobe("scan", "-i", str(inventory), "-p", str(write_profile(tmp_path)), "-o",
                   str(tmp_path / "out"), "--trust-anchor", str(anchor), "--timeout", TIMEOUT,
                   "--budget", BUDGET, "--exclude-ports", "2024", "-q")
    assert run.returncode == 1, run.stderr
    records = load_records(tmp_path / "out")
    gone = records["hostile-vanishing-1"]
    assert countdown.gone.is_set()
    assert mismatches(gone, within(gone, specs[0].persona)) == []
    assert gone["verdict"] == "nonconformant"
    services = {s["port"]: s for s in gone["services"]}
    assert set(services) == {21, 23, 1883}
    assert all(s["protocol"] == "unknown" for s in services.values()), services
    clean = records["clean-sensor-1"]
    assert mismatches(clean, within(clean, PERSONAS["clean-sensor"])) == []


# ------------------------------------------------------------ the hostile services themselves


def exchange(address: str, port: int, payload: bytes, size: int = 64) -> bytes:
    assert port != 2024
    with socket.create_connection((address, port), timeout=5) as sock:
        sock.settimeout(5)
        sock.sendall(payload)
        data = b""
        for _ in range(32):
            if len(data) >= size:
                break
            chunk = sock.recv(size - len(data))
            if not chunk:
                break
            data += chunk
        return data


def test_the_hostile_services_misbehave_as_declared(lab: Lab) -> None:
    connect = b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"
    assert exchange(lab.address("hostile-bad-connack"), 1883, connect, 6) == MALFORMED_CONNACK
    endless = exchange(lab.address("hostile-endless"), 1883, connect, 64 * 1024)
    assert endless.startswith(HUGE_CONNACK) and len(endless) == 64 * 1024
    assert exchange(lab.address("hostile-tls-stall"), 443, b"\x16\x03\x01\x00\x05hello",
                    len(STALLED_RECORD)) == STALLED_RECORD
    assert exchange(lab.address("hostile-garbage"), 23, b"", 16) == junk(23, 200)[:16]
    assert exchange(lab.address("hostile-drip"), 23, b"", 1) == b"."
    with pytest.raises(ConnectionResetError):
        exchange(lab.address("hostile-reset"), 1883, connect)


def test_the_coap_flood_answers_one_request_with_many_datagrams(lab: Lab) -> None:
    request = bytes([0x40, 0x01, 0x12, 0x34]) + b"\xbb.well-known\x04core"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.settimeout(2)
        sock.connect((lab.address("hostile-coap-flood"), 5683))
        sock.send(request)
        got = []
        for _ in range(CoapFlood().copies):
            try:
                got.append(sock.recv(4096))
            except TimeoutError:
                break
    assert len(got) > 16
    assert all(d[2:4] == b"\x12\x34" and d[1] == 0x45 for d in got)
    assert struct.unpack("!H", got[0][2:4]) == (0x1234,)
