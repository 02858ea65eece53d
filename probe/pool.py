"""Scanning on several cores: worker processes, each running an engine on its share of a scan.

One interpreter scans at most one core's worth of devices (handshakes, parsing and asyncio all
hold the GIL), so a large scan runs in `processes` worker processes. The parent stays what it
is for a single-process scan: it reads the inventory, hands each device to the least busy worker,
and takes every record back (fleet checks, records, progress and summary stay in one place).

- Limits hold for the whole scan: each worker gets an equal share of `--concurrency` and
  `--rate`; `--per-device`, `--timeout` and `--budget` are per device anyway.
- A worker holds at most its share of the concurrency plus a small read-ahead, so nothing of a
  large inventory piles up in a worker, and a finished device's record is in the parent at once.
- Devices cross the process boundary through a private pickler that carries a `Secret` as
  itself (between these processes only: the pipe is anonymous, and the usual pickling of a
  Secret still refuses); records come back whole (they hold no secret: probe.record).
- A worker that dies (killed, out of memory) costs its unfinished devices an `error` result for
  every check, with reason `internal`; the others carry on and take the rest of the scan.
- Workers are spawned (not forked: the parent runs an event loop and threads), ignore SIGINT
  (the parent decides when a scan ends) and are terminated and waited on when `run` ends; a
  worker whose parent is killed sees its pipe close and exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import copyreg
import dataclasses
import io
import itertools
import logging
import math
import multiprocessing
import os
import pickle
import signal
import threading
from collections.abc import AsyncIterator, Iterable
from multiprocessing.connection import Connection
from typing import Any

from probe.context import ScanOptions
from probe.engine import Engine, OnRecord
from probe.model import Device
from probe.profile import Profile
from probe.record.model import Record
from probe.secrets import Secret

log = logging.getLogger(__name__)

READ_AHEAD = 4
"""Devices a worker may hold beyond its concurrency, so that it never waits for the next one."""
STOP_WAIT = 10.0
"""Seconds a worker has to exit after its last device (or the scan's cancellation)."""


def _secret(value: Secret) -> tuple[Any, tuple[str, str]]:
    return Secret, (value.reveal(), value.origin)


def _dumps(value: Any) -> bytes:
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {**copyreg.dispatch_table, Secret: _secret}
    pickler.dump(value)
    return out.getvalue()


def worker_count(requested: int | None, devices: int) -> int:
    """How many worker processes a scan of `devices` uses: `requested` if given, else one per
    usable core, but no more than one per 50 devices (a worker costs about a second to start)."""
    if requested is not None:
        return max(1, requested)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, math.ceil(devices / 50)))


@dataclasses.dataclass
class _Worker:
    process: Any
    conn: Connection
    capacity: int
    held: dict[int, Device] = dataclasses.field(default_factory=dict)
    alive: bool = True


class ProcessPool:
    """`Engine.run` over worker processes; same interface, same records."""

    def __init__(self, engine: Engine, processes: int) -> None:
        self.engine = engine
        self.processes = max(1, processes)

    def _share(self, index: int) -> ScanOptions:
        options = self.engine.options
        concurrency = options.concurrency // self.processes + (
            1 if index < options.concurrency % self.processes else 0)
        return dataclasses.replace(options, concurrency=max(1, concurrency),
                                   rate=options.rate / self.processes, processes=1)

    async def run(self, devices: Iterable[Device], on_record: OnRecord) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[_Worker, bytes | None]] = asyncio.Queue()
        spawn = multiprocessing.get_context("spawn")
        workers: list[_Worker] = []
        try:
            for index in range(self.processes):
                share = self._share(index)
                parent, child = spawn.Pipe()
                process = spawn.Process(
                    target=_worker_main, name=f"iotprobe-scan-{index + 1}",
                    args=(child, logging.getLogger().getEffectiveLevel()), daemon=True)
                process.start()
                child.close()
                parent.send_bytes(_dumps((self.engine.profile, share)))
                worker = _Worker(process, parent, share.concurrency + READ_AHEAD)
                workers.append(worker)
                threading.Thread(target=_listen, args=(worker, loop, inbox), daemon=True,
                                 name=f"iotprobe-pool-{index + 1}").start()
            await self._dispatch(iter(devices), workers, inbox, on_record)
        finally:
            await loop.run_in_executor(None, _stop, workers)

    async def _dispatch(self, devices: Any, workers: list[_Worker],
                        inbox: asyncio.Queue[tuple[_Worker, bytes | None]],
                        on_record: OnRecord) -> None:
        serials = itertools.count(1)  # a device's number while a worker holds it, never reused
        pending = True
        while True:
            while pending:
                free = [w for w in workers if w.alive and len(w.held) < w.capacity]
                if not free:
                    break
                device = next(devices, None)
                if device is None:
                    pending = False
                    for worker in workers:
                        if worker.alive:
                            _send(worker, None)
                    break
                worker = min(free, key=lambda w: len(w.held))
                serial = next(serials)
                worker.held[serial] = device
                _send(worker, (serial, device))
            if not any(w.held for w in workers):
                if not pending:
                    return
                if not any(w.alive for w in workers):
                    for device in devices:
                        await _deliver(on_record, self._lost(device, None))
                    return
            worker, message = await inbox.get()
            if message is None:
                await self._bury(worker, on_record)
                continue
            finished, record = pickle.loads(message)
            worker.held.pop(finished)
            await _deliver(on_record, record)

    async def _bury(self, worker: _Worker, on_record: OnRecord) -> None:
        """A worker's pipe closed: its unfinished devices get error records."""
        worker.alive = False
        worker.process.join(STOP_WAIT)
        code = worker.process.exitcode
        if worker.held:
            log.error("scanning process %s ended (exit code %s) with %d device(s) unfinished",
                      worker.process.name, code, len(worker.held))
        for device in worker.held.values():
            await _deliver(on_record, self._lost(device, code))
        worker.held.clear()

    def _lost(self, device: Device, code: int | None) -> Record:
        how = "no scanning process was left" if code is None else (
            f"the scanning process of this device ended unexpectedly (exit code {code})")
        return self.engine.failed(device, f"{how}: the device was not scanned to the end",
                                  reason="internal")


async def _deliver(on_record: OnRecord, record: Record) -> None:
    delivered = on_record(record)
    if delivered is not None:
        await delivered


def _send(worker: _Worker, item: Any) -> None:
    try:
        worker.conn.send_bytes(_dumps(item))
    except OSError:
        worker.alive = False  # its listener reports the closed pipe and buries it


def _listen(worker: _Worker, loop: asyncio.AbstractEventLoop,
            inbox: asyncio.Queue[tuple[_Worker, bytes | None]]) -> None:
    """Thread: a worker's records into the parent's loop; None when its pipe closes."""
    while True:
        try:
            message: bytes | None = worker.conn.recv_bytes()
        except (EOFError, OSError):
            message = None
        with contextlib.suppress(RuntimeError):  # the loop is closed: the scan is over
            loop.call_soon_threadsafe(inbox.put_nowait, (worker, message))
        if message is None:
            return


def _stop(workers: list[_Worker]) -> None:
    for worker in workers:
        if worker.process.is_alive():
            with contextlib.suppress(OSError):
                worker.conn.send_bytes(_dumps(None))
    for worker in workers:
        worker.process.join(STOP_WAIT)
        if worker.process.is_alive():
            worker.process.terminate()
            worker.process.join(STOP_WAIT)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.conn.close()


# ---------------------------------------------------------------------------------------------
# In the worker process
# ---------------------------------------------------------------------------------------------


def _worker_main(conn: Connection, level: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    profile, options = pickle.loads(conn.recv_bytes())
    asyncio.run(_scan(conn, profile, options))


async def _scan(conn: Connection, profile: Profile, options: ScanOptions) -> None:
    loop = asyncio.get_running_loop()
    received: asyncio.Queue[tuple[int, Device] | None] = asyncio.Queue()

    def read() -> None:
        """Devices in until the parent's None; then only watch the pipe: it closes when the
        parent dies (killed), and scanning on for nobody would be traffic without a purpose."""
        ended = False
        while True:
            try:
                item = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                os._exit(0)
            if not ended:
                loop.call_soon_threadsafe(received.put_nowait, item)
                ended = item is None

    threading.Thread(target=read, daemon=True, name="iotprobe-devices").start()
    serials: dict[str, int] = {}

    async def devices() -> AsyncIterator[Device]:
        while (item := await received.get()) is not None:
            serial, device = item
            serials[device.id] = serial
            yield device

    def done(record: Record) -> None:
        serial = serials.pop(record.device.id)
        try:
            conn.send_bytes(pickle.dumps((serial, record), protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            os._exit(0)  # the parent is gone (killed): nobody is left to take the records

    await Engine(profile, options).run(devices(), done)
