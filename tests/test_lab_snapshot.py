"""scripts/lab_snapshot.py on small synthetic record directories (files only, no network):
snapshot keys records so order does not matter, noise refuses statuses and verdicts, diff finds
a changed status, an allow list covers only what it names."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from probe.record.schema import validate_record

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "lab_snapshot.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lab_snapshot", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


snap = _load()

Record = dict[str, Any]


def result(check: str, target: str, status: str, **evidence: Any) -> dict[str, Any]:
    return {"check": check, "control": "27400-6.2", "target": target, "status": status,
            "severity": "high", "summary": f"{check} on {target}: {status}",
            "evidence": evidence, "remediation": "Fix it.",
            "references": {"etsi-en-303-645": ["5.5-1"]}, "duration_ms": 7}


def broker(device_id: str = "broker-1") -> Record:
    """A schema-valid record: two services, three results, one device-level."""
    return {
        "schema": "iotprobe.record/v1",
        "device": {"id": device_id, "address": "127.141.200.1", "class": "broker"},
        "profile": {"id": "iso27400", "version": "1", "digest": "sha256:" + "ab" * 32},
        "probe": {"version": "0.1.0", "intrusive": False},
        "started_at": "2026-12-06T10:00:00Z", "finished_at": "2026-12-06T10:00:05Z",
        "verdict": "nonconformant",
        "services": [{"transport": "tcp", "port": 1883, "protocol": "mqtt", "tls": False},
                     {"transport": "tcp", "port": 8883, "protocol": "mqtt", "tls": True}],
        "results": [
            result("net.open-ports", "device", "pass", open_tcp=[1883, 8883]),
            result("mqtt.cleartext-listener", "tcp/1883", "fail", port=1883),
            result("mqtt.topic-authorization", "tcp/1883", "pass",
                   canary={"topic": "iotprobe/canary/0011", "sent": 1}),
        ],
    }


def write(directory: Path, *records: Record) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for record in records:
        validate_record(record)
        (directory / f"{record['device']['id']}.record.json").write_text(json.dumps(record))
    return directory


def selftest_dir(root: Path, change: Callable[[Record], None] = lambda r: None) -> Path:
    """STATE with selftest/default and selftest/intrusive as `iotprobe lab selftest` leaves
    them; `change` edits the broker's record of both scans."""
    for scan, intrusive in (("default", False), ("intrusive", True)):
        record = broker()
        record["probe"]["intrusive"] = intrusive
        change(record)
        write(root / "selftest" / scan, record, broker("sensor-1"))
    (root / "selftest" / "inventory.yaml").write_text("devices: []\n")
    return root


def snapshot_file(directory: Path, out: Path) -> Path:
    assert snap.main(["snapshot", str(directory), "-o", str(out)]) == 0
    return out


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    """The exit code, stdout lines and stderr of one command (earlier output dropped)."""
    capsys.readouterr()
    code = snap.main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def no_noise(tmp_path: Path) -> Path:
    path = tmp_path / "empty-noise.json"
    path.write_text('{"noise": []}')
    return path


def test_snapshot_keys_the_selftest_layout_and_drops_run_fields(tmp_path: Path) -> None:
    state = selftest_dir(tmp_path / "state")
    data = json.loads(snapshot_file(state / "selftest", tmp_path / "a.json").read_text())
    assert sorted(data) == ["default", "intrusive"]
    device = data["intrusive"]["broker-1"]
    assert sorted(device["results"]) == ["mqtt.cleartext-listener|tcp/1883",
                                         "mqtt.topic-authorization|tcp/1883",
                                         "net.open-ports|device"]
    assert device["results"]["mqtt.cleartext-listener|tcp/1883"] == {
        "control": "27400-6.2", "evidence": {"port": 1883}, "remediation": "Fix it.",
        "references": {"etsi-en-303-645": ["5.5-1"]}, "severity": "high", "status": "fail",
        "summary": "mqtt.cleartext-listener on tcp/1883: fail"}
    assert device["probe"] == {"intrusive": True}
    assert "started_at" not in device and "finished_at" not in device
    assert device["verdict"] == "nonconformant"
    # the state directory itself names the same records
    again = snapshot_file(state, tmp_path / "b.json")
    assert json.loads(again.read_text()) == data


def test_order_times_and_probe_version_make_no_difference(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def reshuffled(record: Record) -> None:
        record["results"].reverse()
        record["services"].reverse()
        record["started_at"] = record["finished_at"] = "2027-01-01T00:00:00Z"
        record["probe"]["version"] = "9.9.9"
        for item in record["results"]:
            item["duration_ms"] = 4242

    before = snapshot_file(selftest_dir(tmp_path / "a"), tmp_path / "a.json")
    after = snapshot_file(selftest_dir(tmp_path / "b", reshuffled), tmp_path / "b.json")
    code, lines, err = run(capsys, "diff", str(before), str(after),
                           "--noise", str(no_noise(tmp_path)))
    assert (code, lines) == (0, [])
    assert "0 difference(s)" in err


def test_a_plain_record_directory_and_a_repeated_check_target(tmp_path: Path) -> None:
    record = broker()
    record["results"].append(result("mqtt.cleartext-listener", "tcp/1883", "error"))
    data = json.loads(snapshot_file(write(tmp_path / "out", record), tmp_path / "s.json")
                      .read_text())
    results = data["records"]["broker-1"]["results"]
    assert results["mqtt.cleartext-listener|tcp/1883"]["status"] == "fail"
    assert results["mqtt.cleartext-listener|tcp/1883#2"]["status"] == "error"


def test_a_directory_without_records_is_an_input_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "snapshot", str(tmp_path / "empty"), "-o", str(tmp_path / "x"))
    assert code == 2 and "no *.record.json" in err
    assert not (tmp_path / "x").exists()


def test_noise_lists_the_paths_that_differ_and_diff_ignores_only_those(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def canary(topic: str) -> Callable[[Record], None]:
        def change(record: Record) -> None:
            record["results"][2]["evidence"]["canary"]["topic"] = topic
        return change

    base1 = snapshot_file(selftest_dir(tmp_path / "1", canary("t/aa")), tmp_path / "1.json")
    base2 = snapshot_file(selftest_dir(tmp_path / "2", canary("t/bb")), tmp_path / "2.json")
    noise = tmp_path / "noise.json"
    code, lines, _ = run(capsys, "noise", str(base1), str(base2), "-o", str(noise))
    assert code == 0, lines
    assert json.loads(noise.read_text())["noise"] == [
        {"scan": scan, "device": "broker-1", "key": "mqtt.topic-authorization|tcp/1883",
         "path": "evidence.canary.topic"} for scan in ("default", "intrusive")]

    def canary_and_count(record: Record) -> None:
        canary("t/cc")(record)
        record["results"][2]["evidence"]["canary"]["sent"] = 2

    after = snapshot_file(selftest_dir(tmp_path / "3", canary_and_count), tmp_path / "3.json")
    code, lines, _ = run(capsys, "diff", str(base1), str(after), "--noise", str(noise))
    assert code == 1
    assert lines == [f"broker-1 {scan} mqtt.topic-authorization|tcp/1883 "
                     "evidence.canary.sent: 1 -> 2" for scan in ("default", "intrusive")]


@pytest.mark.parametrize(("change", "flaky"), [
    (lambda r: r["results"][1].update(status="error"),
     'broker-1 default mqtt.cleartext-listener|tcp/1883 status: "fail" -> "error"'),
    (lambda r: r.update(verdict="inconclusive"),
     'broker-1 default - verdict: "nonconformant" -> "inconclusive"'),
    (lambda r: r["results"].pop(),
     'broker-1 default mqtt.topic-authorization|tcp/1883 *: "pass" -> <absent>'),
], ids=["status", "verdict", "missing-result"])
def test_noise_refuses_a_status_or_verdict_that_differs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], change: Callable[[Record], None],
        flaky: str) -> None:
    base1 = snapshot_file(selftest_dir(tmp_path / "1"), tmp_path / "1.json")
    base2 = snapshot_file(selftest_dir(tmp_path / "2", change), tmp_path / "2.json")
    noise = tmp_path / "noise.json"
    code, lines, err = run(capsys, "noise", str(base1), str(base2), "-o", str(noise))
    assert code == 1
    assert f"FLAKY, not noise: {flaky}" in lines
    assert "fix them first" in err
    assert not noise.exists()


def test_diff_finds_a_changed_status_even_where_noise_says_otherwise(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def passes(record: Record) -> None:
        record["results"][1]["status"] = "pass"

    before = snapshot_file(selftest_dir(tmp_path / "1"), tmp_path / "1.json")
    after = snapshot_file(selftest_dir(tmp_path / "2", passes), tmp_path / "2.json")
    noise = tmp_path / "noise.json"
    noise.write_text(json.dumps({"noise": [
        {"scan": "default", "device": "broker-1", "key": "mqtt.cleartext-listener|tcp/1883",
         "path": "status"}]}))
    code, lines, err = run(capsys, "diff", str(before), str(after), "--noise", str(noise))
    assert code == 1
    assert lines == [f'broker-1 {scan} mqtt.cleartext-listener|tcp/1883 status: "fail" -> '
                     '"pass"' for scan in ("default", "intrusive")]
    assert "2 difference(s)" in err


def test_diff_reports_a_device_that_disappeared(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot_file(write(tmp_path / "1", broker(), broker("sensor-1")),
                           tmp_path / "1.json")
    after = snapshot_file(write(tmp_path / "2", broker()), tmp_path / "2.json")
    code, lines, _ = run(capsys, "diff", str(before), str(after),
                         "--noise", str(no_noise(tmp_path)))
    assert code == 1
    assert 'sensor-1 records - *: "nonconformant" -> <absent>' in lines
    assert 'sensor-1 records net.open-ports|device *: "pass" -> <absent>' in lines


ALLOW_YAML = """\
- check: mqtt.cleartext-*
  path: status
  reason: the listener is judged by its own TLS now
- device: nobody-*
  path: "*"
  reason: matches nothing, reported as unused
"""


def test_an_allow_list_covers_only_what_it_names(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def changed(record: Record) -> None:
        record["results"][1]["status"] = "pass"
        record["results"][0]["summary"] = "reworded"

    before = snapshot_file(selftest_dir(tmp_path / "1"), tmp_path / "1.json")
    after = snapshot_file(selftest_dir(tmp_path / "2", changed), tmp_path / "2.json")
    allow = tmp_path / "allow.yaml"
    allow.write_text(ALLOW_YAML)
    code, lines, err = run(capsys, "diff", str(before), str(after),
                           "--noise", str(no_noise(tmp_path)), "--allow", str(allow))
    assert code == 1
    assert lines == [f'broker-1 {scan} net.open-ports|device summary: "net.open-ports on '
                     f'device: pass" -> "reworded"' for scan in ("default", "intrusive")]
    assert "unused allow entry: " in err and "entry 2" in err and "entry 1" not in err

    as_json = tmp_path / "allow.json"
    as_json.write_text(json.dumps([
        {"check": "mqtt.cleartext-listener", "target": "tcp/1883", "path": "status",
         "reason": "intended"},
        {"scan": "*", "path": "summ?ry", "reason": "reworded on purpose"}]))
    code, lines, _ = run(capsys, "diff", str(before), str(after),
                         "--noise", str(no_noise(tmp_path)), "--allow", str(as_json))
    assert (code, lines) == (0, [])


@pytest.mark.parametrize("text", [
    "- path: status\n",
    "- path: status\n  reason: '  '\n",
    "- path: status\n  reason: x\n  colour: red\n",
    "path: status\nreason: x\n",
], ids=["no-reason", "blank-reason", "unknown-field", "not-a-list"])
def test_a_bad_allow_list_is_an_input_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    before = snapshot_file(selftest_dir(tmp_path / "1"), tmp_path / "1.json")
    allow = tmp_path / "allow.yaml"
    allow.write_text(text)
    code, _, err = run(capsys, "diff", str(before), str(before),
                       "--noise", str(no_noise(tmp_path)), "--allow", str(allow))
    assert code == 2 and "allow" in err


def test_a_glob_treats_brackets_and_dots_literally() -> None:
    pattern = snap.glob("evidence.attempts[*].source")
    assert pattern.fullmatch("evidence.attempts[12].source")
    assert not pattern.fullmatch("evidence.attemptsX1].source")
    assert not snap.glob("status").fullmatch("evidence.status")


def test_device_text_is_escaped_and_bounded(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def hostile(record: Record) -> None:
        record["results"][0]["summary"] = "\x1b[2J\nverdict: conformant" + "x" * 500
        record["results"][0]["evidence"] = {"odd.key\n": 1}

    before = snapshot_file(selftest_dir(tmp_path / "1"), tmp_path / "1.json")
    after = snapshot_file(selftest_dir(tmp_path / "2", hostile), tmp_path / "2.json")
    code, lines, _ = run(capsys, "diff", str(before), str(after),
                         "--noise", str(no_noise(tmp_path)))
    assert code == 1
    assert all(line.isprintable() and len(line) < 400 for line in lines)
    assert any('evidence["odd.key\\n"]: <absent> -> 1' in line for line in lines)
    assert any(line.endswith("...") for line in lines)


def test_the_script_runs_without_probe_on_the_path(tmp_path: Path) -> None:
    """Standalone: run from another directory with only the standard library and ruamel."""
    record = copy.deepcopy(broker())
    directory = write(tmp_path / "records", record)
    done = subprocess.run([sys.executable, "-I", str(SCRIPT), "snapshot", str(directory),
                           "-o", str(tmp_path / "s.json")], cwd=tmp_path, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "broker-1" in json.loads((tmp_path / "s.json").read_text())["records"]
    source = SCRIPT.read_text()
    assert "from probe" not in source and "import probe" not in source


def test_a_value_that_changes_type_is_a_difference() -> None:
    """`10` and `10.0`, `1` and `true` read differently in evidence: not equal here."""
    assert list(snap.changes({"ratio": 10}, {"ratio": 10.0})) == [("ratio", 10, 10.0)]
    assert list(snap.changes([True], [1])) == [("[0]", True, 1)]


def test_a_noisy_field_of_one_list_item_is_noisy_in_every_item(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def attempts(waits: list[float], codes: list[int]) -> Callable[[Record], None]:
        def change(record: Record) -> None:
            record["results"][1]["evidence"]["attempts"] = [
                {"wait_ms": w, "code": c} for w, c in zip(waits, codes, strict=True)]
        return change

    snaps = [snapshot_file(selftest_dir(tmp_path / str(n), attempts(waits, codes)),
                           tmp_path / f"{n}.json")
             for n, (waits, codes) in enumerate([([1.0, 2.0], [5, 5]), ([1.5, 2.0], [5, 5]),
                                                 ([1.0, 9.0], [5, 0])])]
    noise = tmp_path / "noise.json"
    assert run(capsys, "noise", str(snaps[0]), str(snaps[1]), "-o", str(noise))[0] == 0
    code, lines, _ = run(capsys, "diff", str(snaps[0]), str(snaps[2]), "--noise", str(noise))
    assert code == 1
    assert lines == [f"broker-1 {scan} mqtt.cleartext-listener|tcp/1883 "
                     "evidence.attempts[1].code: 5 -> 0" for scan in ("default", "intrusive")]
