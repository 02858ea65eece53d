"""Reports of a scan or sweep (junit, html, oscal) and the terminal tables.

FORMATS is the one table of report formats: name -> its writer and the file it gets in a scan's
OUTDIR. What a report is made from is probe.report.source (data only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from probe.record.files import atomic_text
from probe.report.html import write_html
from probe.report.junit import write_junit
from probe.report.oscal import write_oscal
from probe.report.source import RecordSource


@dataclass(frozen=True)
class Format:
    write: Callable[[RecordSource, TextIO], None]
    filename: str
    """The file the report gets in a scan's OUTDIR."""


FORMATS: dict[str, Format] = {
    "junit": Format(write_junit, "report.junit.xml"),
    "html": Format(write_html, "report.html"),
    "oscal": Format(write_oscal, "report.oscal.json"),
}


def write_report(fmt: str, source: RecordSource, out: TextIO) -> None:
    """Render `source` as `fmt` (a FORMATS name) to `out`."""
    FORMATS[fmt].write(source, out)


def write_report_file(fmt: str, source: RecordSource, path: Path) -> None:
    """Render `source` into `path`, atomically: a reader never sees half a report."""
    with atomic_text(path) as handle:
        write_report(fmt, source, handle)
