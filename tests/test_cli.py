"""The command line end to end: `lab up`, `scan`, records, exit codes, input errors, secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import load_records

BASE = "127.62.0.1"
SECRET = "s3cr3t-Pa55-do-not-leak"


def iotprobe(*args: str, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          stdin=subprocess.DEVNULL)


class Lab:
    def __init__(self, state: Path, inventory: Path) -> None:
        self.state = state
        self.inventory = inventory
        self.env = {"IOTPROBE_STATE_DIR": str(state)}
        data = json.loads((state / "lab.json").read_text())
        self.devices: dict[str, dict[str, Any]] = {d["id"]: d for d in data["devices"]}

    def address(self, persona: str) -> str:
        return next(d["address"] for d in self.devices.values() if d["persona"] == persona)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("lab")
    state, inventory = root / "state", root / "inventory.yaml"
    env = {"IOTPROBE_STATE_DIR": str(state)}
    up = iotprobe("lab", "up", "--base", BASE, "--inventory-out", str(inventory), env=env)
    assert up.returncode == 0, up.stderr
    try:
        yield Lab(state, inventory)
    finally:
        down = iotprobe("lab", "down", env=env)
        assert down.returncode == 0, down.stderr


FAST = ("--timeout", "1", "--budget", "30", "--exclude-ports", "2024")


def test_scan_of_the_lab_matches_every_declaration(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = iotprobe("scan", "-i", str(lab.inventory), "-o", str(out), "--processes", "2", *FAST,
                   env=lab.env)
    assert run.returncode == 1, run.stderr
    records = load_records(out)
    assert set(records) == set(lab.devices)
    for device_id, device in lab.devices.items():
        record = records[device_id]
        profile_checks = {r["check"] for r in record["results"]}
        assert {"net.open-ports", "net.cleartext-management"} <= profile_checks
        for check_id, want in device["expect"].items():
            if check_id in profile_checks:
                got = {r["status"] for r in record["results"] if r["check"] == check_id}
                assert want in got, f"{device_id} {check_id}: expected {want}, got {got}"
        if set(device["expect"]) <= profile_checks:
            assert record["verdict"] == device["expect_verdict"], device_id
    assert "nonconformant" in run.stdout and "records in" in run.stdout


def test_exit_codes(lab: Lab, tmp_path: Path) -> None:
    dark = iotprobe("scan", lab.address("dark"), "-o", str(tmp_path / "a"), "-p",
                    "iso27400-6.2", *FAST)
    assert dark.returncode == 3, dark.stdout + dark.stderr
    anchor = ("--trust-anchor", str(lab.state / "lab-ca.pem"))
    conformant = iotprobe("scan", lab.address("good-webui"), "-o", str(tmp_path / "b"), *FAST,
                          *anchor)
    assert conformant.returncode == 0, conformant.stdout
    clean = lab.address("clean-sensor")
    strict = iotprobe("scan", clean, "-o", str(tmp_path / "c"), *FAST, *anchor)
    assert strict.returncode == 1
    tolerant = iotprobe("scan", clean, "-o", str(tmp_path / "d"), "--fail-on", "high", *FAST,
                        *anchor)
    record = load_records(tmp_path / "d")[clean]
    failing = {r["severity"] for r in record["results"] if r["status"] == "fail"}
    assert failing and failing <= {"medium", "low"}
    assert tolerant.returncode == 0, tolerant.stdout


def test_jsonl_streams_records_on_stdout(lab: Lab, tmp_path: Path) -> None:
    run = iotprobe("scan", lab.address("telnet-camera"), lab.address("ftp-gateway"),
                   "--format", "jsonl", "-o", str(tmp_path), *FAST)
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert sorted(r["device"]["id"] for r in lines) == sorted(
        [lab.address("telnet-camera"), lab.address("ftp-gateway")])
    assert all(r["schema"] == "iotprobe.record/v1" for r in lines)


@pytest.mark.parametrize(("text", "where"), [
    ("devices:\n  - id: a\n    adress: 127.0.0.1\n", ":3"),
    ("devices:\n  - id: a\n    address: 127.0.0.1\n  - id: a\n    address: 127.0.0.2\n", ":4"),
    ("devices: [\n", "inventory.yaml"),
    ("defaults:\n  credentials:\n    mqtt: {username: u, password: hunter2}\n"
     "devices:\n  - address: 127.0.0.1\n", ":3"),
])
def test_bad_inventory_exits_2_and_writes_nothing(tmp_path: Path, text: str, where: str) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(text)
    out = tmp_path / "out"
    run = iotprobe("scan", "-i", str(inventory), "-o", str(out), *FAST)
    assert run.returncode == 2
    assert "inventory.yaml" in run.stderr and where in run.stderr
    assert "Traceback" not in run.stderr and "hunter2" not in run.stderr
    assert not out.exists()


def test_bad_profile_and_usage_exit_2(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("id: p\ntitle: t\nversion: '1'\ncontrols:\n  27400-6.2:\n"
                       "    title: x\n    checks:\n      net.no-such-check: {}\n")
    run = iotprobe("scan", "127.0.0.1", "-p", str(profile), "-o", str(tmp_path / "o"))
    assert run.returncode == 2 and "p.yaml:8" in run.stderr, run.stderr
    assert iotprobe("scan").returncode == 2
    assert iotprobe("scan", "not a target!", "-o", str(tmp_path / "o")).returncode == 2
    assert iotprobe("scan", "127.0.0.1", "--ports", "70000").returncode == 2
    assert iotprobe("scan", "127.0.0.1", "--bogus").returncode == 2
    zero = iotprobe("scan", "127.0.0.1", "--processes", "0", "-o", str(tmp_path / "o"))
    assert zero.returncode == 2 and "--processes" in zero.stderr, zero.stderr
    assert not (tmp_path / "o").exists()


def test_secrets_never_reach_any_output(lab: Lab, tmp_path: Path) -> None:
    secret_file = tmp_path / "canary.pw"
    secret_file.write_text(SECRET + "-file\n")
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(f"""
defaults:
  exclude_ports: [2024]
  credentials:
    mqtt: {{username: probe, password_env: FLEET_PW}}
    mqtt_canary: {{username: canary, password_file: {secret_file}}}
devices:
  - id: cam
    address: {lab.address("telnet-camera")}
    class: camera
  - id: clean
    address: {lab.address("clean-sensor")}
    class: sensor
""")
    out = tmp_path / "out"
    run = iotprobe("-vv", "scan", "-i", str(inventory), "-o", str(out), "--format", "jsonl",
                   "--processes", "2", *FAST, env={"FLEET_PW": SECRET})
    assert run.returncode == 1, run.stderr
    texts = [run.stdout, run.stderr] + [p.read_text() for p in out.iterdir()]
    assert all(SECRET not in text for text in texts)
    missing = iotprobe("scan", "-i", str(inventory), "-o", str(tmp_path / "o2"), *FAST)
    assert missing.returncode == 2 and "FLEET_PW" in missing.stderr


def test_profiles_commands() -> None:
    listed = iotprobe("profiles", "list")
    assert listed.returncode == 0
    for pid in ("iso27400-6.2", "iso27400-6.5", "iso27400", "acceptance"):
        assert pid in listed.stdout
    shown = iotprobe("profiles", "show", "iso27400")
    assert shown.returncode == 0 and "net.open-ports" in shown.stdout
    assert "etsi-en-303-645" in shown.stdout and "sha256:" in shown.stdout
    checks = iotprobe("profiles", "checks")
    assert checks.returncode == 0 and "net.cleartext-management" in checks.stdout
    assert iotprobe("profiles", "show", "no-such-profile").returncode == 2


def test_profiles_checks_json_is_the_catalogue_with_its_rules() -> None:
    """`profiles checks --json` prints what docs/checks.md is made from: every check of the
    catalogue, with its rule, parameters and the default profile's references."""
    from probe.catalogue_doc import catalogue_data
    from probe.checks.catalogue import catalogue

    shown = iotprobe("profiles", "checks", "--json")
    assert shown.returncode == 0, shown.stderr
    entries = json.loads(shown.stdout)
    assert entries == catalogue_data()
    assert [e["id"] for e in entries] == sorted(catalogue())
    trust = next(e for e in entries if e["id"] == "tls.certificate-trust")
    assert trust["rule"].startswith("Pass: the served chain validates to the trust anchor")
    assert trust["applies_to"] == ["tls"] and "`unidentified`" in trust["unidentified"]
    assert trust["references"]["etsi-en-303-645"] and trust["profiles"]["iso27400"] == "high"
    certificate = next(e for e in entries if e["id"] == "mqtt.client-certificate")
    assert certificate["severity"] == "medium"
    assert certificate["profiles"]["acceptance"] == "high"
    throttling = next(e for e in entries if e["id"] == "monitor.bruteforce-throttling")
    assert throttling["intrusive"]
    assert {"name": "attempts", "default": 10} in throttling["parameters"]


def test_an_internal_error_exits_4_escaped_never_as_a_verdict(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A bug (here: the scan itself raising, with a device's escape sequence in its message)
    is exit 4, never 1 or 3 (verdicts); the traceback is escaped and redacted like every
    other line the probe prints."""
    import probe.run
    from probe.cli import main
    from probe.exits import EXIT_INTERNAL

    async def broken(*args: Any, **kwargs: Any) -> int:
        raise KeyError("device \x1b[2J said")

    monkeypatch.setattr(probe.run, "run_scan", broken)
    with pytest.raises(SystemExit) as exited:
        main(["scan", "127.0.0.1", "--ports", "1", "--no-udp", "-o", str(tmp_path / "o")])
    assert exited.value.code == EXIT_INTERNAL == 4
    err = capsys.readouterr().err
    assert "KeyError" in err and "internal error" in err
    assert "\x1b" not in err, repr(err)
