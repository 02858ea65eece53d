"""SSH and Telnet checks against real servers: OpenSSH and dropbear in a weak and a strong
configuration, a paramiko server with a factory password, busybox telnetd with a login program
that checks a test-only credential file, and one that gives a shell prompt without any login.
ssh-audit judges the same SSH servers: its failing algorithms must be the probe's, but for the
documented differences (NIST curves, CBC modes).

Addresses: 127.174.21.x (SSH), 127.174.22.x (Telnet). Every server is a child process stopped by
PID; no system account is created (the SSH logins that succeed are the paramiko server's own).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemons import Daemon, Listener, greet, silent
from hypothesis import given, settings
from hypothesis import strategies as st
from peers.ssh_telnet import STRONG_SSHD, WEAK_SSHD, dropbear, paramiko_server, sshd, telnetd

from probe.api import run_check
from probe.context import ScanOptions
from probe.lab.servers import TelnetLogin
from probe.lab.servers_remote import SshDaemon, TelnetDefaultLogin
from probe.model import Finding, Status
from probe.protocols.ssh import codec
from probe.protocols.ssh.checks import cipher_weakness
from probe.protocols.ssh.codec import KexInit
from probe.protocols.ssh.collectors import _Wire
from probe.protocols.telnet.codec import Stream

SSH_AUDIT = Path(sys.executable).with_name("ssh-audit")
OPTIONS = ScanOptions(timeout=3.0, exclude_ports=(2024,), udp=False)
FAST = {"pace_seconds": 0.2, "max_attempts": 5}
DEVICE_PASSWORD = "Vq7-unlisted-0x41"
"""The password of the servers whose only account is not a default one."""
FACTORY = "factory-Secret-9"
"""The paramiko server's password, the second pair its test tries."""

async def findings(check_id: str, address: str, port: int, **params: Any) -> list[Finding]:
    return await run_check(check_id, address, ports=(port,), options=OPTIONS, **params)


async def status(check_id: str, address: str, port: int, **params: Any) -> Status:
    found = await findings(check_id, address, port, **params)
    assert [f.target for f in found] == [f"tcp/{port}"], found
    return found[0].status


def no_secret(found: list[Finding], *secrets: str) -> None:
    text = json.dumps([[f.summary, f.evidence] for f in found])
    assert not any(secret in text for secret in secrets)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("ssh-telnet")
    peers = {"sshd-weak": ("127.174.21.1", lambda a: sshd(tmp, "sshd-weak", a, WEAK_SSHD)),
             "sshd-strong": ("127.174.21.2", lambda a: sshd(tmp, "sshd-strong", a, STRONG_SSHD)),
             "dropbear-weak": ("127.174.21.3", lambda a: dropbear(tmp, "db-weak", a, weak=True)),
             "dropbear-good": ("127.174.21.4", lambda a: dropbear(tmp, "db-good", a, weak=False)),
             "paramiko": ("127.174.21.5",
                          lambda a: paramiko_server(tmp, a, "password", ("admin", FACTORY))),
             "paramiko-kbd": ("127.174.21.6",
                              lambda a: paramiko_server(tmp, a, "keyboard-interactive",
                                                              ("admin", FACTORY))),
             "telnet-default": ("127.174.22.1", lambda a: telnetd(tmp, "tn-default", a,
                                                                  {"admin": "admin"})),
             "telnet-good": ("127.174.22.2", lambda a: telnetd(tmp, "tn-good", a,
                                                               {"operator": DEVICE_PASSWORD})),
             "telnet-open": ("127.174.22.3", lambda a: telnetd(tmp, "tn-open", a, None))}
    started: list[Daemon] = []
    try:
        for address, begin in peers.values():
            started.append(begin(address))
        yield {name: address for name, (address, _) in peers.items()}
    finally:
        for daemon in started:
            daemon.stop()


def ssh_audit_failures(address: str) -> set[str]:
    """The algorithms ssh-audit marks [fail] on `address`:22 (key exchange, host keys,
    ciphers, MACs)."""
    run = subprocess.run([str(SSH_AUDIT), "-j", "-n", "--skip-rate-test", "-t", "5", "-p", "22",
                          address], capture_output=True, text=True, timeout=120, check=False)
    report = json.loads(run.stdout)
    return {entry["algorithm"] for part in ("kex", "key", "enc", "mac")
            for entry in report.get(part, []) if entry.get("notes", {}).get("fail")}


def rejected(finding: Finding) -> set[str]:
    return {name for names in finding.evidence.get("rejected", {}).values() for name in names}


@pytest.mark.parametrize("name", ["sshd-weak", "sshd-strong", "dropbear-weak", "dropbear-good"])
async def test_algorithms_agree_with_ssh_audit(servers: dict[str, str], name: str) -> None:
    """The probe rejects what ssh-audit fails, except NIST curves (the probe accepts them);
    beyond ssh-audit it rejects only CBC modes (ssh-audit warns)."""
    address = servers[name]
    [finding] = await findings("ssh.algorithms", address, 22)
    ours, theirs = rejected(finding), ssh_audit_failures(address)
    assert theirs - ours <= {n for n in theirs if "nistp" in n}, (ours, theirs)
    assert all(cipher_weakness(n) == "CBC mode" for n in ours - theirs), (ours, theirs)
    expected = Status.FAIL if ours or {n for n in theirs if "nistp" not in n} else Status.PASS
    assert finding.status is expected


async def test_algorithms_pass_on_strong_openssh_and_fail_on_weak(
        servers: dict[str, str]) -> None:
    assert await status("ssh.algorithms", servers["sshd-strong"], 22) is Status.PASS
    [weak] = await findings("ssh.algorithms", servers["sshd-weak"], 22)
    assert weak.status is Status.FAIL
    assert weak.evidence["rejected"]["host_key"]["rsa-sha2-256"] == "a 1024-bit RSA key"
    assert set(weak.evidence["rejected"]["kex"]) == {"diffie-hellman-group1-sha1",
                                                     "diffie-hellman-group14-sha1"}
    assert {"ssh-ed25519", "ssh-rsa"} == {k["type"] for k in weak.evidence["host_keys"]}


async def test_dropbear_1024_bit_rsa_host_key_fails(servers: dict[str, str]) -> None:
    [finding] = await findings("ssh.algorithms", servers["dropbear-weak"], 22)
    assert finding.status is Status.FAIL
    assert {"type": "ssh-rsa", "bits": 1024} in [
        {"type": k.get("type"), "bits": k.get("bits")} for k in finding.evidence["host_keys"]]


@pytest.mark.parametrize(("name", "expected"), [
    ("sshd-weak", Status.FAIL), ("sshd-strong", Status.PASS),
    ("dropbear-weak", Status.FAIL), ("dropbear-good", Status.PASS),
    ("paramiko-kbd", Status.FAIL)])
async def test_password_auth(servers: dict[str, str], name: str, expected: Status) -> None:
    assert await status("ssh.password-auth", servers[name], 22) is expected


@pytest.mark.parametrize("name", ["paramiko", "paramiko-kbd"])
async def test_ssh_default_credentials_fail_on_a_factory_password(
        servers: dict[str, str], name: str) -> None:
    """By password, or by keyboard-interactive where the server takes only that."""
    pairs = [["root", "toor-Secret-1"], ["admin", FACTORY], ["user", "user-Secret-3"]]
    found = await findings("ssh.default-credentials", servers[name], 22, **FAST,
                           pairs=pairs)
    assert [f.status for f in found] == [Status.FAIL]
    assert found[0].evidence["accepted_username"] == "admin"
    assert [a["result"] for a in found[0].evidence["attempts"]] == ["refused", "accepted"]
    no_secret(found, "toor-Secret-1", FACTORY)


async def test_ssh_default_credentials_pass_where_every_pair_is_refused(
        servers: dict[str, str]) -> None:
    found = await findings("ssh.default-credentials", servers["sshd-weak"], 22, **FAST)
    assert [f.status for f in found] == [Status.PASS]
    assert [a["result"] for a in found[0].evidence["attempts"]] == ["refused"] * 5


async def test_ssh_default_credentials_pass_without_password_methods(
        servers: dict[str, str]) -> None:
    found = await findings("ssh.default-credentials", servers["sshd-strong"], 22, **FAST)
    assert [f.status for f in found] == [Status.PASS]
    assert [a["result"] for a in found[0].evidence["attempts"]] == ["no-method"]


async def test_telnet_default_credentials(servers: dict[str, str]) -> None:
    found = await findings("telnet.default-credentials", servers["telnet-default"], 23, **FAST)
    assert [f.status for f in found] == [Status.FAIL]
    assert found[0].evidence["accepted_username"] == "admin"
    no_secret(found, "xc3511", "vizxv", "888888")
    good = await findings("telnet.default-credentials", servers["telnet-good"], 23, **FAST)
    assert [f.status for f in good] == [Status.PASS]
    assert [a["result"] for a in good[0].evidence["attempts"]] == ["refused"] * 5


async def test_telnet_shell_without_login_fails(servers: dict[str, str]) -> None:
    found = await findings("telnet.default-credentials", servers["telnet-open"], 23, **FAST)
    assert [f.status for f in found] == [Status.FAIL]
    assert found[0].evidence["open_shell"] is True
    assert found[0].evidence["attempts"] == []


def test_telnet_stream_refuses_options_and_strips_commands() -> None:
    stream = Stream()
    text, reply = stream.feed(b"\xff\xfb\x01\xff\xfd\x18\xff\xfa\x18\x01\xff\xf0log")
    assert (text, reply) == (b"log", b"\xff\xfe\x01\xff\xfc\x18")
    text, reply = stream.feed(b"in: \xff")
    assert (text, reply) == (b"in: ", b"")
    assert stream.feed(b"\xfb\x01") == (b"", b"")  # WILL ECHO again: refused once only


@pytest.mark.parametrize(("account", "expected"), [
    (("admin", "admin"), Status.FAIL), (("operator", DEVICE_PASSWORD), Status.PASS)])
async def test_lab_telnet_persona(account: tuple[str, str], expected: Status) -> None:
    """The lab's Telnet server with a factory account fails, with its own account passes."""
    async with Listener("127.174.23.1", 23, TelnetDefaultLogin(account).serve):
        assert await status("telnet.default-credentials", "127.174.23.1", 23, **FAST) is expected


@pytest.mark.parametrize(("account", "expected"), [
    (("admin", "admin"), Status.FAIL), (("operator", DEVICE_PASSWORD), Status.PASS)])
async def test_lab_ssh_persona(account: tuple[str, str], expected: Status) -> None:
    """The lab's legacy SSH server: its algorithms and password logins fail; its factory
    account fails the credential trial, an account of its own passes it."""
    async with Listener("127.174.23.2", 22, SshDaemon(account).serve):
        [algorithms] = await findings("ssh.algorithms", "127.174.23.2", 22)
        assert await status("ssh.password-auth", "127.174.23.2", 22) is Status.FAIL
        assert await status("ssh.default-credentials", "127.174.23.2", 22, **FAST) is expected
    assert algorithms.status is Status.FAIL
    assert set(algorithms.evidence["rejected"]) == {"host_key", "ciphers", "macs"}


async def test_ssh_default_credentials_refusals_by_keyboard_interactive_pass(
        servers: dict[str, str]) -> None:
    found = await findings("ssh.default-credentials", servers["paramiko-kbd"], 22, **FAST)
    assert [f.status for f in found] == [Status.PASS]
    assert [a["result"] for a in found[0].evidence["attempts"]] == ["refused"] * 5


SSH_CHECKS = ("ssh.algorithms", "ssh.password-auth", "ssh.default-credentials")


@pytest.mark.parametrize("handler", [
    greet(b"SSH-2.0-stalls\r\n"),
    greet(b"SSH-2.0-huge\r\n\x7f\xff\xff\xff\x04" + bytes(64)),
    greet(b"SSH-2.0-notkex\r\n\x00\x00\x00\x0c\x0a\x05" + bytes(10)),
], ids=["no-kexinit", "huge-packet", "not-kexinit"])
@pytest.mark.parametrize("check_id", SSH_CHECKS)
async def test_ssh_server_that_never_finishes_is_an_error(handler: Any, check_id: str) -> None:
    """A version line, then silence, a packet length past the cap, or another message where
    KEXINIT was due: every SSH check is an error, never a pass."""
    async with Listener("127.174.24.1", 22, handler):
        found = await findings(check_id, "127.174.24.1", 22, **(
            FAST if check_id == "ssh.default-credentials" else {}))
    assert [f.status for f in found] == [Status.ERROR], found


@pytest.mark.parametrize("check_id", (*SSH_CHECKS, "telnet.default-credentials"))
@pytest.mark.parametrize("port", [22, 23])
async def test_a_silent_conventional_port_is_an_error(check_id: str, port: int) -> None:
    """Port 22 may carry SSH and 23 Telnet: silent there, the check cannot be decided."""
    async with Listener("127.174.24.2", port, silent):
        found = await findings(check_id, "127.174.24.2", port)
    serves = "ssh" if port == 22 else "telnet"
    expected = Status.ERROR if check_id.startswith(serves) else Status.NOT_APPLICABLE
    assert [f.status for f in found] == [expected], found


async def test_telnet_login_prompt_then_silence_is_an_error() -> None:
    async with Listener("127.174.24.3", 23, greet(b"\xff\xfd\x18router login: ")):
        found = await findings("telnet.default-credentials", "127.174.24.3", 23, **FAST)
    assert [f.status for f in found] == [Status.ERROR]
    assert found[0].evidence["attempts"][0]["result"] == "undecided"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_ssh_codec_raises_only_malformed_message(data: bytes) -> None:
    for parse in (codec.parse_kexinit, codec.parse_host_key, codec.gex_group,
                  lambda d: codec.reply_host_key(d, codec.KEXDH_REPLY)):
        with contextlib.suppress(codec.MalformedMessage):
            parse(data)
    with contextlib.suppress(codec.MalformedMessage):
        size = codec.packet_size(data)
        if size is not None:
            codec.payload(data[:size])
    codec.version_line(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_telnet_stream_answers_only_refusals_each_once(chunks: list[bytes]) -> None:
    stream = Stream()
    for chunk in chunks:
        _, reply = stream.feed(chunk)
        assert len(reply) % 3 == 0 and len(reply) <= 3 * 2 * 256
        assert all(b in (0xFC, 0xFE) for b in reply[1::3])


async def test_lab_hardened_ssh_persona() -> None:
    async with Listener("127.174.23.3", 22, SshDaemon().serve):
        for check_id in ("ssh.algorithms", "ssh.password-auth", "ssh.default-credentials"):
            assert await status(check_id, "127.174.23.3", 22) is Status.PASS, check_id


async def test_lab_telnet_that_refuses_on_the_user_name_passes() -> None:
    """The telnet-camera persona says "Login incorrect" to the user name alone and closes:
    each attempt is a refusal, not an undecided one."""
    async with Listener("127.174.23.4", 23, TelnetLogin(banner="\r\nIP Camera\r\n").serve):
        found = await findings("telnet.default-credentials", "127.174.23.4", 23, **FAST)
    assert [f.status for f in found] == [Status.PASS]
    assert [a["result"] for a in found[0].evidence["attempts"]] == ["refused"] * 5


class _OneRead:
    """A context whose first read returns `data` and whose every later read fails the test."""

    def __init__(self, data: bytes) -> None:
        self.data: bytes | None = data

    async def read(self, reader: object, max_bytes: int, **_: object) -> tuple[bytes, bool]:
        assert self.data is not None, "read again though the buffer held what was asked"
        data, self.data = self.data, None
        return data, False


async def test_a_kexinit_that_came_with_the_version_line_is_read_without_waiting() -> None:
    """OpenSSH sends its KEXINIT in the segment of its version line: the packet is taken from
    what was read, not waited for (that wait was a whole timeout per connection)."""
    server = KexInit(("curve25519-sha256",), ("ssh-ed25519",), ("aes128-ctr",),
                     ("aes128-ctr",), ("hmac-sha2-256",), ("hmac-sha2-256",), ("none",),
                     ("none",))
    kexinit = codec.kexinit(server.kex, server.host_key, server)
    wire = _Wire(_OneRead(b"SSH-2.0-OpenSSH_9.2\r\n" + codec.packet(kexinit)),
                 asyncio.StreamReader(), _Sink())
    assert await wire.version() == "SSH-2.0-OpenSSH_9.2"
    assert codec.parse_kexinit(await wire.message()) == server


class _Sink:
    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass


async def _echoing_login(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A Telnet login that echoes what is typed, password included, and refuses it a moment
    later (the moment only orders the two writes)."""
    for prompt in (b"login: ", b"Password: "):
        writer.write(prompt)
        await writer.drain()
        typed = await reader.readline()
        writer.write(typed)
        await writer.drain()
    await asyncio.sleep(0.5)
    writer.write(b"Login incorrect\r\nlogin: ")
    await writer.drain()


async def test_a_password_echoed_back_is_not_read_as_a_shell_prompt() -> None:
    async with Listener("127.174.24.4", 23, _echoing_login):
        found = await findings("telnet.default-credentials", "127.174.24.4", 23,
                               pairs=[["admin", "Secret-9#"]], pace_seconds=0.0)
    assert [f.status for f in found] == [Status.PASS], found
    no_secret(found, "Secret-9#")


async def _password_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A console that asks only for a password, and asks again after a wrong one (three
    times at most)."""
    for _ in range(3):
        writer.write(b"\r\nPassword: ")
        await writer.drain()
        if not await reader.readline():
            return


async def test_a_password_asked_again_is_a_refusal() -> None:
    async with Listener("127.174.24.5", 23, _password_only):
        found = await findings("telnet.default-credentials", "127.174.24.5", 23, **FAST)
    assert [f.status for f in found] == [Status.PASS], found
    assert [a["result"] for a in found[0].evidence["attempts"]] == ["refused"] * 5
