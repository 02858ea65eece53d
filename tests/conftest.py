"""Shared test fixtures. Every test talks only to 127.0.0.0/8 and never to TCP port 2024."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probe.record.schema import validate_record

_SCRIPT = re.compile(r"<script\b[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)
_SCRIPT_SOURCE = re.compile(r"script-src 'sha256-([A-Za-z0-9+/=]+)'")


def without_own_script(page: str) -> str:
    """An HTML report without the one script the report itself carries (the filter's), which
    must be the only one and the one its Content-Security-Policy allows by hash."""
    scripts = list(_SCRIPT.finditer(page))
    assert len(scripts) == 1, f"{len(scripts)} script elements"
    [allowed] = _SCRIPT_SOURCE.findall(page)
    code = scripts[0].group(1)
    assert base64.b64encode(hashlib.sha256(code.encode()).digest()).decode() == allowed
    return page[:scripts[0].start()] + page[scripts[0].end():]


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
