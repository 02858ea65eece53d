"""Shared test fixtures. Every test talks only to 127.0.0.0/8 and never to TCP port 2024."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probe.record.schema import validate_record


def load_records(outdir: Path) -> dict[str, dict[str, Any]]:
    """Every record in `outdir`, validated against the shipped schema, by device id."""
    records = {}
    for path in sorted(outdir.glob("*.record.json")):
        record = json.loads(path.read_text())
        validate_record(record)
        records[record["device"]["id"]] = record
    return records


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private lab state directory, so tests never meet a user's running lab."""
    path = tmp_path / "state"
    monkeypatch.setenv("IOTPROBE_STATE_DIR", str(path))
    yield path
