"""The inventory: YAML and CSV files, command-line targets, secrets, and every bad-input path."""

from __future__ import annotations

import itertools
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from probe.errors import InputError
from probe.inventory import Inventory, inventory_from_targets, load_inventory
from probe.model import Device
from probe.secrets import Secret

SECRET = "s3cr3t-Value-42"


def write(directory: Path, text: str, name: str = "inv.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(directory: Path, text: str, name: str = "inv.yaml") -> Inventory:
    return load_inventory(write(directory, text, name))


def fails(directory: Path, text: str, name: str = "inv.yaml") -> InputError:
    path = write(directory, text, name)
    with pytest.raises(InputError) as info:
        load_inventory(path)
    assert info.value.file == str(path)
    return info.value


def where(error: InputError) -> tuple[int | None, str | None]:
    return error.line, error.field


def only(inventory: Inventory) -> Device:
    (device,) = inventory.devices()
    return device


# ---------------------------------------------------------------------------------------------
# Good inventories
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A full inventory (docs/inventory.md), with its PKI files and environment."""
    monkeypatch.setenv("FLEET_MQTT_PASSWORD", SECRET)
    monkeypatch.setenv("FLEET_CANARY_PASSWORD", "canary-" + SECRET)
    monkeypatch.setenv("FLEET_MONITOR_PASSWORD", "monitor-" + SECRET)
    pki = tmp_path / "pki"
    pki.mkdir()
    for name in ("fleet-ca.pem", "thermostat-001.crt", "thermostat-001.key"):
        (pki / name).write_text("PEM\n")
    return write(tmp_path, """
        defaults:                          # merged into every device
          trust_anchor: pki/fleet-ca.pem
          credentials:
            mqtt: {username: probe, password_env: FLEET_MQTT_PASSWORD}
        devices:
          - id: thermostat-001
            address: 10.20.0.5
            hostname: thermostat-001.plant.example
            class: sensor
            site: plant-a
            services:
              mqtt: [1883]
              mqtts: [8883]
              coap: [5683]
              coaps: [5684]
              http: [80]
              https: [443]
            credentials:
              mqtt_canary: {username: canary, password_env: FLEET_CANARY_PASSWORD}
              tls_client: {cert_file: pki/thermostat-001.crt, key_file: pki/thermostat-001.key}
            monitor:
              mqtt: {address: 10.20.0.2, port: 8883, tls: true, topic: "fleet/security/#",
                     username: monitor, password_env: FLEET_MONITOR_PASSWORD}
              syslog: {listen: "udp://0.0.0.0:5514"}
          - cidr: 10.20.1.0/28
            class: camera
        """)


def test_product_example(fleet: Path) -> None:
    inventory = load_inventory(fleet)
    assert inventory.count() == 15
    devices = list(inventory.devices())
    assert len(devices) == 15
    thermostat = devices[0]
    pki = fleet.parent / "pki"
    assert thermostat.id == "thermostat-001"
    assert thermostat.address == "10.20.0.5"
    assert thermostat.hostname == "thermostat-001.plant.example"
    assert thermostat.device_class == "sensor"
    assert thermostat.site == "plant-a"
    assert thermostat.services == {"mqtt": (1883,), "mqtts": (8883,), "coap": (5683,),
                                   "coaps": (5684,), "http": (80,), "https": (443,)}
    assert thermostat.trust_anchor == str(pki / "fleet-ca.pem")
    assert thermostat.source == f"{fleet}:6"
    mqtt = thermostat.credentials["mqtt"]
    assert mqtt["username"] == "probe"
    assert isinstance(mqtt["password"], Secret)
    assert mqtt["password"].reveal() == SECRET
    assert mqtt["password"].origin == "env:FLEET_MQTT_PASSWORD"
    assert "password_env" not in mqtt
    assert thermostat.secret("mqtt_canary", "password") == Secret("canary-" + SECRET, "x")
    assert thermostat.credentials["tls_client"] == {
        "cert_file": str(pki / "thermostat-001.crt"), "key_file": str(pki / "thermostat-001.key")}
    sink = thermostat.monitor["mqtt"]
    assert {k: v for k, v in sink.items() if k != "password"} == {
        "address": "10.20.0.2", "port": 8883, "tls": True, "topic": "fleet/security/#",
        "username": "monitor"}
    assert sink["password"].reveal() == "monitor-" + SECRET
    assert thermostat.monitor["syslog"] == {"listen": "udp://0.0.0.0:5514"}

    cameras = devices[1:]
    assert [d.id for d in cameras] == [f"10.20.1.{n}" for n in range(1, 15)]
    assert all(d.address == d.id and d.device_class == "camera" for d in cameras)
    assert all(d.source == f"{fleet}:25" for d in cameras)
    assert all(d.trust_anchor == str(pki / "fleet-ca.pem") for d in cameras)
    assert all(d.secret("mqtt", "password") == Secret(SECRET, "x") for d in cameras)
    assert all(d.hostname is None for d in cameras)


def test_secrets_never_shown(fleet: Path) -> None:
    inventory = load_inventory(fleet)
    for device in itertools.islice(inventory.devices(), 3):
        for text in (str(device), repr(device), repr(device.credentials), str(device.public())):
            assert SECRET not in text
            assert "monitor-" + SECRET not in text


def test_paths_are_relative_to_the_inventory(fleet: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    device = next(load_inventory(os.path.relpath(fleet)).devices())
    assert device.trust_anchor == str(fleet.parent / "pki" / "fleet-ca.pem")


def test_defaults_merge_deeply_and_the_device_wins(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFAULT_PW", "default-" + SECRET)
    (tmp_path / "own.txt").write_text(SECRET + "\n")
    inventory = load(tmp_path, """
        defaults:
          class: sensor
          site: plant-a
          services: {mqtt: [1883]}
          credentials:
            mqtt: {username: probe, password_env: DEFAULT_PW, client_id: probe-1}
          exclude_ports: "2024"
        devices:
          - address: 10.0.0.1
          - address: 10.0.0.2
            class: camera
            services: {https: 443}
            credentials:
              mqtt: {password_file: own.txt}
            exclude_ports: [2024, 23]
        """)
    first, second = inventory.devices()
    assert (first.device_class, first.site, first.exclude_ports) == ("sensor", "plant-a", (2024,))
    assert first.services == {"mqtt": (1883,)}
    assert first.secret("mqtt", "password") == Secret("default-" + SECRET, "x")
    assert (second.device_class, second.site) == ("camera", "plant-a")
    assert second.services == {"mqtt": (1883,), "https": (443,)}
    assert second.exclude_ports == (23, 2024)
    mqtt = second.credentials["mqtt"]
    assert mqtt["username"] == "probe" and mqtt["client_id"] == "probe-1"
    assert mqtt["password"].reveal() == SECRET
    assert mqtt["password"].origin == f"file:{tmp_path / 'own.txt'}"


def test_secret_files(tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_text("pw\n\n")
    (tmp_path / "crlf.txt").write_bytes(b"pw\r\n")
    (tmp_path / "bare.txt").write_text("pw")
    (tmp_path / "ca.pem").write_text("PEM")
    device = only(load(tmp_path, """
        devices:
          - address: 10.0.0.1
            credentials:
              a: {password_file: one.txt}
              b: {psk_file: crlf.txt, identity: dev-1}
              c: {token_file: bare.txt, ca_file: ca.pem}
        """))
    assert device.secret("a", "password") == Secret("pw\n", "x")
    assert device.secret("b", "psk") == Secret("pw", "x")
    assert device.credentials["b"]["identity"] == "dev-1"
    assert device.secret("c", "token") == Secret("pw", "x")
    assert device.credentials["c"]["ca_file"] == str(tmp_path / "ca.pem")


def test_host_name_address(tmp_path: Path) -> None:
    first, second = load(tmp_path, """
        devices:
          - address: plc-7.plant.example
            ports: "1-3,8883"
          - address: gw.example
            hostname: gateway.plant.example
        """).devices()
    assert (first.id, first.address, first.hostname) == (
        "plc-7.plant.example", "plc-7.plant.example", "plc-7.plant.example")
    assert first.ports == (1, 2, 3, 8883)
    assert second.hostname == "gateway.plant.example"


def test_ipv6_and_normalised_addresses(tmp_path: Path) -> None:
    devices = list(load(tmp_path, """
        devices:
          - address: "fd00:0::0001"
          - class: sensor
            cidr: fd00:1::/126
        """).devices())
    assert [d.id for d in devices] == ["fd00::1", "fd00:1::", "fd00:1::1", "fd00:1::2",
                                       "fd00:1::3"]


@pytest.mark.parametrize(
    ("block", "ids"),
    [
        ("10.0.0.0/30", ["10.0.0.1", "10.0.0.2"]),
        ("10.0.0.4/31", ["10.0.0.4", "10.0.0.5"]),
        ("10.0.0.9/32", ["10.0.0.9"]),
        ("10.0.0.8/29", [f"10.0.0.{n}" for n in range(9, 15)]),
    ],
)
def test_block_expansion(tmp_path: Path, block: str, ids: list[str]) -> None:
    inventory = load(tmp_path, f"devices: [{{cidr: {block}}}]\n")
    assert [d.id for d in inventory.devices()] == ids
    assert inventory.count() == len(ids)


def test_address_may_be_a_block(tmp_path: Path) -> None:
    inventory = load(tmp_path, "devices: [{address: 127.42.0.0/30, class: sensor}]\n")
    assert [d.id for d in inventory.devices()] == ["127.42.0.1", "127.42.0.2"]


def test_blocks_expand_lazily(tmp_path: Path) -> None:
    inventory = load(tmp_path, "devices: [{cidr: 10.1.0.0/16}, {address: 10.2.0.1}]\n")
    assert inventory.count() == 65535
    devices = inventory.devices()
    assert isinstance(devices, Iterator)
    assert [d.id for d in itertools.islice(devices, 2)] == ["10.1.0.1", "10.1.0.2"]
    ipv6 = load(tmp_path, "devices: [{cidr: 'fd00::/112'}]\n")
    assert ipv6.count() == 65536


def test_network_address_of_a_block_is_not_a_collision(tmp_path: Path) -> None:
    inventory = load(tmp_path, """
        devices:
          - cidr: 10.0.0.0/24
          - address: 10.0.0.0
          - id: 10.0.0.255
            address: 10.9.9.9
        """)
    assert inventory.count() == 256


def test_csv(tmp_path: Path) -> None:
    path = tmp_path / "inv.csv"
    path.write_text("\ufeffid,address,hostname,class,site\n"
                    "thermostat-001,10.20.0.5,thermostat-001.plant.example,sensor,plant-a\n"
                    "\n"
                    ",10.20.0.6,,,\n"
                    ",10.20.1.0/30,,camera,\n")
    devices = list(load_inventory(path).devices())
    assert [(d.id, d.address, d.hostname, d.device_class, d.site, d.source) for d in devices] == [
        ("thermostat-001", "10.20.0.5", "thermostat-001.plant.example", "sensor", "plant-a",
         f"{path}:2"),
        ("10.20.0.6", "10.20.0.6", None, None, None, f"{path}:4"),
        ("10.20.1.1", "10.20.1.1", None, "camera", None, f"{path}:5"),
        ("10.20.1.2", "10.20.1.2", None, "camera", None, f"{path}:5"),
    ]


def test_csv_header_without_site(tmp_path: Path) -> None:
    path = tmp_path / "inv.CSV"
    path.write_text("id,address,hostname,class\ncam-1,127.0.0.1,,camera\n")
    assert only(load_inventory(path)).device_class == "camera"


# ---------------------------------------------------------------------------------------------
# Command-line targets
# ---------------------------------------------------------------------------------------------


def test_targets() -> None:
    inventory = inventory_from_targets(
        ["127.0.0.1", "::1", "localhost.example", "127.1.0.0/30", " 127.0.0.1 "],
        exclude_ports=(2024, 22, 2024))
    devices = list(inventory.devices())
    assert [(d.id, d.address, d.hostname) for d in devices] == [
        ("127.0.0.1", "127.0.0.1", None), ("::1", "::1", None),
        ("localhost.example", "localhost.example", "localhost.example"),
        ("127.1.0.1", "127.1.0.1", None), ("127.1.0.2", "127.1.0.2", None)]
    assert inventory.count() == 5
    assert all(d.exclude_ports == (22, 2024) for d in devices)
    assert all(d.source == "<command line>" for d in devices)


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("x", "is not an IP address, host name or CIDR block"),
        ("", "is not an IP address"),
        ("plc7", "is not an IP address"),
        ("10.0.0.300", "is not an IP address"),
        ("-bad.example", "is not an IP address"),
        ("a..b", "is not an IP address"),
        ("10.0.0.1/24", "host bits set"),
        ("10.0.0.0/8", "at most 65536"),
        ("fd00::/64", "at most 65536"),
        ("10.0.0.0/33", "not a CIDR block"),
    ],
)
def test_bad_targets(target: str, words: str) -> None:
    with pytest.raises(InputError, match=words) as info:
        inventory_from_targets(["127.0.0.1", target])
    assert info.value.field == "TARGET"


def test_overlapping_targets() -> None:
    with pytest.raises(InputError, match="overlaps") as info:
        inventory_from_targets(["127.0.0.0/24", "127.0.0.128/25"])
    assert info.value.field == "TARGET"
    with pytest.raises(InputError, match="already in the block"):
        inventory_from_targets(["127.0.0.0/24", "127.0.0.7"])
    with pytest.raises(InputError, match="contains"):
        inventory_from_targets(["127.0.0.7", "127.0.0.0/24"])


# ---------------------------------------------------------------------------------------------
# Bad inventories: every message names the file, the line and the field
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        ("devices:\n  - address: 10.0.0.1\n    adress: 10.0.0.2\n", 3, "devices[0].adress",
         "unknown field 'adress' (did you mean 'address'?)"),
        ("devices: []\n", 1, "devices", "must not be empty"),
        ("devices: {a: 1}\n", 1, "devices", "expected a list, got a mapping"),
        ("defaults: {}\n", 1, "devices", "required field is missing"),
        ("device:\n  - address: 10.0.0.1\n", 1, "device", "did you mean 'devices'?"),
        ("devices:\n  - 10.0.0.1\n", 2, "devices[0]", "expected a mapping, got a string"),
        ("devices:\n  - class: x\n", 2, "devices[0]", "give the device's `address`"),
        ("devices:\n  - address: 10.0.0.1\n    cidr: 10.0.1.0/24\n", 3, "devices[0].cidr",
         "either `address` or `cidr`"),
        ("devices:\n  - address: 10.0.0.1\n  - address: x\n", 3, "devices[1].address",
         "'x' is not an IP address, host name or CIDR block"),
        ("devices:\n  - cidr: 10.0.0.1\n", 2, "devices[0].cidr", "is not a CIDR block"),
        ("devices:\n  - cidr: 10.0.0.1/24\n", 2, "devices[0].cidr",
         "host bits set (the block is 10.0.0.0/24)"),
        ("devices:\n  - cidr: 10.0.0.0/15\n", 2, "devices[0].cidr", "at most 65536"),
        ("devices:\n  - {cidr: 10.0.0.0/30, id: cams}\n", 2, "devices[0].id",
         "cannot have one id"),
        ("devices:\n  - {cidr: 10.0.0.0/30, hostname: a.example}\n", 2, "devices[0].hostname",
         "cannot have one hostname"),
        ("devices:\n  - {address: 10.0.0.1, hostname: 'bad host'}\n", 2,
         "devices[0].hostname", "not a valid host name"),
        ("devices:\n  - address: 10.0.0.1\n    id: 17\n", 3, "devices[0].id",
         "expected a string, got a number (put it in quotes)"),
        ("devices:\n  - address: 10.0.0.1\n    id: -dash\n", 3, "devices[0].id",
         "not a valid device id"),
        ("devices:\n  - address: 10.0.0.1\n    id: a/b\n", 3, "devices[0].id",
         "not a valid device id"),
        ("devices:\n  - address: 10.0.0.1\n    class: [a]\n", 3, "devices[0].class",
         "expected a string, got a list"),
        ("devices:\n  - address: 10.0.0.1\n    site: true\n", 3, "devices[0].site",
         "expected a string, got true or false"),
        ("devices:\n  - address: 10.0.0.1\n    services: [mqtt]\n", 3, "devices[0].services",
         "expected a mapping, got a list"),
        ("devices:\n  - address: 10.0.0.1\n    services:\n      mqt: [1883]\n", 4,
         "devices[0].services.mqt", "'mqt' is not allowed here (expected 'mqtt'"),
        ("devices:\n  - address: 10.0.0.1\n    services:\n      mqtt: [1883, 70000]\n", 4,
         "devices[0].services.mqtt", "port 70000 is out of range"),
        ("devices:\n  - address: 10.0.0.1\n    services:\n      mqtt: []\n", 4,
         "devices[0].services.mqtt", "at least one port"),
        ("devices:\n  - address: 10.0.0.1\n    ports: 1-x\n", 3, "devices[0].ports",
         "'1-x' is not a port number"),
        ("devices:\n  - address: 10.0.0.1\n    exclude_ports: {a: 1}\n", 3,
         "devices[0].exclude_ports", "got a mapping"),
        ("devices:\n  - address: 10.0.0.1\n    credentials: [a]\n", 3,
         "devices[0].credentials", "expected a mapping, got a list"),
        ("devices:\n  - address: 10.0.0.1\n    credentials:\n      mqtt: probe\n", 4,
         "devices[0].credentials.mqtt", "expected a mapping, got a string"),
        ("devices:\n  - address: 10.0.0.1\n    credentials:\n      'bad name': {}\n", 4,
         "devices[0].credentials['bad name']", "not a valid name"),
        ("devices:\n  - address: 10.0.0.1\n    monitor:\n      syslog: 5514\n", 4,
         "devices[0].monitor.syslog", "expected a mapping, got a number"),
        ("devices:\n  - address: 10.0.0.1\n    trust_anchor: 5\n", 3,
         "devices[0].trust_anchor", "expected a string, got a number"),
        ("devices:\n  - address: 10.0.0.1\n    trust_anchor: missing.pem\n", 3,
         "devices[0].trust_anchor", "missing.pem does not exist"),
        ("devices:\n  - address: 10.0.0.1\n  - address: 10.0.0.1\n", 3, "devices[1].address",
         "duplicate device id '10.0.0.1' (first at "),
        ("devices:\n  - {id: a, address: 10.0.0.1}\n\n  - {id: a, address: 10.0.0.2}\n", 4,
         "devices[1].id", ":2)"),
        ("devices:\n  - cidr: 10.0.0.0/24\n  - {id: 10.0.0.7, address: 10.9.0.1}\n", 3,
         "devices[1].id", "also the id of a device of the block 10.0.0.0/24"),
        ("devices:\n  - address: 10.0.0.7\n  - cidr: 10.0.0.0/24\n", 3, "devices[1].cidr",
         "contains 10.0.0.7"),
        ("devices:\n  - cidr: 10.0.0.0/24\n  - cidr: 10.0.0.128/25\n", 3, "devices[1].cidr",
         "overlaps the block 10.0.0.0/24"),
        ("defaults: [a]\ndevices:\n  - address: 10.0.0.1\n", 1, "defaults",
         "expected a mapping, got a list"),
        ("defaults:\n  address: 10.0.0.1\ndevices:\n  - address: 10.0.0.1\n", 2,
         "defaults.address", "set per device"),
        ("defaults:\n  clas: sensor\ndevices:\n  - address: 10.0.0.1\n", 2, "defaults.clas",
         "did you mean 'class'?"),
        ("defaults:\n  services:\n    http: [0]\ndevices:\n  - address: 10.0.0.1\n", 3,
         "defaults.services.http", "out of range"),
    ],
)
def test_bad_inventory(tmp_path: Path, text: str, line: int, field: str, words: str) -> None:
    error = fails(tmp_path, text)
    assert where(error) == (line, field)
    assert words in error.message
    assert str(error).startswith(f"{tmp_path / 'inv.yaml'}:{line}: {field}: ")


def test_error_message_format(tmp_path: Path) -> None:
    path = write(tmp_path, "devices:\n  - address: 10.0.0.1\n  - address: 10.0.0.2\n"
                           "  - address: 10.0.0.3\n  - address: x\n")
    with pytest.raises(InputError) as info:
        load_inventory(path)
    assert str(info.value) == (f"{path}:5: devices[3].address: 'x' is not an IP address, "
                               "host name or CIDR block")


@pytest.mark.parametrize("key", ["password", "psk", "token", "secret", "passphrase", "key",
                                 "admin_password", "api_token"])
@pytest.mark.parametrize("section", ["credentials", "monitor"])
def test_literal_secrets_are_refused(tmp_path: Path, key: str, section: str) -> None:
    error = fails(tmp_path, f"""
        devices:
          - address: 10.0.0.1
            {section}:
              mqtt:
                username: probe
                {key}: {SECRET}
        """)
    assert where(error) == (6, f"devices[0].{section}.mqtt.{key}")
    assert f"use {key}_env" in error.message and f"{key}_file" in error.message
    assert SECRET not in str(error) and SECRET not in repr(error)


def test_literal_secret_in_defaults(tmp_path: Path) -> None:
    error = fails(tmp_path, f"""
        defaults:
          credentials:
            http: {{username: admin, password: {SECRET}}}
        devices:
          - address: 10.0.0.1
        """)
    assert where(error) == (3, "defaults.credentials.http.password")
    assert SECRET not in str(error)


def test_missing_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IOTPROBE_TEST_UNSET", raising=False)
    error = fails(tmp_path, """
        devices:
          - address: 10.0.0.1
            monitor:
              mqtt: {username: m, password_env: IOTPROBE_TEST_UNSET}
        """)
    assert where(error) == (4, "devices[0].monitor.mqtt.password_env")
    assert "IOTPROBE_TEST_UNSET is not set" in error.message


def test_secret_value_is_not_in_later_errors(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTPROBE_TEST_PW", SECRET)
    (tmp_path / "pw.txt").write_text(SECRET)
    cases = [
        "credentials: {mqtt: {password_env: IOTPROBE_TEST_PW, password_file: pw.txt}}",
        "credentials: {mqtt: {password_env: IOTPROBE_TEST_PW}}\n    trust_anchor: nope.pem",
        "credentials: {mqtt: {password_file: pw.txt, cert_file: nope.crt}}",
    ]
    for case in cases:
        error = fails(tmp_path, f"devices:\n  - address: 10.0.0.1\n    {case}\n")
        assert SECRET not in str(error) and SECRET not in repr(error.args)


def test_both_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTPROBE_TEST_PW", SECRET)
    (tmp_path / "pw.txt").write_text(SECRET)
    error = fails(tmp_path, """
        devices:
          - address: 10.0.0.1
            credentials:
              mqtt:
                password_env: IOTPROBE_TEST_PW
                password_file: pw.txt
        """)
    assert where(error) == (6, "devices[0].credentials.mqtt.password_file")
    assert "both set password" in error.message


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        ("password_env: 5", "password_env", "name of an environment variable, got a number"),
        ("password_env: 'A B'", "password_env", "name of an environment variable"),
        ("password_file: missing.txt", "password_file", "missing.txt does not exist"),
        ("password_file: sub", "password_file", "is not a regular file"),
        ("password_file: latin1.txt", "password_file", "not UTF-8"),
        ("password_file: [a]", "password_file", "expected a file path, got a list"),
        ("cert_file: missing.crt", "cert_file", "missing.crt does not exist"),
        ("key_file: ''", "key_file", "expected a file path"),
        ("ca_file: 7", "ca_file", "expected a file path, got a number"),
        ("7: x", "7", "expected a string as key, got a number"),
    ],
)
def test_bad_credentials(tmp_path: Path, entry: str, field: str, words: str) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    error = fails(tmp_path, f"devices:\n  - address: 10.0.0.1\n    credentials:\n"
                            f"      mqtt:\n        {entry}\n")
    assert error.line == 5
    assert error.field == f"devices[0].credentials.mqtt.{field}" or \
        error.field == f"devices[0].credentials.mqtt[{field}]"
    assert words in error.message


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        ("devices: [\n", 2, "YAML syntax error"),
        ("devices:\n  - address: 10.0.0.1\n   bad: indent\n", 3, "YAML syntax error"),
        ("devices: []\ndevices: []\n", 2, "YAML syntax error"),
        ("", 1, "the file is empty"),
        ("# only a comment\n", 1, "the file is empty"),
        ("- address: 10.0.0.1\n", 1, "the top level must be a mapping"),
        ("just text\n", 1, "the top level must be a mapping"),
        ("a: 1\n---\nb: 2\n", 2, "YAML syntax error"),
        ("devices:\n  - address: !custom 10.0.0.1\n", 2, "unsupported YAML value"),
        ("devices:\n  - address: .nan\n", 2, "not-a-number"),
        ("devices:\n  - {[a]: 1}\n", 2, "a mapping key must be a name"),
        ("devices:\n  - {address: 10.0.0.1, services: {true: [1]}}\n", 2,
         "a mapping key must be a name"),
    ],
)
def test_unparseable_yaml(tmp_path: Path, content: str, line: int, words: str) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(content)
    with pytest.raises(InputError, match=words) as info:
        load_inventory(path)
    assert (info.value.file, info.value.line) == (str(path), line)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found") as info:
        load_inventory(tmp_path / "missing.yaml")
    assert info.value.file == str(tmp_path / "missing.yaml")
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        load_inventory(tmp_path / "dir.yaml")
    (tmp_path / "latin1.yaml").write_bytes(b"devices:\n  - id: caf\xe9\n")
    with pytest.raises(InputError, match="not UTF-8") as info:
        load_inventory(tmp_path / "latin1.yaml")
    assert info.value.line == 2
    (tmp_path / "inv.json").write_text("devices: []\n")
    with pytest.raises(InputError, match="unknown inventory format"):
        load_inventory(tmp_path / "inv.json")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "devices: [{address: 10.0.0.1}]\n")
    path.chmod(0)
    with pytest.raises(InputError, match="permission denied"):
        load_inventory(path)


def test_alias_bomb(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [*a{n - 1}, *a{n - 1}, *a{n - 1}, *a{n - 1}, *a{n - 1}, "
              f"*a{n - 1}, *a{n - 1}, *a{n - 1}, *a{n - 1}, *a{n - 1}]" for n in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\ndevices: [{address: 10.0.0.1}]\n")
    with pytest.raises(InputError, match="too large"):
        load_inventory(path)


def test_aliases_and_merge_keys(tmp_path: Path) -> None:
    inventory = load(tmp_path, """
        devices:
          - &cam {address: 10.0.0.1, class: camera, services: {https: [443]}}
          - <<: *cam
            address: 10.0.0.2
        """)
    assert [(d.id, d.device_class, d.services) for d in inventory.devices()] == [
        ("10.0.0.1", "camera", {"https": (443,)}), ("10.0.0.2", "camera", {"https": (443,)})]


@pytest.mark.parametrize(
    ("content", "line", "field", "words"),
    [
        ("", 1, None, "the file is empty"),
        ("id,address\n", 1, None, "no devices"),
        ("id,adress\n", 1, "adress", "did you mean 'address'?"),
        ("id,hostname\nx,y\n", 1, "address", "needs an `address` column"),
        ("id,address,id\n", 1, "id", "appears twice"),
        ("id,address\na,10.0.0.1\nb,10.0.0.2,extra\n", 3, None, "expected 2 cells"),
        ("id,address\na,10.0.0.1\n\nb,x\n", 4, "address", "'x' is not an IP address"),
        ("id,address\na,10.0.0.1\na,10.0.0.2\n", 3, "id", "duplicate device id 'a'"),
        ("id,address,class\na,10.0.0.1,bad class\n", 2, "class", "not a valid device class"),
        ('id,address\n"a\nb",10.0.0.1\n', 2, "id", "not a valid device id"),
        ('id,address\n"a",10.0.0.1\n"b\n",10.0.0.2\nc,"10.0.0.3\n', 5, None,
         "CSV syntax error"),
        ('id,address\na,"10.0.0.1"x\n', 2, None, "CSV syntax error"),
        ("id,address\na,10.0.0.1\x00\n", 2, "address", "'10.0.0.1\\x00' is not an IP"),
        ("id,address\na,10.0.0.0/8\n", 2, "address", "at most 65536"),
    ],
)
def test_bad_csv(tmp_path: Path, content: str, line: int, field: str | None,
                 words: str) -> None:
    path = tmp_path / "inv.csv"
    path.write_text(content)
    with pytest.raises(InputError) as info:
        load_inventory(path)
    assert (info.value.file, info.value.line, info.value.field) == (str(path), line, field)
    assert words in info.value.message


# ---------------------------------------------------------------------------------------------
# Whatever the input, a result or an InputError
# ---------------------------------------------------------------------------------------------

_KEYS = ["id", "address", "cidr", "hostname", "class", "site", "services", "credentials",
         "monitor", "trust_anchor", "ports", "exclude_ports", "devices", "defaults", "mqtt",
         "password_env", "password_file", "cert_file", "password", "username", "https"]
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=True),
    st.sampled_from(["10.0.0.1", "10.0.0.0/30", "::1", "host.example", "1-3", "x", "",
                     "2001:db8::/126", "PATH", "pw.txt", "camera", "-", "10.0.0.0/8"]),
    st.text(max_size=8),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(_KEYS), inner, max_size=5)),
    max_leaves=25,
)
_DOCUMENTS = st.one_of(
    _VALUES,
    st.fixed_dictionaries({"devices": st.lists(
        st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=6), max_size=4)},
        optional={"defaults": st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=4)}),
)


def _outcome(path: Path) -> None:
    try:
        inventory = load_inventory(path)
    except InputError as error:
        assert error.file == str(path)
        return
    for device in itertools.islice(inventory.devices(), 100):
        assert isinstance(device, Device)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_arbitrary_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    _outcome(path)
    csv = tmp_path / "fuzz.csv"
    csv.write_text(text)
    _outcome(csv)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=_DOCUMENTS)
def test_arbitrary_yaml(tmp_path: Path, document: object) -> None:
    (tmp_path / "pw.txt").write_text("pw")
    path = tmp_path / "fuzz.yaml"
    with path.open("w") as handle:
        YAML(typ="safe", pure=True).dump(document, handle)
    _outcome(path)


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        (f"devices:\n  - address: 10.0.0.1\n    credentials:\n      mqtt:\n"
         f"        password: {SECRET}\n        password: x{SECRET}\n", 6,
         "YAML syntax error: duplicate key 'password'"),
        (f"devices:\n  - address: 10.0.0.1\n    credentials:\n      mqtt:\n"
         f"        password_file: !!int {SECRET}\n", 5,
         "YAML syntax error: not a valid int value; quote it to keep it as text"),
    ],
)
def test_yaml_errors_do_not_quote_values(tmp_path: Path, content: str, line: int,
                                         message: str) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(content)
    with pytest.raises(InputError) as info:
        load_inventory(path)
    assert (info.value.line, info.value.message) == (line, message)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(("value", "words"), [
    (-2**63, "devices[0].services.mqtt: port -9223372036854775808 is out of range"),
    (2**63 - 1, "devices[0].services.mqtt: port 9223372036854775807 is out of range"),
    (-2**63 - 1, "integers outside -9223372036854775808..9223372036854775807"),
])
def test_the_64_bit_bounds_are_exact_and_a_port_out_of_them_is_located(
        tmp_path: Path, value: int, words: str) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(f"devices:\n  - address: 127.0.0.1\n    services: {{mqtt: [{value}]}}\n")
    with pytest.raises(InputError) as caught:
        load_inventory(path)
    assert caught.value.line == 3
    assert words in str(caught.value)
