"""`iotprobe worker`: a Celery worker that scans shards into the shared store.

A shard task: claim the shard in the store (a message of another store, or of a shard done
meanwhile, is dropped), find its devices in this host's inventory (same ids and addresses as
the sweep's, secrets from this host's environment and files), resolve the profile (same digest
as the sweep's), scan the devices that have no record yet with the normal engine, store each
record once, in its own transaction, and mark the shard done. The worker that finds every
shard done sends the finalising task, which settles the fleet-wide checks over the whole sweep
and marks it finished.

A shard this worker cannot scan (the inventory or profile differs, a secret is missing) is
marked failed with the reason: `iotprobe sweep --status` shows it, `sweep --distributed
--resume` sends it again once the worker is fixed. When the store cannot be reached, the task
goes back to its queue after a pause.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery
from celery.exceptions import Reject
from celery.signals import worker_ready

from probe.distributed import ledger
from probe.distributed.app import FINALIZE_TASK, SHARD_TASK, celery_app, send_finalize
from probe.distributed.plan import MessageError, ShardTask, SweepPlan, queue_of
from probe.engine import Engine
from probe.errors import InputError
from probe.inventory import load_inventory
from probe.model import Device, Severity
from probe.profile import Profile
from probe.profile_loader import load_profiles
from probe.record.model import Record
from probe.run import RecordNotStored, ScanRun, unique_devices
from probe.store import RecordRefused, Store, StoreError, parse_store_url
from probe.sweep import StoreSink

log = logging.getLogger("probe.distributed")
STORE_PAUSE = 10.0
"""Seconds a task waits before going back to its queue when the store cannot be reached."""


def open_shared_store(url: str, attempts: int = 5) -> Store:
    """The store at `url`, tried a few times: workers that start together on a fresh database
    race to create its tables, and all but one fail the first time."""
    parsed = parse_store_url(url)
    for attempt in range(1, attempts):
        try:
            return Store(parsed)
        except StoreError:
            time.sleep(attempt)
    try:
        return Store(parsed)
    except StoreError as exc:
        raise InputError(str(exc), field="--store") from None


def default_name() -> str:
    return f"iotprobe-{os.getpid()}@{socket.gethostname()}"


class ShardRefused(Exception):
    """This worker cannot scan the shard; the message is safe to show (no secret)."""


class OnceSink(StoreSink):
    """StoreSink whose records are written only when the sweep has none for the device yet."""

    async def put(self, record: Record) -> None:
        try:
            await self._call(ledger.add_once, self.store, self.number, record)
        except RecordRefused as exc:
            raise RecordNotStored(str(exc)) from None


@dataclass
class Scanner:
    """The tasks of one worker process; its pool's threads share it."""

    store: Store
    app: Celery
    name: str
    inventory: Path | None = None
    visibility_timeout: float = 3600.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _inventories: dict[str, tuple[tuple[int, int], dict[str, Device]]] = field(
        default_factory=dict)
    _profiles: dict[tuple[tuple[str, ...], str], Profile] = field(default_factory=dict)

    # ------------------------------------------------------------------------- what to scan

    def _index(self, plan: SweepPlan) -> dict[str, Device]:
        """This host's inventory by device id, loaded again when the file changes."""
        path = self.inventory or Path(plan.inventory)
        with self._lock:
            try:
                stat = path.stat()
            except OSError as exc:
                raise ShardRefused(f"inventory {path}: {exc.strerror}: every worker needs the "
                                   "sweep's inventory (give its path with -i)") from None
            version = (stat.st_mtime_ns, stat.st_size)
            cached = self._inventories.get(str(path))
            if cached is not None and cached[0] == version:
                return cached[1]
            try:
                index = {d.id: d for d in unique_devices([load_inventory(path)])}
            except InputError as exc:
                raise ShardRefused(str(exc)) from None
            self._inventories[str(path)] = (version, index)
            return index

    def _devices(self, task: ShardTask) -> list[Device]:
        index = self._index(task.plan)
        devices: list[Device] = []
        for device_id, address in task.shard.devices:
            device = index.get(device_id)
            if device is None:
                raise ShardRefused(f"device {device_id} is not in this worker's inventory")
            if device.address != address:
                raise ShardRefused(f"device {device_id} is at {device.address} in this "
                                   f"worker's inventory, at {address} in the sweep's")
            devices.append(device)
        return devices

    def _profile(self, plan: SweepPlan) -> Profile:
        key = (plan.profiles, plan.digest)
        with self._lock:
            if key in self._profiles:
                return self._profiles[key]
            try:
                profile = load_profiles(list(plan.profiles))
            except InputError as exc:
                raise ShardRefused(str(exc)) from None
            if profile.digest != plan.digest:
                raise ShardRefused(f"profile {profile.id} resolves to {profile.digest} here, to "
                                   f"{plan.digest} in the sweep: give every worker the same "
                                   "profile files and iotprobe version")
            self._profiles[key] = profile
            return profile

    # ------------------------------------------------------------------------------- tasks

    def shard(self, message: Any) -> None:
        """The shard task."""
        try:
            task = ShardTask.of(message)
        except MessageError as exc:
            log.error("dropped a shard message this iotprobe cannot read: %s", exc)
            return
        self._guarded(lambda: self._shard(task), f"shard {task.shard.number} of sweep "
                      f"#{task.plan.sweep}", task)

    def finalize(self, message: Any) -> None:
        """The finalising task: the fleet-wide checks over the whole sweep, then finished."""
        try:
            plan = SweepPlan.of(message)
        except MessageError as exc:
            log.error("dropped a finalising message this iotprobe cannot read: %s", exc)
            return
        self._guarded(lambda: self._finalize(plan), f"finishing sweep #{plan.sweep}", None)

    def _guarded(self, work: Callable[[], None], what: str, task: ShardTask | None) -> None:
        try:
            work()
        except StoreError as exc:
            log.warning("%s: %s; back to the queue in %g s", what, exc, STORE_PAUSE)
            time.sleep(STORE_PAUSE)
            raise Reject(str(exc), requeue=True) from None
        except Exception as exc:
            log.exception("%s failed", what)
            if task is not None:
                ledger.failed(self.store, task.plan.sweep, task.shard.number, self.name,
                              f"{type(exc).__name__}: {exc}")

    def _shard(self, task: ShardTask) -> None:
        plan, number = task.plan, task.shard.number
        claimed = ledger.claim(self.store, plan.sweep, number, plan.token, self.name)
        if claimed == ledger.FOREIGN:
            log.error("dropped shard %d of sweep #%d: no such shard in %s (the sweep was "
                      "started on another store)", number, plan.sweep, self.store.location)
            return
        if claimed == ledger.ALREADY_DONE:
            log.info("shard %d of sweep #%d is done already", number, plan.sweep)
            self._maybe_finalize(plan, task.shard.queue)
            return
        try:
            devices = self._devices(task)
            profile = self._profile(plan)
        except ShardRefused as exc:
            log.error("shard %d of sweep #%d refused: %s", number, plan.sweep, exc)
            ledger.failed(self.store, plan.sweep, number, self.name, str(exc))
            return
        kept = ledger.stored(self.store, plan.sweep, (d.id for d in devices))
        todo = [d for d in devices if d.id not in kept]
        started = time.monotonic()
        asyncio.run(self._scan(plan, profile, todo))
        ledger.done(self.store, plan.sweep, number, self.name)
        took = time.monotonic() - started
        log.info("shard %d of sweep #%d: %d device(s) scanned, %d kept from an earlier attempt, "
                 "%.1f s", number, plan.sweep, len(todo), len(kept), took)
        if took > self.visibility_timeout:
            log.warning("shard %d took %.0f s, longer than the visibility timeout (%g s): the "
                        "broker may have handed it to another worker too; raise "
                        "--visibility-timeout or lower --shard-size", number, took,
                        self.visibility_timeout)
        self._maybe_finalize(plan, task.shard.queue)

    async def _scan(self, plan: SweepPlan, profile: Profile, devices: Iterable[Device]) -> None:
        engine = Engine(profile, plan.options)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="iotprobe-store") as writer:
            scan = ScanRun(engine, OnceSink(self.store, plan.sweep, writer),
                           fail_on=Severity.LOW)
            try:
                await engine.run(devices, scan.finished)
            except* StoreError as failed:
                raise failed.exceptions[0] from None

    def _maybe_finalize(self, plan: SweepPlan, queue: str) -> None:
        if ledger.complete(self.store, plan.sweep):
            send_finalize(self.app, plan, queue)

    def _finalize(self, plan: SweepPlan) -> None:
        try:
            profile = self._profile(plan)
        except ShardRefused as exc:
            log.error("cannot finish sweep #%d: %s", plan.sweep, exc)
            return
        if ledger.finalize(self.store, plan.sweep, plan.token,
                           lambda: asyncio.run(self._settle(plan, profile))):
            log.info("sweep #%d finished: fleet-wide checks settled", plan.sweep)

    async def _settle(self, plan: SweepPlan, profile: Profile) -> None:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="iotprobe-store") as writer:
            scan = ScanRun(Engine(profile, plan.options), StoreSink(self.store, plan.sweep, writer),
                           fail_on=Severity.LOW)
            for record in self.store.records(plan.sweep):
                scan.remember(record)
            await scan.settle_fleet()


def worker_queues(sites: Iterable[str]) -> list[str]:
    """The queues a worker consumes: its sites', else the default queue."""
    names = [queue_of(site) for site in sites]
    return names or [queue_of(None)]


def run_worker(broker: str, store: Store, *, sites: Iterable[str], concurrency: int,
               name: str, inventory: Path | None, visibility_timeout: float) -> int:
    """Run a Celery worker until it is told to stop (SIGTERM: after its running shards;
    SIGQUIT or kill: at once, its shards go to other workers); the exit code."""
    app = celery_app(broker, visibility_timeout=visibility_timeout)
    scanner = Scanner(store, app, name, inventory, visibility_timeout)

    def shard(message: Any) -> None:
        scanner.shard(message)

    def finalize(message: Any) -> None:
        scanner.finalize(message)

    app.task(name=SHARD_TASK)(shard)
    app.task(name=FINALIZE_TASK)(finalize)
    worker = app.Worker(hostname=name, queues=worker_queues(sites), concurrency=concurrency,
                        pool="threads", quiet=True, redirect_stdouts=False,
                        without_gossip=True, without_mingle=True, without_heartbeat=True,
                        optimization="fair", loglevel="WARNING")

    def ready(**_: Any) -> None:
        log.info("worker %s ready: queues %s, %d shard(s) at once, store %s", name,
                 ", ".join(worker_queues(sites)), concurrency, store.location)

    worker_ready.connect(ready, weak=False)
    worker.start()
    code: int = worker.exitcode or 0
    return code
