"""Benchmark (not a test): sweeps of the emulated fleet spread over 1, 2 and 4 Celery workers on
this machine, beside a local sweep, and the overhead of one shard.

Run as root from the repository: `.venv/bin/python bench/distributed.py [--devices N]`. It starts
the emulated lab on 127.112.0.0/16 (every persona, N devices), a Redis broker and a PostgreSQL
server on 127.0.0.1 (children of this process, stopped by PID), then:

- a local sweep (`iotprobe sweep`) into PostgreSQL, the baseline;
- for 1, 2 and 4 workers (`iotprobe worker`, one shard at a time each), and 1 and 2 workers
  scanning two shards at once (`--concurrency 2`), all started and ready before the clock
  starts: `iotprobe sweep --distributed` of the same fleet, timed from the command's start to
  its summary (shards written and sent, scanned, the fleet check settled);
- the overhead of a shard: one worker sweeps K addresses where nothing listens, with one
  cheap check (`net.open-ports` on ports 1-10, a few milliseconds a device), once in K shards
  of one device and once in one shard of K; the difference over K - 1 is what a shard costs
  beyond its devices (broker round trip, claim, inventory lookup, engine start, bookkeeping).

Every sweep has the same in-flight limit per scanning process (`--concurrency`, default 20,
and shards of that many devices), so the rows differ only in how many processes scan. Times are
wall clock on a shared machine whose two cores also run the lab, the broker and the database:
read them as ratios.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from pgserver import PostgresServer, postgres_server  # noqa: E402
from redisserver import RedisServer, redis_server  # noqa: E402

from probe.store import open_store  # noqa: E402

BASE = "127.112.0.1"
FAST = ("--timeout", "1", "--budget", "30", "--exclude-ports", "2024", "-q")
READY = 120.0
"""Seconds a worker may take to start."""


def iotprobe(*args: str, env: dict[str, str], timeout: float = 1800
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **env},
                          stdin=subprocess.DEVNULL, cwd=REPO)


def timed(*args: str, env: dict[str, str]) -> float:
    started = time.monotonic()
    run = iotprobe(*args, env=env)
    took = time.monotonic() - started
    if run.returncode not in (0, 1, 3):
        raise RuntimeError(f"iotprobe {' '.join(args[:2])} failed ({run.returncode}):\n"
                           f"{run.stderr}")
    return took


@contextmanager
def workers(count: int, broker: RedisServer, store: str, logs: Path, env: dict[str, str],
            shards: int = 1) -> Iterator[None]:
    """`count` workers scanning `shards` shards at once each, every one ready (it says so in
    its log) before this yields."""
    processes: list[subprocess.Popen[bytes]] = []
    paths = [logs / f"worker-{count}x{shards}-{i}.log" for i in range(count)]
    try:
        for i, path in enumerate(paths):
            with path.open("wb") as log:
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "probe", "worker", "--broker", broker.url(),
                     "--store", store, "--name", f"bench-{i}@local", "--concurrency",
                     str(shards)],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env={**os.environ, **env}, cwd=REPO))
        deadline = time.monotonic() + READY
        while not all(" ready: " in p.read_text(errors="replace") for p in paths):
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise RuntimeError("a worker did not start: see " + str(logs))
            time.sleep(0.2)
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


def shard_seconds(url: str) -> float:
    """Mean seconds from claim to done of the shards of sweep 1 (one-second stamps)."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute("SELECT avg(extract(epoch FROM finished_at - started_at)) "
                           "FROM shards WHERE sweep_id = 1").fetchone()
    return float(row[0]) if row and row[0] is not None else 0.0


TINY_PROFILE = """
id: tiny
title: one cheap check
version: "1"
controls:
  27400-6.2:
    title: ports
    checks:
      net.open-ports: {}
"""


def empty_addresses(count: int, root: Path) -> tuple[Path, Path]:
    """An inventory of `count` loopback addresses where nothing listens, and a profile of one
    cheap check."""
    inventory, profile = root / "empty.yaml", root / "tiny.yaml"
    inventory.write_text(yaml.safe_dump({"defaults": {"exclude_ports": [2024]}, "devices": [
        {"id": f"empty-{i}", "address": f"127.112.200.{i}"} for i in range(1, count + 1)]}))
    profile.write_text(TINY_PROFILE)
    return inventory, profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=160, help="Lab devices (default 160).")
    parser.add_argument("--concurrency", type=int, default=20,
                        help="Devices in flight per scanning process and per shard.")
    parser.add_argument("--overhead-devices", type=int, default=60, choices=range(2, 255),
                        metavar="K", help="K in the per-shard overhead measurement (default 60).")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="iotprobe-bench-distributed-"))
    env = {"IOTPROBE_STATE_DIR": str(root / "state")}
    inventory = root / "fleet.yaml"
    up = iotprobe("lab", "up", "--base", BASE, "--devices", str(args.devices),
                  "--inventory-out", str(inventory), env=env)
    if up.returncode != 0:
        raise RuntimeError(up.stderr)
    per = ("--concurrency", str(args.concurrency))
    rows: list[tuple[str, float, float]] = []
    try:
        with ExitStack() as stack:
            broker = stack.enter_context(redis_server())
            pg: PostgresServer = stack.enter_context(postgres_server())
            url = pg.url(pg.create_database())
            took = timed("sweep", "-i", str(inventory), "--store", url, *per, *FAST, env=env)
            rows.append(("local sweep, 1 process", took, 0.0))
            for count, shards in ((1, 1), (2, 1), (4, 1), (1, 2), (2, 2)):
                url = pg.url(pg.create_database())
                open_store(url).close()  # the tables, before the workers race to make them
                with workers(count, broker, url, root, env, shards):
                    took = timed("sweep", "-i", str(inventory), "--store", url,
                                 "--distributed", "--broker", broker.url(), "--shard-size",
                                 str(args.concurrency), *per, *FAST, env=env)
                rows.append((f"{count} worker(s) x {shards} shard(s) at once", took,
                             shard_seconds(url)))
            k = args.overhead_devices
            empty, tiny = empty_addresses(k, root)
            spent: dict[int, float] = {}
            for size in (1, k):
                url = pg.url(pg.create_database())
                open_store(url).close()
                with workers(1, broker, url, root, env):
                    spent[size] = timed("sweep", "-i", str(empty), "--store", url,
                                        "--distributed", "--broker", broker.url(),
                                        "--shard-size", str(size), "--concurrency", "1",
                                        "-p", str(tiny), "--ports", "1-10", "--no-udp",
                                        *FAST, env=env)
    finally:
        iotprobe("lab", "down", env=env)
    print(f"\n{args.devices} devices of the emulated lab, {args.concurrency} in flight per "
          f"scanning process, shards of {args.concurrency}, {os.cpu_count()} CPU(s)\n")
    print("| run | wall s | devices/s | speed-up | mean shard s |")
    print("|---|---:|---:|---:|---:|")
    one = next(took for name, took, _ in rows if name.startswith("1 worker(s) x 1"))
    for name, took, shard in rows:
        mean = f"{shard:.1f}" if shard else "-"
        print(f"| {name} | {took:.1f} | {args.devices / took:.2f} | {one / took:.2f}x | "
              f"{mean} |")
    overhead = (spent[1] - spent[k]) / (k - 1)
    print(f"\nshard overhead: {k} empty addresses one at a time, 1 worker: {k} shards "
          f"{spent[1]:.1f} s, 1 shard {spent[k]:.1f} s: {overhead * 1000:.0f} ms per shard")


if __name__ == "__main__":
    main()
