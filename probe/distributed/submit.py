"""`iotprobe sweep --distributed`: shards into the store and onto the queues, then (unless
--no-wait) follow the workers until the sweep is finished and give its summary and exit code,
as a local sweep does. `iotprobe sweep --status`: the progress of the latest sweep across
workers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from rich.console import Console, Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from probe.display import shown_text
from probe.distributed import ledger
from probe.distributed.app import (
    broker_label,
    celery_app,
    check_broker,
    send_finalize,
    send_shards,
)
from probe.distributed.plan import (
    DEFAULT_SHARD_SIZE,
    ShardTask,
    SweepPlan,
    plan_shards,
    profile_refs,
)
from probe.engine import Engine
from probe.errors import InputError
from probe.report.tables import console
from probe.run import ScanRun, unique_devices
from probe.store import Store, SweepInfo
from probe.sweep import StoreSink, SweepSettings

POLL = 1.0
"""Seconds between two looks at the store while following a sweep."""
EXIT_FAILED_SHARDS = 2


def _note(message: str) -> None:
    Console(stderr=True, highlight=False).print(shown_text(message), soft_wrap=True)


def require_postgresql(store: Store) -> None:
    if store.url.get_backend_name() != "postgresql":
        raise InputError(f"{store.location}: a distributed sweep needs a store every worker "
                         "reaches: postgresql://USER@HOST:PORT/DB", field="--store")


@dataclass(frozen=True)
class DistributedSettings:
    broker: str
    profiles: tuple[str, ...]
    """The `-p` references as given; workers resolve them again."""
    shard_size: int = DEFAULT_SHARD_SIZE
    wait: bool = True


class DistributedRunner:
    """Each sweep of `run_sweeps` spread over the workers of a broker."""

    def __init__(self, settings: DistributedSettings) -> None:
        self.settings = settings
        self.app = celery_app(settings.broker)
        self.broker = broker_label(settings.broker)

    def check(self, store: Store) -> None:
        """InputError unless the store is PostgreSQL and the broker answers."""
        require_postgresql(store)
        check_broker(self.app)

    async def run(self, store: Store, sweep: SweepInfo, settings: SweepSettings,
                  resumed: bool) -> int:
        if resumed:
            found = ledger.requeue(store, sweep.number)
            if found is None:
                raise InputError(f"sweep #{sweep.number} ran on one host: resume it without "
                                 "--distributed", field="--resume")
            token, shards = found
        else:
            token = uuid.uuid4().hex
            shards = ledger.create(store, sweep.number, token, plan_shards(
                unique_devices([settings.inventory]), self.settings.shard_size))
        plan = SweepPlan(sweep=sweep.number, token=token,
                         inventory=str(settings.inventory_path.expanduser().absolute()),
                         profiles=profile_refs(self.settings.profiles),
                         digest=settings.profile.digest, options=settings.options)
        tasks = [ShardTask(plan, shard) for shard in shards]
        await asyncio.to_thread(send_shards, self.app, tasks)
        if resumed and not tasks:
            first = ledger.progress(store, sweep.number).shards[0]
            await asyncio.to_thread(send_finalize, self.app, plan, first.queue)
        if not settings.quiet:
            queues = Counter(task.shard.queue for task in tasks)
            spread = ", ".join(f"{count} on {queue}" for queue, count in sorted(queues.items()))
            _note(f"sweep #{sweep.number}: {len(tasks)} shard(s) of at most "
                  f"{self.settings.shard_size} device(s) sent to {self.broker}"
                  f"{': ' + spread if spread else ''}")
        if not self.settings.wait:
            if not settings.quiet:
                _note("the workers scan it now: follow it with `iotprobe sweep --status`")
            return 0
        return await self._follow(store, sweep, settings)

    def stopped(self, store: Store, sweep: SweepInfo, signum: int) -> None:
        _note(f"stopped following sweep #{sweep.number}; the workers go on with it: follow "
              "it with `iotprobe sweep --status`")

    async def _follow(self, store: Store, sweep: SweepInfo, settings: SweepSettings) -> int:
        err = Console(stderr=True)
        bar = Progress(TextColumn("[bold]sweep #" + str(sweep.number)), BarColumn(),
                       MofNCompleteColumn(), TimeElapsedColumn(),
                       TextColumn("{task.description}", markup=False), console=err, transient=True,
                       disable=settings.quiet or not err.is_terminal)
        with bar:
            bar_id = bar.add_task("", total=sweep.devices)
            while True:
                info = await asyncio.to_thread(store.sweep, sweep.number)
                if info.finished:
                    break
                shards = await asyncio.to_thread(ledger.progress, store, sweep.number)
                counts = shards.counts
                if shards.settled and counts[ledger.FAILED]:
                    bar.stop()
                    _report_failures(shards)
                    return EXIT_FAILED_SHARDS
                bar.update(bar_id, completed=info.records,
                           description=f"{counts[ledger.DONE]}/{len(shards.shards)} shards, "
                                       f"{counts[ledger.RUNNING]} running")
                await asyncio.sleep(POLL)
        return await asyncio.to_thread(summarise, store, info, settings)


def _report_failures(shards: ledger.Progress) -> None:
    for shard in shards.shards:
        if shard.state == ledger.FAILED:
            _note(f"shard {shard.number} ({shard.queue}) failed on {shard.worker}: "
                  f"{shard.error}")
    _note("fix those workers, then send the failed shards again with "
          "`iotprobe sweep --distributed --resume`")


def summarise(store: Store, sweep: SweepInfo, settings: SweepSettings) -> int:
    """The summary of a finished sweep, from its records, and its exit code."""
    with ThreadPoolExecutor(max_workers=1) as writer:
        scan = ScanRun(Engine(settings.profile, settings.options),
                       StoreSink(store, sweep.number, writer), fail_on=settings.fail_on)
        for record in store.records(sweep.number):
            scan.remember(record)
        if not settings.quiet:
            scan.render_summary(console())
        return scan.code


# ------------------------------------------------------------------------------------ status


def _since(shard: ledger.ShardState) -> str:
    return shard.started_at.strftime("%H:%M:%SZ") if shard.started_at else "-"


def render_status(store: Store) -> Group:
    """The latest sweep: records, shards by queue and state, workers, failures."""
    latest = store.latest()
    if latest is None:
        raise InputError(f"no sweep in {store.location} yet", field="--status")
    parts: list[Table | Text] = [Text.assemble(("sweep ", "bold"), shown_text(latest.label()))]
    shards = ledger.progress(store, latest.number).shards
    if not shards:
        parts.append(Text("scanned on one host (not distributed)"))
        return Group(*parts)
    queues = Table(title="shards by queue", title_justify="left")
    for name in ("queue", "shards", "done", "running", "queued", "failed"):
        queues.add_column(name, justify="left" if name == "queue" else "right")
    by_queue: dict[str, Counter[str]] = {}
    for shard in shards:
        by_queue.setdefault(shard.queue, Counter())[shard.state] += 1
    for queue, counts in sorted(by_queue.items()):
        queues.add_row(shown_text(queue), str(sum(counts.values())),
                       *(str(counts[s]) for s in (ledger.DONE, ledger.RUNNING, ledger.QUEUED,
                                                  ledger.FAILED)))
    parts.append(queues)
    workers = Table(title="workers", title_justify="left")
    for name in ("worker", "shards done", "devices", "scanning now"):
        workers.add_column(name, justify="right" if name in ("shards done", "devices")
                           else "left")
    names = sorted({s.worker for s in shards if s.worker})
    for name in names:
        mine = [s for s in shards if s.worker == name]
        finished = [s for s in mine if s.state == ledger.DONE]
        running = ", ".join(f"shard {s.number} since {_since(s)} (attempt {s.attempts})"
                            for s in mine if s.state == ledger.RUNNING)
        workers.add_row(shown_text(name), str(len(finished)), str(sum(s.size for s in finished)),
                        running or "-")
    parts.append(workers if names else Text("workers: none has taken a shard yet"))
    failures = [s for s in shards if s.state == ledger.FAILED]
    if failures:
        table = Table(title="failed shards", title_justify="left")
        for name in ("shard", "queue", "worker", "error"):
            table.add_column(name, overflow="fold")
        for shard in failures:
            table.add_row(str(shard.number), shown_text(shard.queue),
                          shown_text(shard.worker or "-"), shown_text(shard.error or "-"))
        parts.append(table)
    if not latest.finished and all(s.state == ledger.DONE for s in shards):
        parts.append(Text("every shard is done: the fleet-wide checks are being settled"))
    return Group(*parts)
