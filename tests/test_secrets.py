"""Secrets never leave the probe: every command and format runs with secrets in the inventory,
against lab devices that make the probe use them, and no output, log, record, report, store or
error message holds any of them, in clear, hex or base64.

The secrets: the MQTT password (from the environment; the `mqtt-device-login` device accepts
it, so the probe logs in and probes topic authorization with it), the canary's password (from
a file), the monitoring sink's password (from the environment; `monitor-mqtt-events` accepts it
and the 6.5 checks read its events with it), a CoAP PSK (from the environment) and a
PostgreSQL password in a --store URL that cannot be reached. Lab on 127.98.x.y.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import load_records
from test_hostile import PROFILE, Lab, iotprobe

from probe.lab.personas.monitor import EVENT_TOPIC, HEARTBEAT_TOPIC, MONITOR_ACCOUNT
from probe.lab.personas.mqtt import DEVICE_ACCOUNT

CANARY = "c4nary-Pw-7Hq2-from-a-file"
PSK = "0ddba11-coap-psk-Xv81"
PG_PASSWORD = "pg-Secret-in-a-URL-55"
SECRETS = {"mqtt": DEVICE_ACCOUNT[1], "canary": CANARY, "monitor": MONITOR_ACCOUNT[1],
           "psk": PSK, "postgres": PG_PASSWORD}
ENV = {"FLEET_MQTT_PASSWORD": DEVICE_ACCOUNT[1], "FLEET_MONITOR_PASSWORD": MONITOR_ACCOUNT[1],
       "FLEET_COAP_PSK": PSK}
MONITORING = """\
      monitor.auth-failure-event:
        params: {event_timeout: 3}
      monitor.event-transport:
      monitor.heartbeat:
        params: {grace_seconds: 1.0}
"""


def forms(secret: str) -> set[str]:
    """The secret as text, hex and base64 (alone and as HTTP Basic's user:password)."""
    raw = secret.encode()
    out = {secret, raw.hex(), base64.b64encode(raw).decode()}
    out |= {base64.b64encode(f"{user}:{secret}".encode()).decode()
            for user in ("probe", "canary", "monitor", DEVICE_ACCOUNT[0])}
    return out


def leaks(text: str | bytes) -> list[str]:
    data = text if isinstance(text, str) else text.decode("latin-1")
    return sorted(name for name, secret in SECRETS.items()
                  if any(form in data for form in forms(secret)))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    running = Lab(tmp_path_factory.mktemp("secrets"), "127.98.0.1",
                  ("mqtt-device-login", "monitor-mqtt-events", "mqtt-open-broker",
                   "clean-sensor"))
    stopped = False
    try:
        yield running
        assert leaks(running.down()) == []
        stopped = True
    finally:
        if not stopped:
            running.down()


def free_port() -> int:
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port != 2024:
            return port
    raise RuntimeError("no free port")


def test_no_command_or_format_reveals_a_secret(lab: Lab, tmp_path: Path) -> None:
    (tmp_path / "canary.txt").write_text(CANARY + "\n")
    profile = tmp_path / "secrets.yaml"
    profile.write_text(PROFILE.replace("version: \"1\"", "version: \"secrets-1\"") + MONITORING)
    events = lab.address("monitor-mqtt-events")
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(yaml.safe_dump({
        "defaults": {
            "exclude_ports": [2024], "trust_anchor": lab.trust_anchor,
            "credentials": {
                "mqtt": {"username": DEVICE_ACCOUNT[0], "password_env": "FLEET_MQTT_PASSWORD"},
                "mqtt_canary": {"username": "canary", "password_file": "canary.txt"},
                "coap": {"identity": "probe", "psk_env": "FLEET_COAP_PSK"}}},
        "devices": [
            {"id": "login", "address": lab.address("mqtt-device-login"), "class": "sensor"},
            {"id": "events", "address": events, "class": "sensor", "monitor": {"mqtt": {
                "address": events, "port": 8883, "tls": True, "username": MONITOR_ACCOUNT[0],
                "password_env": "FLEET_MONITOR_PASSWORD", "topic": EVENT_TOPIC + "/#",
                "heartbeat_topic": HEARTBEAT_TOPIC, "heartbeat_interval": 2.0}}},
            {"id": "open", "address": lab.address("mqtt-open-broker"), "class": "broker"},
            {"id": "clean", "address": lab.address("clean-sensor"), "class": "sensor"}]}))
    store = tmp_path / "fleet.sqlite"
    env = {**lab.env, **ENV}
    outputs: dict[str, str] = {}

    def run(name: str, *args: str, codes: tuple[int, ...] = (0,)) -> None:
        done = iotprobe(*args, env=env, cwd=tmp_path)
        outputs[name] = done.stdout + done.stderr
        assert done.returncode in codes, (name, done.stderr)
        assert "Traceback" not in done.stderr, (name, done.stderr)

    scan = ("-i", str(inventory), "-p", str(profile), "--timeout", "1", "--exclude-ports",
            "2024")
    run("scan", "-vv", "scan", *scan, "-o", str(tmp_path / "out"), "--format", "json",
        "--format", "jsonl", "--format", "junit", "--format", "html", "--format", "oscal",
        codes=(1,))
    for number in (1, 2):
        run(f"sweep-{number}", "-vv", "sweep", *scan, "--store", str(store), codes=(1,))
    run("diff", "diff", "--store", str(store), codes=(0, 1))
    run("diff-json", "diff", "--store", str(store), "--json", codes=(0, 1))
    for fmt in ("html", "junit", "oscal"):
        run(f"report-{fmt}", "report", "--store", str(store), "--format", fmt, "-o",
            str(tmp_path / f"report.{fmt}"))
        run(f"report-{fmt}-stdout", "report", "--store", str(store), "--format", fmt, "-o", "-")
    run("profiles-list", "profiles", "list")
    run("profiles-show", "profiles", "show", str(profile))
    run("profiles-checks", "profiles", "checks")
    run("lab-status", "lab", "status")
    unreachable = f"postgresql://probe:{PG_PASSWORD}@127.0.0.1:{free_port()}/fleet"
    run("sweep-bad-store", "-vv", "sweep", *scan, "--store", unreachable, codes=(2,))
    run("scan-missing-file", "-vv", "scan", "-i", str(_broken(tmp_path, inventory)),
        codes=(2,))

    records = load_records(tmp_path / "out")
    used = {(device, r["check"]): r for device, record in records.items()
            for r in record["results"]}
    topics = used["login", "mqtt.topic-authorization"]
    assert topics["evidence"]["login"]["connack_code"] == 0, "the MQTT password was not used"
    canary = used["open", "mqtt.topic-authorization"]["evidence"]["canary"]
    assert canary["identity"] == "canary" and canary["echoed"], "the canary was not used"
    event = used["events", "monitor.auth-failure-event"]
    assert event["status"] == "pass", "the monitoring sink's password was not used"

    found = {name: leaks(text) for name, text in {**outputs, "lab-up": lab.output}.items()}
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "canary.txt":
            found[str(path.relative_to(tmp_path))] = leaks(path.read_bytes())
    for path in lab.state.rglob("*"):
        if path.is_file():
            found[f"lab:{path.name}"] = leaks(path.read_bytes())
    assert {where: names for where, names in found.items() if names} == {}
    assert "***" in outputs["sweep-bad-store"]


def _broken(tmp_path: Path, inventory: Path) -> Path:
    """The inventory with the canary's file missing: an input error about a secret's source."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(inventory.read_text().replace("canary.txt", "missing-canary.txt"))
    return broken
