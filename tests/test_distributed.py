"""Distributed sweeps end to end: a real Redis broker, a real PostgreSQL store, worker processes
(one killed with SIGKILL mid-shard), per-site queues, the emulated lab and TLS servers sharing a
key (the fleet check across shards), compared with a local sweep of the same fleet."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import yaml
from pgserver import PASSWORD, PostgresServer, postgres_server
from redisserver import RedisServer, redis_server

from probe.context import ScanOptions
from probe.distributed.plan import (
    DEFAULT_QUEUE,
    MessageError,
    Shard,
    ShardTask,
    SweepPlan,
    plan_shards,
    queue_of,
)
from probe.lab import pki
from probe.model import Device
from probe.record.schema import validate_record

BASE = "127.111.0.1"
TLS = [f"127.111.2.{i}" for i in range(1, 4)]
SECRET = "d1str1buted-S3cret-never-in-the-broker"
FAST = ("--timeout", "1", "--budget", "30", "--exclude-ports", "2024")
SLOW = ("--concurrency", "1", "--per-device", "1")
VISIBILITY = "8"
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


def iotprobe(*args: str, env: dict[str, str] | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          stdin=subprocess.DEVNULL)


def start(*args: str, env: dict[str, str] | None = None,
          log: Path | None = None) -> subprocess.Popen[str]:
    out = log.open("w") if log is not None else subprocess.PIPE
    try:
        return subprocess.Popen([sys.executable, "-m", "probe", *args], stdout=out,
                                stderr=subprocess.STDOUT if log is not None else subprocess.PIPE,
                                text=True, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})})
    finally:
        if log is not None and not isinstance(out, int):
            out.close()


def finish(process: subprocess.Popen[str]) -> None:
    """Stop a worker by PID: SIGTERM (it finishes its shard), then SIGKILL if need be."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of `sql` in the store, or none while its tables do not exist yet."""
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return list(conn.execute(sql, params).fetchall())
    except (psycopg.errors.UndefinedTable, psycopg.OperationalError):
        return []


class TlsTwins:
    """TLS servers on 8883 in a thread of their own: two with the same key pair, one with its
    own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.servers: list[asyncio.Server] = []

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        ca = pki.new_ca()
        shared = pki.issue(ca, TLS[0], "shared")
        contexts = [pki.server_context(*shared), pki.server_context(*shared),
                    pki.server_context(*pki.issue(ca, TLS[2], "own"))]
        for address, context in zip(TLS, contexts, strict=True):
            self.servers.append(await asyncio.start_server(self._hold, address, 8883,
                                                           ssl=context))

    @staticmethod
    async def _hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.read(1024), 5)
        except (TimeoutError, OSError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def __enter__(self) -> TlsTwins:
        self.thread.start()
        assert self.ready.wait(60), "the TLS servers did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            for server in self.servers:
                server.close()
                await server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)


class Fleet:
    """The emulated lab plus the TLS twins, in one inventory; two lab devices at site east."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {"IOTPROBE_STATE_DIR": str(root / "state")}
        lab_inventory = root / "lab.yaml"
        up = iotprobe("lab", "up", "--base", BASE, "--inventory-out", str(lab_inventory),
                      "--personas", "hang,clean-sensor,telnet-camera,dark", "--devices", "10",
                      env=self.env)
        assert up.returncode == 0, up.stderr
        data = yaml.safe_load(lab_inventory.read_text())
        devices: list[dict[str, Any]] = data["devices"]
        for device in devices[-2:]:
            device["site"] = "east"
        twins = [{"id": name, "address": address} for name, address in
                 zip(("twin-1", "twin-2", "solo"), TLS, strict=True)]
        data["devices"] = [twins[0], *devices, twins[2], twins[1]]
        self.inventory = root / "fleet.yaml"
        self.inventory.write_text(yaml.safe_dump(data))
        self.ids = [d["id"] for d in data["devices"]]
        self.east = {d["id"] for d in devices[-2:]}
        self.profile = root / "fleet-keys.yaml"
        self.profile.write_text(FLEET_PROFILE)

    def down(self) -> None:
        down = iotprobe("lab", "down", env=self.env)
        assert down.returncode == 0, down.stderr


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    running = Fleet(tmp_path_factory.mktemp("fleet"))
    try:
        with TlsTwins():
            yield running
    finally:
        running.down()


@pytest.fixture(scope="module")
def broker() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def worker(name: str, broker_url: str, store: str, log: Path, *extra: str,
           env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return start("worker", "--broker", broker_url, "--store", store, "--name", name,
                 "--visibility-timeout", VISIBILITY, *extra, env=env, log=log)


def statuses(url: str, number: int) -> dict[str, list[tuple[str, str, str]]]:
    """(check, target, status) of every result of each device of sweep `number`."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    for device, check, target, status in query(
            url, "SELECT device_id, check_id, target, status FROM results WHERE sweep_id = %s",
            number):
        out.setdefault(device, []).append((check, target, status))
    return {device: sorted(rows) for device, rows in out.items()}


def partly_stored_shard(url: str, worker_name: str) -> tuple[int, list[str]] | None:
    """A shard `worker_name` is scanning with some but not all of its records stored: its
    number and the stored device ids."""
    for number, devices in query(url, "SELECT number, devices FROM shards WHERE sweep_id = 2 "
                                 "AND state = 'running' AND worker = %s", worker_name):
        ids = [d[0] for d in devices]
        done = [row[0] for row in query(url, "SELECT device_id FROM records WHERE sweep_id = 2 "
                                        "AND device_id = ANY(%s)", ids)]
        if 0 < len(done) < len(ids):
            return number, done
    return None


def scanned(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the scan of each device wrote, less the fleet check the end of the sweep settles."""
    return {device: (r["started_at"], r["finished_at"],
                     [x for x in r["results"] if x["check"] != "fleet.unique-keys"])
            for device, r in records.items()}


def records_of(url: str, number: int, ids: list[str]) -> dict[str, dict[str, Any]]:
    return {device: record for device, record in query(
        url, "SELECT device_id, record FROM records WHERE sweep_id = %s AND device_id = ANY(%s)",
        number, ids)}


def test_a_killed_worker_loses_nothing_and_the_sweep_equals_a_local_one(
        fleet: Fleet, broker: RedisServer, pg: PostgresServer, tmp_path: Path) -> None:
    url = pg.url(pg.create_database())
    options = (*FAST, *SLOW, "-p", str(fleet.profile))
    local = iotprobe("sweep", "-i", str(fleet.inventory), "--store", url, *options, "-q",
                     env=fleet.env)
    assert local.returncode == 1, local.stderr

    workers = {name: worker(f"{name}@test", broker.url(), url, tmp_path / f"{name}.log",
                            *(["--site", "east"] if name == "w3" else []), env=fleet.env)
               for name in ("w1", "w2", "w3")}
    sweep = start("sweep", "-i", str(fleet.inventory), "--store", url, "--distributed",
                  "--broker", broker.url(), "--shard-size", "3", *options, env=fleet.env)
    try:
        found: list[tuple[int, list[str]]] = []

        def caught() -> bool:
            shard = partly_stored_shard(url, "w1@test")
            if shard is not None:
                found.append(shard)
            return bool(found)

        wait_for(caught, "w1 halfway through a shard")
        killed, stored_before = found[0]
        before = records_of(url, 2, stored_before)
        workers["w1"].kill()
        workers["w1"].wait(timeout=60)
        assert workers["w1"].returncode == -signal.SIGKILL
        out, err = sweep.communicate(timeout=300)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.communicate(timeout=60)
        for process in workers.values():
            finish(process)
    assert sweep.returncode == 1, err
    assert "sweep #2: 5 shard(s) of at most 3 device(s)" in err
    assert "nonconformant" in out and PASSWORD not in out + err

    [(state, devices)] = query(url, "SELECT state, devices FROM sweeps WHERE id = 2")
    assert state == "finished" and devices == len(fleet.ids)
    rows = query(url, "SELECT device_id, record FROM records WHERE sweep_id = 2")
    assert sorted(device for device, _ in rows) == sorted(fleet.ids), "one record per device"
    for _, record in rows:
        validate_record(record)
    assert scanned(records_of(url, 2, stored_before)) == scanned(before), \
        "the records written before the kill are kept, not scanned again"

    shards = {number: (state, worker_name, attempts, [d[0] for d in ids]) for
              number, state, worker_name, attempts, ids in query(
                  url, "SELECT number, state, worker, attempts, devices FROM shards "
                  "WHERE sweep_id = 2")}
    assert all(state == "done" for state, _, _, _ in shards.values())
    state, redone_by, attempts, _ = shards[killed]
    assert redone_by in ("w2@test", "w3@test") and attempts >= 2
    for _, by, _, ids in shards.values():
        if set(ids) & fleet.east:
            assert set(ids) <= fleet.east and by == "w3@test", "a site's own shards and worker"
        else:
            assert by in ("w1@test", "w2@test")
    twins = [n for n, (_, _, _, ids) in shards.items() if {"twin-1", "twin-2"} & set(ids)]
    assert len(twins) == 2, "the twins are scanned in different shards"

    local_results, distributed_results = statuses(url, 1), statuses(url, 2)
    assert distributed_results == local_results
    for twin in ("twin-1", "twin-2"):
        assert ("fleet.unique-keys", "tcp/8883", "fail") in distributed_results[twin]
    assert ("fleet.unique-keys", "tcp/8883", "pass") in distributed_results["solo"]

    same = iotprobe("diff", "--store", url, "1", "2", "--json")
    assert same.returncode == 0, same.stderr
    changes = json.loads(same.stdout)
    assert changes["regressions"] == changes["verdict_changes"] == changes["appeared"] == []
    report = iotprobe("report", "--store", url, "2", "--format", "junit", "-o", "-")
    assert report.returncode == 0 and 'name="twin-1"' in report.stdout
    status = iotprobe("sweep", "--status", "--store", url)
    assert status.returncode == 0, status.stderr
    assert "finished" in status.stdout and "site.east" in status.stdout
    assert "w3@test" in status.stdout and "w2@test" in status.stdout


def broker_messages(server: RedisServer, queue: str) -> list[str]:
    """The messages waiting in `queue`, whole (envelope and decoded body)."""
    client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)
    try:
        raw = [m.decode() for m in client.lrange(queue, 0, -1)]
    finally:
        client.close()
    return [text + base64.b64decode(json.loads(text)["body"]).decode() for text in raw]


def shard_states(url: str, number: int) -> list[tuple[str, str | None]]:
    return [(state, error) for state, error in query(
        url, "SELECT state, error FROM shards WHERE sweep_id = %s ORDER BY number", number)]


def test_secrets_stay_off_the_broker_and_a_worker_without_them_fails_its_shard(
        fleet: Fleet, broker: RedisServer, pg: PostgresServer, tmp_path: Path) -> None:
    url = pg.url(pg.create_database())
    inventory = tmp_path / "secret.yaml"
    lab = yaml.safe_load((fleet.root / "lab.yaml").read_text())
    sensors = [d for d in lab["devices"] if d["id"].startswith("clean-sensor")]
    inventory.write_text(yaml.safe_dump({
        "defaults": {"exclude_ports": [2024],
                     "credentials": {"mqtt": {"username": "probe",
                                              "password_env": "DIST_SECRET"}}},
        "devices": [{**d, "site": "west"} for d in sensors]}))
    with_secret = {**fleet.env, "DIST_SECRET": SECRET}
    args = ("sweep", "-i", str(inventory), "--store", url, "--distributed", "--broker",
            broker.url(), *FAST, "-p", "iso27400-6.2")
    sent = iotprobe(*args, "--no-wait", env=with_secret)
    assert sent.returncode == 0, sent.stderr
    assert "1 on site.west" in sent.stderr and "--status" in sent.stderr
    [message] = broker_messages(broker, queue_of("west"))
    assert sensors[0]["id"] in message and SECRET not in message

    blind = worker("blind@test", broker.url(), url, tmp_path / "blind.log", "--site", "west",
                   env=fleet.env)
    try:
        wait_for(lambda: [s for s, _ in shard_states(url, 1)] == ["failed"],
                 "the shard to fail")
    finally:
        finish(blind)
    [(_, error)] = shard_states(url, 1)
    assert error is not None and "DIST_SECRET" in error and SECRET not in error
    status = iotprobe("sweep", "--status", "--store", url)
    assert "failed shards" in status.stdout and "blind@test" in status.stdout

    seeing = worker("seeing@test", broker.url(), url, tmp_path / "seeing.log", "--site",
                    "west", env=with_secret)
    try:
        resumed = iotprobe(*args, "--resume", env=with_secret)
    finally:
        finish(seeing)
    assert resumed.returncode in (0, 1), resumed.stderr
    assert "resuming sweep #1" in resumed.stderr
    assert shard_states(url, 1) == [("done", None)]
    rows = query(url, "SELECT record::text FROM records WHERE sweep_id = 1")
    assert len(rows) == len(sensors) and all(SECRET not in text for (text,) in rows)
    assert SECRET not in (tmp_path / "seeing.log").read_text()


def test_bad_distributed_input_exits_2(fleet: Fleet, broker: RedisServer, pg: PostgresServer,
                                       tmp_path: Path) -> None:
    url = pg.url(pg.create_database())
    base = ("sweep", "-i", str(fleet.inventory), *FAST)
    no_broker = iotprobe(*base, "--store", url, "--distributed",
                         env={**fleet.env, "IOTPROBE_BROKER": ""})
    assert no_broker.returncode == 2 and "--broker" in no_broker.stderr
    sqlite = iotprobe(*base, "--store", str(tmp_path / "s.sqlite"), "--distributed",
                      "--broker", broker.url())
    assert sqlite.returncode == 2 and "postgresql://" in sqlite.stderr
    closed = iotprobe(*base, "--store", url, "--distributed", "--broker",
                      "redis://127.0.0.1:9/0")
    assert closed.returncode == 2 and "cannot reach the broker" in closed.stderr
    assert query(url, "SELECT count(*) FROM sweeps") == [(0,)], "no sweep without a broker"
    alone = iotprobe(*base, "--store", url, "--shard-size", "5")
    assert alone.returncode == 2 and "--distributed" in alone.stderr
    assert iotprobe("sweep", "--store", url).returncode == 2
    bad = iotprobe("worker", "--broker", "http://127.0.0.1:9", "--store", url)
    assert bad.returncode == 2 and "not a broker URL" in bad.stderr
    local = iotprobe("worker", "--broker", broker.url(), "--store", str(tmp_path / "w.sqlite"))
    assert local.returncode == 2 and "postgresql://" in local.stderr


def device(number: int, site: str | None) -> Device:
    return Device(id=f"d{number}", address=f"127.111.9.{number}", site=site)


def test_shards_keep_to_one_site_and_their_size() -> None:
    devices = [device(1, None), device(2, "a"), device(3, None), device(4, "a"),
               device(5, None), device(6, "b"), device(7, "a")]
    shards = list(plan_shards(devices, 2))
    assert [(s.number, s.site, [d[0] for d in s.devices]) for s in shards] == [
        (1, None, ["d1", "d3"]), (2, "a", ["d2", "d4"]), (3, None, ["d5"]), (4, "a", ["d7"]),
        (5, "b", ["d6"])]
    assert [s.queue for s in shards] == [DEFAULT_QUEUE, "site.a", DEFAULT_QUEUE, "site.a",
                                         "site.b"]
    assert list(plan_shards([], 50)) == []


def test_messages_round_trip_and_refuse_what_they_cannot_read() -> None:
    plan = SweepPlan(sweep=3, token="t", inventory="/i.yaml", profiles=("iso27400",),
                     digest="sha256:x", options=ScanOptions(tcp_ports=(22, 80),
                                                            exclude_ports=(2024,)))
    task = ShardTask(plan, Shard(2, "a", (("d1", "127.111.9.1"),)))
    message = json.loads(json.dumps(task.message()))
    assert ShardTask.of(message) == task
    assert SweepPlan.of(json.loads(json.dumps(plan.message()))) == plan
    for broken in ({**message, "shard": "2"}, {**message, "devices": [["d1"]]},
                   {**message, "plan": {**message["plan"], "format": 99}},
                   {**message, "plan": {**message["plan"], "options": {"bogus": 1}}}, []):
        with pytest.raises(MessageError):
            ShardTask.of(broken)
