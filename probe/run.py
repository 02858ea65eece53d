"""One scan from the command line: engine, record files, progress display, summary, exit code."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from probe.context import ScanOptions
from probe.engine import DeviceOutcome, Engine, fails_at
from probe.inventory import Inventory
from probe.model import Device, Severity, Status, Verdict
from probe.profile import Profile
from probe.record import build_record, validate_record, write_record
from probe.report.tables import Summary, console


def _devices(sources: list[Inventory]) -> Iterator[Device]:
    seen: set[str] = set()
    for device in itertools.chain.from_iterable(s.devices() for s in sources):
        if device.id not in seen:
            seen.add(device.id)
            yield device


async def run_scan(sources: list[Inventory], profile: Profile, options: ScanOptions, *,
                   outdir: Path, jsonl: bool, fail_on: Severity, quiet: bool) -> int:
    """Scan, write one record per device as it finishes, print the summary; the exit code."""
    total = sum(s.count() for s in sources)
    err = Console(stderr=True)
    out = console(stderr=jsonl)
    summary = Summary()
    gate_failed = inconclusive = False
    progress = Progress(TextColumn("[bold]scanning"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.description}"), console=err,
                        transient=True, disable=quiet or not err.is_terminal)

    async def finished(outcome: DeviceOutcome) -> None:
        nonlocal gate_failed, inconclusive
        record = build_record(outcome, profile)
        validate_record(record)
        write_record(outdir, record)
        if jsonl:
            sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
            sys.stdout.flush()
        gated = fails_at(outcome.results, fail_on)
        gate_failed |= gated
        inconclusive |= not gated and any(r.status is Status.ERROR for r in outcome.results)
        summary.add(outcome, Verdict(record["verdict"]))
        progress.update(task, advance=1, description=outcome.device.id)

    with progress:
        task = progress.add_task("", total=total)
        await Engine(profile, options).run(_devices(sources), finished)

    if not quiet:
        out.print(summary.render(profile, outdir))
    if gate_failed:
        return 1
    return 3 if inconclusive else 0
