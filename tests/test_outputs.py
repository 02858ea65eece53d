"""Outputs end to end through the command line (docs/outputs.md): the json and csv exports of a
scan and of a stored sweep, the sweeps listing, the like-for-like diff and its exit code, the
summary at 80 columns, the store named by its path, the OSCAL namespace, shell completion, and
the lean install with its extras.

The devices are real mosquitto brokers on 127.166.1.x: one that refuses anonymous clients but
keeps a default admin/admin account (only an intrusive sweep finds it), one open to anyone.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import re
import select
import sqlite3
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import load_records
from daemons import Daemon, start
from hypothesis import given, settings
from hypothesis import strategies as st
from trestle.oscal.assessment_results import Model

from probe.exports import defused, write_csv, write_json
from probe.record.model import Record
from probe.report.oscal import NS
from probe.report.source import RecordSource

CLOSED = "127.166.1.1"
"""mosquitto refusing anonymous clients, with a default admin/admin account."""
OPEN = "127.166.1.2"
"""mosquitto open to anyone."""
FAST = ("--exclude-ports", "2024", "--ports", "1883", "--no-udp", "--timeout", "3",
        "--budget", "90")
REPO = Path(__file__).resolve().parent.parent


def iotprobe(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          stdin=subprocess.DEVNULL, cwd=cwd)


def mosquitto(tmp: Path, name: str, address: str, settings: list[str]) -> Daemon:
    """mosquitto listening on `address`:1883 only, with `settings` on that listener."""
    lines = ["per_listener_settings true", "persistence false", "log_dest stdout",
             "log_type error", f"listener 1883 {address}", *settings]
    if os.geteuid() == 0:
        lines.insert(0, "user root")
    conf = tmp / f"{name}.conf"
    conf.write_text("\n".join(lines) + "\n")
    return start(f"mosquitto-{name}", ["mosquitto", "-c", str(conf)], tmp, address,
                 [(1883, "tcp")])


@pytest.fixture(scope="module")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    tmp = tmp_path_factory.mktemp("brokers")
    passwd = tmp / "closed.passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "admin", "admin"],
                   check=True, capture_output=True, timeout=30)
    with mosquitto(tmp, "closed", CLOSED, ["allow_anonymous false",
                                           f"password_file {passwd}"]), \
            mosquitto(tmp, "open", OPEN, ["allow_anonymous true"]):
        yield


def inventory(path: Path, devices: dict[str, str]) -> Path:
    path.write_text(yaml.safe_dump({"defaults": {"exclude_ports": [2024]}, "devices": [
        {"id": device_id, "address": address} for device_id, address in devices.items()]}))
    return path


# ------------------------------------------------------------------------- formats and exports


def test_scan_writes_one_json_document_and_a_csv(brokers: None, tmp_path: Path) -> None:
    devices = {"closed-1": CLOSED, "open-1": OPEN, "open-2": OPEN}
    path = inventory(tmp_path / "fleet.yaml", devices)
    out = tmp_path / "out"
    run = iotprobe("scan", "-i", str(path), "--output-dir", str(out), "--format", "json",
                   "--format", "csv", *FAST)
    assert run.returncode == 1, run.stderr
    records = load_records(out)
    assert len(records) == len(devices)

    document = json.loads((out / "records.json").read_text())
    assert document["schema"] == "iotprobe.records/v1"
    assert document["profile"]["id"] == "iso27400"
    assert [r["device"]["id"] for r in document["records"]] == sorted(records)
    assert {r["device"]["id"]: r for r in document["records"]} == records

    rows = list(csv.DictReader(io.StringIO((out / "records.csv").read_text(), newline="")))
    for device_id, record in records.items():
        mine = [row for row in rows if row["device"] == device_id]
        checks = list(dict.fromkeys(r["check"] for r in record["results"]))
        assert [row["check"] for row in mine] == checks
        assert {row["verdict"] for row in mine} == {record["verdict"]}
    anonymous = {row["device"]: row["status"] for row in rows
                 if row["check"] == "mqtt.anonymous-access"}
    assert anonymous == {"closed-1": "pass", "open-1": "fail", "open-2": "fail"}
    summaries = {row["device"]: row["summary"] for row in rows
                 if row["check"] == "mqtt.anonymous-access"}
    assert {device: summary for device, summary in summaries.items()} == {
        device_id: next(r["summary"] for r in record["results"]
                        if r["check"] == "mqtt.anonymous-access")
        for device_id, record in records.items()}
    assert "," in summaries["closed-1"]  # a quoted cell, read back whole

    old_spelling = iotprobe("scan", OPEN, "--outdir", str(tmp_path / "old"), *FAST, "-q")
    assert old_spelling.returncode == 1 and list(load_records(tmp_path / "old")) == [OPEN]


def test_csv_cells_that_could_be_formulas_are_defused(history: History,
                                                      tmp_path: Path) -> None:
    """A store whose record says what no inventory lets through (a store is a file anyone
    with access may have written): each formula-starting cell is prefixed with '."""
    store = tmp_path / "copy.sqlite"
    store.write_bytes(history.store.read_bytes())
    hostile = {"id": "@SUM(1+1)", "class": "-2+3", "site": "+cmd|' /C calc'!A0",
               "summary": '=HYPERLINK("http://x.invalid","open me")'}
    with sqlite3.connect(store) as db:
        (text,) = db.execute("SELECT record FROM records WHERE sweep_id = 1").fetchone()
        record = json.loads(text)
        record["device"].update(id=hostile["id"], **{"class": hostile["class"],
                                                     "site": hostile["site"]})
        record["results"][0]["summary"] = hostile["summary"]
        db.execute("UPDATE records SET record = ? WHERE sweep_id = 1", (json.dumps(record),))
    run = iotprobe("report", "--store", str(store), "1", "--format", "csv", "-o", "-")
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader(io.StringIO(run.stdout, newline="")))
    first = rows[0]
    assert (first["device"], first["class"], first["site"], first["summary"]) == tuple(
        "'" + hostile[key] for key in ("id", "class", "site", "summary"))
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows
                   for cell in row.values())


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@A1", "\tx", "\rx"])
def test_every_formula_start_is_defused(cell: str) -> None:
    assert defused(cell) == "'" + cell
    assert defused("a" + cell) == "a" + cell


@settings(deadline=None, max_examples=80)
@given(st.text(alphabet=st.sampled_from(list("=+-@\t\r\n\",;'ab\x00\u202e")), max_size=12))
def test_any_summary_round_trips_through_the_exports(text: str) -> None:
    """Whatever a result's summary holds, the CSV parses back to it (defused) and the JSON
    document to the record."""
    golden = json.loads((REPO / "tests/golden/records/hostile.record.json").read_text())
    golden["results"][0]["summary"] = text
    record = Record.from_json(golden)
    source = RecordSource(title="t", identity="t", profile=golden["profile"],
                          generated=record.finished_at, records=lambda: iter([record]))
    table, document = io.StringIO(), io.StringIO()
    write_csv(source, table)
    write_json(source, document)
    rows = list(csv.DictReader(io.StringIO(table.getvalue(), newline="")))
    first = next(r for r in rows if r["check"] == golden["results"][0]["check"])
    assert first["summary"] == defused(text)
    assert json.loads(document.getvalue())["records"] == [record.to_json()]


# ------------------------------------------------------ sweeps, the listing and a fair diff


@dataclass
class History:
    store: Path
    inventory: Path


@pytest.fixture(scope="module")
def history(brokers: None, tmp_path_factory: pytest.TempPathFactory) -> History:
    """Four sweeps of one device `broker`: (1) the closed broker, iso27400-6.2; (2) the same
    with --intrusive; (3) the open broker instead, intrusive; (4) the open broker, the whole
    iso27400 profile, not intrusive."""
    tmp = tmp_path_factory.mktemp("history")
    path = inventory(tmp / "fleet.yaml", {"broker": CLOSED})
    runs = [("-p", "iso27400-6.2"), ("-p", "iso27400-6.2", "--intrusive")]
    for args in runs:
        run = iotprobe("sweep", "-i", str(path), *FAST, *args, "-q")
        assert run.returncode == 1, run.stderr
    inventory(path, {"broker": OPEN})
    for args in [("-p", "iso27400-6.2", "--intrusive"), ("-p", "iso27400")]:
        run = iotprobe("sweep", "-i", str(path), *FAST, *args, "-q")
        assert run.returncode == 1, run.stderr
    return History(tmp / "fleet.iotprobe.sqlite", path)


def pairs(changes: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(c["device"], c["check"]) for c in changes}


def test_a_sweep_with_intrusive_checks_added_is_no_regression(history: History) -> None:
    shown = iotprobe("diff", "-i", str(history.inventory), "1", "2")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "mode: non-intrusive -> intrusive" in shown.stdout
    assert shown.stdout.index("mode:") < shown.stdout.index("regressions: newly failing")
    assert "regressions: newly failing: none" in shown.stdout

    changes = json.loads(iotprobe("diff", "-i", str(history.inventory), "1", "2",
                                  "--json").stdout)
    assert changes["settings_changed"] == [
        {"setting": "mode", "before": "non-intrusive", "after": "intrusive"}]
    assert changes["regressions"] == []
    assert ("broker", "mqtt.default-credentials") in pairs(changes["newly_assessed"])
    assert {c["before"] for c in changes["newly_assessed"]} == {"skipped"}


def test_a_check_assessed_in_both_that_newly_fails_is_a_regression(history: History) -> None:
    run = iotprobe("diff", "--store", str(history.store), "2", "3", "--json")
    assert run.returncode == 1, run.stderr
    changes = json.loads(run.stdout)
    assert changes["settings_changed"] == []
    assert ("broker", "mqtt.anonymous-access") in pairs(changes["regressions"])
    assert ("broker", "mqtt.anonymous-access") not in pairs(changes["newly_assessed"])
    assert all(c["before"] in ("skipped", None) for c in changes["newly_assessed"])


def test_settings_changed_and_checks_no_longer_assessed_never_count_as_fixed(
        history: History) -> None:
    run = iotprobe("diff", "--store", str(history.store), "3", "4", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    changes = json.loads(run.stdout)
    settings = {c["setting"]: c for c in changes["settings_changed"]}
    assert set(settings) == {"mode", "profile", "checks"}
    assert settings["profile"]["before"].startswith("iso27400-6.2 ")
    assert "without monitor." in settings["checks"]["before"]
    gone = pairs(changes["no_longer_assessed"])
    assert ("broker", "mqtt.default-credentials") in gone
    assert not gone & pairs(changes["newly_passing"])
    assert all(c["before"] == "fail" and c["after"] in ("skipped", None)
               for c in changes["no_longer_assessed"])
    assert all(c["check"].startswith("monitor.") for c in changes["newly_assessed"])
    assert changes["regressions"] == []


def test_sweeps_lists_number_time_mode_profile_and_counts(history: History) -> None:
    table = iotprobe("sweeps", "-i", str(history.inventory))
    assert table.returncode == 0, table.stderr
    assert f"sweeps in {history.store}" in table.stdout
    modes = re.findall(r"^ *(\d) [0-9-]{10} [0-9:]{5} finished ([a-z-]+) +(iso27400[-.0-9]*) ",
                       table.stdout, re.MULTILINE)
    assert [(n, mode, profile) for n, mode, profile in modes] == [
        ("1", "non-intrusive", "iso27400-6.2"), ("2", "intrusive", "iso27400-6.2"),
        ("3", "intrusive", "iso27400-6.2"), ("4", "non-intrusive", "iso27400")]

    narrow = on_a_terminal(["sweeps", "--store", str(history.store)], 80, history.store.parent)
    assert max(len(line) for line in narrow.splitlines()) <= 80, narrow
    assert narrow.count("non-intrusive") == 2 and narrow.count("1 nonconformant") == 4, narrow

    listed = json.loads(iotprobe("sweeps", "--store", str(history.store), "--json").stdout)
    assert [s["number"] for s in listed] == [1, 2, 3, 4]
    assert [s["mode"] for s in listed] == ["non-intrusive", "intrusive", "intrusive",
                                          "non-intrusive"]
    assert all(s["verdicts"] == {"conformant": 0, "nonconformant": 1, "inconclusive": 0}
               for s in listed)
    assert all(s["profile"]["digest"].startswith("sha256:") for s in listed)


def test_report_exports_json_jsonl_and_csv_from_the_store(history: History,
                                                          tmp_path: Path) -> None:
    stored = iotprobe("report", "--store", str(history.store), "3", "--format", "jsonl",
                      "-o", "-")
    assert stored.returncode == 0, stored.stderr
    (line,) = stored.stdout.splitlines()
    record = json.loads(line)
    assert record["device"] == {"id": "broker", "address": OPEN}

    made = iotprobe("report", "--store", str(history.store), "3", "--format", "json",
                    "--output", str(tmp_path / "r.json"))
    assert made.returncode == 0, made.stderr
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["title"] == "sweep #3" and document["records"] == [record]

    table = iotprobe("report", "-i", str(history.inventory), "3", "--format", "csv", "-o", "-")
    rows = list(csv.DictReader(io.StringIO(table.stdout, newline="")))
    assert {row["check"]: row["status"] for row in rows}["mqtt.default-credentials"] == "fail"
    assert len(rows) == len({r["check"] for r in record["results"]})


def test_oscal_properties_carry_the_stable_namespace(history: History) -> None:
    run = iotprobe("report", "--store", str(history.store), "--format", "oscal", "-o", "-")
    assert run.returncode == 0, run.stderr
    assert NS == "urn:iotprobe:oscal" and "iotprobe.invalid" not in run.stdout
    spaces = set(re.findall(r'"ns": "([^"]*)"', run.stdout))
    assert spaces == {NS}
    Model.model_validate(json.loads(run.stdout))  # NIST's model takes the URN as a URI


def test_the_summary_names_the_store_by_its_path(brokers: None, tmp_path: Path) -> None:
    path = inventory(tmp_path / "fleet.yaml", {"b": OPEN})
    run = iotprobe("sweep", "-i", str(path), *FAST)
    assert run.returncode == 1, run.stderr
    store = tmp_path / "fleet.iotprobe.sqlite"
    assert f"into {store}" in run.stderr
    assert f"records in sweep #1 of {store}" in " ".join(run.stdout.split())
    assert "sqlite+pysqlite" not in run.stdout + run.stderr


def test_a_postgresql_store_is_named_without_driver_or_password() -> None:
    secret = "pg-S3cret-never-shown"
    run = iotprobe("sweeps", "--store",
                   f"postgresql://probe:{secret}@127.166.1.9:9/fleet?sslpassword={secret}")
    assert run.returncode == 2
    assert "postgresql://probe:***@127.166.1.9:9/fleet" in run.stderr
    assert secret not in run.stderr and "+psycopg" not in run.stderr


# ---------------------------------------------------------------------- the summary at 80


def on_a_terminal(args: list[str], columns: int, cwd: Path) -> str:
    """What `iotprobe ARGS` prints on stdout when stdout is a terminal `columns` wide (a pty),
    control sequences removed."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "xterm"}
    process = subprocess.Popen([sys.executable, "-m", "probe", *args], stdout=slave,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env,
                               cwd=cwd)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
        process.wait(30)
    text = b"".join(chunks).decode("utf-8", errors="replace").replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07", "", text)


def test_the_summary_fits_80_columns_with_hostile_ids(brokers: None, tmp_path: Path) -> None:
    long_id = "cam:" + "x" * 60 + "-" + "y" * 63
    path = inventory(tmp_path / "fleet.yaml", {long_id: OPEN})
    out = on_a_terminal(["scan", CLOSED, "-i", str(path), "-o", str(tmp_path / "out"), *FAST],
                        80, tmp_path)
    lines = out.splitlines()
    assert any("iotprobe: 2 device(s)" in line for line in lines), out
    assert max(len(line) for line in lines) <= 80, out
    assert "…" not in out and out.count("nonconformant") == 3, out  # 2 rows and the totals
    assert out.count(CLOSED) == 1 and out.count(OPEN) == 1, out
    assert "".join(re.findall(r"^ ?([camxy:-]+)\s", out, re.MULTILINE)) == long_id
    records = load_records(tmp_path / "out")
    for record in records.values():
        failing = [r for r in record["results"] if r["status"] == "fail" and "waived" not in r]
        rank = {"critical": 4, "high": 3, "medium": 2, "low": 1}
        worst = max(failing, key=lambda r: rank[r["severity"]])
        assert re.search(rf"\b{re.escape(worst['check'])}\s*$", out, re.MULTILINE), out


# ------------------------------------------------------------------------- shell completion


def on_path(tmp_path: Path) -> dict[str, str]:
    """The environment of a shell that finds this checkout's `iotprobe` on its PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "iotprobe"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m probe "$@"\n')
    wrapper.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def completions(tmp_path: Path, words: list[str]) -> list[str]:
    """What bash completes for `words` (the last one being typed), with the script of
    `iotprobe completion bash` loaded into a real bash."""
    script = ('eval "$(iotprobe completion bash)"; COMP_WORDS=(' +
              " ".join(f"'{w}'" for w in words) + f"); COMP_CWORD={len(words) - 1}; "
              '_iotprobe_completion iotprobe; printf "%s\\n" "${COMPREPLY[@]}"')
    run = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True,
                         text=True, timeout=120, env=on_path(tmp_path), stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def zsh_completions(tmp_path: Path, words: list[str]) -> list[str]:
    """What the function of `iotprobe completion zsh` offers for `words` in a real zsh, with
    zsh's `compadd` and `_describe` (which only run inside the line editor) replaced by ones
    that print what they were given."""
    script = ('compdef() { :; }; eval "$(iotprobe completion zsh)"; '
              '_describe() { print -rl -- "${(@P)3}"; }; '
              'compadd() { print -rl -- "${(@P)${@[-1]}}"; }; '
              "words=(" + " ".join(f"'{w}'" for w in words) + f"); CURRENT={len(words)}; "
              "_iotprobe_completion")
    run = subprocess.run(["zsh", "-f", "-c", script], capture_output=True, text=True,
                         timeout=120, env=on_path(tmp_path), stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


def test_bash_completes_profile_ids_and_check_ids(tmp_path: Path) -> None:
    assert completions(tmp_path, ["iotprobe", "scan", "-p", "iso"]) == [
        "iso27400", "iso27400-6.1", "iso27400-6.2", "iso27400-6.4", "iso27400-6.5"]
    assert completions(tmp_path, ["iotprobe", "profiles", "show", "acc"]) == ["acceptance"]
    assert completions(tmp_path, ["iotprobe", "profiles", "checks", "mqtt.d"]) == [
        "mqtt.default-credentials"]
    assert "sweeps" in completions(tmp_path, ["iotprobe", "sw"])


def test_zsh_completes_check_ids_with_their_titles_and_profile_ids(tmp_path: Path) -> None:
    assert zsh_completions(tmp_path, ["iotprobe", "profiles", "checks", "mqtt.d"]) == [
        "mqtt.default-credentials:MQTT accepts no default credentials"]
    assert zsh_completions(tmp_path, ["iotprobe", "sweep", "--profile", "iso27400-"]) == [
        "iso27400-6.1", "iso27400-6.2", "iso27400-6.4", "iso27400-6.5"]
    assert iotprobe("completion", "tcsh").returncode == 2


def test_profiles_checks_takes_ids_and_globs() -> None:
    run = iotprobe("profiles", "checks", "mqtt.*", "net.open-ports", "--json")
    assert run.returncode == 0, run.stderr
    ids = [c["id"] for c in json.loads(run.stdout)]
    assert ids[0] == "mqtt.anonymous-access" and "net.open-ports" in ids
    assert all(i.startswith("mqtt.") or i == "net.open-ports" for i in ids)
    unknown = iotprobe("profiles", "checks", "nope.*")
    assert unknown.returncode == 2 and "names no check" in unknown.stderr


# ---------------------------------------------------------------------------- exit codes


def test_every_command_states_its_exit_codes_in_help() -> None:
    commands = [["scan"], ["sweep"], ["sweeps"], ["diff"], ["report"], ["worker"],
                ["profiles"], ["profiles", "list"], ["profiles", "show"],
                ["profiles", "checks"], ["completion"], ["lab"], ["lab", "up"],
                ["lab", "down"], ["lab", "status"], ["lab", "personas"], ["lab", "selftest"],
                []]
    for command in commands:
        run = iotprobe(*command, "--help")
        assert run.returncode == 0, run.stderr
        assert "Exit codes" in run.stdout, command


# ------------------------------------------------------------------------ the lean install


def test_the_base_install_scans_and_sweeps_and_names_missing_extras(tmp_path: Path) -> None:
    """Build the wheel, install it without extras into a fresh venv (packages from the
    registry), scan and sweep an emulated device of the lab it ships, and ask for what needs
    an extra."""
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                            str(wheels), str(REPO)], capture_output=True, text=True,
                           timeout=600, stdin=subprocess.DEVNULL)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("iotprobe-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)],
                               capture_output=True, text=True, timeout=900,
                               stdin=subprocess.DEVNULL)
    assert installed.returncode == 0, installed.stderr
    listed = subprocess.run([str(venv / "bin" / "pip"), "list", "--format", "json"],
                            capture_output=True, text=True, timeout=120, check=True)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "iotprobe" in names and not names & {"celery", "redis", "kombu", "psycopg"}

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}

    def lean(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(venv / "bin" / "iotprobe"), *args], capture_output=True,
                              text=True, timeout=300, env=env, cwd=tmp_path,
                              stdin=subprocess.DEVNULL)

    state = str(tmp_path / "lab")
    fleet = tmp_path / "lean.yaml"
    up = lean("lab", "up", "--base", "127.166.3.1", "--personas", "clean-sensor,telnet-camera",
              "--inventory-out", str(fleet), "--state-dir", state)
    assert up.returncode == 0, up.stderr
    try:
        scan = lean("scan", "-i", str(fleet), "-o", "out", "--exclude-ports", "2024",
                    "--timeout", "3", "--budget", "90", "--format", "json", "-q")
        assert scan.returncode == 1, scan.stderr
        document = json.loads((tmp_path / "out" / "records.json").read_text())
        assert sorted(r["device"]["id"] for r in document["records"]) == [
            "clean-sensor-1", "telnet-camera-1"]
        sweep = lean("sweep", "-i", str(fleet), "--exclude-ports", "2024", "--timeout", "3",
                     "--budget", "90", "-q")
        assert sweep.returncode == 1, sweep.stderr
        assert "non-intrusive" in lean("sweeps", "-i", str(fleet)).stdout
    finally:
        down = lean("lab", "down", "--state-dir", state)
        assert down.returncode == 0, down.stderr

    broker, store = "redis://127.166.3.99:6379/0", "postgresql://probe@127.166.3.99:9/fleet"
    for args, extra in ((("worker", "--broker", broker, "--store", store), "distributed"),
                        (("sweep", "-i", str(fleet), "--distributed", "--broker", broker,
                          "--store", store), "distributed"),
                        (("sweeps", "--store", store), "postgres")):
        refused = lean(*args)
        assert refused.returncode == 2, refused.stderr
        (line,) = refused.stderr.splitlines()
        assert f"pip install 'iotprobe[{extra}]'" in line and "Traceback" not in line
