"""What a report is made from: the records of one scan or stored sweep, read as often as a
report needs (a first pass for the totals, a second for the details), never all in memory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from probe import stamps
from probe.record.model import Record


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
    records: Callable[[], Iterator[Record]]
    """Each call yields every record again, in the same order (by device id)."""


def stamp(moment: dt.datetime) -> str:
    """`moment` in any time zone, written in UTC in the records' format."""
    return stamps.stamp(moment.astimezone(dt.UTC))

