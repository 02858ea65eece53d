"""The emulated lab: every persona behaves as declared, the fleet API, the `lab` commands.

Everything talks to 127.43.x.x (in-process fleets) or 127.44.x.x (the background lab) only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from scapy.layers.snmp import SNMP, SNMPget, SNMPnext, SNMPresponse, SNMPvarbind

from probe.errors import InputError
from probe.lab import PERSONAS, Fleet, LabBindError, plan_fleet, run_fleet
from probe.lab.cli import lab_group
from probe.lab.servers import OID_SYS_DESCR, TcpListener, TelnetLogin
from probe.lab.state import process_alive

BASE = "127.43.0.1"
API_BASE = "127.43.1.1"
BG_BASE = "127.44.0.1"
TIMEOUT = 5.0
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Lab:
    fleet: Fleet
    address: dict[str, str]

    def tls_client(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.fleet.ca_pem.decode())
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """One device per persona, served by a loop in a thread so tests can use plain sockets."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    specs = plan_fleet(list(PERSONAS.values()), len(PERSONAS), BASE)
    fleet = asyncio.run_coroutine_threadsafe(run_fleet(specs), loop).result(60)
    try:
        yield Lab(fleet, {s.persona.name: s.address for s in specs})
    finally:
        asyncio.run_coroutine_threadsafe(fleet.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(60)
        loop.close()


def connect(address: str, port: int) -> socket.socket:
    assert port != 2024
    return socket.create_connection((address, port), timeout=TIMEOUT)


def recv_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    for _ in range(50):
        if marker in data:
            return data
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    assert marker in data, data
    return data


def recv_all(sock: socket.socket) -> bytes:
    data = b""
    for _ in range(50):
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"peer did not close: {data!r}")


def udp_exchange(address: str, port: int, payload: bytes, timeout: float = TIMEOUT) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((address, port))
        sock.send(payload)
        try:
            return sock.recv(4096)
        except TimeoutError:
            return None


def snmp_request(version: int, community: bytes, oid: str, pdu: type = SNMPget) -> bytes:
    request = pdu(id=4242, varbindlist=[SNMPvarbind(oid=oid)])
    return bytes(SNMP(version=version, community=community, PDU=request))


def test_telnet_negotiates_prompts_and_refuses(lab: Lab) -> None:
    with connect(lab.address["telnet-camera"], 23) as sock:
        greeting = recv_until(sock, b"login: ")
        assert greeting[0] == 0xFF and bytes([0xFF, 0xFB]) in greeting
        sock.sendall(b"\xff\xfc\x18root\r\n")
        assert b"Login incorrect" in recv_all(sock)


def test_ftp_banner_and_refusals(lab: Lab) -> None:
    with connect(lab.address["ftp-gateway"], 21) as sock:
        banner = recv_until(sock, b"\r\n")
        assert banner.startswith(b"220 ") and b"FTP server ready" in banner
        sock.sendall(b"USER anonymous\r\n")
        assert recv_until(sock, b"\r\n").startswith(b"530 ")
        sock.sendall(b"PASS guest\r\n")
        assert recv_until(sock, b"\r\n").startswith(b"530 ")
        sock.sendall(b"USER admin\r\nPASS admin\r\n")
        assert recv_until(sock, b"530 Login incorrect.\r\n530 Login incorrect.\r\n")
        sock.sendall(b"QUIT\r\n")
        assert recv_all(sock).startswith(b"221 ")


@pytest.mark.parametrize("version", [0, 1])
def test_snmp_answers_public(lab: Lab, version: int) -> None:
    reply = udp_exchange(lab.address["snmp-public"], 161,
                         snmp_request(version, b"public", OID_SYS_DESCR))
    assert reply is not None
    message = SNMP(reply)
    assert int(message.version.val) == version
    assert isinstance(message.PDU, SNMPresponse)
    assert int(message.PDU.id.val) == 4242 and int(message.PDU.error.val) == 0
    (varbind,) = message.PDU.varbindlist
    assert str(varbind.oid.val) == OID_SYS_DESCR
    assert b"iotprobe lab" in bytes(varbind.value.val)


def test_snmp_walks_and_reports_missing_objects(lab: Lab) -> None:
    address = lab.address["snmp-public"]
    reply = udp_exchange(address, 161, snmp_request(1, b"public", "1.3.6.1.2.1.1", SNMPnext))
    assert reply is not None
    assert str(SNMP(reply).PDU.varbindlist[0].oid.val) == OID_SYS_DESCR
    v1 = udp_exchange(address, 161, snmp_request(0, b"public", "1.3.6.1.2.1.2.1.0"))
    assert v1 is not None and int(SNMP(v1).PDU.error.val) == 2
    v2 = udp_exchange(address, 161, snmp_request(1, b"public", "1.3.6.1.2.1.2.1.0"))
    assert v2 is not None and SNMP(v2).PDU.varbindlist[0].noSuchObject is not None


def test_snmp_ignores_other_communities_and_garbage(lab: Lab) -> None:
    address = lab.address["snmp-public"]
    assert udp_exchange(address, 161, snmp_request(1, b"private", OID_SYS_DESCR), 1.0) is None
    assert udp_exchange(address, 161, b"\x30\x82\xff\xff garbage", 1.0) is None
    assert udp_exchange(address, 161, snmp_request(1, b"public", OID_SYS_DESCR)) is not None


def test_tftp_read_gets_file_not_found(lab: Lab) -> None:
    reply = udp_exchange(lab.address["tftp-sensor"], 69, b"\x00\x01config.bin\x00octet\x00")
    assert reply is not None
    opcode, code = struct.unpack_from("!HH", reply)
    assert (opcode, code) == (5, 1)
    assert reply.endswith(b"\x00")


def test_http_serves_a_page(lab: Lab) -> None:
    """HTTP/1.1 keeps the connection for the next request until the client asks to close."""
    with connect(lab.address["extra-ports"], 8080) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: device\r\n\r\n")
        first = recv_until(sock, b"</html>\n")
        sock.sendall(b"GET /other HTTP/1.1\r\nHost: device\r\nConnection: close\r\n\r\n")
        last = recv_all(sock)
    assert first.startswith(b"HTTP/1.1 200 ")
    assert b"<html>" in first and b"Connection: close" not in first
    assert last.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nConnection: close\r\n" in last


def test_http_closes_after_http_1_0_and_garbage(lab: Lab) -> None:
    for request in (b"GET / HTTP/1.0\r\n\r\n", b"HELLO\r\n\r\n"):
        with connect(lab.address["extra-ports"], 8080) as sock:
            sock.sendall(request)
            assert b"\r\nConnection: close\r\n" in recv_all(sock)


def test_rfb_banner(lab: Lab) -> None:
    with connect(lab.address["extra-ports"], 5900) as sock:
        assert recv_until(sock, b"\n") == b"RFB 003.008\n"


@pytest.mark.parametrize("port", [23, 8883])
def test_hang_accepts_and_says_nothing(lab: Lab, port: int) -> None:
    with connect(lab.address["hang"], port) as sock:
        sock.settimeout(1.0)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        sock.sendall(b"hello?\r\n")
        with pytest.raises(TimeoutError):
            sock.recv(1)


@pytest.mark.parametrize("port", [21, 23, 443, 8883])
def test_dark_refuses(lab: Lab, port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        connect(lab.address["dark"], port)


@pytest.mark.parametrize(("persona", "port"), [
    ("clean-sensor", 8883), ("telnet-camera", 443), ("ftp-gateway", 8443),
    ("snmp-public", 8883), ("tftp-sensor", 8883), ("extra-ports", 8883),
])
def test_tls_handshake_verifies_against_lab_ca(lab: Lab, persona: str, port: int) -> None:
    address = lab.address[persona]
    with connect(address, port) as raw, \
            lab.tls_client().wrap_socket(raw, server_hostname=address) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        assert tls.getpeercert()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_tls_refuses_tls_1_1(lab: Lab) -> None:
    ctx = lab.tls_client()
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    address = lab.address["clean-sensor"]
    with connect(address, 8883) as raw, pytest.raises(ssl.SSLError):
        ctx.wrap_socket(raw, server_hostname=address)


@pytest.mark.parametrize(("level", "connack"), [
    (4, b"\x20\x02\x00\x05"), (5, b"\x20\x03\x00\x87\x00"),
])
def test_mqtts_refuses_connect(lab: Lab, level: int, connack: bytes) -> None:
    properties = b"\x00" if level == 5 else b""
    body = b"\x00\x04MQTT" + bytes([level, 0x02, 0x00, 0x3C]) + properties + b"\x00\x02id"
    address = lab.address["clean-sensor"]
    with connect(address, 8883) as raw, \
            lab.tls_client().wrap_socket(raw, server_hostname=address) as tls:
        tls.sendall(bytes([0x10, len(body)]) + body)
        assert recv_all(tls) == connack


def test_https_serves_a_page(lab: Lab) -> None:
    address = lab.address["telnet-camera"]
    with connect(address, 443) as raw, \
            lab.tls_client().wrap_socket(raw, server_hostname=address) as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: camera\r\n\r\n")
        assert recv_until(tls, b"</html>\n").startswith(b"HTTP/1.1 200 ")
        tls.sendall(b"GET / HTTP/1.1\r\nHost: camera\r\nConnection: close\r\n\r\n")
        assert recv_all(tls).startswith(b"HTTP/1.1 200 ")


def test_garbage_never_takes_a_device_down(lab: Lab) -> None:
    junk = bytes(range(256)) * 64
    for persona in PERSONAS.values():
        address = lab.address[persona.name]
        for listener in persona.listeners:
            if listener.transport == "udp":
                udp_exchange(address, listener.port, junk[:1500], 0.2)
                continue
            with connect(address, listener.port) as sock:
                sock.settimeout(0.5)
                with contextlib.suppress(OSError):
                    sock.sendall(junk)
                    sock.recv(4096)
    test_telnet_negotiates_prompts_and_refuses(lab)
    test_ftp_banner_and_refusals(lab)
    test_snmp_answers_public(lab, 1)
    test_tftp_read_gets_file_not_found(lab)
    test_http_serves_a_page(lab)
    test_tls_handshake_verifies_against_lab_ca(lab, "clean-sensor", 8883)


def test_a_busy_port_names_address_and_port(lab: Lab) -> None:
    busy = plan_fleet([PERSONAS["telnet-camera"]], 1, lab.address["telnet-camera"])

    async def start() -> None:
        await run_fleet(busy)

    with pytest.raises(LabBindError) as caught:
        asyncio.run(start())
    assert caught.value.address == lab.address["telnet-camera"]
    assert caught.value.port == 23
    assert f"{lab.address['telnet-camera']}:23" in str(caught.value)


async def test_run_fleet_in_the_running_loop() -> None:
    specs = plan_fleet([PERSONAS["ftp-gateway"], PERSONAS["tftp-sensor"]], 2, API_BASE)
    async with await run_fleet(specs) as fleet:
        assert [s.id for s in fleet.specs] == ["ftp-gateway-1", "tftp-sensor-1"]
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(specs[0].address, 21), TIMEOUT)
        assert (await asyncio.wait_for(reader.readline(), TIMEOUT)).startswith(b"220 ")
        writer.close()
        await writer.wait_closed()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(asyncio.open_connection(specs[0].address, 21), TIMEOUT)


def test_plan_cycles_personas_on_consecutive_addresses() -> None:
    personas = [PERSONAS["clean-sensor"], PERSONAS["dark"]]
    specs = plan_fleet(personas, 5, "127.42.0.254")
    assert [s.id for s in specs] == [
        "clean-sensor-1", "dark-1", "clean-sensor-2", "dark-2", "clean-sensor-3"]
    assert [s.address for s in specs] == [
        "127.42.0.254", "127.42.0.255", "127.42.1.0", "127.42.1.1", "127.42.1.2"]


@pytest.mark.parametrize(("base", "count"), [
    ("10.0.0.1", 1), ("127.255.255.250", 10), ("126.255.255.255", 2), ("::1", 1), ("x", 1),
])
def test_plan_refuses_addresses_outside_loopback(base: str, count: int) -> None:
    with pytest.raises(InputError) as caught:
        plan_fleet(list(PERSONAS.values()), count, base)
    assert caught.value.field == "--base"


def test_port_2024_is_never_a_listener() -> None:
    with pytest.raises(ValueError, match="2024"):
        TcpListener(2024, TelnetLogin())


@pytest.mark.parametrize("args", [
    ["up", "--base", "10.0.0.1"],
    ["up", "--personas", "clean-sensor,nonesuch"],
    ["up", "--devices", "0"],
])
def test_up_rejects_bad_input_with_exit_2(tmp_path: Path, args: list[str]) -> None:
    result = CliRunner().invoke(lab_group(), [*args, "--state-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "lab.json").exists()


def run_lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe.lab", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=180)


def test_background_lab_up_status_down(tmp_path: Path) -> None:
    state_dir, inventory = tmp_path / "state", tmp_path / "lab.yaml"
    count = len(PERSONAS) + 2
    up = run_lab("up", "--devices", str(count), "--base", BG_BASE, "--state-dir", str(state_dir),
                 "--inventory-out", str(inventory))
    assert up.returncode == 0, up.stderr
    state = json.loads((state_dir / "lab.json").read_text())
    pid = state["pid"]
    try:
        assert process_alive(pid)
        devices = {d["id"]: d for d in state["devices"]}
        assert len(devices) == count
        clean = devices["clean-sensor-1"]["expect"]
        assert {clean["net.open-ports"], clean["net.cleartext-management"]} == {"pass"}
        assert devices["dark-1"]["expect_verdict"] == "inconclusive"
        first = ipaddress.IPv4Address(BG_BASE)
        assert devices["clean-sensor-2"]["address"] == str(first + len(PERSONAS))
        assert "telnet-camera-1" in up.stdout

        listed = yaml.safe_load(inventory.read_text())
        assert listed["defaults"] == {"exclude_ports": [2024],
                                      "trust_anchor": str(state_dir / "lab-ca.pem")}
        assert [(d["id"], d["address"], d["class"]) for d in listed["devices"]] == [
            (d["id"], d["address"], d["class"]) for d in state["devices"]]
        assert all(set(d) == {"id", "address", "class"} for d in listed["devices"])
        assert (state_dir / "lab-ca.pem").read_text().startswith("-----BEGIN CERTIFICATE")

        with connect(devices["telnet-camera-1"]["address"], 23) as sock:
            recv_until(sock, b"login: ")

        status = run_lab("status", "--state-dir", str(state_dir))
        assert status.returncode == 0, status.stderr
        assert "running" in status.stdout and "hang-1" in status.stdout

        again = run_lab("up", "--base", "127.44.1.1", "--state-dir", str(state_dir))
        assert again.returncode == 2
        assert "already running" in again.stderr
    finally:
        down = run_lab("down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert not process_alive(pid)
    assert not (state_dir / "lab.json").exists()
    with pytest.raises(ConnectionRefusedError):
        connect(devices["telnet-camera-1"]["address"], 23)
    with pytest.raises(ConnectionRefusedError):
        connect(devices["clean-sensor-1"]["address"], 8883)
    after = run_lab("status", "--state-dir", str(state_dir))
    assert after.returncode == 1


def test_background_lab_reports_a_busy_address(lab: Lab, tmp_path: Path) -> None:
    up = run_lab("up", "--personas", "telnet-camera", "--base", lab.address["telnet-camera"],
                 "--state-dir", str(tmp_path))
    assert up.returncode == 2
    assert f"{lab.address['telnet-camera']}:23" in up.stderr
    assert not (tmp_path / "lab.json").exists()


def test_state_dir_defaults_to_the_environment(tmp_path: Path) -> None:
    env = {**os.environ, "IOTPROBE_STATE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "probe.lab", "status"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert str(tmp_path) in result.stdout
