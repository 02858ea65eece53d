"""The shards of distributed sweeps in the store: planned, claimed, done or failed, and records
written once.

Every function takes the Store and runs its own short transactions, so workers on many hosts
share the bookkeeping through the database alone. A shard is claimed under a row lock; the
sweep is finalised under a lock on its row, after every shard is done.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from probe.distributed.plan import Shard
from probe.record import model as rec
from probe.store import FINISHED, Store, StoreError
from probe.store.models import Record, Sweep
from probe.store.models import Shard as ShardRow

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
_BATCH = 200


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _failing(what: str, store: Store) -> Callable[[SQLAlchemyError], StoreError]:
    def wrap(exc: SQLAlchemyError) -> StoreError:
        cause = getattr(exc, "orig", None) or exc
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        return StoreError(f"{store.location}: cannot {what}: {first}")
    return wrap


def create(store: Store, sweep: int, token: str, shards: Iterable[Shard]) -> list[Shard]:
    """Write the planned shards of `sweep` (queued); the shards."""
    planned: list[Shard] = []
    rows: list[dict[str, Any]] = []
    try:
        with Session(store.engine) as session, session.begin():
            for shard in shards:
                planned.append(shard)
                rows.append({"sweep_id": sweep, "number": shard.number, "token": token,
                             "queue": shard.queue, "site": shard.site,
                             "size": len(shard.devices),
                             "devices": [list(d) for d in shard.devices], "state": QUEUED,
                             "attempts": 0})
                if len(rows) >= _BATCH:
                    session.execute(insert(ShardRow), rows)
                    rows = []
            if rows:
                session.execute(insert(ShardRow), rows)
    except SQLAlchemyError as exc:
        raise _failing("write the shards", store)(exc) from None
    return planned


def requeue(store: Store, sweep: int) -> tuple[str, list[Shard]] | None:
    """The token of `sweep` and its shards not done yet, marked queued again (to be sent
    again); None when it has no shards (it ran on one host)."""
    try:
        with Session(store.engine) as session, session.begin():
            rows = session.scalars(select(ShardRow).where(ShardRow.sweep_id == sweep)
                                   .order_by(ShardRow.number).with_for_update()).all()
            if not rows:
                return None
            pending = [r for r in rows if r.state != DONE]
            for row in pending:
                row.state, row.error = QUEUED, None
            return rows[0].token, [Shard(r.number, r.site,
                                         tuple((d[0], d[1]) for d in r.devices))
                                   for r in pending]
    except SQLAlchemyError as exc:
        raise _failing(f"send the shards of sweep #{sweep} again", store)(exc) from None


CLAIMED, ALREADY_DONE, FOREIGN = "claimed", "done", "foreign"


def claim(store: Store, sweep: int, number: int, token: str, worker: str) -> str:
    """Take shard `number` for `worker`: CLAIMED, ALREADY_DONE (a redelivered message of a
    shard finished meanwhile) or FOREIGN (no such shard in this store: the message belongs to
    another store)."""
    try:
        with Session(store.engine) as session, session.begin():
            row = session.scalars(select(ShardRow).where(ShardRow.sweep_id == sweep,
                                                         ShardRow.number == number)
                                  .with_for_update()).one_or_none()
            if row is None or row.token != token:
                return FOREIGN
            if row.state == DONE:
                return ALREADY_DONE
            row.state, row.worker, row.attempts = RUNNING, worker, row.attempts + 1
            row.started_at, row.finished_at, row.error = _now(), None, None
            return CLAIMED
    except SQLAlchemyError as exc:
        raise _failing(f"claim shard {number} of sweep #{sweep}", store)(exc) from None


def _set(store: Store, sweep: int, number: int, **values: Any) -> None:
    try:
        with Session(store.engine) as session, session.begin():
            session.execute(update(ShardRow).where(ShardRow.sweep_id == sweep,
                                                   ShardRow.number == number).values(**values))
    except SQLAlchemyError as exc:
        raise _failing(f"update shard {number} of sweep #{sweep}", store)(exc) from None


def done(store: Store, sweep: int, number: int, worker: str) -> None:
    _set(store, sweep, number, state=DONE, worker=worker, finished_at=_now(), error=None)


def failed(store: Store, sweep: int, number: int, worker: str, error: str) -> None:
    _set(store, sweep, number, state=FAILED, worker=worker, finished_at=_now(), error=error)


def complete(store: Store, sweep: int) -> bool:
    """Every shard of `sweep` is done (read after the caller's own shard was committed, so the
    last of several workers finishing at once sees it)."""
    with Session(store.engine) as session:
        left = session.scalar(select(func.count()).select_from(ShardRow)
                              .where(ShardRow.sweep_id == sweep, ShardRow.state != DONE))
        return left == 0


def stored(store: Store, sweep: int, device_ids: Iterable[str]) -> set[str]:
    """Which of `device_ids` already have a record in `sweep`."""
    ids = list(device_ids)
    found: set[str] = set()
    with Session(store.engine) as session:
        for start in range(0, len(ids), _BATCH):
            found.update(session.scalars(select(Record.device_id).where(
                Record.sweep_id == sweep, Record.device_id.in_(ids[start:start + _BATCH]))))
    return found


def add_once(store: Store, sweep: int, record: rec.Record) -> bool:
    """Store `record` unless `sweep` holds one of its device already; whether it was stored.
    Two workers racing on the same device (a shard redelivered while its first worker still
    runs) meet at the unique key: the loser keeps the winner's record."""
    device_id = record.device.id
    if stored(store, sweep, [device_id]):
        return False
    try:
        store.add_record(sweep, record)
    except StoreError:
        if stored(store, sweep, [device_id]):
            return False
        raise
    return True


def finalize(store: Store, sweep: int, token: str, settle: Callable[[], None]) -> bool:
    """Under a lock on the sweep's row (FOR NO KEY UPDATE: finalisers wait for each other,
    record writers do not): when every shard is done and the sweep is not finished
    yet, run `settle` (the fleet-wide checks; it writes through other connections) and mark
    the sweep finished. Whether this call finished it."""
    try:
        with Session(store.engine) as session, session.begin():
            row = session.scalars(select(Sweep).where(Sweep.id == sweep)
                                  .with_for_update(key_share=True)).one_or_none()
            if row is None or row.state == FINISHED:
                return False
            states = dict(session.execute(
                select(ShardRow.state, func.count()).where(ShardRow.sweep_id == sweep,
                                                           ShardRow.token == token)
                .group_by(ShardRow.state)).tuples().all())
            if not states or set(states) != {DONE}:
                return False
            settle()
            row.state, row.finished_at = FINISHED, _now()
            return True
    except SQLAlchemyError as exc:
        raise _failing(f"finish sweep #{sweep}", store)(exc) from None


@dataclass(frozen=True)
class ShardState:
    number: int
    queue: str
    size: int
    state: str
    worker: str | None
    attempts: int
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    error: str | None


@dataclass(frozen=True)
class Progress:
    shards: list[ShardState]

    @property
    def counts(self) -> Counter[str]:
        return Counter(s.state for s in self.shards)

    @property
    def settled(self) -> bool:
        """No shard is queued or running: each is done or failed."""
        return all(s.state in (DONE, FAILED) for s in self.shards)


def progress(store: Store, sweep: int) -> Progress:
    with Session(store.engine) as session:
        rows = session.execute(
            select(ShardRow.number, ShardRow.queue, ShardRow.size, ShardRow.state,
                   ShardRow.worker, ShardRow.attempts, ShardRow.started_at,
                   ShardRow.finished_at, ShardRow.error)
            .where(ShardRow.sweep_id == sweep).order_by(ShardRow.number)).tuples().all()
    return Progress([ShardState(*row) for row in rows])
