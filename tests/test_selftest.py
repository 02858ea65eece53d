"""`iotprobe lab selftest [--real]` as CI runs it (subprocesses, a private state directory, a
base of their own: 127.71.0.x emulated, 127.72.0.x real), and the declarations it compares:
every device's expectations, the comparison rules, the coverage of the check catalogue."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from probe.checks.catalogue import catalogue
from probe.lab import PERSONAS
from probe.lab.cli import lab_group
from probe.lab.real import REAL_DEVICES
from probe.lab.selftest import (
    Declared,
    compare,
    coverage,
    every_declared,
    implied_verdict,
    markdown_table,
    render_coverage,
    render_rows,
)
from probe.model import Device, Finding, Result, Severity, Status, Verdict
from probe.record.model import ProbeInfo, ProfileRef, Record, record_of
from probe.record.schema import validate_record

EMULATED_BASE = "127.71.0.1"
REAL_BASE = "127.72.0.1"


@dataclasses.dataclass
class Run:
    result: subprocess.CompletedProcess[str]
    state: Path

    def records(self, scan: str) -> dict[str, dict[str, Any]]:
        out = {}
        for path in sorted((self.state / "selftest" / scan).glob("*.record.json")):
            record = json.loads(path.read_text())
            validate_record(record)
            out[record["device"]["id"]] = record
        return out


def selftest(tmp: Path, *args: str) -> Run:
    state = tmp / "state"
    result = subprocess.run([sys.executable, "-m", "probe", "lab", "selftest", *args,
                             "--timeout", "2"], capture_output=True, text=True, timeout=900,
                            stdin=subprocess.DEVNULL,
                            env={**os.environ, "IOTPROBE_STATE_DIR": str(state)})
    return Run(result, state)


@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    yield selftest(tmp_path_factory.mktemp("selftest-emulated"), "--base", EMULATED_BASE)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    yield selftest(tmp_path_factory.mktemp("selftest-real"), "--real", "--base", REAL_BASE)


def check_run(run: Run, devices: int) -> None:
    out = run.result.stdout
    problems = [line for line in out.splitlines()
                if line.startswith(("DISAGREES", "NO RECORD", "checks no device"))]
    assert run.result.returncode == 0, "\n".join(problems) + run.result.stderr[-3000:]
    assert f"over {devices} devices: 0 disagreement(s)" in out
    assert "DISAGREES" not in out and "NO RECORD" not in out
    assert "every one of the" in out and "passes on a device and fails on another" in out
    assert "lab stopped" in out
    assert not (run.state / "lab.json").exists()
    default, intrusive = run.records("default"), run.records("intrusive")
    assert len(default) == len(intrusive) == devices
    assert all(not r["probe"]["intrusive"] for r in default.values())
    assert all(r["probe"]["intrusive"] for r in intrusive.values())
    assert {r["profile"]["id"] for r in default.values()} == {"iso27400"}


def test_the_emulated_lab_reports_what_every_persona_declares(emulated: Run) -> None:
    check_run(emulated, len(PERSONAS))
    assert "the emulated lab" in emulated.result.stdout


def test_the_real_lab_reports_what_every_real_device_declares(real: Run) -> None:
    check_run(real, len(REAL_DEVICES))
    out = real.result.stdout
    assert "the real lab" in out
    for device in REAL_DEVICES:
        assert f"\n{device.name} " in out


def test_a_wrong_declaration_is_a_disagreement(real: Run) -> None:
    """The rows the real selftest compared, with one device declaring the opposite of what
    its records say."""
    default, intrusive = real.records("default"), real.records("intrusive")
    device = next(d for d in every_declared() if d.name == "web-strong")
    wrong = dataclasses.replace(device,
                                default={**device.default, "net.open-ports": Status.FAIL})
    records = (Record.from_json(default["web-strong"]), Record.from_json(intrusive["web-strong"]))
    right = {r.check for r in compare("web-strong", device, records) if not r.agrees}
    rows = compare("web-strong", wrong, records)
    bad = {r.check: (r.expected, r.got) for r in rows if not r.agrees and r.check not in right}
    assert bad == {
        "net.open-ports": (("fail", "pass"), ("pass", "pass")),
        "verdict": (("nonconformant", "conformant"), ("conformant", "conformant"))}
    assert sum("<-- DISAGREES" in line for line in render_rows(rows)) == len(right) + 2


def test_undeclared_checks_and_checks_outside_the_profile_are_not_compared() -> None:
    moment = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    record = record_of(
        device=Device("d-1", "127.0.0.1"), address="127.0.0.1",
        profile=ProfileRef("p", "1", "sha256:" + "0" * 64), probe=ProbeInfo("0", False),
        started_at=moment, finished_at=moment, services=(),
        results=[Result(check, "c", Severity.HIGH, Finding(status, "s"), "-", {}, 0)
                 for check, status in (("net.open-ports", Status.FAIL),
                                       ("tls.protocol-versions", Status.PASS),
                                       ("tls.protocol-versions", Status.ERROR),
                                       ("mqtt.default-credentials", Status.SKIPPED))])
    assert record.statuses() == {"net.open-ports": "fail", "tls.protocol-versions": "error",
                                 "mqtt.default-credentials": "skipped"}
    declared = Declared("d", "real", "sensor", "-", "-",
                        {"net.open-ports": Status.FAIL, "http.hsts": Status.PASS},
                        {"net.open-ports": Status.FAIL}, Verdict.NONCONFORMANT)
    rows = compare("d-1", declared, (record, None))
    assert [(r.check, r.expected, r.got, r.agrees) for r in rows] == [
        ("net.open-ports", ("fail", None), ("fail", None), True)]
    assert implied_verdict([Status.PASS, Status.ERROR, Status.SKIPPED]) is Verdict.INCONCLUSIVE
    assert implied_verdict([Status.PASS, Status.NOT_APPLICABLE]) is Verdict.CONFORMANT


def test_both_labs_together_pass_and_fail_every_check_of_the_catalogue() -> None:
    checks = catalogue()
    declared = every_declared(checks)
    cover = coverage(declared, checks)
    assert cover.gaps() == ([], [])
    assert set(cover.passing) == set(checks)
    lines = render_coverage(cover)
    assert lines[-1].startswith(f"every one of the {len(checks)} checks")
    lacking = coverage([d for d in declared if d.lab == "emulated"], checks)
    assert lacking.failing["fleet.unique-keys"] == ()
    assert any(line.startswith("checks no device fails: ") and "fleet.unique-keys" in line
               for line in render_coverage(lacking))


def test_the_personas_command_lists_the_real_devices_and_a_markdown_table() -> None:
    real = CliRunner().invoke(lab_group(), ["personas", "--real"])
    assert real.exit_code == 0, real.output
    for device in REAL_DEVICES:
        assert f"{device.name} ({device.device_class}, {device.daemon} " in real.output
    table = CliRunner().invoke(lab_group(), ["personas", "--markdown"])
    assert table.exit_code == 0
    assert table.output == markdown_table()
    rows = table.output.splitlines()
    assert len(rows) == 2 + len(PERSONAS) + len(REAL_DEVICES)
    assert all(row.count(" | ") == 7 for row in rows[2:])
    web_basic = next(row for row in rows if row.startswith("| `web-basic` | real |"))
    assert "with --intrusive: `http.default-credentials`" in web_basic

