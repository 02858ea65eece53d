"""The history a sweep's report draws: the sweeps up to it, their posture, the checks failing
in each, the regressions and fixes between one and the next, and each device's verdicts.

Counts are read by the database (grouped queries), regressions and fixes by the same merge as
`iotprobe diff` (probe.store.queries.diff), so the report and the diff never disagree.
"""

from __future__ import annotations

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from probe.report.source import History, SweepPoint
from probe.store.db import FINISHED, Store, SweepInfo
from probe.store.models import Record, ResultRow
from probe.store.queries import diff

SWEEPS = 20
"""The sweeps a history holds at most: the reported one and the finished ones before it."""


def _window(store: Store, upto: SweepInfo) -> list[SweepInfo]:
    """The finished sweeps before `upto`, then `upto` itself, at most SWEEPS, oldest first."""
    earlier = [s for s in store.sweeps() if s.number < upto.number and s.state == FINISHED]
    return [*earlier[-(SWEEPS - 1):], upto]


def _verdicts(session: Session, numbers: list[int]) -> dict[int, dict[str, int]]:
    rows = session.execute(select(Record.sweep_id, Record.verdict, func.count())
                           .where(Record.sweep_id.in_(numbers))
                           .group_by(Record.sweep_id, Record.verdict))
    out: dict[int, dict[str, int]] = {n: {} for n in numbers}
    for number, verdict, count in rows:
        out[number][verdict] = count
    return out


def _failing(session: Session, numbers: list[int]) -> dict[int, dict[str, int]]:
    rows = session.execute(
        select(ResultRow.sweep_id, ResultRow.check_id,
               func.count(ResultRow.device_id.distinct()))
        .where(and_(ResultRow.sweep_id.in_(numbers), ResultRow.status == "fail",
                    ResultRow.waived.is_(False)))
        .group_by(ResultRow.sweep_id, ResultRow.check_id))
    out: dict[int, dict[str, int]] = {n: {} for n in numbers}
    for number, check, count in rows:
        out[number][check] = count
    return out


def _timelines(session: Session, numbers: list[int]) -> dict[str, list[tuple[int, str]]]:
    rows = session.execute(select(Record.device_id, Record.sweep_id, Record.verdict)
                           .where(Record.sweep_id.in_(numbers))
                           .order_by(Record.device_id, Record.sweep_id))
    out: dict[str, list[tuple[int, str]]] = {}
    for device, number, verdict in rows:
        out.setdefault(device, []).append((number, verdict))
    return out


def history(store: Store, upto: SweepInfo) -> History:
    """The history a report of sweep `upto` shows."""
    window = _window(store, upto)
    numbers = [s.number for s in window]
    with Session(store.engine) as session:
        verdicts = _verdicts(session, numbers)
        failing = _failing(session, numbers)
        timelines = _timelines(session, numbers)
    points = []
    for before, sweep in zip([None, *window], window, strict=False):
        changes = diff(store, before, sweep) if before is not None else None
        points.append(SweepPoint(
            number=sweep.number, started_at=sweep.started_at, verdicts=verdicts[sweep.number],
            failing=failing[sweep.number],
            regressions=len(changes.regressions) if changes else None,
            fixed=len(changes.fixed) if changes else None))
    return History(points, timelines)
