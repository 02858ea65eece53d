"""The sweep store: SQLite by default, PostgreSQL by URL, migrated with Alembic on open.

Every method opens its own session and transaction, so the store can be used from the thread
that writes records while the scan goes on. `add_record` commits one record (the JSON and its
result rows) in one transaction: a process killed at any moment leaves every record it had
committed and nothing of the one it had not.

A database that is briefly unavailable (restarted, failing over, locked by another connection's
exclusive transaction beyond SQLite's busy timeout) does not end a sweep: the writes retry with
a doubling backoff for up to `RETRY_FOR` seconds before they give up with a StoreError.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import URL, Engine, create_engine, delete, event, func, inspect, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session

from probe import __version__
from probe.errors import InputError
from probe.extras import require_extra
from probe.profile import Profile
from probe.record import model as rec
from probe.secrets import remember
from probe.stamps import stamp
from probe.store.models import Record, ResultRow, Sweep

log = logging.getLogger(__name__)
T = TypeVar("T")

RUNNING, FINISHED, INTERRUPTED = "running", "finished", "interrupted"
RETRY_FOR = 30.0
"""Seconds a write keeps retrying while the database is unreachable or locked."""
_FIRST_DELAY, _MAX_DELAY = 0.25, 5.0
DEFAULT_SUFFIX = ".iotprobe.sqlite"
_BATCH = 200


class StoreError(Exception):
    """The store cannot be opened or used; the message never holds a password."""


class RecordRefused(StoreError):
    """The database refused one record for what it holds (not for being unavailable)."""


@dataclass(frozen=True)
class SweepInfo:
    number: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    state: str
    inventory: str
    devices: int
    profile: dict[str, str]
    probe_version: str
    intrusive: bool
    records: int

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def label(self) -> str:
        when = stamp(self.started_at)
        return f"#{self.number} ({when}, {self.state}, {self.records}/{self.devices} devices)"

    def as_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "started_at": stamp(self.started_at),
            "finished_at": stamp(self.finished_at) if self.finished_at else None,
            "state": self.state, "inventory": self.inventory, "devices": self.devices,
            "records": self.records, "profile": self.profile,
            "probe": {"version": self.probe_version, "intrusive": self.intrusive},
        }


@dataclass(frozen=True)
class ResultKey:
    """One row of a stored result, as the diff reads it."""

    device_id: str
    verdict: str
    check_id: str
    target: str
    status: str
    severity: str
    waived: bool
    summary: str


def parse_store_url(text: str) -> URL:
    """A database URL from `--store`: a URL, or the path of a SQLite file."""
    if "://" not in text:
        return URL.create("sqlite+pysqlite", database=str(Path(text).expanduser().absolute()))
    try:
        url = make_url(text)
    except ArgumentError:
        raise InputError(f"not a database URL: {mask(text)}", field="--store") from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        require_extra("postgres", "--store")
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return url.set(drivername="sqlite+pysqlite")
    raise InputError(f"unsupported database {backend!r}: use sqlite:///PATH, a file path, or "
                     "postgresql://USER@HOST:PORT/DB", field="--store")


_SECRET_PARAMETER = re.compile(r"pass|pwd|secret|token|key|auth|cred", re.IGNORECASE)
"""Query parameters of a database URL whose value is (or may be) a credential: password,
passwd, sslpassword, passfile, sslkey, auth_token, ..."""
_MASK = "***"


def mask(text: str) -> str:
    """`text`, a database URL, with every credential in it replaced by ***."""
    try:
        return masked(make_url(text))
    except ArgumentError:
        return "<unparseable URL>"


def masked(url: URL) -> str:
    """`url` as text with its password and every credential query parameter shown as ***."""
    query = {key: _MASK if _SECRET_PARAMETER.search(key) else value
             for key, value in url.query.items()}
    text = url.set(query=query).render_as_string(hide_password=True)
    return text.replace(quote(_MASK, safe=""), _MASK)


def shown_location(url: URL) -> str:
    """How messages name the store at `url`: a SQLite file by its path, any other database by
    its URL without the driver (`postgresql://`, not `postgresql+psycopg://`) and with every
    credential shown as ***."""
    database = url.database
    if url.get_backend_name() == "sqlite" and database and database != ":memory:":
        return database
    return masked(url.set(drivername=url.get_backend_name()))


def _credentials(url: URL) -> list[str]:
    """The credential values in `url`: its password and its credential query parameters."""
    found = [url.password] if url.password else []
    for key, value in url.query.items():
        if _SECRET_PARAMETER.search(key):
            found.extend([value] if isinstance(value, str) else value)
    return [str(item) for item in found if item]


def _hidden(text: str, url: URL) -> str:
    """`text` with every credential value of `url` in it replaced by ***."""
    for secret in sorted(_credentials(url), key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text


def default_store(inventory: Path) -> Path:
    """Where a sweep of `inventory` keeps its history without --store: beside it."""
    return inventory.expanduser().absolute().with_name(inventory.stem + DEFAULT_SUFFIX)


@functools.cache
def _migrations() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return config


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Store:
    """The sweeps, their records and results, in one database."""

    def __init__(self, url: URL, *, retry_for: float = RETRY_FOR, create: bool = True) -> None:
        """Open the store at `url`, made (or migrated) first; with `create` false, only a
        store that exists already: nothing is made where there is none."""
        self.url = url
        self.retry_for = retry_for
        for password in (url.password, os.environ.get("PGPASSWORD")):
            remember(str(password or ""), shared=True)
        self.location = shown_location(url)
        if not create:
            self._refuse_a_missing_file()
        self.engine = self._connect(url)
        try:
            if not create:
                self._refuse_an_empty_database()
            with self.engine.begin() as connection:
                config = _migrations()
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except CommandError as exc:
            self.engine.dispose()
            raise StoreError(f"{self.location}: the store's schema is not one this iotprobe "
                             f"knows (written by a newer version?): {exc}") from None
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise StoreError(f"{self.location}: cannot open the store: "
                             f"{_hidden(_cause(exc), url)}") from None
        except StoreError:
            self.engine.dispose()
            raise

    def _refuse_a_missing_file(self) -> None:
        database = self.url.database
        if self.url.get_backend_name() != "sqlite" or not database or database == ":memory:":
            return
        if not Path(database).is_file():
            raise StoreError(f"no store at {database}: run a sweep first, or name an existing "
                             "store with --store")

    def _refuse_an_empty_database(self) -> None:
        with self.engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                raise StoreError(f"{self.location} holds no iotprobe store: run a sweep first, "
                                 "or name an existing store with --store")

    @staticmethod
    def _connect(url: URL) -> Engine:
        if url.get_backend_name() == "sqlite":
            if url.database:
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"check_same_thread": False})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})

    def close(self) -> None:
        self.engine.dispose()

    def _retrying(self, write: Callable[[], T]) -> T:
        """`write()`, again after a doubling pause while the database is unavailable, until
        `retry_for` seconds have passed; other errors at once."""
        deadline = time.monotonic() + self.retry_for
        delay = _FIRST_DELAY
        while True:
            try:
                return write()
            except SQLAlchemyError as exc:
                if not _transient(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning("%s is unavailable (%s); retrying in %g s", self.location,
                            _cause(exc), delay)
                time.sleep(delay)
                delay = min(2 * delay, _MAX_DELAY)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------- sweeps

    def begin_sweep(self, *, inventory: str, devices: int, profile: Profile,
                    intrusive: bool) -> SweepInfo:
        def write() -> int:
            with Session(self.engine) as session, session.begin():
                sweep = Sweep(started_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
                              finished_at=None, state=RUNNING, inventory=inventory,
                              devices=devices, profile_id=profile.id,
                              profile_version=profile.version, profile_digest=profile.digest,
                              probe_version=__version__, intrusive=intrusive)
                session.add(sweep)
                session.flush()
                return sweep.id

        try:
            number = self._retrying(write)
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.location}: cannot start a sweep: {_cause(exc)}") from None
        return self.sweep(number)

    def set_state(self, number: int, state: str) -> None:
        """Mark sweep `number` finished (every device done), interrupted (stopped early) or
        running again (resumed)."""
        finished = dt.datetime.now(dt.UTC).replace(microsecond=0) if state == FINISHED else None

        def write() -> None:
            with Session(self.engine) as session, session.begin():
                session.execute(update(Sweep).where(Sweep.id == number)
                                .values(state=state, finished_at=finished))

        try:
            self._retrying(write)
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.location}: cannot mark sweep #{number} {state}: "
                             f"{_cause(exc)}") from None

    def _info(self, session: Session, sweep: Sweep) -> SweepInfo:
        count = session.scalar(select(func.count()).select_from(Record)
                               .where(Record.sweep_id == sweep.id)) or 0
        return SweepInfo(
            number=sweep.id, started_at=sweep.started_at, finished_at=sweep.finished_at,
            state=sweep.state, inventory=sweep.inventory, devices=sweep.devices,
            profile={"id": sweep.profile_id, "version": sweep.profile_version,
                     "digest": sweep.profile_digest},
            probe_version=sweep.probe_version, intrusive=sweep.intrusive, records=count)

    def sweep(self, number: int) -> SweepInfo:
        with Session(self.engine) as session:
            sweep = session.get(Sweep, number)
            if sweep is None:
                raise InputError(f"no sweep #{number} in {self.location}", field="SWEEP")
            return self._info(session, sweep)

    def latest(self) -> SweepInfo | None:
        """The most recent sweep, finished or not."""
        with Session(self.engine) as session:
            sweep = session.scalars(select(Sweep).order_by(Sweep.id.desc()).limit(1)).first()
            return None if sweep is None else self._info(session, sweep)

    def finished_sweeps(self, limit: int) -> list[SweepInfo]:
        """The `limit` most recent finished sweeps, newest first."""
        with Session(self.engine) as session:
            rows = session.scalars(select(Sweep).where(Sweep.state == FINISHED)
                                   .order_by(Sweep.id.desc()).limit(limit)).all()
            return [self._info(session, sweep) for sweep in rows]

    def sweeps(self) -> list[SweepInfo]:
        with Session(self.engine) as session:
            rows = session.scalars(select(Sweep).order_by(Sweep.id)).all()
            return [self._info(session, sweep) for sweep in rows]

    # --------------------------------------------------------------------------------- records

    def add_record(self, number: int, record: rec.Record) -> None:
        """Store the record of one device of sweep `number`, in its own transaction."""
        device_id = record.device.id
        data = record.to_json()
        attempts = 0

        def write() -> None:
            nonlocal attempts
            attempts += 1
            with Session(self.engine) as session, session.begin():
                row = Record(sweep_id=number, device_id=device_id,
                             address=record.device.address, verdict=record.verdict.value,
                             started_at=record.started_at, finished_at=record.finished_at,
                             record=data)
                session.add(row)
                session.flush()
                session.add_all(_result_rows(number, row.id, record))

        try:
            self._retrying(write)
        except IntegrityError:
            if attempts > 1 and device_id in self.device_ids(number):
                return  # an earlier attempt committed, and the connection died before saying so
            raise StoreError(f"sweep #{number} already holds a record of device "
                             f"{device_id}") from None
        except DataError as exc:
            raise RecordRefused(f"{self.location} refused the record of {device_id}: "
                                f"{_cause(exc)}") from None
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.location}: cannot store the record of "
                             f"{device_id}: {_cause(exc)}") from None

    def replace_record(self, number: int, record: rec.Record) -> None:
        """Replace the stored record of the same device, results included, in one
        transaction."""
        device_id = record.device.id
        data = record.to_json()

        def write() -> None:
            with Session(self.engine) as session, session.begin():
                row = session.scalars(select(Record).where(Record.sweep_id == number,
                                                           Record.device_id == device_id)).one()
                row.record = data
                row.verdict = record.verdict.value
                session.execute(delete(ResultRow).where(ResultRow.record_id == row.id))
                session.add_all(_result_rows(number, row.id, record))

        try:
            self._retrying(write)
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.location}: cannot rewrite the record of {device_id}: "
                             f"{_cause(exc)}") from None

    def record(self, number: int, device_id: str) -> rec.Record:
        with Session(self.engine) as session:
            stored: dict[str, Any] = session.scalars(
                select(Record.record).where(Record.sweep_id == number,
                                            Record.device_id == device_id)).one()
            return rec.Record.from_json(stored)

    def records(self, number: int) -> Iterator[rec.Record]:
        """The records of sweep `number` by device id, streamed in batches."""
        with Session(self.engine) as session:
            rows = session.execute(select(Record.record).where(Record.sweep_id == number)
                                   .order_by(Record.device_id)
                                   .execution_options(yield_per=_BATCH))
            for (stored,) in rows:
                yield rec.Record.from_json(stored)

    def device_ids(self, number: int) -> set[str]:
        with Session(self.engine) as session:
            return set(session.scalars(select(Record.device_id)
                                       .where(Record.sweep_id == number)))

    def result_keys(self, number: int) -> Iterator[ResultKey]:
        """Every result row of sweep `number` with its device's verdict, ordered by device,
        check and target (the order Python sorts them in)."""
        query = (select(ResultRow.device_id, Record.verdict, ResultRow.check_id,
                        ResultRow.target, ResultRow.status, ResultRow.severity,
                        ResultRow.waived, ResultRow.summary)
                 .join(Record, Record.id == ResultRow.record_id)
                 .where(ResultRow.sweep_id == number)
                 .order_by(ResultRow.device_id, ResultRow.check_id, ResultRow.target)
                 .execution_options(yield_per=_BATCH * 20))
        with Session(self.engine) as session:
            for row in session.execute(query):
                yield ResultKey(*row)


def _transient(exc: SQLAlchemyError) -> bool:
    """Whether the database may answer if asked again: it is unreachable, restarting, or
    locked (OperationalError), or the connection under the session died."""
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)


def _cause(exc: SQLAlchemyError) -> str:
    """The driver's first line about what went wrong (drivers never repeat the password)."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def _result_rows(number: int, record_id: int, record: rec.Record) -> list[ResultRow]:
    device_id = record.device.id
    return [ResultRow(record_id=record_id, sweep_id=number, device_id=device_id,
                      check_id=r.check, target=r.finding.target, status=r.status.value,
                      severity=r.severity.value, waived=r.waived is not None,
                      summary=r.finding.summary)
            for r in record.results]


def open_store(text: str, *, create: bool = True) -> Store:
    """The store at `text` (URL or SQLite path); InputError when it cannot be opened. With
    `create` false (the commands that only read), a store that does not exist is an
    InputError too, and nothing is made."""
    url = parse_store_url(text)
    try:
        return Store(url, create=create)
    except StoreError as exc:
        raise InputError(str(exc), field="--store") from None
