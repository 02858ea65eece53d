"""Sweeps: scans whose records go into the store, on a schedule, resumable after a crash.

A sweep is a scan (probe.run.ScanRun) whose sink is the store: each record is committed in its
own transaction, from one writer thread, as its device finishes, so a process killed at any
moment (kill -9 included) loses no finished record. `--resume` takes the latest sweep if it is
unfinished, counts the records it holds and scans only the inventory's devices without one.
`--every` starts sweeps on a fixed grid (start + k * interval; a sweep that overruns skips the
slots it missed); `--count N` without it runs N sweeps back to back. SIGINT and SIGTERM end the
loop cleanly: between sweeps at once, during a sweep after cancelling the scan and marking the
sweep interrupted (resumable).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import re
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from probe.context import ScanOptions
from probe.display import shown_text
from probe.engine import Engine
from probe.errors import InputError
from probe.inventory import Inventory
from probe.model import Severity
from probe.profile import Profile
from probe.record.model import Record
from probe.report.source import RecordSource
from probe.report.tables import console
from probe.run import RecordNotStored, ScanRun, unique_devices
from probe.selection import options_text
from probe.stamps import stamp
from probe.store import (
    FINISHED,
    INTERRUPTED,
    RUNNING,
    RecordRefused,
    Store,
    StoreError,
    SweepInfo,
)
from probe.store.history import history
from probe.store.queries import CheckChange, Diff
from probe.yamldoc import show

T = TypeVar("T")

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd]?)")
MAX_INTERVAL = 366 * 86400.0
"""The longest --every: a year (a longer one, or its digits, could overflow to infinity)."""


def parse_interval(text: str) -> float:
    """Seconds in an interval such as 90, 2s, 15m, 1h, 1h30m or 1d."""
    cleaned = text.strip().lower()
    position, seconds = 0, 0.0
    while position < len(cleaned):
        match = _PART.match(cleaned, position)
        if match is None:
            raise InputError(f"{text!r} is not an interval: use e.g. 30s, 15m, 1h or 1h30m",
                             field="--every")
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if seconds <= 0:
        raise InputError(f"{text!r}: the interval must be longer than zero", field="--every")
    if seconds > MAX_INTERVAL:
        raise InputError(f"{show(text)}: the interval must be at most {MAX_INTERVAL / 86400:g} "
                         "days", field="--every")
    return seconds


class StoreSink:
    """Records of one sweep into the store, through a single writer thread so the event loop
    never waits on the database."""

    def __init__(self, store: Store, number: int, writer: ThreadPoolExecutor) -> None:
        self.store = store
        self.number = number
        self.writer = writer
        self.location = f"sweep #{number} of {store.location}"

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.writer, fn, *args)

    async def put(self, record: Record) -> None:
        try:
            await self._call(self.store.add_record, self.number, record)
        except RecordRefused as exc:
            raise RecordNotStored(str(exc)) from None

    async def get(self, device_id: str) -> Record:
        return await self._call(self.store.record, self.number, device_id)

    async def replace(self, record: Record) -> None:
        await self._call(self.store.replace_record, self.number, record)


@dataclass(frozen=True)
class SweepSettings:
    inventory_path: Path
    inventory: Inventory
    profile: Profile
    options: ScanOptions
    fail_on: Severity
    every: float | None = None
    count: int | None = None
    resume: bool = False
    quiet: bool = False

    @property
    def limit(self) -> int | None:
        """How many sweeps to run: --count, else one, or no end with --every."""
        if self.count is not None:
            return self.count
        return None if self.every is not None else 1


def _note(message: str) -> None:
    Console(stderr=True, highlight=False).print(shown_text(message), soft_wrap=True)


def _resumable(store: Store, profile: Profile) -> SweepInfo | None:
    latest = store.latest()
    if latest is None or latest.finished:
        where = "no sweep yet" if latest is None else f"sweep #{latest.number} is finished"
        _note(f"nothing to resume ({where}); starting a new sweep")
        return None
    if latest.profile["digest"] != profile.digest:
        raise InputError(
            f"sweep #{latest.number} ran profile {latest.profile['id']} "
            f"({latest.profile['digest']}), not {profile.id} ({profile.digest}): resume it "
            "with the same profile, or start a new sweep without --resume", field="--resume")
    _same_selection(store, latest, profile)
    return latest


def _same_selection(store: Store, sweep: SweepInfo, profile: Profile) -> None:
    """A resumed sweep runs the checks its stored records ran: the same check selection."""
    stored = sorted(store.device_ids(sweep.number))
    if not stored:
        return
    before = options_text(store.record(sweep.number, stored[0]).selection)
    now = options_text(profile.selection)
    if before != now:
        raise InputError(
            f"sweep #{sweep.number} ran with {before}, not {now}: resume it with the same "
            "check selection, or start a new sweep without --resume", field="--resume")


async def _one_sweep(store: Store, sweep: SweepInfo, settings: SweepSettings,
                     resumed: bool) -> int:
    engine = Engine(settings.profile, settings.options)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="iotprobe-store") as writer:
        scan = ScanRun(engine, StoreSink(store, sweep.number, writer), fail_on=settings.fail_on)
        done: set[str] = set()
        if resumed:
            for record in store.records(sweep.number):
                scan.remember(record)
                done.add(record.device.id)
        devices = (d for d in unique_devices([settings.inventory]) if d.id not in done)
        try:
            await scan.run(devices, max(0, settings.inventory.count() - len(done)),
                           quiet=settings.quiet)
        except* StoreError as failed:
            raise failed.exceptions[0] from None
    store.set_state(sweep.number, FINISHED)
    if not settings.quiet:
        scan.render_summary(console())
    return scan.code


def _next_slot(start: float, every: float, now: float) -> float:
    """The first start time start + k * every (k >= 1) that is still ahead of `now`."""
    k = max(1, math.floor((now - start) / every) + 1)
    return start + k * every


class SweepRunner(Protocol):
    """How each sweep of `run_sweeps` runs: scanned here, or spread over workers
    (probe.distributed)."""

    async def run(self, store: Store, sweep: SweepInfo, settings: SweepSettings,
                  resumed: bool) -> int:
        """Run sweep `sweep` (resumed: it holds records already); the exit code."""
        ...

    def stopped(self, store: Store, sweep: SweepInfo, signum: int) -> None:
        """A signal stopped `run`: leave the sweep resumable and say so."""
        ...


class LocalRunner:
    """Sweeps scanned by this process."""

    async def run(self, store: Store, sweep: SweepInfo, settings: SweepSettings,
                  resumed: bool) -> int:
        return await _one_sweep(store, sweep, settings, resumed)

    def stopped(self, store: Store, sweep: SweepInfo, signum: int) -> None:
        store.set_state(sweep.number, INTERRUPTED)
        info = store.sweep(sweep.number)
        _note(f"sweep #{sweep.number} interrupted by {signal.Signals(signum).name}"
              f": {info.records} of {info.devices} device(s) stored; finish it with "
              "--resume")


async def run_sweeps(store: Store, settings: SweepSettings, runner: SweepRunner | None = None,
                     after_sweep: Callable[[Store], None] | None = None) -> int:
    """Run sweeps until the count is reached or a signal stops them; the exit code of the last
    finished sweep, or 128 + the signal if one interrupted a sweep. `after_sweep` runs in a
    thread after each sweep that ran to its end (probe.metrics counts and exports it, seconds
    at thousands of devices), so that signals are still heard meanwhile."""
    runner = runner or LocalRunner()
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[int] = loop.create_future()

    def on_signal(signum: int) -> None:
        if not stop.done():
            stop.set_result(signum)

    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    code, done, slot = 0, 0, loop.time()
    try:
        while settings.limit is None or done < settings.limit:
            if stop.done():
                break
            sweep = _resumable(store, settings.profile) if settings.resume and done == 0 else None
            resumed = sweep is not None
            if sweep is None:
                sweep = store.begin_sweep(
                    inventory=str(settings.inventory_path.absolute()),
                    devices=settings.inventory.count(), profile=settings.profile,
                    intrusive=settings.options.intrusive or settings.profile.intrusive)
            else:
                store.set_state(sweep.number, RUNNING)
            if not settings.quiet:
                verb = "resuming" if resumed else "starting"
                _note(f"{verb} sweep #{sweep.number} of {sweep.devices} device(s) into "
                      f"{store.location}")
            task = asyncio.ensure_future(runner.run(store, sweep, settings, resumed))
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                runner.stopped(store, sweep, stop.result())
                return 128 + stop.result()
            code = task.result()
            done += 1
            if after_sweep is not None:
                await asyncio.to_thread(after_sweep, store)
            if settings.limit is not None and done >= settings.limit:
                break
            if settings.every is None:
                continue
            slot = _next_slot(slot, settings.every, loop.time())
            if not settings.quiet:
                at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=slot - loop.time())
                _note(f"next sweep at {stamp(at)}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(stop), slot - loop.time())
        if stop.done():
            _note(f"stopped by {signal.Signals(stop.result()).name} after {done} sweep(s)")
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
    return code


def sweep_source(store: Store, sweep: SweepInfo) -> RecordSource:
    """The records of a stored sweep, for a report."""
    return RecordSource(
        title=f"sweep #{sweep.number}",
        identity=f"sweep:{sweep.number}:{sweep.started_at.isoformat()}:"
                 f"{sweep.profile['digest']}",
        profile=sweep.profile, generated=sweep.finished_at or sweep.started_at,
        records=lambda: store.records(sweep.number), history=lambda: history(store, sweep))


def pick_sweep(store: Store, number: int | None) -> SweepInfo:
    """Sweep `number`, else the latest finished sweep, else the latest."""
    if number is not None:
        return store.sweep(number)
    finished = store.finished_sweeps(1)
    if finished:
        return finished[0]
    latest = store.latest()
    if latest is None:
        raise InputError(f"no sweep in {store.location} yet", field="SWEEP")
    return latest


def pick_pair(store: Store, numbers: tuple[int, ...]) -> tuple[SweepInfo, SweepInfo]:
    """The sweeps to compare: the two given, else the last two finished."""
    if len(numbers) == 2:
        return store.sweep(numbers[0]), store.sweep(numbers[1])
    if numbers:
        raise InputError("give two sweeps to compare, or none for the last two finished",
                         field="SWEEP")
    last = store.finished_sweeps(2)
    if len(last) < 2:
        raise InputError(f"{store.location} holds {len(last)} finished sweep(s); a diff "
                         "needs two", field="SWEEP")
    return last[1], last[0]


_SHOWN = 50


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]
           ) -> list[Table | Text]:
    """A titled table of at most 50 rows, or one line when there is nothing to show; every
    cell is data, shown and never read as markup."""
    if not rows:
        return [Text(f"{title}: none")]
    table = Table(title=f"{title} ({len(rows)})", title_justify="left")
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows[:_SHOWN]:
        table.add_row(*(shown_text(cell) for cell in row))
    more = [Text(f"... {len(rows) - _SHOWN} more: see --json")] if len(rows) > _SHOWN else []
    return [table, *more]


def _check_rows(changes: list[CheckChange]) -> list[tuple[str, ...]]:
    return [(c.device, c.check, c.target, c.severity, c.before or "-", c.after or "-",
             c.summary) for c in changes]


def render_diff(diff: Diff) -> Group:
    """The diff as terminal tables, each cut at 50 rows (--json has everything)."""
    parts: list[Table | Text] = [Text.assemble(
        ("sweep ", "bold"), shown_text(diff.a.label()), (" -> ", "bold"),
        shown_text(diff.b.label()))]
    if diff.settings:
        parts.append(Text("the sweeps ran with different settings: changes below may come "
                          "from them, and checks not assessed before are newly assessed, "
                          "not regressions", style="yellow"))
        parts += [shown_text(f"  {c.setting}: {c.before} -> {c.after}", style="yellow")
                  for c in diff.settings]
    columns = ("device", "check", "target", "severity", "before", "after", "summary")
    parts += _table("verdict changes", ("device", "before", "after"),
                    [(v.device, v.before, v.after) for v in diff.verdicts])
    parts += _table("regressions: newly failing", columns, _check_rows(diff.regressions))
    parts += _table("newly passing", columns, _check_rows(diff.fixed))
    parts += _table("newly assessed: failing, not assessed before", columns,
                    _check_rows(diff.newly_assessed))
    parts += _table("no longer assessed: failing before", columns,
                    _check_rows(diff.no_longer_assessed))
    parts += _table("appeared", ("device", "verdict"),
                    [(d.device, d.verdict) for d in diff.appeared])
    parts += _table("vanished", ("device", "verdict"),
                    [(d.device, d.verdict) for d in diff.vanished])
    return Group(*parts)
