"""A stored sweep's numbers in the Prometheus text exposition format (docs/metrics.md).

The numbers are counted by the store's database, for one sweep: devices per verdict, per class
and per site; devices per check by the check's worst status on each device; the sweep's number,
start, end, duration and devices scanned per second; the regressions and fixes since the
previous finished sweep (probe.store.queries.diff, as `iotprobe diff` counts them).
`prometheus_client` (the official client library) writes the exposition, and so escapes every
label value.

Classes, sites, check ids and verdicts come from inventories and records, so from whoever wrote
them: each label value is escaped in the records' convention (probe.escaping) and cut at
MAX_LABEL characters, and a label keeps at most its limit of distinct values (those with the
most devices), the rest summed into the value `(other)`. Values that become equal once cut are
summed too, so no series is ever written twice.

The exposition reaches its readers three ways: a file written atomically after each sweep for
node_exporter's textfile collector (`sweep --metrics-file`), an HTTP endpoint served while
`sweep --every` runs (`sweep --metrics-listen`), and `iotprobe metrics`.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import socketserver
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from sqlalchemy import ColumnElement, Select, Text, case, cast, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from probe.errors import InputError
from probe.escaping import bounded_text, shown
from probe.record.files import write_atomic
from probe.store import FINISHED, Store, StoreError, SweepInfo
from probe.store.models import Record, ResultRow, Sweep
from probe.store.queries import diff
from probe.yamldoc import show

log = logging.getLogger(__name__)

MAX_LABEL = 128
"""Characters of one label value (escaped), beyond which it is cut."""
MAX_VALUES = 100
"""Distinct values of a class, site or check label; the rest are summed into `(other)`."""
MAX_STATES = 8
"""Distinct values of a verdict or status label (three and six when the store is sound)."""
NONE = "(none)"
"""The class or site label of devices the inventory gave none (no id can hold a parenthesis)."""
OTHER = "(other)"
"""The label value that sums the values beyond a label's limit."""
WORST_FIRST = ("fail", "error", "waived", "skipped", "pass", "not_applicable")
"""A check's statuses, worst first: a device counts under the worst of its results of a check
(a waived failure is below an error: the verdict does not count it)."""


@dataclass(frozen=True)
class SweepCounts:
    """What the store holds of one sweep, counted by its database."""

    sweep: SweepInfo
    verdicts: Mapping[tuple[str], int]
    """(verdict,) -> devices."""
    classes: Mapping[tuple[str | None, str], int]
    """(class, verdict) -> devices; None for devices without a class."""
    sites: Mapping[tuple[str | None, str], int]
    """(site, verdict) -> devices; None for devices without a site."""
    checks: Mapping[tuple[str, str], int]
    """(check, worst status on the device) -> devices."""
    change: Change | None
    """What changed since the previous finished sweep; None when there is none."""


@dataclass(frozen=True)
class Change:
    """How a sweep differs from the finished sweep before it, as `iotprobe diff` counts."""

    previous: int
    regressions: int
    fixes: int


def _previous(session: Session, number: int) -> int | None:
    """The number of the last finished sweep before sweep `number`, if any."""
    return session.scalar(select(func.max(Sweep.id))
                          .where(Sweep.state == FINISHED, Sweep.id < number))


def _change(store: Store, sweep: SweepInfo, previous: int | None) -> Change | None:
    if previous is None:
        return None
    changes = diff(store, store.sweep(previous), sweep)
    return Change(previous, len(changes.regressions), len(changes.fixed))


def _worst_rank() -> ColumnElement[int]:
    """A result's place in WORST_FIRST (a waived failure as `waived`); unknown ones last."""
    rank = {status: place for place, status in enumerate(WORST_FIRST)}
    return case(
        (ResultRow.status == "fail", case((ResultRow.waived, rank["waived"]), else_=rank["fail"])),
        *((ResultRow.status == status, rank[status]) for status in WORST_FIRST[1:]
          if status != "waived"),
        else_=len(WORST_FIRST))


def _by_device_field(number: int, field: str) -> Select[str | None, str, int]:
    """Devices of sweep `number` counted by their record's device `field` (as JSON text: the
    database never decodes it, so no character can make it fail) and verdict."""
    value = cast(Record.record[("device", field)], Text)
    return (select(value, Record.verdict, func.count()).where(Record.sweep_id == number)
            .group_by(value, Record.verdict))


def _decoded(text: str | None) -> str | None:
    """A device field from its JSON text: the string, None when absent or null, the JSON text
    itself when it is not a string."""
    value = json.loads(text) if text is not None else None
    return value if value is None or isinstance(value, str) else text


def _by_check(number: int) -> Select[str, int, int]:
    """Devices of sweep `number` counted by check and the check's worst status on them."""
    worst = (select(ResultRow.check_id, func.min(_worst_rank()).label("worst"))
             .where(ResultRow.sweep_id == number)
             .group_by(ResultRow.record_id, ResultRow.check_id).subquery())
    return (select(worst.c.check_id, worst.c.worst, func.count())
            .group_by(worst.c.check_id, worst.c.worst))


def count(store: Store, sweep: SweepInfo) -> SweepCounts:
    """The numbers of `sweep`, counted by the store's database in one read transaction; a
    StoreError when the database cannot count them."""
    number = sweep.number
    try:
        with Session(store.engine) as session, session.begin():
            verdicts = session.execute(select(Record.verdict, func.count())
                                       .where(Record.sweep_id == number)
                                       .group_by(Record.verdict))
            classes = session.execute(_by_device_field(number, "class"))
            sites = session.execute(_by_device_field(number, "site"))
            checks = session.execute(_by_check(number))
            counted = SweepCounts(
                sweep=sweep,
                verdicts={(verdict,): n for verdict, n in verdicts},
                classes={(_decoded(value), verdict): n for value, verdict, n in classes},
                sites={(_decoded(value), verdict): n for value, verdict, n in sites},
                checks={(check, _status(rank)): n for check, rank, n in checks},
                change=None)
            previous = _previous(session, number)
        return replace(counted, change=_change(store, sweep, previous))
    except SQLAlchemyError as exc:
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise StoreError(f"{store.location}: cannot count sweep #{number}: "
                         f"{cause[0] if cause else type(exc).__name__}") from None


def _status(rank: int) -> str:
    return WORST_FIRST[rank] if 0 <= rank < len(WORST_FIRST) else OTHER


def label(value: str | None) -> str:
    """`value` as a label value on one line: escaped (tab and line breaks too), cut at
    MAX_LABEL characters; NONE when there is none."""
    return shown(bounded_text(value, MAX_LABEL)) if value else NONE


def bounded(counts: Mapping[tuple[Any, ...], int], limits: tuple[int, ...]
            ) -> tuple[dict[tuple[str, ...], int], list[int]]:
    """`counts` keyed by label values made safe (`label`), each position holding at most its
    limit of distinct values (those with the most devices; the rest summed into OTHER), in a
    stable order; and how many distinct values each position folded into OTHER."""
    merged: Counter[tuple[str, ...]] = Counter()
    for key, devices in counts.items():
        merged[tuple(label(part) for part in key)] += devices
    folded = []
    for position, limit in enumerate(limits):
        totals: Counter[str] = Counter()
        for key, devices in merged.items():
            totals[key[position]] += devices
        if len(totals) <= limit:
            folded.append(0)
            continue
        kept = set(sorted(totals, key=lambda v: (-totals[v], v))[:limit - 1])
        folded.append(len(totals) - len(kept))
        refolded: Counter[tuple[str, ...]] = Counter()
        for key, devices in merged.items():
            value = key[position] if key[position] in kept else OTHER
            refolded[(*key[:position], value, *key[position + 1:])] += devices
        merged = refolded
    return dict(sorted(merged.items())), folded


def _gauge(name: str, documentation: str, labels: tuple[str, ...],
           samples: Mapping[tuple[str, ...], float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    for values, value in samples.items():
        family.add_metric(list(values), value)
    return family


def _sweep_families(sweep: SweepInfo) -> Iterable[Metric]:
    """The sweep's own numbers: which one, when, how long, how fast."""
    yield _gauge("iotprobe_sweep_number", "Number of the stored sweep these metrics describe.",
                 (), {(): sweep.number})
    info = InfoMetricFamily("iotprobe_sweep", "The profile, probe version and state of the "
                            "sweep.")
    info.add_metric([], {"profile": label(sweep.profile["id"]),
                         "profile_version": label(sweep.profile["version"]),
                         "probe_version": label(sweep.probe_version),
                         "state": label(sweep.state)})
    yield info
    yield _gauge("iotprobe_sweep_start_timestamp_seconds", "When the sweep started (Unix "
                 "time, whole seconds).", (), {(): sweep.started_at.timestamp()})
    yield _gauge("iotprobe_sweep_inventory_devices", "Devices the sweep set out to scan.", (),
                 {(): sweep.devices})
    if sweep.finished_at is None:
        return
    duration = (sweep.finished_at - sweep.started_at).total_seconds()
    yield _gauge("iotprobe_sweep_end_timestamp_seconds", "When the sweep finished (Unix time, "
                 "whole seconds).", (), {(): sweep.finished_at.timestamp()})
    yield _gauge("iotprobe_sweep_duration_seconds", "From the sweep's start to its end, whole "
                 "seconds (a pause before --resume included).", (), {(): duration})
    if duration > 0:
        yield _gauge("iotprobe_sweep_devices_scanned_per_second", "Devices stored by the "
                     "sweep per second of its duration.", (), {(): sweep.records / duration})


def _change_families(change: Change | None) -> Iterable[Metric]:
    """What changed since the previous finished sweep (nothing before the first one)."""
    if change is None:
        return
    yield _gauge("iotprobe_sweep_previous_number", "Number of the finished sweep the "
                 "regressions and fixes compare with.", (), {(): change.previous})
    yield _gauge("iotprobe_sweep_regressions", "Results failing on a device, check and target "
                 "that did not fail in the previous finished sweep (iotprobe diff).", (),
                 {(): change.regressions})
    yield _gauge("iotprobe_sweep_fixes", "Results that failed in the previous finished sweep "
                 "and pass in this one (iotprobe diff's fixes).", (),
                 {(): change.fixes})


def families(counts: SweepCounts) -> list[Metric]:
    """Every metric family of one sweep, label values bounded (see the module docstring)."""
    verdicts, _ = bounded(counts.verdicts, (MAX_STATES,))
    classes, class_folded = bounded(counts.classes, (MAX_VALUES, MAX_STATES))
    sites, site_folded = bounded(counts.sites, (MAX_VALUES, MAX_STATES))
    checks, check_folded = bounded(counts.checks, (MAX_VALUES, MAX_STATES))
    return [
        *_sweep_families(counts.sweep),
        *_change_families(counts.change),
        _gauge("iotprobe_sweep_devices", "Devices with a stored record, by verdict.",
               ("verdict",), verdicts),
        _gauge("iotprobe_sweep_class_devices", "Devices with a stored record, by class (the "
               "inventory's; (none) without one) and verdict.", ("class", "verdict"), classes),
        _gauge("iotprobe_sweep_site_devices", "Devices with a stored record, by site (the "
               "inventory's; (none) without one) and verdict.", ("site", "verdict"), sites),
        _gauge("iotprobe_sweep_check_devices", "Devices by check and the check's worst status "
               "on the device: fail, error, waived, skipped, pass, not_applicable.",
               ("check", "status"), checks),
        _gauge("iotprobe_sweep_folded_label_values", "Distinct values of a label beyond its "
               f"limit of {MAX_VALUES}, summed into the value (other).", ("label",),
               {("check",): check_folded[0], ("class",): class_folded[0],
                ("site",): site_folded[0]}),
    ]


class SweepMetrics:
    """The metric families of one sweep, in a registry of their own (no process metrics),
    replaced whole by `show`: a scrape reads either the old set or the new one."""

    def __init__(self) -> None:
        self._families: tuple[Metric, ...] = ()
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def collect(self) -> Iterable[Metric]:
        return self._families

    def show(self, store: Store, sweep: SweepInfo) -> None:
        """Count `sweep` in `store` and serve its numbers from now on."""
        self._families = tuple(families(count(store, sweep)))

    def exposition(self) -> str:
        """The families in the Prometheus text format (version 0.0.4)."""
        return generate_latest(self.registry).decode()


# ------------------------------------------------------------------------- the HTTP endpoint


def parse_listen(text: str) -> tuple[str, int]:
    """The IP literal and port of `--metrics-listen`, e.g. 127.0.0.1:9464 or [::1]:9464; a
    host name is refused (it would need a DNS lookup)."""
    host, colon, port = text.strip().rpartition(":")
    if not colon:
        raise InputError(f"{show(text)}: expected ADDRESS:PORT, e.g. 127.0.0.1:9464",
                         field="--metrics-listen")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise InputError(f"{show(text)}: write an IPv6 address in brackets, e.g. [::1]:9464",
                         field="--metrics-listen")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise InputError(f"{show(host)} is not an IP address: name the address to listen on "
                         "as a literal (e.g. 127.0.0.1:9464), never a host name",
                         field="--metrics-listen") from None
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise InputError(f"{show(port)} is not a port from 1 to 65535", field="--metrics-listen")
    return str(address), int(port)


class _Handler(WSGIRequestHandler):
    timeout = 10.0
    """Seconds a client has to send its request before its connection is closed."""

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: stderr is the sweep's."""


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    """A WSGI server with one daemon thread per request, on an IPv4 or IPv6 literal."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the address (socket.getfqdn)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()


class Endpoint:
    """The metrics of a registry served over HTTP (any path, GET) from a thread of its own."""

    def __init__(self, listen: tuple[str, int], metrics: SweepMetrics) -> None:
        where = f"[{listen[0]}]:{listen[1]}" if ":" in listen[0] else f"{listen[0]}:{listen[1]}"
        try:
            self._server = _Server(listen)
        except OSError as exc:
            raise InputError(f"cannot listen on {where}: {exc.strerror or exc}",
                             field="--metrics-listen") from None
        self._server.set_app(make_wsgi_app(metrics.registry))
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="iotprobe-metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


# ----------------------------------------------------------------------- what a sweep calls


class Exporter:
    """The latest finished sweep's numbers, refreshed after each sweep: written to a file for
    node_exporter's textfile collector and/or served on an endpoint."""

    def __init__(self, textfile: Path | None, listen: tuple[str, int] | None) -> None:
        self.metrics = SweepMetrics()
        self.textfile = textfile
        self.listen = listen
        self._endpoint: Endpoint | None = None

    def open(self, store: Store) -> None:
        """Serve the store's latest finished sweep, if any, at once (InputError when the
        address cannot be bound); write no file before a sweep."""
        if self.listen is not None:
            self._show_latest(store)
            self._endpoint = Endpoint(self.listen, self.metrics)

    def _show_latest(self, store: Store) -> bool:
        """Count the latest finished sweep and serve it; False when there is none or the
        database refuses the count (logged: the previous numbers stay served)."""
        latest = store.finished_sweeps(1)
        if not latest:
            return False
        try:
            self.metrics.show(store, latest[0])
        except StoreError as exc:
            log.warning("%s", exc)
            return False
        return True

    def after_sweep(self, store: Store) -> None:
        """Count the latest finished sweep, serve it and write the file. What fails is logged
        and tried again after the next sweep (the sweeps go on): a count the database refuses
        leaves the previous numbers served and the file as it was."""
        if not self._show_latest(store) or self.textfile is None:
            return
        try:
            write_atomic(self.textfile, self.metrics.exposition())
        except OSError as exc:
            log.warning("cannot write the metrics to %s: %s", self.textfile, exc.strerror or exc)

    def close(self) -> None:
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None
