"""The sweep store on SQLite and on a real PostgreSQL server: migrations, records, the diff."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pgserver import PASSWORD, PostgresServer, postgres_server

from probe.errors import InputError
from probe.profile_loader import load_profile
from probe.record.model import Record
from probe.record.schema import validate_record
from probe.store import Store, StoreError, default_store, open_store, parse_store_url
from probe.store.models import Base
from probe.store.queries import diff


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = str(tmp_path / "store.sqlite")
    else:
        server: PostgresServer = request.getfixturevalue("pg")
        url = server.url(server.create_database())
    opened = open_store(url)
    try:
        yield opened
    finally:
        opened.close()


def result(check: str, status: str, target: str = "device", severity: str = "high",
           **extra: Any) -> dict[str, Any]:
    return {"check": check, "control": "27400-6.2", "target": target, "status": status,
            "severity": severity, "summary": f"{check} {status}", "evidence": {"seen": 1},
            "remediation": "fix it", "references": {}, "duration_ms": 1, **extra}


def record(device: str, results: list[dict[str, Any]], verdict: str) -> Record:
    built = {
        "schema": "iotprobe.record/v1",
        "device": {"id": device, "address": "127.93.0.1", "class": "sensor"},
        "profile": {"id": "p", "version": "1", "digest": "sha256:" + "0" * 64},
        "probe": {"version": "0.1.0", "intrusive": False},
        "started_at": "2026-11-28T12:00:00Z", "finished_at": "2026-11-28T12:00:04Z",
        "verdict": verdict, "services": [], "results": results,
    }
    validate_record(built)
    typed = Record.from_json(built)
    assert typed.verdict.value == verdict
    return typed


def begin(store: Store) -> int:
    profile = load_profile("iso27400-6.2")
    return store.begin_sweep(inventory="/x/inventory.yaml", devices=3, profile=profile,
                             intrusive=False).number


def test_migrations_build_exactly_the_models(store: Store) -> None:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert compare_metadata(context, Base.metadata) == []
        assert context.get_current_revision() == "0002"


def test_reopening_is_idempotent_and_sweeps_are_numbered(store: Store) -> None:
    first, second = begin(store), begin(store)
    assert second == first + 1
    again = Store(store.url)
    try:
        assert [s.number for s in again.sweeps()] == [first, second]
        info = again.sweep(first)
        assert info.state == "running" and info.finished_at is None
        assert info.started_at.tzinfo is not None
    finally:
        again.close()
    store.set_state(first, "finished")
    assert store.sweep(first).finished and store.latest() is not None
    assert [s.number for s in store.finished_sweeps(5)] == [first]


def test_records_round_trip_in_device_order(store: Store) -> None:
    number = begin(store)
    for device in ("zeta", "alpha", "Mid", "beta-2", "beta-10"):
        store.add_record(number, record(device, [result("net.open-ports", "pass")],
                                        "conformant"))
    ids = [r.device.id for r in store.records(number)]
    assert ids == sorted(ids) == ["Mid", "alpha", "beta-10", "beta-2", "zeta"]
    stored = store.record(number, "alpha")
    assert list(stored.to_json()) == list(record("alpha", [], "conformant").to_json())
    validate_record(stored.to_json())
    assert store.device_ids(number) == {"zeta", "alpha", "Mid", "beta-2", "beta-10"}
    assert store.sweep(number).records == 5
    with pytest.raises(StoreError, match="already holds"):
        store.add_record(number, record("alpha", [result("net.open-ports", "pass")],
                                        "conformant"))


def test_replace_record_rewrites_results(store: Store) -> None:
    number = begin(store)
    store.add_record(number, record("a", [result("fleet.unique-keys", "pass", "tcp/443")],
                                    "conformant"))
    store.replace_record(number, record("a", [result("fleet.unique-keys", "fail", "tcp/443")],
                                        "nonconformant"))
    keys = list(store.result_keys(number))
    assert [(k.check_id, k.status, k.verdict) for k in keys] == [
        ("fleet.unique-keys", "fail", "nonconformant")]
    assert store.record(number, "a").verdict.value == "nonconformant"


def test_diff_finds_every_kind_of_change(store: Store) -> None:
    a, b = begin(store), begin(store)
    waiver = {"waived": {"justification": "vendor fix due", "expires": "2099-01-01"}}
    store.add_record(a, record("stays-bad", [result("net.open-ports", "fail"),
                                             result("http.hsts", "pass", "tcp/443")],
                               "nonconformant"))
    store.add_record(a, record("regresses", [result("net.open-ports", "pass"),
                                             result("mqtt.anonymous-access", "pass", "tcp/1883")],
                               "conformant"))
    store.add_record(a, record("fixed", [result("net.cleartext-management", "fail"),
                                         result("mqtt.cleartext-listener", "fail", "tcp/1883")],
                               "nonconformant"))
    store.add_record(a, record("leaves", [result("net.open-ports", "pass")], "conformant"))
    store.add_record(b, record("stays-bad", [result("net.open-ports", "fail"),
                                             result("http.hsts", "fail", "tcp/443",
                                                    severity="low", **waiver)],
                               "nonconformant"))
    store.add_record(b, record("regresses", [result("net.open-ports", "fail"),
                                             result("mqtt.anonymous-access", "pass", "tcp/1883"),
                                             result("telnet.new", "fail", "tcp/23")],
                               "nonconformant"))
    store.add_record(b, record("fixed", [result("net.cleartext-management", "pass"),
                                         result("mqtt.cleartext-listener", "not_applicable")],
                               "conformant"))
    store.add_record(b, record("arrives", [result("net.open-ports", "error")],
                               "inconclusive"))
    changes = diff(store, store.sweep(a), store.sweep(b))
    assert [(v.device, v.before, v.after) for v in changes.verdicts] == [
        ("fixed", "nonconformant", "conformant"), ("regresses", "conformant", "nonconformant")]
    assert [(c.device, c.check, c.target, c.before, c.after) for c in changes.regressions] == [
        ("regresses", "net.open-ports", "device", "pass", "fail")]
    assert [(c.device, c.check, c.target, c.before, c.after)
            for c in changes.newly_assessed] == [("regresses", "telnet.new", "tcp/23", None,
                                                  "fail")]
    assert [(s.setting, s.before, s.after) for s in changes.settings] == [
        ("checks", "5 checks, without telnet.new", "6 checks")]
    assert [(c.device, c.check, c.target, c.before, c.after) for c in changes.fixed] == [
        ("fixed", "mqtt.cleartext-listener", "tcp/1883", "fail", "not_applicable"),
        ("fixed", "net.cleartext-management", "device", "fail", "pass")]
    assert [(d.device, d.verdict) for d in changes.appeared] == [("arrives", "inconclusive")]
    assert [(d.device, d.verdict) for d in changes.vanished] == [("leaves", "conformant")]
    as_json = changes.as_json()
    assert as_json["a"]["number"] == a and len(as_json["regressions"]) == 1
    assert not as_json["profile_changed"]


def test_urls_and_paths(tmp_path: Path) -> None:
    assert parse_store_url(str(tmp_path / "s.sqlite")).drivername == "sqlite+pysqlite"
    assert parse_store_url("postgresql://u@127.0.0.1:5/db").drivername == "postgresql+psycopg"
    assert parse_store_url("postgres://u@127.0.0.1:5/db").drivername == "postgresql+psycopg"
    with pytest.raises(InputError, match="unsupported database"):
        parse_store_url("mysql://u@127.0.0.1/db")
    assert default_store(tmp_path / "fleet.yaml") == tmp_path / "fleet.iotprobe.sqlite"


def test_unreachable_postgres_names_the_store_without_its_password() -> None:
    with pytest.raises(InputError) as caught:
        open_store(f"postgresql://probe:{PASSWORD}@127.0.0.1:9/none")
    assert "127.0.0.1:9" in str(caught.value) and PASSWORD not in str(caught.value)
    assert caught.value.field == "--store"


def test_password_is_masked_in_the_location(pg: PostgresServer) -> None:
    store = open_store(pg.url(pg.create_database()))
    try:
        assert PASSWORD not in store.location and "***" in store.location
    finally:
        store.close()


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    open_store(str(path)).close()
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff'"))
    engine.dispose()
    with pytest.raises(InputError, match="newer"):
        open_store(str(path))


def test_timestamps_come_back_in_utc(store: Store) -> None:
    number = begin(store)
    before = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=1)
    info = store.sweep(number)
    assert info.started_at.utcoffset() == dt.timedelta(0) and info.started_at >= before
    rec = record("a", [result("net.open-ports", "pass")], "conformant")
    store.add_record(number, copy.deepcopy(rec))
    assert store.record(number, "a") == rec
