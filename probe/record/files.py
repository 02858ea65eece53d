"""Record files: written atomically (a temporary file renamed into place), so a reader or a
crash never sees half a record, and serialized by orjson (some 30 times faster than
`json.dumps(indent=2)`, the same layout). `bench/record.py` measures the path."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import orjson

from probe.ids import RECORD_SUFFIX, file_stem
from probe.record.model import Record


def record_filename(device_id: str) -> str:
    """The file of a device's record: one per id (see probe.ids.file_stem)."""
    return file_stem(device_id) + RECORD_SUFFIX


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_text(path: Path) -> Iterator[TextIO]:
    """A text file that appears at `path` whole or not at all (written aside, then renamed), with
    the usual permissions (0666 less the umask) rather than a temporary file's 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    with atomic_text(path) as handle:
        handle.write(text)


_ORJSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE


def record_text(record: dict[str, Any]) -> str:
    """The record (`Record.to_json()`) as its file holds it: JSON indented by two, in the
    record's key order.

    orjson writes the layout of `json.dumps(record, indent=2)`, the same values, with non-ASCII
    characters unescaped (the file is UTF-8) and NaN written as null. What it refuses (an
    integer beyond 64 bits, a lone surrogate) `json.dumps` writes, or refuses, as before.
    """
    try:
        return orjson.dumps(record, option=_ORJSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(record, indent=2) + "\n"


def read_record(path: Path) -> Record:
    return Record.from_json(json.loads(path.read_text(encoding="utf-8")))


def write_record(outdir: Path, record: Record, data: dict[str, Any] | None = None) -> Path:
    """Write `record` (`data`: its `to_json()` when the caller already has it)."""
    path = outdir / record_filename(record.device.id)
    write_atomic(path, record_text(record.to_json() if data is None else data))
    return path
