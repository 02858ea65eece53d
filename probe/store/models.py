"""The tables of the sweep store (SQLAlchemy 2 declarative models).

A sweep is numbered (its primary key) and timestamped. Every record is kept whole as JSON, with
the columns that queries need beside it: the device and the verdict, and one row per result
with the check, target, status and severity (what the diff compares).

The schema changes only through a migration in `migrations/versions/`; a test compares these
models with what the migrations build.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def key_string(length: int) -> TypeEngine[str]:
    """A string compared byte-wise on every database ("C" collation on PostgreSQL), so that
    rows ordered by the database come out in the order Python sorts them (the diff merges two
    ordered streams)."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and read back timezone-aware, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        utc = value.astimezone(dt.UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        moment: dt.datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    state: Mapped[str] = mapped_column(String(16))
    inventory: Mapped[str] = mapped_column(Text)
    devices: Mapped[int] = mapped_column(Integer)
    profile_id: Mapped[str] = mapped_column(String(255))
    profile_version: Mapped[str] = mapped_column(String(255))
    profile_digest: Mapped[str] = mapped_column(String(80))
    probe_version: Mapped[str] = mapped_column(String(40))
    intrusive: Mapped[bool] = mapped_column(Boolean)


class Record(Base):
    __tablename__ = "records"
    __table_args__ = (
        UniqueConstraint("sweep_id", "device_id"),
        Index("ix_records_sweep_verdict", "sweep_id", "verdict"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(key_string(255), index=True)
    address: Mapped[str] = mapped_column(String(255))
    verdict: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)


class ResultRow(Base):
    __tablename__ = "results"
    __table_args__ = (
        Index("ix_results_sweep_device", "sweep_id", "device_id", "check_id", "target"),
        Index("ix_results_sweep_check_status", "sweep_id", "check_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("records.id", ondelete="CASCADE"),
                                           index=True)
    sweep_id: Mapped[int] = mapped_column(Integer)
    device_id: Mapped[str] = mapped_column(key_string(255))
    check_id: Mapped[str] = mapped_column(key_string(80))
    target: Mapped[str] = mapped_column(key_string(255))
    status: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(10))
    waived: Mapped[bool] = mapped_column(Boolean)
    summary: Mapped[str] = mapped_column(Text)


class Shard(Base):
    """One shard of a distributed sweep (probe.distributed): the devices one task scans, the
    queue it went to, and who scans it now. `devices` holds [id, address] pairs."""

    __tablename__ = "shards"
    __table_args__ = (Index("ix_shards_sweep_state", "sweep_id", "state"),)

    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"),
                                          primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    token: Mapped[str] = mapped_column(String(64))
    queue: Mapped[str] = mapped_column(String(255))
    site: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    devices: Mapped[list[list[str]]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    worker: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    error: Mapped[str | None] = mapped_column(Text)
