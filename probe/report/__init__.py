"""Reports of a scan or sweep (junit, html, oscal) and the terminal tables.

FORMATS is the one table of report formats: name -> its writer and the file it gets in a scan's
OUTDIR. What a report is made from is probe.report.source (data only).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from probe.report.html import Pages, write_html
from probe.report.junit import write_junit
from probe.report.oscal import write_oscal
from probe.report.source import RecordSource

PAGES_SUFFIX = "-devices"
"""The folder of a file report's device pages: report.html -> report-devices/."""
_UMASK = os.umask(0)
os.umask(_UMASK)


@dataclass(frozen=True)
class Format:
    write: Callable[[RecordSource, TextIO], None]
    filename: str
    """The file the report gets in a scan's OUTDIR."""
    write_file: Callable[[RecordSource, Path, TextIO], None] | None = None
    """How a report written to a file is rendered when that differs from `write`: given the
    file's path and the (atomic) handle to it."""


def _write_paged_html(source: RecordSource, path: Path, handle: TextIO) -> None:
    """The HTML report, its device pages (if the fleet is large) written in a fresh folder
    that replaces the old one before the overview that links to them appears."""
    folder = pages_folder(path)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=path.parent))
    staging.chmod(0o777 & ~_UMASK)
    written: list[str] = []

    def write(name: str, text: str) -> None:
        (staging / name).write_text(text, encoding="utf-8")
        written.append(name)

    try:
        write_html(source, handle, Pages(folder.name, path.name, write))
        if written:
            _replace_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


FORMATS: dict[str, Format] = {
    "junit": Format(write_junit, "report.junit.xml"),
    "html": Format(write_html, "report.html", _write_paged_html),
    "oscal": Format(write_oscal, "report.oscal.json"),
}


def write_report(fmt: str, source: RecordSource, out: TextIO) -> None:
    """Render `source` as `fmt` (a FORMATS name) to `out`."""
    FORMATS[fmt].write(source, out)


def pages_folder(path: Path) -> Path:
    """Where the HTML report at `path` puts its device pages when it has them."""
    return path.with_name(path.stem + PAGES_SUFFIX)


def _replace_folder(new: Path, folder: Path) -> None:
    """Put `new` at `folder`, the old folder (if any) moved aside first and then removed."""
    old = None
    if folder.is_dir():
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
        folder.rename(old / folder.name)
    new.rename(folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
