"""The conformance record (`iotprobe.record/v1`): built from an outcome, validated, written.

Records are written atomically (a temporary file renamed into place), so a reader or a crash
never sees half a record.

Every record is validated before it is stored, so this is on the path of every device: the schema
is judged by jsonschema-rs (compiled once, about 150 times faster than the pure-Python validator
on a record) and the record serialized by orjson (some 30 times faster than
`json.dumps(indent=2)`, the same layout). The pure-Python jsonschema stays the reference: it
words the error of a refused record and supplies the format checks. `bench/record.py` measures
the path.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import jsonschema
import jsonschema_rs
import orjson

from probe import __version__
from probe.engine import DeviceOutcome
from probe.escaping import MAX_TEXT, Bounder
from probe.ids import RECORD_SUFFIX, file_stem
from probe.model import verdict_of
from probe.profile import Profile
from probe.secrets import device_redactor

SCHEMA_ID = "iotprobe.record/v1"


def _stamp(moment: Any) -> str:
    return str(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))


def build_record(outcome: DeviceOutcome, profile: Profile) -> dict[str, Any]:
    """The record of `outcome`: every string from the device or the inventory redacted of the
    device's secrets, escaped and bounded (probe.escaping); the statuses as the checks said."""
    redact = device_redactor(outcome.device.credentials, outcome.device.monitor)
    device = {key: value if key == "id" else Bounder(MAX_TEXT, redact).text(value)
              for key, value in outcome.device.public().items()}
    if outcome.address != outcome.device.address:
        device["resolved_address"] = outcome.address
    return {
        "schema": SCHEMA_ID,
        "device": device,
        "profile": profile.meta(),
        "probe": {"version": __version__, "intrusive": outcome.intrusive},
        "started_at": _stamp(outcome.started_at),
        "finished_at": _stamp(outcome.finished_at),
        "verdict": verdict_of(list(outcome.results)).value,
        "services": [s.as_record(redact) for s in outcome.services],
        "results": [r.as_record(redact) for r in outcome.results],
    }


@functools.cache
def schema() -> dict[str, Any]:
    text = resources.files("probe").joinpath("schema/record.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


_FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    """The reference validator, built once: it words the errors."""
    return jsonschema.Draft202012Validator(schema(), format_checker=_FORMATS)


@functools.cache
def _fast_validator() -> jsonschema_rs.Validator:
    """The validator that decides, built once. Its formats are the reference's own checks
    (jsonschema-rs alone would accept the date 0000-01-01, which the reference refuses)."""
    formats: dict[str, Callable[..., bool]] = {
        name: functools.partial(_FORMATS.conforms, format=name) for name in _FORMATS.checkers}
    return jsonschema_rs.Draft202012Validator(schema(), validate_formats=True, formats=formats)


def validate_record(record: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError when `record` does not follow the shipped schema.

    jsonschema-rs decides. It reads a pattern as the schema's dialect (ECMA 262) does, so it
    also refuses a few strings that Python's `re` lets through (`$` before a final newline, `.`
    on a carriage return): those are refused with its own error. A value it cannot read (not a
    JSON type) leaves the decision to the reference validator, as before.
    """
    fast = _fast_validator()
    try:
        if fast.is_valid(record):
            return
    except ValueError:
        _validator().validate(record)
        return
    _validator().validate(record)
    error = next(fast.iter_errors(record))
    raise jsonschema.ValidationError(
        error.message, validator=error.kind.name, path=error.instance_path,
        schema_path=error.schema_path, instance=error.instance)


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
    """The record as its file holds it: JSON indented by two, in the record's key order.

    orjson writes the layout of `json.dumps(record, indent=2)`, the same values, with non-ASCII
    characters unescaped (the file is UTF-8) and NaN written as null. What it refuses (an
    integer beyond 64 bits, a lone surrogate) `json.dumps` writes, or refuses, as before.
    """
    try:
        return orjson.dumps(record, option=_ORJSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(record, indent=2) + "\n"


def write_record(outdir: Path, record: dict[str, Any]) -> Path:
    path = outdir / record_filename(record["device"]["id"])
    write_atomic(path, record_text(record))
    return path
