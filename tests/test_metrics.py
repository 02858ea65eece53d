"""Prometheus metrics of sweeps (docs/metrics.md): what is exported equals what the store holds,
scraped over HTTP during a real `sweep --every` against the emulated lab; hostile classes,
sites and check ids stay well-formed for Prometheus' own parser (promtool) and for
node_exporter's textfile collector; the textfile is replaced whole; a bad --metrics-listen is
exit 2 before any packet.

Addresses: the lab on 127.164.0.1-5, the endpoint on 127.164.1.1, node_exporter on 127.164.2.1,
the bad-input checks on 127.164.3.x.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from daemons import bound
from daemons import start as start_daemon
from pgserver import PostgresServer, postgres_server
from prometheus_client.parser import text_string_to_metric_families

from probe import __version__
from probe.errors import InputError
from probe.metrics import (
    MAX_LABEL,
    MAX_VALUES,
    NONE,
    OTHER,
    Exporter,
    bounded,
    label,
    parse_listen,
)
from probe.model import Device, Finding, Result, Severity, Status, Waiver
from probe.profile_loader import load_profile
from probe.record.model import ProbeInfo, ProfileRef, Record
from probe.store import FINISHED, Store, open_store

LAB_BASE = "127.164.0.1"
ENDPOINT = ("127.164.1.1", 9464)
NODE_EXPORTER = ("127.164.2.1", 9100)
DEVICE = "127.164.3.10"
BUSY = ("127.164.3.2", 9464)
PG_HOST = "127.164.4.1"
FAST = ("--timeout", "1", "--budget", "30", "--exclude-ports", "2024", "-p", "iso27400-6.2")
WORST_FIRST = ("fail", "error", "waived", "skipped", "pass", "not_applicable")
LABELS = {
    "iotprobe_sweep_devices": ("verdict",),
    "iotprobe_sweep_class_devices": ("class", "verdict"),
    "iotprobe_sweep_site_devices": ("site", "verdict"),
    "iotprobe_sweep_check_devices": ("check", "status"),
    "iotprobe_sweep_folded_label_values": ("label",),
    "iotprobe_sweep_info": ("probe_version", "profile", "profile_version", "state"),
}
Samples = dict[str, dict[tuple[str, ...], float]]


def iotprobe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})},
                          stdin=subprocess.DEVNULL)


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def samples(text: str) -> Samples:
    """Every sample of iotprobe's metrics in an exposition by metric name and label values (in
    LABELS order); a sample written twice fails the test."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("iotprobe_"):
            continue
        for sample in family.samples:
            key = tuple(sample.labels[name] for name in LABELS.get(sample.name, ()))
            assert set(sample.labels) == set(LABELS.get(sample.name, ())), sample
            series = out.setdefault(sample.name, {})
            assert key not in series, f"{sample.name}{key} written twice"
            series[key] = sample.value
    return out


def scrape(address: tuple[str, int]) -> str:
    reply = httpx.get(f"http://{address[0]}:{address[1]}/metrics", timeout=30,
                      trust_env=False)
    reply.raise_for_status()
    return reply.text


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def store_counts(path: Path, number: int) -> Samples:
    """What the SQLite store at `path` holds of sweep `number`, counted here from its sweep row
    and its records' JSON (not from the result rows the exporter counts), as metric samples;
    the changes since the previous finished sweep as `iotprobe diff` lists them."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        started, finished, devices, sweep_state, profile, version, probe = conn.execute(
            "SELECT started_at, finished_at, devices, state, profile_id, profile_version, "
            "probe_version FROM sweeps WHERE id = ?", (number,)).fetchone()
        rows = conn.execute("SELECT verdict, record FROM records WHERE sweep_id = ?",
                            (number,)).fetchall()
        [(previous,)] = conn.execute("SELECT max(id) FROM sweeps WHERE state = 'finished' "
                                     "AND id < ?", (number,)).fetchall()
    finally:
        conn.close()
    counted: dict[str, Counter[tuple[str, ...]]] = {name: Counter() for name in LABELS}
    for verdict, text in rows:
        record = json.loads(text)
        device = record["device"]
        counted["iotprobe_sweep_devices"][(verdict,)] += 1
        counted["iotprobe_sweep_class_devices"][(device.get("class") or NONE, verdict)] += 1
        counted["iotprobe_sweep_site_devices"][(device.get("site") or NONE, verdict)] += 1
        worst: dict[str, str] = {}
        for result in record["results"]:
            state = "waived" if result["status"] == "fail" and "waived" in result \
                else result["status"]
            known = worst.get(result["check"])
            if known is None or WORST_FIRST.index(state) < WORST_FIRST.index(known):
                worst[result["check"]] = state
        for check, state in worst.items():
            counted["iotprobe_sweep_check_devices"][(check, state)] += 1
    for name in ("check", "class", "site"):
        counted["iotprobe_sweep_folded_label_values"][(name,)] = 0
    counted["iotprobe_sweep_info"][(probe, profile, version, sweep_state)] = 1
    start, end = utc(started), utc(finished)
    duration = (end - start).total_seconds()
    out: Samples = {name: {key: float(n) for key, n in series.items()}
                    for name, series in counted.items()}
    out.update({
        "iotprobe_sweep_number": {(): float(number)},
        "iotprobe_sweep_start_timestamp_seconds": {(): start.timestamp()},
        "iotprobe_sweep_end_timestamp_seconds": {(): end.timestamp()},
        "iotprobe_sweep_duration_seconds": {(): duration},
        "iotprobe_sweep_inventory_devices": {(): float(devices)},
    })
    if duration > 0:
        out["iotprobe_sweep_devices_scanned_per_second"] = {(): len(rows) / duration}
    if previous is not None:
        compared = iotprobe("diff", "--store", str(path), str(previous), str(number), "--json")
        changes = json.loads(compared.stdout)
        out["iotprobe_sweep_previous_number"] = {(): float(previous)}
        out["iotprobe_sweep_regressions"] = {(): float(len(changes["regressions"]))}
        out["iotprobe_sweep_fixes"] = {(): float(len(changes["newly_passing"]))}
    return out


def sweep_states(path: Path) -> list[tuple[int, str]]:
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(conn.execute("SELECT id, state FROM sweeps ORDER BY id"))
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


class Lab:
    """The emulated fleet (`iotprobe lab up`) on 127.164.0.1-5, with sites in its inventory."""

    def __init__(self, root: Path) -> None:
        self.env = {"IOTPROBE_STATE_DIR": str(root / "state")}
        self.inventory = root / "fleet.yaml"
        up = iotprobe("lab", "up", "--base", LAB_BASE, "--inventory-out", str(self.inventory),
                      "--personas", "clean-sensor,telnet-camera,ftp-gateway,snmp-public,dark",
                      env=self.env)
        assert up.returncode == 0, up.stderr
        data = yaml.safe_load(self.inventory.read_text())
        for device, site in zip(data["devices"], ("plant-a", "plant-a", "plant-b", None),
                                strict=False):
            if site:
                device["site"] = site
        self.inventory.write_text(yaml.safe_dump(data))

    def down(self) -> None:
        down = iotprobe("lab", "down", env=self.env)
        assert down.returncode == 0, down.stderr


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    running = Lab(tmp_path_factory.mktemp("lab"))
    try:
        yield running
    finally:
        running.down()


def test_the_endpoint_serves_the_stores_counts_during_sweep_every(lab: Lab,
                                                                   tmp_path: Path) -> None:
    store = tmp_path / "fleet.sqlite"
    textfile = tmp_path / "textfile" / "iotprobe.prom"
    args = ("sweep", "-i", str(lab.inventory), "--store", str(store), "--metrics-file",
            str(textfile), *FAST, "-q")
    first = iotprobe(*args, env=lab.env)
    assert first.returncode == 1, first.stderr
    assert samples(textfile.read_text()) == store_counts(store, 1)
    assert {key[0] for key in store_counts(store, 1)["iotprobe_sweep_site_devices"]} == {
        "plant-a", "plant-b", NONE}

    process = subprocess.Popen(
        [sys.executable, "-m", "probe", *args, "--every", "1h", "--metrics-listen",
         f"{ENDPOINT[0]}:{ENDPOINT[1]}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, stdin=subprocess.DEVNULL, env={**os.environ, **lab.env})
    try:
        wait_for(lambda: bound(*ENDPOINT, "tcp") or process.poll() is not None,
                 "the metrics endpoint")
        served = samples(scrape(ENDPOINT))
        number = int(served["iotprobe_sweep_number"][()])
        assert number in (1, 2), "the endpoint serves the latest finished sweep from the start"
        assert served == store_counts(store, number)
        wait_for(lambda: samples(scrape(ENDPOINT))["iotprobe_sweep_number"][()] == 2,
                 "sweep #2 on the endpoint")
        text = scrape(ENDPOINT)
        assert samples(text) == store_counts(store, 2)
        wait_for(lambda: textfile.read_text() == text, "sweep #2 in the textfile")
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    assert sweep_states(store) == [(1, FINISHED), (2, FINISHED)]
    assert not bound(*ENDPOINT, "tcp"), "the endpoint closes with the sweep loop"


def at(moment: dt.datetime, seconds: int) -> dt.datetime:
    return moment + dt.timedelta(seconds=seconds)


def result(check: str, status: Status, *, waived: bool = False) -> Result:
    waiver = Waiver(check, "accepted by the test", "2099-01-01") if waived else None
    return Result(check, "27400-6.2", Severity.HIGH, Finding(status, "s", "tcp/1", {}), "fix",
                  {}, 1, waiver)


def record(device_id: str, device_class: str | None, site: str | None,
           results: tuple[Result, ...]) -> Record:
    """A record as a store written by someone else may hold it: strings not escaped, not
    bounded, not inventory ids (`record_of` would escape them)."""
    now = dt.datetime(2026, 12, 6, 12, tzinfo=dt.UTC)
    return Record(device=Device(device_id, "127.164.3.20", device_class=device_class,
                                site=site), resolved_address=None,
                  profile=ProfileRef("p", "1", "sha256:" + "0" * 64),
                  probe=ProbeInfo(__version__, False), started_at=now, finished_at=now,
                  services=(), results=results)


HOSTILE = [
    'q"uote', "back\\slash\\", "new\nline", "tab\tcr\r", '} 1\n# TYPE x counter\nx{a="1"} 2',
    "nul\x00bidi\u202eesc\x1b", "(other)", "(none)", "#", "x" * 10_000, "x" * 9_999 + "y",
]


def hostile_store(where: str, classes: int, texts: list[str] = HOSTILE) -> Store:
    """A finished sweep whose records carry hostile classes, sites and check ids (`texts`), and
    `classes` distinct ordinary classes besides, in the store at `where`."""
    store = open_store(where)
    sweep = store.begin_sweep(inventory="hostile", devices=classes + len(texts),
                              profile=load_profile("iso27400-6.2"), intrusive=False)
    for n, text in enumerate(texts):
        check = text.replace("\x00", "")[:80]  # as long as PostgreSQL's column takes
        store.add_record(sweep.number, record(f"h{n}", text, text, (
            result(check, Status.FAIL), result(check, Status.ERROR),
            result("net.open-ports", Status.FAIL, waived=True))))
    for n in range(classes):
        store.add_record(sweep.number, record(f"c{n}", f"class-{n}", None, (
            result("net.open-ports", Status.PASS),)))
    store.set_state(sweep.number, FINISHED)
    return store


def test_hostile_classes_sites_and_checks_stay_well_formed(tmp_path: Path) -> None:
    classes = MAX_VALUES + 50
    hostile_store(str(tmp_path / "hostile.sqlite"), classes).close()
    textfiles = tmp_path / "textfile"
    made = iotprobe("metrics", "--store", str(tmp_path / "hostile.sqlite"), "-o",
                    str(textfiles / "iotprobe.prom"))
    assert made.returncode == 0, made.stderr
    text = (textfiles / "iotprobe.prom").read_text()
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60)
    assert lint.returncode == 0 and not lint.stdout + lint.stderr, lint.stdout + lint.stderr

    assert all(family.name.startswith("iotprobe_")
               for family in text_string_to_metric_families(text))
    found = samples(text)
    devices = classes + len(HOSTILE)
    for name, position in (("iotprobe_sweep_class_devices", 0),
                           ("iotprobe_sweep_site_devices", 0),
                           ("iotprobe_sweep_check_devices", 0)):
        values = {key[position] for key in found[name]}
        assert len(values) <= MAX_VALUES, name
        assert all("\n" not in v and "\r" not in v and "\t" not in v for v in values), name
        assert max(map(len, values)) <= MAX_LABEL + len("…[+10000 chars]"), name
    assert sum(found["iotprobe_sweep_class_devices"].values()) == devices
    assert sum(found["iotprobe_sweep_site_devices"].values()) == devices
    assert found["iotprobe_sweep_devices"] == {("nonconformant",): devices - classes,
                                               ("conformant",): classes}
    distinct_classes = classes + len(HOSTILE) - 1  # the two long ones are one once cut
    assert found["iotprobe_sweep_folded_label_values"][("class",)] == \
        distinct_classes - (MAX_VALUES - 1)
    assert found["iotprobe_sweep_check_devices"][("net.open-ports", "waived")] == len(HOSTILE)
    assert found["iotprobe_sweep_check_devices"][('q"uote', "fail")] == 1

    with start_daemon("node_exporter", [
            "prometheus-node-exporter", "--collector.disable-defaults", "--collector.textfile",
            f"--collector.textfile.directory={textfiles}",
            f"--web.listen-address={NODE_EXPORTER[0]}:{NODE_EXPORTER[1]}"],
            tmp_path, NODE_EXPORTER[0], [(NODE_EXPORTER[1], "tcp")]):
        exported = scrape(NODE_EXPORTER)
    assert "node_textfile_scrape_error 0" in exported
    assert samples(exported) == found


def test_label_values_are_one_bounded_line() -> None:
    assert label(None) == NONE and label("") == NONE
    assert label("plant-a") == "plant-a"
    assert label("a\nb\tc\rd\ud800e\u202e") == "a\\x0ab\\x09c\\x0dd\\ud800e\\u202e"
    assert label("x" * 10_000) == "x" * MAX_LABEL + "…[+9872 chars]"


def test_parse_listen_takes_ip_literals_only() -> None:
    assert parse_listen("127.164.1.1:9464") == ("127.164.1.1", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    for bad in ("localhost:9464", "[localhost]:9464", "9464", ":9464", "127.164.1.1:x",
                "127.164.1.1:+80", "127.164.1.1:٩٤"):
        with pytest.raises(InputError) as refused:
            parse_listen(bad)
        assert refused.value.field == "--metrics-listen"


def test_bounded_keeps_the_largest_values_and_sums_the_rest() -> None:
    counts = {(f"c{n}", "fail"): n + 1 for n in range(MAX_VALUES + 10)}
    counts[("x" * 500, "fail")] = 1
    counts[("x" * 499 + "y", "fail")] = 1
    kept, folded = bounded(counts, (MAX_VALUES, 8))
    assert sum(kept.values()) == sum(counts.values())
    assert len({key[0] for key in kept}) == MAX_VALUES
    assert folded == [MAX_VALUES + 11 - (MAX_VALUES - 1), 0]
    assert kept[(f"c{MAX_VALUES + 9}", "fail")] == MAX_VALUES + 10
    assert ("c0", "fail") not in kept and kept[(OTHER, "fail")] > 0


def test_the_textfile_is_replaced_whole(tmp_path: Path) -> None:
    store = hostile_store(str(tmp_path / "s.sqlite"), 3)
    textfile = tmp_path / "textfile" / "iotprobe.prom"
    textfile.parent.mkdir()
    exporter = Exporter(textfile, None)
    try:
        exporter.after_sweep(store)
        first = textfile.read_text()
        inode = textfile.stat().st_ino
        second = store.begin_sweep(inventory="again", devices=1,
                                   profile=load_profile("iso27400-6.2"), intrusive=False)
        store.add_record(second.number, record("h0", HOSTILE[0], None, (
            result(HOSTILE[0], Status.PASS), result("net.open-ports", Status.FAIL))))
        store.set_state(second.number, FINISHED)
        with textfile.open() as before:
            exporter.after_sweep(store)
            assert before.read() == first, "a reader of the old file saw it change"
    finally:
        exporter.close()
        store.close()
    assert textfile.stat().st_ino != inode
    second = samples(textfile.read_text())
    assert second["iotprobe_sweep_number"] == {(): 2.0}
    assert "iotprobe_sweep_regressions" not in samples(first), "sweep #1 has nothing before it"
    # h0's failing check now passes; its waived failure of net.open-ports is no longer waived
    assert (second["iotprobe_sweep_previous_number"], second["iotprobe_sweep_regressions"],
            second["iotprobe_sweep_fixes"]) == ({(): 1.0}, {(): 1.0}, {(): 1.0})
    assert [p.name for p in textfile.parent.iterdir()] == ["iotprobe.prom"]
    umask = os.umask(0)
    os.umask(umask)
    assert textfile.stat().st_mode & 0o777 == 0o666 & ~umask


def test_bad_metrics_options_exit_2_before_any_packet(tmp_path: Path) -> None:
    inventory = tmp_path / "one.yaml"
    inventory.write_text(yaml.safe_dump({"devices": [{"id": "d", "address": DEVICE}]}))
    store = tmp_path / "s.sqlite"
    base = ("sweep", "-i", str(inventory), "--store", str(store), "--ports", "8080", *FAST,
            "--no-udp", "-q")
    with socket.socket() as device, socket.socket() as busy:
        device.bind((DEVICE, 8080))
        device.listen()
        device.setblocking(False)
        busy.bind(BUSY)
        busy.listen()
        cases = [
            (("--every", "1h", "--metrics-listen", "localhost:9464"), "--metrics-listen",
             "not an IP address"),
            (("--every", "1h", "--metrics-listen", "127.164.3.1"), "--metrics-listen",
             "ADDRESS:PORT"),
            (("--every", "1h", "--metrics-listen", "127.164.3.1:0"), "--metrics-listen",
             "port"),
            (("--every", "1h", "--metrics-listen", "127.164.3.1:65536"), "--metrics-listen",
             "port"),
            (("--every", "1h", "--metrics-listen", "::1:9464"), "--metrics-listen",
             "brackets"),
            (("--metrics-listen", "127.164.3.1:9464"), "--metrics-listen", "--every"),
            (("--metrics-file", str(tmp_path / "metrics.txt")), "--metrics-file", ".prom"),
            (("--every", "1h", "--metrics-listen", f"{BUSY[0]}:{BUSY[1]}"),
             "--metrics-listen", "cannot listen"),
        ]
        for extra, option, reason in cases:
            run = iotprobe(*base, *extra)
            assert run.returncode == 2, (extra, run.stderr)
            assert option in run.stderr and reason in run.stderr, (extra, run.stderr)
        with pytest.raises(BlockingIOError):
            device.accept()
    assert sweep_states(store) == []


def test_metrics_of_a_store_without_that_sweep_is_exit_2(tmp_path: Path) -> None:
    open_store(str(tmp_path / "empty.sqlite")).close()
    nothing = iotprobe("metrics", "--store", str(tmp_path / "empty.sqlite"))
    assert nothing.returncode == 2 and "no sweep" in nothing.stderr
    missing = iotprobe("metrics", "--store", str(tmp_path / "empty.sqlite"), "7")
    assert missing.returncode == 2 and "no sweep #7" in missing.stderr


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server(PG_HOST) as server:
        yield server


WHEN = ("iotprobe_sweep_start_timestamp_seconds", "iotprobe_sweep_end_timestamp_seconds",
        "iotprobe_sweep_duration_seconds", "iotprobe_sweep_devices_scanned_per_second")
"""The metrics of when a sweep ran, which differ between two stores filled one after the
other."""


def test_postgresql_counts_what_sqlite_counts(pg: PostgresServer, tmp_path: Path) -> None:
    texts = [text for text in HOSTILE if "\x00" not in text]
    exported = []
    for where in (pg.url(pg.create_database()), str(tmp_path / "same.sqlite")):
        hostile_store(where, 20, texts).close()
        run = iotprobe("metrics", "--store", where)
        assert run.returncode == 0, run.stderr
        exported.append({name: series for name, series in samples(run.stdout).items()
                         if name not in WHEN})
    assert exported[0] == exported[1]
    assert exported[0]["iotprobe_sweep_class_devices"][("q\"uote", "nonconformant")] == 1


def test_a_postgresql_record_holding_nul_is_a_clear_error(pg: PostgresServer, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    """PostgreSQL's JSON operators refuse a \\u0000 escape, which no record iotprobe writes
    holds (probe.escaping): the count fails whole and says so, it never exports half; between
    sweeps it is logged and the sweeps go on."""
    url = pg.url(pg.create_database())
    store = hostile_store(url, 1, ["nul\x00"])
    try:
        exporter = Exporter(tmp_path / "iotprobe.prom", None)
        exporter.after_sweep(store)
    finally:
        store.close()
    assert "cannot count sweep #1" in caplog.text
    assert not (tmp_path / "iotprobe.prom").exists()
    run = iotprobe("metrics", "--store", url)
    assert run.returncode == 2 and "cannot count sweep #1" in run.stderr, run.stderr
    assert run.stdout == ""
