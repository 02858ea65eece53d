"""What a report is made from: the records of one scan or stored sweep, read as often as a
report needs (a first pass for the totals, a second for the details), never all in memory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from probe.record import atomic_text

REPORT_FILES = {"junit": "report.junit.xml", "html": "report.html",
                "oscal": "report.oscal.json"}
"""The file each report format gets in a scan's OUTDIR."""


@dataclass(frozen=True)
class RecordSource:
    title: str
    """What the records are of, e.g. "scan of 12 device(s)" or "sweep #4"."""
    identity: str
    """A stable name of this scan or sweep: the seed of the report's deterministic ids."""
    profile: dict[str, str]
    """The profile's id, version and digest."""
    generated: dt.datetime
    """When the records were complete (the scan's end, the sweep's end or start)."""
    records: Callable[[], Iterator[dict[str, Any]]]
    """Each call yields every record again, in the same order (by device id)."""


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_report(fmt: str, source: RecordSource, out: TextIO) -> None:
    """Render `source` as `fmt` (junit, html or oscal) to `out`."""
    from probe.report.html import write_html
    from probe.report.junit import write_junit
    from probe.report.oscal import write_oscal

    writers: dict[str, Callable[[RecordSource, TextIO], None]] = {
        "junit": write_junit, "html": write_html, "oscal": write_oscal}
    writers[fmt](source, out)


def write_report_file(fmt: str, source: RecordSource, path: Path) -> None:
    """Render `source` into `path`, atomically: a reader never sees half a report."""
    with atomic_text(path) as handle:
        write_report(fmt, source, handle)
