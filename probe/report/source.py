"""What a report is made from: the records of one scan or stored sweep, read as often as a
report needs (a first pass for the totals, a second for the details), never all in memory;
and, for a stored sweep, the history of the sweeps before it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from probe import stamps
from probe.record.model import Record


@dataclass(frozen=True)
class SweepPoint:
    """One sweep of a history, as its charts draw it."""

    number: int
    started_at: dt.datetime
    verdicts: dict[str, int]
    """Devices per verdict (nonconformant, inconclusive, conformant)."""
    failing: dict[str, int]
    """Check id -> devices on which it fails (a waived failure does not count)."""
    regressions: int | None
    """Results newly failing since the sweep before (as `iotprobe diff` counts them); None for
    the first sweep of the history."""
    fixed: int | None
    """Failures newly passing since the sweep before; None for the first sweep."""


@dataclass(frozen=True)
class History:
    """The sweeps up to the reported one, oldest first, and each device's verdicts in them."""

    sweeps: list[SweepPoint]
    timelines: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    """Device id -> (sweep number, verdict) in each sweep of the history that holds it."""


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
    history: Callable[[], History] | None = None
    """The sweeps up to this one (a stored sweep's report); None for a scan."""


def stamp(moment: dt.datetime) -> str:
    """`moment` in any time zone, written in UTC in the records' format."""
    return stamps.stamp(moment.astimezone(dt.UTC))
