"""Sweeps end to end: the store, kill -9 and --resume, --every, signals, diff, report, the
fleet check, PostgreSQL, and secrets that never reach the store."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from pgserver import PASSWORD, PostgresServer, postgres_server

from probe import __version__
from probe.context import ScanOptions
from probe.engine import Engine
from probe.errors import InputError
from probe.inventory import inventory_from_targets
from probe.lab import pki
from probe.model import Device, Finding, Result, Severity, Status, passed
from probe.profile import Profile
from probe.profile_loader import load_profile
from probe.record.model import ProbeInfo, ProfileRef, Record, record_of
from probe.record.schema import validate_record
from probe.run import FileSink, ScanRun, run_scan
from probe.store import open_store
from probe.sweep import StoreSink, parse_interval

BASE = "127.91.0.1"
SLOW_BASE = "127.91.1.1"
TLS_BASE = "127.91.2.1"
SECRET = "sw33p-S3cret-never-stored"
FAST = ("--timeout", "1", "--budget", "30", "--exclude-ports", "2024", "-p", "iso27400-6.2")


def iotprobe(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
             timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          stdin=subprocess.DEVNULL, cwd=cwd)


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "probe", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})


class Lab:
    def __init__(self, root: Path, base: str, personas: str | None = None,
                 devices: int | None = None) -> None:
        self.state = root / "state"
        self.inventory = root / "inventory.yaml"
        self.env = {"IOTPROBE_STATE_DIR": str(self.state)}
        extra = ["--personas", personas] if personas else []
        extra += ["--devices", str(devices)] if devices else []
        up = iotprobe("lab", "up", "--base", base, "--inventory-out", str(self.inventory),
                      *extra, env=self.env)
        assert up.returncode == 0, up.stderr
        data = json.loads((self.state / "lab.json").read_text())
        self.devices: dict[str, dict[str, Any]] = {d["id"]: d for d in data["devices"]}

    def address(self, persona: str) -> str:
        return next(d["address"] for d in self.devices.values() if d["persona"] == persona)

    def down(self) -> None:
        down = iotprobe("lab", "down", env=self.env)
        assert down.returncode == 0, down.stderr


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    running = Lab(tmp_path_factory.mktemp("lab"), BASE,
                  "clean-sensor,telnet-camera,ftp-gateway,snmp-public,dark")
    try:
        yield running
    finally:
        running.down()


@pytest.fixture(scope="module")
def slow_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Devices that keep a sweep busy: every `hang` check waits for its timeout."""
    running = Lab(tmp_path_factory.mktemp("slow"), SLOW_BASE, "hang,clean-sensor", 8)
    try:
        yield running
    finally:
        running.down()


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def sweeps_of(path: Path) -> list[tuple[int, str, int]]:
    """(number, state, records) of every sweep in the SQLite store at `path`, read-only."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(conn.execute(
            "SELECT s.id, s.state, (SELECT count(*) FROM records r WHERE r.sweep_id = s.id) "
            "FROM sweeps s ORDER BY s.id"))
    finally:
        conn.close()


def sweeps_so_far(path: Path) -> list[tuple[int, str, int]]:
    """`sweeps_of` while a sweep process may still be creating the store."""
    if not path.exists():
        return []
    try:
        return sweeps_of(path)
    except sqlite3.OperationalError:
        return []


def stored_records(url: str, number: int) -> list[dict[str, Any]]:
    store = open_store(url)
    try:
        records = [r.to_json() for r in store.records(number)]
    finally:
        store.close()
    for record in records:
        validate_record(record)
    return records


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def records_in(path: Path, number: int) -> int:
    return next((count for n, _, count in sweeps_so_far(path) if n == number), 0)


def stop(process: subprocess.Popen[str], sig: int) -> tuple[int, str, str]:
    process.send_signal(sig)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def test_a_sweep_stores_one_valid_record_per_device(lab: Lab, tmp_path: Path) -> None:
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(lab.inventory.read_text())
    run = iotprobe("sweep", "-i", str(inventory), *FAST, env=lab.env)
    assert run.returncode == 1, run.stderr
    store = tmp_path / "fleet.iotprobe.sqlite"
    assert sweeps_of(store) == [(1, "finished", len(lab.devices))]
    records = stored_records(str(store), 1)
    assert sorted(r["device"]["id"] for r in records) == sorted(lab.devices)
    assert "sweep #1" in run.stdout and "nonconformant" in run.stdout
    assert "starting sweep #1" in run.stderr


def test_kill_9_loses_no_record_and_resume_finishes_the_rest(slow_lab: Lab,
                                                             tmp_path: Path) -> None:
    store = tmp_path / "slow.sqlite"
    args = ("sweep", "-i", str(slow_lab.inventory), "--store", str(store), "--concurrency",
            "1", "--per-device", "1", *FAST, "-q")
    process = start(*args, env=slow_lab.env)
    try:
        wait_for(lambda: records_in(store, 1) >= 2, "two stored records")
    finally:
        process.kill()
        process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    [(number, state, count)] = sweeps_of(store)
    assert number == 1 and state == "running" and 2 <= count < len(slow_lab.devices)
    before = {r["device"]["id"]: r for r in stored_records(str(store), 1)}
    assert len(before) == count

    resumed = iotprobe(*args[:-1], "--resume", env=slow_lab.env)
    assert resumed.returncode == 1, resumed.stderr
    assert "resuming sweep #1" in resumed.stderr
    assert sweeps_of(store) == [(1, "finished", len(slow_lab.devices))]
    after = {r["device"]["id"]: r for r in stored_records(str(store), 1)}
    assert sorted(after) == sorted(slow_lab.devices)
    for device_id, record in before.items():
        assert after[device_id] == record, f"{device_id} was scanned again"
    assert str(len(slow_lab.devices)) in resumed.stdout


def test_sigint_interrupts_a_sweep_cleanly_and_resume_completes_it(slow_lab: Lab,
                                                                  tmp_path: Path) -> None:
    store = tmp_path / "int.sqlite"
    args = ("sweep", "-i", str(slow_lab.inventory), "--store", str(store), "--concurrency",
            "1", *FAST, "-q")
    process = start(*args, env=slow_lab.env)
    try:
        wait_for(lambda: records_in(store, 1) >= 1, "a stored record")
    finally:
        code, _, err = stop(process, signal.SIGINT)
    assert code == 128 + signal.SIGINT, err
    assert "interrupted by SIGINT" in err and "--resume" in err
    [(_, state, count)] = sweeps_of(store)
    assert state == "interrupted" and count < len(slow_lab.devices)
    other = iotprobe(*args[:-3], "-p", "iso27400", "-q", "--resume", env=slow_lab.env)
    assert other.returncode == 2 and "resume it with the same profile" in other.stderr
    resumed = iotprobe(*args, "--resume", env=slow_lab.env)
    assert resumed.returncode == 1, resumed.stderr
    assert sweeps_of(store) == [(1, "finished", len(slow_lab.devices))]


def test_every_repeats_until_the_count(lab: Lab, tmp_path: Path) -> None:
    store = tmp_path / "every.sqlite"
    run = iotprobe("sweep", "-i", str(lab.inventory), "--store", str(store), "--every", "2s",
                   "--count", "2", *FAST, "-q", env=lab.env)
    assert run.returncode == 1, run.stderr
    sweeps = sweeps_of(store)
    assert [(n, state, count) for n, state, count in sweeps] == [
        (1, "finished", len(lab.devices)), (2, "finished", len(lab.devices))]


def test_sigterm_between_sweeps_ends_every_cleanly(lab: Lab, tmp_path: Path) -> None:
    store = tmp_path / "term.sqlite"
    process = start("sweep", "-i", str(lab.inventory), "--store", str(store), "--every", "1h",
                    *FAST, env=lab.env)
    try:
        wait_for(lambda: [s[1] for s in sweeps_so_far(store)] == ["finished"],
                 "the first sweep")
    finally:
        code, out, err = stop(process, signal.SIGTERM)
    assert code == 1, err
    assert "next sweep at" in err and "stopped by SIGTERM after 1 sweep(s)" in err
    assert sweeps_of(store) == [(1, "finished", len(lab.devices))]
    assert "sweep #1" in out


def test_resume_with_nothing_to_resume_starts_a_new_sweep(lab: Lab, tmp_path: Path) -> None:
    store = tmp_path / "r.sqlite"
    first = iotprobe("sweep", "-i", str(lab.inventory), "--store", str(store), "--resume",
                     *FAST, "-q", env=lab.env)
    assert first.returncode == 1 and "nothing to resume (no sweep yet)" in first.stderr
    other = iotprobe("sweep", "-i", str(lab.inventory), "--store", str(store), "--resume",
                     *FAST[:-2], "-p", "iso27400", "-q", env=lab.env)
    assert other.returncode == 1 and "sweep #1 is finished" in other.stderr
    assert [n for n, _, _ in sweeps_of(store)] == [1, 2]


def write_inventory(path: Path, devices: dict[str, str]) -> Path:
    path.write_text(yaml.safe_dump({"defaults": {"exclude_ports": [2024]}, "devices": [
        {"id": device_id, "address": address} for device_id, address in devices.items()]}))
    return path


def test_diff_and_report_between_two_sweeps(lab: Lab, tmp_path: Path) -> None:
    store = tmp_path / "fleet.iotprobe.sqlite"
    first = write_inventory(tmp_path / "fleet.yaml", {
        "x": lab.address("dark"), "sensor": lab.address("clean-sensor"),
        "y": lab.address("telnet-camera"), "gw": lab.address("ftp-gateway")})
    assert iotprobe("sweep", "-i", str(first), *FAST, "-q", env=lab.env).returncode in (1, 3)
    write_inventory(first, {
        "x": lab.address("telnet-camera"), "sensor": lab.address("snmp-public"),
        "y": lab.address("clean-sensor"), "new": lab.address("ftp-gateway")})
    assert iotprobe("sweep", "-i", str(first), *FAST, "-q", env=lab.env).returncode == 1

    table = iotprobe("diff", cwd=tmp_path)
    assert table.returncode == 1, table.stderr
    assert "regressions: newly failing" in table.stdout and "#1" in table.stdout
    as_json = iotprobe("diff", "--store", str(store), "1", "2", "--json")
    assert as_json.returncode == 1
    changes = json.loads(as_json.stdout)
    assert (changes["a"]["number"], changes["b"]["number"]) == (1, 2)
    assert {"device": "x", "before": "inconclusive", "after": "nonconformant"} in \
        changes["verdict_changes"]
    regressed = {(c["device"], c["check"]) for c in changes["regressions"]}
    assert {("x", "net.cleartext-management"), ("sensor", "net.open-ports"),
            ("sensor", "net.cleartext-management")} <= regressed
    fixed = {(c["device"], c["check"], c["after"]) for c in changes["newly_passing"]}
    assert ("y", "net.cleartext-management", "pass") in fixed
    assert changes["appeared"] == [{"device": "new", "verdict": "nonconformant"}]
    assert [d["device"] for d in changes["vanished"]] == ["gw"]
    same = iotprobe("diff", "-i", str(first), "2", "2")
    assert same.returncode == 0 and "verdict changes: none" in same.stdout

    for fmt, name in (("html", "r.html"), ("junit", "r.xml"), ("oscal", "r.json")):
        made = iotprobe("report", "-i", str(first), "1", "--format", fmt, "-o",
                        str(tmp_path / name))
        assert made.returncode == 0, made.stderr
    assert "gw" in (tmp_path / "r.html").read_text()
    oscal = json.loads((tmp_path / "r.json").read_text())
    assert len(oscal["assessment-results"]["results"]) == 4
    latest = iotprobe("report", "--store", str(store), "--format", "junit", "-o", "-")
    assert latest.returncode == 0 and 'name="new"' in latest.stdout


def test_store_and_reports_hold_no_secret(lab: Lab, tmp_path: Path) -> None:
    inventory = tmp_path / "secret.yaml"
    inventory.write_text(yaml.safe_dump({
        "defaults": {"exclude_ports": [2024],
                     "credentials": {"mqtt": {"username": "probe",
                                              "password_env": "SWEEP_SECRET"}}},
        "devices": [{"id": "s", "address": lab.address("clean-sensor")}]}))
    env = {**lab.env, "SWEEP_SECRET": SECRET}
    run = iotprobe("sweep", "-i", str(inventory), *FAST, env=env)
    assert run.returncode in (0, 1), run.stderr
    for fmt in ("html", "junit", "oscal"):
        made = iotprobe("report", "-i", str(inventory), "--format", fmt, "-o", "-")
        assert made.returncode == 0 and SECRET not in made.stdout
    for path in tmp_path.glob("secret.iotprobe.sqlite*"):
        assert SECRET.encode() not in path.read_bytes()
    assert SECRET not in run.stdout + run.stderr


def test_bad_input_exits_2(tmp_path: Path, lab: Lab) -> None:
    bad = iotprobe("sweep", "-i", str(lab.inventory), "--store", str(tmp_path / "s.sqlite"),
                   "--every", "soon", *FAST)
    assert bad.returncode == 2 and "--every" in bad.stderr
    open_store(str(tmp_path / "empty.sqlite")).close()
    nothing = iotprobe("diff", "--store", str(tmp_path / "empty.sqlite"))
    assert nothing.returncode == 2 and "0 finished sweep(s)" in nothing.stderr
    missing = iotprobe("report", "--store", str(tmp_path / "empty.sqlite"), "7", "--format",
                       "html", "-o", str(tmp_path / "x.html"))
    assert missing.returncode == 2 and "no sweep #7" in missing.stderr
    lost = iotprobe("diff", cwd=tmp_path)
    assert lost.returncode == 2 and "--store" in lost.stderr


def test_parse_interval() -> None:
    assert parse_interval("90") == 90 and parse_interval("2s") == 2
    assert parse_interval("1h30m") == 5400 and parse_interval("1d") == 86400
    for bad in ("", "0s", "1w", "h", "-1s"):
        with pytest.raises(InputError):
            parse_interval(bad)


def test_a_sweep_into_postgresql(lab: Lab, pg: PostgresServer, tmp_path: Path) -> None:
    url = pg.url(pg.create_database())
    env = {**lab.env, "IOTPROBE_STORE": url}
    run = iotprobe("sweep", "-i", str(lab.inventory), "--every", "1s", "--count", "2", *FAST,
                   env=env)
    assert run.returncode == 1, run.stderr
    assert PASSWORD not in run.stdout + run.stderr and "***" in run.stdout + run.stderr
    for number in (1, 2):
        records = stored_records(url, number)
        assert sorted(r["device"]["id"] for r in records) == sorted(lab.devices)
    changed = iotprobe("diff", "--json", env={"IOTPROBE_STORE": url})
    assert changed.returncode in (0, 1), changed.stderr
    assert json.loads(changed.stdout)["b"]["number"] == 2
    report = iotprobe("report", "--format", "oscal", "-o", str(tmp_path / "o.json"),
                      env={"IOTPROBE_STORE": url})
    assert report.returncode == 0, report.stderr
    assert PASSWORD not in report.stderr


# ---------------------------------------------------------------------------- fleet.unique-keys

FLEET_PROFILE = """
id: fleet-keys
title: TLS certificates and the fleet check
version: "1"
extends: iso27400-6.2
controls:
  27400-6.2:
    checks:
      tls.certificate-strength: {}
      fleet.unique-keys: {}
"""


def fleet_profile(tmp_path: Path) -> Profile:
    path = tmp_path / "fleet-keys.yaml"
    path.write_text(FLEET_PROFILE)
    return load_profile(str(path))


def outcome(device: str, key: str | None, *, status: Status = Status.PASS) -> Record:
    """A device's outcome as the engine hands it over: a certificate result with the key the
    TLS check recorded, and no fleet result (the fleet stage adds it)."""
    now = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
    evidence = {"certificates": [{"public_key_sha256": key}]} if key else {}
    finding = (Finding(status, "certificate", "tcp/8883", evidence) if key or
               status is Status.ERROR else Finding(Status.NOT_APPLICABLE, "no TLS endpoint"))

    def res(check: str, found: Finding) -> Result:
        return Result(check, "27400-6.2", Severity.HIGH, found, "fix", {}, 1)

    results = (res("net.open-ports", passed("ok")),
               res("tls.certificate-strength", finding))
    return record_of(device=Device(device, "127.91.3.1", device_class="sensor"),
                     address="127.91.3.1",
                     profile=ProfileRef("fleet-keys", "1", "sha256:" + "0" * 64),
                     probe=ProbeInfo(__version__, False), started_at=now, finished_at=now,
                     services=(), results=results)


async def test_fleet_results_reach_every_record(tmp_path: Path) -> None:
    profile = fleet_profile(tmp_path)
    sink = FileSink(tmp_path / "out", jsonl=False)
    scan = ScanRun(Engine(profile, ScanOptions()), sink, fail_on=Severity.LOW)
    for device, key in (("a", "aa" * 32), ("b", "bb" * 32), ("c", "aa" * 32),
                        ("d", None), ("e", "aa" * 32)):
        await scan.finished(outcome(device, key))
    await scan.finished(outcome("f", None, status=Status.ERROR))
    early = json.loads((tmp_path / "out" / "c.record.json").read_text())
    assert [r["status"] for r in early["results"] if r["check"] == "fleet.unique-keys"] == [
        "fail"], "a key seen before fails at once"
    first = json.loads((tmp_path / "out" / "a.record.json").read_text())
    assert first["verdict"] == "conformant", "a's record was written before c arrived"
    await scan.settle_fleet()
    records = {r.device.id: r.to_json() for r in sink.records()}
    for record in records.values():
        validate_record(record)
    fleet = {d: [r for r in rec["results"] if r["check"] == "fleet.unique-keys"]
             for d, rec in records.items()}
    for device in ("a", "c", "e"):
        [result] = fleet[device]
        assert result["status"] == "fail" and result["target"] == "tcp/8883"
        assert result["evidence"]["devices"] == ["a", "c", "e"]
        assert result["evidence"]["device_count"] == 3
        assert records[device]["verdict"] == "nonconformant"
    assert [r["status"] for r in fleet["b"]] == ["pass"]
    assert [r["status"] for r in fleet["d"]] == ["not_applicable"]
    assert [r["status"] for r in fleet["f"]] == ["error"]
    assert scan.summary.verdicts["nonconformant"] == 3 and scan.code == 1
    assert scan.summary.failing_checks["fleet.unique-keys"] == 3


async def test_fleet_results_survive_a_resume_in_the_store(tmp_path: Path) -> None:
    profile = fleet_profile(tmp_path)
    store = open_store(str(tmp_path / "s.sqlite"))
    number = store.begin_sweep(inventory="i", devices=3, profile=profile,
                               intrusive=False).number
    with ThreadPoolExecutor(1) as writer:
        first = ScanRun(Engine(profile, ScanOptions()), StoreSink(store, number, writer),
                        fail_on=Severity.LOW)
        await first.finished(outcome("a", "cc" * 32))
        await first.finished(outcome("b", "dd" * 32))
        resumed = ScanRun(Engine(profile, ScanOptions()), StoreSink(store, number, writer),
                          fail_on=Severity.LOW)
        for record in store.records(number):
            resumed.remember(record)
        await resumed.finished(outcome("c", "cc" * 32))
        await resumed.settle_fleet()
    records = {r.device.id: r.to_json() for r in store.records(number)}
    store.close()
    statuses = {d: [r["status"] for r in rec["results"] if r["check"] == "fleet.unique-keys"]
                for d, rec in records.items()}
    assert statuses == {"a": ["fail"], "b": ["pass"], "c": ["fail"]}
    assert records["a"]["verdict"] == "nonconformant"
    assert resumed.summary.verdicts["nonconformant"] == 2 and resumed.code == 1


@pytest.fixture
async def tls_devices() -> AsyncIterator[dict[str, str]]:
    """Three TLS servers on 8883, two of them with the same key pair, and one whose 8883 speaks
    SSH (a port that greets first is known not to be TLS; a silent one would leave the TLS
    checks undecided): device id -> address."""
    ca = pki.new_ca()
    addresses = [f"127.91.2.{i}" for i in range(1, 5)]
    shared = pki.issue(ca, addresses[0], "shared")
    own = pki.issue(ca, addresses[2], "own")
    contexts = {addresses[0]: pki.server_context(*shared),
                addresses[1]: pki.server_context(*shared),
                addresses[2]: pki.server_context(*own)}

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.read(1024), 5)
        except (TimeoutError, OSError, ssl.SSLError):
            pass
        finally:
            writer.close()

    servers = [await asyncio.start_server(hold, address, 8883, ssl=context)
               for address, context in contexts.items()]
    async def ssh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        await hold(reader, writer)

    servers.append(await asyncio.start_server(ssh, addresses[3], 8883))
    try:
        yield {"twin-1": addresses[0], "twin-2": addresses[1], "solo": addresses[2],
               "plain": addresses[3]}
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


async def test_fleet_unique_keys_on_real_tls_servers(tls_devices: dict[str, str],
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    profile = fleet_profile(tmp_path)
    source = inventory_from_targets(list(tls_devices.values()), exclude_ports=(2024,))
    options = ScanOptions(timeout=2, budget=60, tcp_ports=(8883,), udp=False,
                          exclude_ports=(2024,))
    code = await run_scan([source], profile, options, outdir=tmp_path / "out",
                          formats=("jsonl",), fail_on=Severity.HIGH, quiet=True)
    assert code == 1
    by_address = {}
    for path in (tmp_path / "out").glob("*.record.json"):
        record = json.loads(path.read_text())
        validate_record(record)
        by_address[record["device"]["address"]] = record

    def fleet(name: str) -> list[dict[str, Any]]:
        return [r for r in by_address[tls_devices[name]]["results"]
                if r["check"] == "fleet.unique-keys"]

    twins = sorted([tls_devices["twin-1"], tls_devices["twin-2"]])
    for name in ("twin-1", "twin-2"):
        [result] = fleet(name)
        assert result["status"] == "fail", result
        assert result["evidence"]["devices"] == twins
    assert [r["status"] for r in fleet("solo")] == ["pass"]
    assert [r["status"] for r in fleet("plain")] == ["not_applicable"]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    last = {r["device"]["id"]: r for r in lines}
    assert set(last) == set(tls_devices.values())
    for address in twins:
        assert [r["status"] for r in last[address]["results"]
                if r["check"] == "fleet.unique-keys"] == ["fail"]


def pg_records(url: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute("SELECT count(*) FROM records").fetchone()
    except psycopg.Error:
        return 0
    return int(row[0]) if row else 0


def test_a_database_lost_mid_sweep_ends_it_with_a_clear_error(slow_lab: Lab) -> None:
    with postgres_server() as server:
        url = server.url(server.create_database())
        process = start("sweep", "-i", str(slow_lab.inventory), "--concurrency", "1", *FAST,
                        "-q", env={**slow_lab.env, "IOTPROBE_STORE": url})
        try:
            wait_for(lambda: pg_records(url) >= 1, "a record in PostgreSQL")
        except AssertionError:
            process.kill()
            process.communicate(timeout=60)
            raise
    out, err = process.communicate(timeout=180)
    assert process.returncode == 2, err
    assert "cannot store the record" in err and "--resume" in err
    assert "Traceback" not in err and PASSWORD not in out + err
