"""The real lab without Docker: `iotprobe lab up --real` runs mosquitto, nginx, libcoap and
busybox telnetd from the compose configurations, each device on its own address of
127.73.0.x (127.74.0.x for the lab killed with SIGKILL), as children of the lab process that
are stopped by PID. What the probe reports on them is checked by `lab selftest --real`
(tests/test_selftest.py); here: the processes, the files, the setup step and what the daemons
serve, seen with plain clients.

Debian packages: mosquitto, nginx, libcoap3-bin, busybox-static, openssl.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID
from daemons import reaped, subreaper

from probe.errors import InputError
from probe.inventory import load_inventory
from probe.lab.real import (
    REAL,
    REAL_DEVICES,
    Listen,
    lab_dir,
    plan_real,
    probe_address,
    render_mosquitto,
    render_nginx_server,
)
from probe.lab.real import bound as is_bound
from probe.lab.state import process_alive
from probe.secrets import Secret

BASE = "127.73.0.1"
KILL_BASE = "127.74.0.1"
TIMEOUT = 5.0
LAB = lab_dir()


def iotprobe(*args: str, state: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, "IOTPROBE_STATE_DIR": str(state)})


class RealLab:
    def __init__(self, state: Path, inventory: Path) -> None:
        self.state = state
        self.inventory = inventory
        self.data: dict[str, Any] = json.loads((state / "lab.json").read_text())
        self.devices = {d["id"]: d for d in self.data["devices"]}

    def address(self, name: str) -> str:
        return str(self.devices[name]["address"])

    def secret(self, name: str) -> str:
        return (self.state / "real" / "state" / name).read_text().strip()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealLab]:
    root = tmp_path_factory.mktemp("real-lab")
    state, inventory = root / "state", root / "inventory.yaml"
    up = iotprobe("lab", "up", "--real", "--base", BASE, "--inventory-out", str(inventory),
                  state=state)
    assert up.returncode == 0, up.stderr + (state / "lab.log").read_text()
    lab = RealLab(state, inventory)
    pids = [d["pid"] for d in lab.devices.values()]
    try:
        yield lab
    finally:
        down = iotprobe("lab", "down", state=state)
        assert down.returncode == 0, down.stderr
        assert not any(process_alive(pid) for pid in pids)
        assert not (state / "real" / "state").exists()
        for device in lab.devices.values():
            for item in device["listeners"]:
                assert not is_bound(device["address"], Listen(item["transport"], item["port"]))


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_every_device_is_a_daemon_child_of_the_lab_on_its_own_address(lab: RealLab) -> None:
    assert lab.data["kind"] == "real"
    assert [d["id"] for d in lab.data["devices"]] == [d.name for d in REAL_DEVICES]
    binaries = {"mosquitto": "mosquitto", "nginx": "nginx", "coap": "coap-server",
                "telnetd": "busybox"}
    for spec, device in zip(plan_real(BASE), lab.data["devices"], strict=True):
        assert device["address"] == spec.address
        pid = device["pid"]
        assert parent_of(pid) == lab.data["pid"]
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        assert binaries[device["daemon"]] in argv0, (device["id"], argv0)
        for item in device["listeners"]:
            assert is_bound(spec.address, Listen(item["transport"], item["port"]))


def test_the_daemons_run_the_compose_configurations(lab: RealLab) -> None:
    """What each daemon reads is its lab/ file with only the documented local changes."""
    run, state = lab.state / "real" / "run", lab.state / "real" / "state"
    for device in REAL_DEVICES:
        address = lab.address(device.name)
        source = (LAB / device.config).read_text()
        cmdline = Path(f"/proc/{lab.devices[device.name]['pid']}/cmdline").read_bytes()
        if device.daemon == "mosquitto":
            conf = run / device.name / "mosquitto.conf"
            assert conf.read_text() == render_mosquitto(source, address, LAB, state)
            assert str(conf).encode() in cmdline
        elif device.daemon == "nginx":
            server = run / device.name / "server.conf"
            assert server.read_text() == render_nginx_server(
                source, address, LAB, state, probe_address(plan_real(BASE)))
            assert f"include {server};" in (run / device.name / "nginx.conf").read_text()
        else:
            flag = b"-A" if device.daemon == "coap" else b"-b"
            assert flag + b"\0" + address.encode() + b"\0" in cmdline, (device.name, cmdline)


def test_the_inventory_declares_identities_and_sinks_from_the_setup_files(
        lab: RealLab) -> None:
    text = lab.inventory.read_text()
    devices = {d.id: d for d in load_inventory(lab.inventory).devices()}
    assert set(devices) == set(REAL)
    acl = devices["broker-acl"]
    password = acl.credentials["mqtt"]["password"]
    assert isinstance(password, Secret) and password.reveal() == lab.secret("probe.password")
    assert lab.secret("probe.password") not in text
    assert Path(devices["broker-mtls"].credentials["tls_client"]["cert_file"]).is_file()
    assert devices["broker-logging"].monitor["mqtt"]["topic"] == "$SYS/broker/log/#"
    assert devices["web-basic"].monitor["syslog"]["listen"] == \
        f"udp://{probe_address(plan_real(BASE))}:5514"
    assert all(d.trust_anchor == lab.data["trust_anchor"] for d in devices.values())
    assert all(d.exclude_ports == (2024,) for d in devices.values())


def tls_context(lab: RealLab, *, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=lab.data["trust_anchor"])
    if version is not None:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = context.maximum_version = version
    return context


def https(lab: RealLab, name: str, port: int, path: str,
          headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPSConnection(lab.address(name), port, timeout=TIMEOUT,
                                       context=tls_context(lab))
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def handshake(lab: RealLab, name: str, port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    assert port != 2024
    raw = socket.create_connection((lab.address(name), port), timeout=TIMEOUT)
    return context.wrap_socket(raw, server_hostname=lab.address(name))


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1 is deprecated")
def test_web_weak_speaks_tls_1_0_and_web_strong_does_not(lab: RealLab) -> None:
    with handshake(lab, "web-weak", 443, tls_context(lab, version=ssl.TLSVersion.TLSv1)) as tls:
        assert tls.version() == "TLSv1"
    with pytest.raises(ssl.SSLError):
        handshake(lab, "web-strong", 443, tls_context(lab, version=ssl.TLSVersion.TLSv1))
    with handshake(lab, "web-strong", 443, tls_context(lab)) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def public_key(lab: RealLab, name: str, port: int) -> bytes:
    with handshake(lab, name, port, tls_context(lab)) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    names = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    assert lab.address(name) in [str(ip) for ip in names.value.get_values_for_type(
        x509.IPAddress)]
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def test_the_vendor_key_is_shared_and_every_other_key_is_not(lab: RealLab) -> None:
    weak, basic = public_key(lab, "web-weak", 443), public_key(lab, "web-basic", 8443)
    others = {public_key(lab, "web-strong", 443), public_key(lab, "broker-tls", 8883),
              public_key(lab, "broker-logging", 8883)}
    assert weak == basic
    assert len(others) == 3 and weak not in others


def test_the_web_interfaces_serve_what_they_describe(lab: RealLab) -> None:
    strong = https(lab, "web-strong", 443, "/")
    assert strong.status == 200
    assert strong.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert https(lab, "web-strong", 443, "/admin/").status == 401
    disclosure = http.client.HTTPSConnection(lab.address("web-strong"), 443, timeout=TIMEOUT,
                                             context=tls_context(lab))
    disclosure.request("GET", "/.well-known/security.txt")
    body = disclosure.getresponse().read().decode()
    disclosure.close()
    assert body.startswith("Contact: mailto:") and "\nExpires: " in body
    assert https(lab, "web-weak", 443, "/admin/").status == 200
    assert "Strict-Transport-Security" not in https(lab, "web-weak", 443, "/").headers
    default = {"Authorization": "Basic YWRtaW46YWRtaW4="}  # admin:admin
    assert https(lab, "web-basic", 8443, "/admin/").status == 401
    assert https(lab, "web-basic", 8443, "/admin/", default).status == 200
    assert https(lab, "web-strong", 443, "/admin/", default).status == 401


def mqtt_connect(username: str, password: str) -> bytes:
    def text(value: str) -> bytes:
        return len(value.encode()).to_bytes(2, "big") + value.encode()

    body = text("MQTT") + bytes([4, 0xC2]) + (30).to_bytes(2, "big") + text("lab-test") + \
        text(username) + text(password)
    return bytes([0x10, len(body)]) + body


def test_the_mutual_tls_broker_wants_a_certificate_then_a_password(lab: RealLab) -> None:
    state = lab.state / "real" / "state"
    with handshake(lab, "broker-mtls", 8883, tls_context(lab)) as tls, \
            pytest.raises((ssl.SSLError, ConnectionError)):
        tls.sendall(mqtt_connect("probe", lab.secret("probe.password")))
        if not tls.recv(4):
            raise ConnectionResetError("closed without CONNACK")
    context = tls_context(lab)
    context.load_cert_chain(state / "client.crt", state / "client.key")
    with handshake(lab, "broker-mtls", 8883, context) as tls:
        tls.sendall(mqtt_connect("probe", lab.secret("probe.password")))
        assert tls.recv(4) == b"\x20\x02\x00\x00"
    with handshake(lab, "broker-mtls", 8883, context) as tls:
        tls.sendall(mqtt_connect("probe", "wrong"))
        assert tls.recv(4) == b"\x20\x02\x00\x05"


def test_telnet_negotiates_options(lab: RealLab) -> None:
    with socket.create_connection((lab.address("telnet"), 23), timeout=TIMEOUT) as sock:
        assert sock.recv(64)[:1] == b"\xff"


def run_setup(out: Path, *specs: str) -> None:
    subprocess.run(["sh", str(LAB / "certs" / "setup.sh"), str(out), *specs], check=True,
                   capture_output=True, timeout=120, stdin=subprocess.DEVNULL)


def test_the_setup_step_issues_fresh_certificates_from_a_fresh_ca(tmp_path: Path) -> None:
    specs = ("broker-tls=IP:127.74.1.3", "web-weak@vendor=DNS:web-weak,IP:127.74.1.7",
             "web-basic@vendor=IP:127.74.1.8")
    run_setup(tmp_path / "a", *specs)
    run_setup(tmp_path / "b", *specs)
    a, b = tmp_path / "a", tmp_path / "b"
    for name in ("broker-tls", "web-weak", "web-basic", "client"):
        verify = subprocess.run(["openssl", "verify", "-CAfile", str(a / "ca.crt"),
                                 str(a / f"{name}.crt")], capture_output=True, text=True,
                                timeout=30, check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    weak = x509.load_pem_x509_certificate((a / "web-weak.crt").read_bytes())
    sans = weak.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert sans.get_values_for_type(x509.DNSName) == ["web-weak"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.74.1.7"]
    assert (a / "web-weak.key").read_bytes() == (a / "web-basic.key").read_bytes()
    assert (a / "ca.crt").read_bytes() != (b / "ca.crt").read_bytes()
    assert (a / "probe.password").read_text() != (b / "probe.password").read_text()
    assert (a / "ca.key").stat().st_mode & 0o077 == 0
    passwd = (a / "broker-tls.passwd").read_text()
    assert passwd.startswith("device:$7$") and "\nadmin:$7$" in passwd
    assert "Expires: " in (a / "security.txt").read_text()


def test_the_real_lab_stays_on_loopback_and_runs_each_device_once(tmp_path: Path) -> None:
    for base in ("10.0.0.1", "127.255.255.250", "::1", "nonsense"):
        with pytest.raises(InputError):
            plan_real(base)
    refused = iotprobe("lab", "up", "--real", "--devices", "3", state=tmp_path)
    assert refused.returncode == 2 and "--devices" in refused.stderr
    assert not (tmp_path / "lab.json").exists()


def test_a_lab_killed_with_sigkill_takes_its_daemons_with_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with subreaper():
        lab = subprocess.Popen([sys.executable, "-m", "probe.lab", "up", "--foreground",
                                "--real", "--base", KILL_BASE, "--state-dir", str(state)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
        try:
            assert lab.stdout is not None
            lines = []
            for _ in range(len(REAL_DEVICES) + 5):
                lines.append(lab.stdout.readline().decode())
                if "iotprobe lab ready" in lines[-1] or not lines[-1]:
                    break
            assert "iotprobe lab ready" in lines[-1], lines
            devices = json.loads((state / "lab.json").read_text())["devices"]
            os.kill(lab.pid, signal.SIGKILL)
            lab.wait(TIMEOUT)
        finally:
            if lab.poll() is None:
                lab.kill()
                lab.wait()
        for device in devices:
            assert reaped(device["pid"], 15.0), device["id"]
    for device in devices:
        for item in device["listeners"]:
            assert not is_bound(device["address"], Listen(item["transport"], item["port"]))
    cleared = iotprobe("lab", "down", state=state)
    assert cleared.returncode == 0 and "was not running" in cleared.stdout
