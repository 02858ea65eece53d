"""Faults during a sweep: devices that go away and come back, a SQLite store locked by another
connection, a PostgreSQL server restarted in the middle. Nothing finished is lost and the sweep
completes.

The sweeps are the `iotprobe sweep` command in a subprocess with --concurrency 1, so devices
are scanned (and their records committed) one after another in inventory order; the tests
inject each fault once a given number of records is stored. Addresses: 127.96.x.y; the
devices of 127.96.2.x and 127.96.3.x have nothing listening (each costs about one timeout).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from pgserver import PASSWORD, USER, _binaries, _free_port
from test_hostile import REPO, ThreadLab, iotprobe, thread_lab, write_profile

from probe.lab import PERSONAS, Fleet, plan_fleet, run_fleet
from probe.profile_loader import load_profile
from probe.record.model import Record
from probe.record.schema import validate_record
from probe.store import StoreError, open_store

__all__ = ["thread_lab"]

SWEEP = ("--concurrency", "1", "--timeout", "1", "--budget", "30", "--exclude-ports", "2024",
         "-q")


def start_sweep(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "probe", "sweep", *args, *SWEEP],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, cwd=REPO,
                            env={**os.environ, **(env or {})})


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def wait_for(condition: Callable[[], bool], what: str, process: subprocess.Popen[str],
             seconds: float = 180) -> None:
    """Poll `condition` (bounded); fail early if the sweep ended without meeting it."""
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}: {finish(process)}")
        time.sleep(0.05)


def sqlite_records(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            row = conn.execute("SELECT count(*) FROM records").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0
    return int(row[0])


def sweeps(url: str) -> list[tuple[int, str, int]]:
    store = open_store(url)
    try:
        return [(s.number, s.state, s.records) for s in store.sweeps()]
    finally:
        store.close()


def stored(url: str, number: int) -> dict[str, dict[str, Any]]:
    store = open_store(url)
    try:
        records = {r.device.id: r.to_json() for r in store.records(number)}
    finally:
        store.close()
    for record in records.values():
        validate_record(record)
    return records


def dark_inventory(path: Path, prefix: str, count: int) -> Path:
    """`count` devices on addresses where nothing listens."""
    path.write_text(yaml.safe_dump({"defaults": {"exclude_ports": [2024]}, "devices": [
        {"id": f"d{i:02d}", "address": f"{prefix}.{i}"} for i in range(1, count + 1)]}))
    return path


# --------------------------------------------------------------- devices that go away and back


def test_a_device_that_goes_away_and_comes_back(thread_lab: ThreadLab, tmp_path: Path) -> None:
    specs = [plan_fleet([PERSONAS["telnet-camera"]], 1, f"127.96.1.{i}")[0]
             for i in range(1, 6)]
    fleets: dict[str, Fleet] = {s.address: thread_lab.run(run_fleet([s])) for s in specs}
    thread_lab.fleets.extend(fleets.values())
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(yaml.safe_dump({"defaults": {"exclude_ports": [2024]}, "devices": [
        {"id": f"cam-{i}", "address": s.address, "class": "camera"}
        for i, s in enumerate(specs, start=1)]}))
    store = tmp_path / "fleet.sqlite"
    profile = str(write_profile(tmp_path))
    # cam-3 goes away before the sweep reaches it (stopping it once cam-1's record was stored
    # raced with cam-2's scan on a busy machine) and is back before the next sweep.
    away = specs[2]
    thread_lab.run(fleets[away.address].stop())
    process = start_sweep("-i", str(inventory), "--store", str(store), "-p", profile)
    wait_for(lambda: sqlite_records(store) >= 3, "the record of the device that went away",
             process)
    back = thread_lab.run(run_fleet([away]))
    thread_lab.fleets.append(back)
    code, _, err = finish(process)
    assert code == 1, err
    assert sweeps(str(store)) == [(1, "finished", 5)]
    first = stored(str(store), 1)
    assert first["cam-3"]["verdict"] == "inconclusive"
    assert all(r["status"] == "error" and r["evidence"]["reason"] == "unreachable"
               for r in first["cam-3"]["results"])
    for device in ("cam-1", "cam-2", "cam-4", "cam-5"):
        assert first[device]["verdict"] == "nonconformant", device

    again = iotprobe("sweep", "-i", str(inventory), "--store", str(store), "-p", profile,
                     *SWEEP)
    assert again.returncode == 1, again.stderr
    second = stored(str(store), 2)
    assert second["cam-3"]["verdict"] == "nonconformant"
    changed = iotprobe("diff", "--store", str(store), "--json")
    assert {"device": "cam-3", "before": "inconclusive", "after": "nonconformant"} in \
        json.loads(changed.stdout)["verdict_changes"]
    assert stored(str(store), 1) == first, "the first sweep's records changed"


# ------------------------------------------------------------------- a store locked briefly


def test_a_sqlite_store_locked_for_a_moment(tmp_path: Path) -> None:
    """Another connection holds an exclusive transaction for a few device scans: the sweep's
    writes wait, nothing is lost, the sweep finishes."""
    inventory = dark_inventory(tmp_path / "dark.yaml", "127.96.2", 6)
    store = tmp_path / "locked.sqlite"
    process = start_sweep("-i", str(inventory), "--store", str(store), "-p",
                          str(write_profile(tmp_path)))
    wait_for(lambda: sqlite_records(store) >= 1, "the first record", process)
    lock = sqlite3.connect(store, isolation_level=None, timeout=30)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        before = lock.execute("SELECT count(*) FROM records").fetchone()[0]
        time.sleep(3)  # the fault's duration: about three device scans
        during = lock.execute("SELECT count(*) FROM records").fetchone()[0]
        lock.execute("COMMIT")
    finally:
        lock.close()
    assert during == before, "a write got past the exclusive lock"
    code, _, err = finish(process)
    assert code == 3, err
    assert sweeps(str(store)) == [(1, "finished", 6)]
    assert sorted(stored(str(store), 1)) == [f"d{i:02d}" for i in range(1, 7)]


# ------------------------------------------------------------- a PostgreSQL server restarted


class Postgres:
    """A PostgreSQL server that a test can stop and start again on the same port and data."""

    def __init__(self) -> None:
        binaries = _binaries()
        if binaries is None:
            pytest.skip("PostgreSQL server binaries are not installed: Debian package "
                        "postgresql")
        initdb, self.postgres = binaries
        account = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="iotprobe-pg-faults-"))
        self.run_as: dict[str, Any] = {}
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if account is not None:
            os.chown(self.root, account.pw_uid, account.pw_gid)
            os.chown(pwfile, account.pw_uid, account.pw_gid)
            self.run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        self.data = self.root / "data"
        subprocess.run([initdb, "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}",
                        "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync",
                        "-E", "UTF8", "--locale=C.UTF-8"],
                       check=True, capture_output=True, timeout=120, cwd=self.root,
                       **self.run_as)
        self.port = _free_port()
        self.server: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def _connect(self, database: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD,
                               dbname=database, connect_timeout=2, autocommit=True)

    def start(self) -> None:
        with (self.root / "log").open("ab") as log:
            self.server = subprocess.Popen(
                [self.postgres, "-D", str(self.data), "-k", str(self.root), "-h", "127.0.0.1",
                 "-p", str(self.port), "-c", "fsync=off", "-c", "max_connections=50"],
                stdout=subprocess.DEVNULL, stderr=log, cwd=self.root, **self.run_as)
        deadline = time.monotonic() + 60
        while True:
            try:
                self._connect().close()
                return
            except psycopg.OperationalError:
                if self.server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("postgres did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.server is None:
            return
        self.server.send_signal(signal.SIGINT)  # fast shutdown: ends the clients' sessions
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait(timeout=30)
        self.server = None

    def create_database(self) -> str:
        name = f"faults_{os.getpid()}_{int(time.monotonic() * 1000) % 100000}"
        with self._connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def records(self, database: str) -> int:
        try:
            with self._connect(database) as conn:
                row = conn.execute("SELECT count(*) FROM records").fetchone()
        except psycopg.Error:
            return 0
        return int(row[0]) if row else 0

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    server = Postgres()
    try:
        server.start()
        yield server
    finally:
        server.remove()


def test_a_postgresql_restart_mid_sweep(postgres: Postgres, tmp_path: Path) -> None:
    """The server stops while devices keep finishing and comes back a few seconds later: the
    writes retry, every record arrives once, the sweep finishes, no password is printed."""
    database = postgres.create_database()
    url = postgres.url(database)
    inventory = dark_inventory(tmp_path / "dark.yaml", "127.96.3", 8)
    process = start_sweep("-i", str(inventory), "-p", str(write_profile(tmp_path)),
                          env={"IOTPROBE_STORE": url})
    wait_for(lambda: postgres.records(database) >= 2, "two records in PostgreSQL", process)
    postgres.stop()
    time.sleep(3)  # the fault's duration: about three device scans
    postgres.start()
    code, out, err = finish(process)
    assert code == 3, err
    assert "retrying" in err and "Traceback" not in err
    assert PASSWORD not in out + err
    assert sweeps(url) == [(1, "finished", 8)]
    assert sorted(stored(url, 1)) == [f"d{i:02d}" for i in range(1, 9)]


def test_retries_are_bounded(postgres: Postgres, tmp_path: Path) -> None:
    """A database that does not come back within the retry window ends the write with a
    StoreError that names no password (the sweep then exits 2: tests/test_sweep.py)."""
    url = postgres.url(postgres.create_database())
    store = open_store(url)
    try:
        number = store.begin_sweep(inventory="i", devices=1, intrusive=False,
                                   profile=load_profile(str(write_profile(tmp_path)))).number
        postgres.stop()
        store.retry_for = 1.0
        record = Record.from_json({
            "device": {"id": "d", "address": "127.96.4.1"},
            "profile": {"id": "p", "version": "1", "digest": "sha256:" + "0" * 64},
            "probe": {"version": "0", "intrusive": False},
            "started_at": "2026-11-28T12:00:00Z", "finished_at": "2026-11-28T12:00:01Z",
            "services": [], "results": []})
        with pytest.raises(StoreError) as caught:
            store.add_record(number, record)
    finally:
        store.close()
    assert "cannot store the record of d" in str(caught.value)
    assert PASSWORD not in str(caught.value)
