"""Exports of the records themselves, for other tools: one JSON document, JSON lines, CSV.

`scan --format json|csv` writes them into OUTDIR beside the record files; `report --format
json|jsonl|csv` writes them from a stored sweep. Each is written one record at a time (the
source is read once, never held whole in memory).

The records' strings are already escaped and bounded (probe.record.model); CSV adds one defence
of its own: a spreadsheet reads a cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage
return as a formula, so such a cell gets a leading `'` as OWASP's "CSV Injection" page
recommends (a cell `=HYPERLINK(...)` stays text in Excel and LibreOffice). Inventories
already refuse such device ids; the defence covers every cell, whatever wrote the record.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from probe.model import Result
from probe.record.files import atomic_text
from probe.record.model import WORST_FIRST, Record
from probe.report import FORMATS, Format
from probe.report.source import RecordSource, stamp

EXPORT_SCHEMA = "iotprobe.records/v1"
"""The `schema` of the one JSON document of `--format json`: its `records` are records of
`iotprobe.record/v1` (docs/record.md)."""

CSV_COLUMNS = ("device", "address", "class", "site", "verdict", "check", "control",
               "severity", "status", "waived", "targets", "summary")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _header(source: RecordSource) -> dict[str, Any]:
    return {"schema": EXPORT_SCHEMA, "title": source.title, "profile": source.profile,
            "generated": stamp(source.generated)}


def write_json(source: RecordSource, out: TextIO) -> None:
    """One JSON document: the header of `_header` and `records`, every record in device order.
    The document is built record by record: `{...,"records":[r1,r2,...]}`."""
    head = json.dumps(_header(source))
    out.write(head[:-1] + ', "records": [')
    for number, record in enumerate(source.records()):
        out.write(",\n" if number else "\n")
        out.write(json.dumps(record.to_json()))
    out.write("\n]}\n")


def write_jsonl(source: RecordSource, out: TextIO) -> None:
    """One record per line, in device order, as `scan --format jsonl` streams them."""
    for record in source.records():
        out.write(json.dumps(record.to_json(), separators=(",", ":")))
        out.write("\n")


def defused(cell: str) -> str:
    """`cell` as a spreadsheet shows it as text: with a leading `'` when it could start a
    formula (see the module doc)."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def _worst(results: list[Result]) -> Result:
    """The result that sets the check's status (probe.record.model.WORST_FIRST)."""
    return min(results, key=lambda r: WORST_FIRST.index(r.status))


def csv_rows(record: Record) -> Iterator[tuple[str, ...]]:
    """A row per check of `record`: the check's worst status over its targets, the targets it
    has, and the summary of the result that set the status."""
    by_check: dict[str, list[Result]] = {}
    for result in record.results:
        by_check.setdefault(result.check, []).append(result)
    device = record.device
    for check, results in by_check.items():
        worst = _worst(results)
        yield (device.id, record.address, device.device_class or "", device.site or "",
               record.verdict.value, check, worst.control, worst.severity.value,
               worst.status.value, "yes" if worst.waived is not None else "",
               "; ".join(dict.fromkeys(r.finding.target for r in results)),
               worst.finding.summary)


def write_csv(source: RecordSource, out: TextIO) -> None:
    """A header row, then a row per device and check (`csv_rows`), every cell defused."""
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for record in source.records():
        writer.writerows(tuple(defused(cell) for cell in row) for row in csv_rows(record))


SCAN_FILES: dict[str, Format] = {
    **FORMATS,
    "json": Format(write_json, "records.json"),
    "csv": Format(write_csv, "records.csv"),
}
"""The files `scan --format` writes into OUTDIR: the reports and the exports (jsonl is streamed
to stdout instead)."""

OUTPUTS: dict[str, Format] = {**SCAN_FILES, "jsonl": Format(write_jsonl, "records.jsonl")}
"""Everything `report --format` writes from a stored sweep."""


def write_output(fmt: str, source: RecordSource, out: TextIO) -> None:
    """Render `source` as `fmt` (an OUTPUTS name) to `out`."""
    OUTPUTS[fmt].write(source, out)


def write_output_file(fmt: str, source: RecordSource, path: Path) -> None:
    """Render `source` into `path`, atomically: a reader never sees half a file."""
    chosen = OUTPUTS[fmt]
    with atomic_text(path) as handle:
        if chosen.write_file is not None:
            chosen.write_file(source, path, handle)
        else:
            chosen.write(source, handle)
