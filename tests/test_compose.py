"""lab/docker-compose.yml: valid against the Compose Specification schema, every file it mounts
exists and is the one the local real lab (`iotprobe lab up --real`) runs, and the compose lab
describes the same devices, certificates and inventory as probe.lab.real.

No Docker engine runs here, so nothing is started: this checks the file itself.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from probe.lab.real import (
    COMPOSE_PROBE,
    LAB_MOUNT,
    REAL_DEVICES,
    STATE_MOUNT,
    RealDevice,
    inventory_document,
    lab_dir,
    map_paths,
    render_mosquitto,
    render_nginx_server,
    setup_arguments,
)

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / "lab"
SCHEMA = REPO.parent / "shared" / "data" / "compose-spec.schema.json"
NGINX_SERVER_CONF = "/etc/nginx/conf.d/default.conf"
"""Where the nginx image includes server blocks from: the one mount outside /lab/."""


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((LAB / "docker-compose.yml").read_text())
    return loaded


def binds(service: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in service.get("volumes", []) if v["type"] == "bind"]


def compose_entries(compose: dict[str, Any]) -> list[tuple[RealDevice, str, str | None]]:
    return [(d, compose["services"][d.name]["networks"]["lab"]["ipv4_address"], d.name)
            for d in REAL_DEVICES]


def test_the_compose_file_is_valid_against_the_compose_specification(
        compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=str)
    assert errors == []


def test_a_broken_compose_file_is_caught_by_the_schema(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    broken = {**compose, "services": {**compose["services"],
                                      "telnet": {**compose["services"]["telnet"],
                                                 "depends_on": 42}}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_the_lab_directory_is_the_one_the_local_lab_runs_from() -> None:
    assert lab_dir() == LAB


def test_every_mounted_file_exists_and_is_never_created(compose: dict[str, Any]) -> None:
    mounts = [(name, m) for name, s in compose["services"].items() for m in binds(s)]
    assert len(mounts) >= len(REAL_DEVICES) + 2
    for name, mount in mounts:
        source = (LAB / mount["source"]).resolve()
        assert source.exists(), f"{name}: {mount['source']} does not exist"
        assert LAB in source.parents, f"{name}: {mount['source']} is outside lab/"
        assert mount["read_only"] is True and mount["bind"]["create_host_path"] is False


def test_every_device_mounts_exactly_the_files_the_local_lab_runs(
        compose: dict[str, Any]) -> None:
    """Each device service mounts its configuration and every lab file that configuration
    names, at /lab/<the same path> (nginx server blocks: where the image includes them), and
    the setup output read-only at /lab/state."""
    for device in REAL_DEVICES:
        service = compose["services"][device.name]
        mounted = {str(Path(m["source"])): m["target"] for m in binds(service)}
        assert set(mounted) == set(device.lab_files(LAB)), device.name
        for source, target in mounted.items():
            if device.daemon == "nginx" and source == device.config:
                assert target == NGINX_SERVER_CONF
            else:
                assert target == f"{LAB_MOUNT}/{source}", device.name
        state = [v for v in service.get("volumes", []) if v["type"] == "volume"]
        if any(STATE_MOUNT in (LAB / f).read_text() for f in device.lab_files(LAB)
               if (LAB / f).is_file()):
            assert state == [{"type": "volume", "source": "state", "target": STATE_MOUNT,
                              "read_only": True}], device.name
            assert service["depends_on"]["setup"]["condition"] == \
                "service_completed_successfully"


def test_every_device_runs_its_configuration_as_the_local_lab_does(
        compose: dict[str, Any]) -> None:
    images = {"mosquitto": "eclipse-mosquitto:", "nginx": "nginx:"}
    for device in REAL_DEVICES:
        service = compose["services"][device.name]
        if device.daemon in images:
            assert service["image"].startswith(images[device.daemon])
        if device.daemon == "mosquitto":
            assert service["command"] == ["mosquitto", "-c", f"{LAB_MOUNT}/{device.config}"]
        elif device.daemon in ("coap", "telnetd"):
            assert service["command"] == ["sh", f"{LAB_MOUNT}/{device.config}", *device.args]
            assert service["environment"]["LAB_BIND"] == "0.0.0.0"
            assert (LAB / service["build"]["dockerfile"]).is_file()
        else:
            assert "command" not in service  # the nginx image's own: nginx -g 'daemon off;'


def test_the_setup_step_makes_the_certificates_the_local_lab_makes(
        compose: dict[str, Any]) -> None:
    setup = compose["services"]["setup"]
    command = setup["command"]
    assert command[:3] == ["sh", f"{LAB_MOUNT}/certs/setup.sh", STATE_MOUNT]
    assert command[3:] == setup_arguments(compose_entries(compose))
    assert {str(Path(m["source"])) for m in binds(setup)} == {"certs/setup.sh"}
    assert setup["network_mode"] == "none"


def test_the_probe_scans_every_device_with_the_committed_inventory(
        compose: dict[str, Any]) -> None:
    probe = compose["services"]["probe"]
    assert probe["networks"]["lab"]["ipv4_address"] == COMPOSE_PROBE
    assert set(probe["depends_on"]) == {"setup", *(d.name for d in REAL_DEVICES)}
    command = probe["command"]
    assert command[:2] == ["iotprobe", "scan"]
    assert command[command.index("--exclude-ports") + 1] == "2024"
    assert command[command.index("-i") + 1] == f"{LAB_MOUNT}/inventory.compose.yaml"
    assert probe["build"] == {"context": "..", "dockerfile": "lab/probe.Dockerfile"}
    assert (LAB / "probe.Dockerfile").is_file()
    committed = yaml.safe_load((LAB / "inventory.compose.yaml").read_text())
    assert committed == inventory_document(compose_entries(compose), STATE_MOUNT,
                                           f"{STATE_MOUNT}/ca.crt", COMPOSE_PROBE)


def test_addresses_are_unique_and_no_port_is_published(compose: dict[str, Any]) -> None:
    subnet = compose["networks"]["lab"]["ipam"]["config"][0]["subnet"]
    assert subnet == "172.30.42.0/24"
    addresses = [s["networks"]["lab"]["ipv4_address"] for s in compose["services"].values()
                 if "networks" in s]
    assert len(addresses) == len(set(addresses)) == len(REAL_DEVICES) + 1
    assert all(a.startswith("172.30.42.") for a in addresses)
    assert all("ports" not in s for s in compose["services"].values())
    assert set(compose["services"]) == {"setup", "probe", *(d.name for d in REAL_DEVICES)}


def test_no_key_or_password_is_committed() -> None:
    for path in LAB.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "PRIVATE KEY-----" not in text, path
            assert not re.search(r"\$7\$|\$apr1\$", text), path


def test_local_rendering_binds_to_the_device_and_maps_lab_paths(tmp_path: Path) -> None:
    files, state = Path("/srv/lab"), tmp_path / "state"
    source = (LAB / "mosquitto" / "broker-tls.conf").read_text()
    rendered = render_mosquitto(source, "127.74.0.3", files, state)
    assert "listener 8883 127.74.0.3\n" in rendered
    assert f"certfile {state}/broker-tls.crt\n" in rendered
    assert f"acl_file {files}/mosquitto/broker.acl\n" in rendered
    assert "/lab/" not in rendered.replace("/srv/lab/", "")
    expected = [ln.replace("listener 8883", "listener 8883 127.74.0.3")
                .replace("/lab/state/", f"{state}/").replace("/lab/", f"{files}/")
                for ln in source.splitlines() if not ln.startswith("#")]
    if os.geteuid() == 0:
        expected += ["", "user root"]
    assert [ln for ln in rendered.splitlines() if not ln.startswith("#")] == expected
    server = render_nginx_server((LAB / "nginx" / "web-basic.conf").read_text(), "127.74.0.8",
                                 files, state, "127.74.0.12")
    assert re.findall(r"listen (\S+)", server) == ["127.74.0.8:80;", "127.74.0.8:8443"]
    assert "syslog:server=127.74.0.12:5514" in server and COMPOSE_PROBE not in server
    assert map_paths("root /lab/nginx/www; x /lab/state/a", files, state) == \
        f"root {files}/nginx/www; x {state}/a"
