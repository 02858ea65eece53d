"""Scans from the command line: engine, records, fleet checks, progress, summary, exit code.

`scan` and `sweep` share this path. `ScanRun` takes each device's record as the engine hands it
over, settles its fleet checks against the devices finished before it, validates the record,
hands it to a sink (record files and jsonl for `scan`, the store for `sweep`) and keeps
the counts for the summary and the exit code. After the last device it settles the fleet checks
once more and rewrites the few records that changed (see probe.checks.fleet).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from probe.checks.catalogue import catalogue
from probe.checks.fleet import UniqueKeys
from probe.context import ScanOptions
from probe.display import shown_text
from probe.engine import Engine, fails_at
from probe.escaping import bounded_text, shown
from probe.exits import EXIT_INCONCLUSIVE, EXIT_NONCONFORMANT, EXIT_OK
from probe.inventory import Inventory
from probe.model import Device, Finding, Severity, Status
from probe.pool import ProcessPool, worker_count
from probe.profile import Profile
from probe.record.files import read_record, record_filename, write_record
from probe.record.model import Record
from probe.record.schema import validate_record
from probe.report import FORMATS, write_report_file
from probe.report.source import RecordSource
from probe.report.tables import Summary, console
from probe.secrets import redact


def unique_devices(sources: Iterable[Inventory]) -> Iterator[Device]:
    seen: set[str] = set()
    for device in itertools.chain.from_iterable(s.devices() for s in sources):
        if device.id not in seen:
            seen.add(device.id)
            yield device


class RecordNotStored(Exception):
    """The sink refused one record for what it holds; the sink itself still works."""


class RecordSink(Protocol):
    """Where the records of one scan go, as each device finishes."""

    location: str

    async def put(self, record: Record) -> None:
        """Keep `record`; RecordNotStored when this one record cannot be kept."""
        ...

    async def get(self, device_id: str) -> Record: ...

    async def replace(self, record: Record) -> None: ...


class FileSink:
    """`<device-id>.record.json` in OUTDIR, and each record as a JSON line on stdout if asked.

    A record the fleet checks rewrite after the last device is printed again: in the jsonl
    stream the last line of a device is its record.
    """

    def __init__(self, outdir: Path, *, jsonl: bool) -> None:
        self.outdir = outdir
        self.jsonl = jsonl
        self.location = f"{outdir}/"
        self.written: list[str] = []

    def _write(self, record: Record) -> None:
        data = record.to_json()
        write_record(self.outdir, record, data)
        if self.jsonl:
            sys.stdout.write(json.dumps(data, separators=(",", ":")) + "\n")
            sys.stdout.flush()

    async def put(self, record: Record) -> None:
        self._write(record)
        self.written.append(record.device.id)

    async def get(self, device_id: str) -> Record:
        return read_record(self.outdir / record_filename(device_id))

    async def replace(self, record: Record) -> None:
        self._write(record)

    def records(self) -> Iterator[Record]:
        for device_id in sorted(self.written):
            yield read_record(self.outdir / record_filename(device_id))


def unstored(record: Record, why: str) -> Record:
    """`record` as it can still be stored when the sink refused it: each result keeps its check,
    target and severity but not its summary and evidence; a failure stays a failure (the gate
    still holds) and every other result becomes an error that says why."""
    reason = bounded_text(redact(why))
    results = []
    for result in record.results:
        was = result.status
        results.append(dataclasses.replace(result, finding=Finding(
            Status.FAIL if was is Status.FAIL else Status.ERROR,
            f"the record could not be stored ({reason}); its {was.value} result is kept "
            "without summary and evidence", result.finding.target,
            {"reason": "record-not-stored", "error": reason, "status": was.value})))
    return dataclasses.replace(record, results=tuple(results))


class ScanRun:
    """One scan or sweep: records in from the engine, settled and stored, counts kept for the
    summary and exit code."""

    def __init__(self, engine: Engine, sink: RecordSink, *, fail_on: Severity) -> None:
        self.engine = engine
        self.profile = engine.profile
        self.sink = sink
        self.fail_on = fail_on
        self.summary = Summary()
        self.fleet = UniqueKeys(engine.profile, engine.checks)
        self.gate_failed = False
        self.inconclusive = False
        self.unstored: set[str] = set()
        """Devices without a record: the sink refused even the one saying why."""
        self._progress: Progress | None = None

    def _count(self, record: Record) -> None:
        gated = fails_at(record.results, self.fail_on)
        self.gate_failed |= gated
        self.inconclusive |= not gated and any(r.status is Status.ERROR
                                               for r in record.results)
        self.summary.add(record)

    def remember(self, record: Record) -> None:
        """Count a record stored before this run (a resumed sweep's finished devices)."""
        self._count(record)
        self.fleet.remember(record)

    async def finished(self, record: Record) -> None:
        """Take one device's record: settle its fleet checks, store it, count it.

        A record the sink refuses is replaced by one that says why (see `unstored`); when
        even that is refused, the device is counted as inconclusive and the scan goes on.
        """
        record = self.fleet.settle(record)
        validate_record(record.to_json())
        try:
            await self.sink.put(record)
        except RecordNotStored as exc:
            record = unstored(record, str(exc))
            validate_record(record.to_json())
            try:
                await self.sink.put(record)
            except RecordNotStored as again:
                self.unstored.add(record.device.id)
                err = Console(stderr=True, highlight=False)
                err.print(shown_text(f"error: {again}; the device counts as inconclusive"))
        self._count(record)
        if self._progress is not None:
            self._progress.update(self._progress.task_ids[0], advance=1,
                                  description=shown(record.device.id))

    def runner(self, total: int) -> Engine | ProcessPool:
        """The engine itself, or a pool of worker processes running it when the scan is large
        enough for more than one (`--processes`); a catalogue of its own stays in-process."""
        processes = worker_count(self.engine.options.processes, total)
        if processes == 1 or self.engine.checks is not catalogue():
            return self.engine
        return ProcessPool(self.engine, processes)

    async def run(self, devices: Iterable[Device], total: int, *, quiet: bool) -> None:
        """Scan `devices`, then settle the fleet checks."""
        err = Console(stderr=True)
        progress = Progress(TextColumn("[bold]scanning"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("{task.description}", markup=False),
                            console=err, transient=True, disable=quiet or not err.is_terminal)
        self._progress = progress
        try:
            with progress:
                progress.add_task("", total=total)
                await self.runner(total).run(devices, self.finished)
        finally:
            self._progress = None
        await self.settle_fleet()

    async def settle_fleet(self) -> None:
        """Rewrite the records whose fleet results changed since they were written."""
        for device_id in self.fleet.to_amend():
            if device_id in self.unstored:
                continue
            old = await self.sink.get(device_id)
            new = self.fleet.amend(old)
            if new is None:
                continue
            validate_record(new.to_json())
            await self.sink.replace(new)
            self.summary.retract(old)
            self._count(new)

    @property
    def code(self) -> int:
        if self.gate_failed:
            return EXIT_NONCONFORMANT
        return EXIT_INCONCLUSIVE if self.inconclusive else EXIT_OK

    def render_summary(self, out: Console) -> None:
        out.print(self.summary.render(self.profile, self.sink.location))


async def run_scan(sources: list[Inventory], profile: Profile, options: ScanOptions, *,
                   outdir: Path, formats: Iterable[str], fail_on: Severity, quiet: bool) -> int:
    """Scan, write one record per device as it finishes, the reports asked for, the summary;
    the exit code."""
    wanted = set(formats)
    jsonl = "jsonl" in wanted
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    sink = FileSink(outdir, jsonl=jsonl)
    scan = ScanRun(Engine(profile, options), sink, fail_on=fail_on)
    await scan.run(unique_devices(sources), sum(s.count() for s in sources), quiet=quiet)
    source = RecordSource(
        title=f"scan of {len(sink.written)} device(s)",
        identity=f"scan:{profile.digest}:{started.isoformat()}",
        profile=profile.meta(), generated=dt.datetime.now(dt.UTC).replace(microsecond=0),
        records=sink.records)
    for fmt, report in FORMATS.items():
        if fmt in wanted:
            write_report_file(fmt, source, outdir / report.filename)
    if not quiet:
        scan.render_summary(console(stderr=jsonl))
    return scan.code
