"""The record's JSON schema and its validation.

Every record is validated before it is stored, so this is on the path of every device: the schema
is judged by jsonschema-rs (compiled once, about 150 times faster than the pure-Python validator
on a record). The pure-Python jsonschema stays the reference: it words the error of a refused
record and supplies the format checks. `bench/record.py` measures the path.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from importlib import resources
from typing import Any

import jsonschema
import jsonschema_rs


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
    """Raise jsonschema.ValidationError when `record` (a `Record.to_json()`) does not follow the
    shipped schema.

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
