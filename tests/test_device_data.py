"""Device data is data in every output (issue 16: defects 1, 2, 3 and 8).

Two MQTT brokers publish hostile retained `$SYS` topics to whoever subscribes: NUL, OSC and CSI
escape sequences, a C1 control, a bidi override, rich markup (`[/x]`, `[bold red]`,
`[link=...]`), the probe's own `user:password` (plain, as HTTP Basic base64 and URL-encoded)
and the canary's password; the second publishes five 65 KB topic names. The first device also
answers CoAP discovery with a link document that holds the probe's DTLS PSK and escape
sequences. A real mosquitto serves MQTT over TLS with a certificate whose subject holds escape
sequences and the MQTT password; a real nginx redirects with a Location and a Content-Type
that hold escape sequences and the password. The other servers are the lab's emulated ones
(probe.lab.servers_mqtt, servers_coap) served from a thread of the test: MQTT forbids NUL in a
topic, no real broker lets a client publish under `$SYS`, and no real CoAP server echoes a PSK
it was never sent, so no real implementation behaves this way. The probe is always the
`iotprobe` command; every record is validated against the schema; the terminal is a real
pseudo-terminal. Addresses 127.137.0.x.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import logging
import math
import os
import re
import select
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import pytest
import yaml
from conftest import load_records, without_own_script
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from daemons import Certificate, bound, mosquitto, nginx_site
from hypothesis import given, settings
from hypothesis import strategies as st
from pgserver import postgres_server
from test_hostile import iotprobe

from probe import __version__
from probe.context import ScanOptions
from probe.engine import Engine
from probe.escaping import EVIDENCE_BUDGET, MAX_ITEMS, MAX_TEXT, Bounder, escape, unescape
from probe.lab.servers_coap import CoapDevice
from probe.lab.servers_mqtt import MqttBroker
from probe.model import Device, Finding, Result, Severity, Status
from probe.profile import Profile
from probe.profile_loader import load_profiles
from probe.record.model import ProbeInfo, ProfileRef, Record, record_of
from probe.record.schema import validate_record
from probe.run import ScanRun
from probe.secrets import Secret, device_redactor
from probe.store import Store, open_store
from probe.sweep import StoreSink

ECHO, HUGE, TLS, WEB = "127.137.0.1", "127.137.0.2", "127.137.0.3", "127.137.0.4"
PASSWORD = "pw-Echo:d/By+The Broker%7"
CANARY = "canary-Pw-9xQ-file"
PSK = "coap-PSK-0ddba11"
ACCOUNTS = (("alice", PASSWORD), ("canary", CANARY), ("probe", PSK))
DISCOVERY = f'</psk/{PSK}>;rt="\x1b]0;owned\x07",</[/x]>'.encode()
HOSTILE_TOPICS = (
    "$SYS/nul/\x00/osc/\x1b]0;owned\x07/csi/\x1b[2J",
    "$SYS/markup/[/x] [bold red]red[/] [link=http://evil.example]link[/link]"
    " \u202eexe.txt \x9b31m",
    f"$SYS/secret/alice:{PASSWORD}/canary/{CANARY}",
    "$SYS/basic/" + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    + "/url/" + quote(PASSWORD, safe=""),
    "$SYS/ordinary/back\\slash",
)
BIG_TOPICS = tuple(f"$SYS/big/{n}/" + "A" * 65000 for n in range(5))
RAW_DATA = (b"\x1b]0;owned", b"\x1b[2J", b"\x1b]8;", b"\xc2\x9b", b"\xe2\x80\xae", b"\x00")
"""Bytes of the hostile topics that must never reach a terminal or a file raw."""
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
RECORD_BOUND = 64 * 1024
"""Bytes of one record, or of a report of these two devices, whatever the brokers send."""

PROFILE = """\
id: device-data
title: MQTT checks of hostile brokers
version: "1"
scan:
  tcp_ports: "1883,8883,8080"
controls:
  27400-6.2:
    title: Secure communication
    checks:
      net.open-ports:
        classes:
          broker: {allowed_tcp: [8883], allowed_udp: []}
      mqtt.cleartext-listener:
      mqtt.anonymous-access:
      mqtt.topic-authorization:
        params: {window_seconds: 0.5}
      coap.cleartext:
      tls.certificate-validity:
      http.cleartext:
"""


def secret_forms() -> set[str]:
    """Each secret's encoded forms, and every 8 characters of it (a secret escaped on the way,
    as RFC 4514 does with `+` in a certificate subject, still shows a piece of itself)."""
    out: set[str] = set()
    for user, secret in ACCOUNTS:
        raw = secret.encode()
        out |= {raw.hex(), base64.b64encode(raw).decode(), quote(secret, safe=""),
                base64.b64encode(f"{user}:{secret}".encode()).decode()}
        out |= {secret[i:i + 8] for i in range(len(secret) - 7)}
    return out


def leaked(data: str | bytes) -> list[str]:
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    return sorted(form for form in secret_forms() if form in text)


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def clean_broker() -> MqttBroker:
    """Logins only, each confined to devices/; the lab's ordinary $SYS topics."""
    return MqttBroker(accounts=ACCOUNTS, anonymous=False, scope="devices/")


def hostile_broker(topics: tuple[str, ...]) -> MqttBroker:
    """Anyone logs in and reads everything, `topics` among the retained $SYS messages."""
    return MqttBroker(accounts=ACCOUNTS, anonymous=True,
                      sys_topics=tuple((topic, "x") for topic in topics))


@dataclass
class Brokers:
    """Lab brokers on 1883 of ECHO and HUGE, served by an event loop in a thread; `set`
    changes what answers at an address from the next connection on."""

    current: dict[str, MqttBroker] = field(default_factory=dict)
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    async def _handle(self, address: str, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        try:
            await self.current[address].serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _listen(self, address: str) -> asyncio.Server:
        return await asyncio.start_server(
            lambda r, w: self._handle(address, r, w), address, 1883)

    def set(self, address: str, broker: MqttBroker) -> None:
        self.current[address] = broker

    async def _coap(self) -> asyncio.DatagramTransport:
        transport, _ = await self.loop.create_datagram_endpoint(
            lambda: CoapEcho(CoapDevice(resources=(), discovery=DISCOVERY)),
            local_addr=(ECHO, 5683))
        return transport

    def start(self) -> tuple[list[asyncio.Server], asyncio.DatagramTransport]:
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        servers = [asyncio.run_coroutine_threadsafe(self._listen(a), self.loop).result(60)
                   for a in (ECHO, HUGE)]
        coap = asyncio.run_coroutine_threadsafe(self._coap(), self.loop).result(60)
        assert all(bound(a, 1883, "tcp") for a in (ECHO, HUGE)) and bound(ECHO, 5683, "udp")
        return servers, coap

    def stop(self, servers: list[asyncio.Server], coap: asyncio.DatagramTransport) -> None:
        async def close() -> None:
            coap.close()
            for server in servers:
                server.close()
                await server.wait_closed()
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)


class CoapEcho(asyncio.DatagramProtocol):
    """The lab's CoAP device on a datagram endpoint: one answer per request."""

    def __init__(self, device: CoapDevice) -> None:
        self.device = device
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        answer = self.device.answer(data)
        if answer is not None and self.transport is not None:
            self.transport.sendto(answer, addr)


@pytest.fixture(scope="module")
def brokers() -> Iterator[Brokers]:
    running = Brokers()
    running.set(ECHO, hostile_broker(HOSTILE_TOPICS))
    running.set(HUGE, hostile_broker(BIG_TOPICS))
    servers, coap = running.start()
    try:
        yield running
    finally:
        running.stop(servers, coap)


def hostile_certificate(tmp: Path) -> Certificate:
    """A self-signed certificate whose subject holds an OSC sequence, a bidi override and the
    probe's MQTT password."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, f"dev-{PASSWORD}"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "\x1b]0;owned\x07 [/x] \u202eexe")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(
                ipaddress.ip_address(TLS))]), critical=False)
            .sign(key, hashes.SHA256()))
    paths = Certificate(tmp / "hostile.crt", tmp / "hostile.key")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return paths


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A real mosquitto on TLS:8883 with the hostile certificate."""
    tmp = tmp_path_factory.mktemp("mosquitto")
    with mosquitto(tmp, TLS, 8883, tls=hostile_certificate(tmp)):
        yield


WEB_SITE = (f"server {{ listen {WEB}:8080; default_type \"text/html; charset={PASSWORD}"
            "\x1b[2J\"; location / { return 302 "
            f"\"http://{WEB}:8080/{PASSWORD}/\x1b]0;owned\x07/\u202e\"; }} }}")


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A real nginx on 8080 whose redirect and content type echo the password and escapes."""
    with nginx_site(tmp_path_factory.mktemp("nginx"), WEB, [8080], WEB_SITE, "echo"):
        yield


@dataclass(frozen=True)
class Setup:
    directory: Path
    inventory: Path
    profile: Path
    env: dict[str, str]

    def scan_args(self) -> tuple[str, ...]:
        return ("-i", str(self.inventory), "-p", str(self.profile), "--timeout", "3",
                "--budget", "90", "--exclude-ports", "2024")


def make_setup(directory: Path) -> Setup:
    (directory / "canary.txt").write_text(CANARY + "\n")
    profile = directory / "profile.yaml"
    profile.write_text(PROFILE)
    inventory = directory / "fleet.yaml"
    inventory.write_text(yaml.safe_dump({
        "defaults": {"exclude_ports": [2024], "credentials": {
            "mqtt": {"username": "alice", "password_env": "DD_MQTT_PASSWORD"},
            "mqtt_canary": {"username": "canary", "password_file": "canary.txt"},
            "coap": {"identity": "probe", "psk_env": "DD_COAP_PSK"}}},
        "devices": [{"id": "echo", "address": ECHO, "class": "broker"},
                    {"id": "huge", "address": HUGE, "class": "broker"},
                    {"id": "tls", "address": TLS, "class": "broker"},
                    {"id": "web", "address": WEB, "class": "broker"}]}))
    return Setup(directory, inventory, profile, {"DD_MQTT_PASSWORD": PASSWORD,
                                                 "DD_COAP_PSK": PSK, "COLUMNS": "400"})


def in_terminal(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, bytes]:
    """`iotprobe ARGS` with stdout and stderr on a pseudo-terminal: its exit code and every
    byte it wrote there."""
    master, slave = os.openpty()
    process = subprocess.Popen([sys.executable, "-m", "probe", *args], stdin=subprocess.DEVNULL,
                               stdout=slave, stderr=slave, cwd=cwd,
                               env={**os.environ, **env, "TERM": "xterm-256color"})
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        return process.wait(60), bytes(out)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(60)
        os.close(master)


@dataclass(frozen=True)
class Scanned:
    setup: Setup
    outdir: Path
    run: subprocess.CompletedProcess[str]
    terminal: tuple[int, bytes]


@pytest.fixture(scope="module")
def scanned(brokers: Brokers, tls_broker: None, web: None,
            tmp_path_factory: pytest.TempPathFactory) -> Scanned:
    setup = make_setup(tmp_path_factory.mktemp("device-data"))
    outdir = setup.directory / "out"
    run = iotprobe("-vv", "scan", *setup.scan_args(), "-o", str(outdir), "--format", "jsonl",
                   "--format", "junit", "--format", "html", "--format", "oscal",
                   env=setup.env, cwd=setup.directory)
    terminal = in_terminal("scan", *setup.scan_args(), "-o", str(setup.directory / "tty"),
                           env=setup.env, cwd=setup.directory)
    return Scanned(setup, outdir, run, terminal)


def topics_of(record: dict[str, Any]) -> list[str]:
    result = next(r for r in record["results"] if r["check"] == "mqtt.topic-authorization"
                  and r["status"] == "fail")
    topics: list[str] = result["evidence"]["received"]["sys_topics"]
    return topics


def test_the_scan_ends_with_the_verdicts_of_the_data(scanned: Scanned) -> None:
    assert scanned.run.returncode == 1, scanned.run.stderr
    assert "Traceback" not in scanned.run.stderr
    records = load_records(scanned.outdir)
    assert sorted(records) == ["echo", "huge", "tls", "web"]
    web = {r["check"]: r for r in records["web"]["results"]}
    assert web["http.cleartext"]["status"] != "error", web["http.cleartext"]
    location = web["http.cleartext"]["evidence"]["responses"][0]["location"]
    assert location.startswith(f"http://{WEB}:8080/***/\\x1b]0;owned\\x07"), location
    for record in (records["echo"], records["huge"]):
        statuses = {r["check"]: r["status"] for r in record["results"]}
        assert statuses["mqtt.anonymous-access"] == "fail"
        assert statuses["mqtt.topic-authorization"] == "fail"


def test_records_hold_device_strings_escaped_and_losslessly(scanned: Scanned) -> None:
    """Defect 1: NUL and every other control is escaped text in the record, and unescaping
    gives back what the broker sent (the secrets aside)."""
    echo = load_records(scanned.outdir)["echo"]
    assert not [s for s in strings(echo) if UNSAFE.search(s)]
    topics = topics_of(echo)
    assert "$SYS/nul/\\x00/osc/\\x1b]0;owned\\x07/csi/\\x1b[2J" in topics
    assert [unescape(t) for t in topics if "nul" in t or "markup" in t or "back" in t] == [
        HOSTILE_TOPICS[0], HOSTILE_TOPICS[1], HOSTILE_TOPICS[4]]


def test_records_stay_small_whatever_the_broker_sends(scanned: Scanned) -> None:
    """Defect 8: five 65 KB topic names are cut, with a count of what was left out."""
    path = scanned.outdir / "huge.record.json"
    assert path.stat().st_size < RECORD_BOUND
    huge = load_records(scanned.outdir)["huge"]
    assert all(len(s) <= MAX_TEXT + 20 for s in strings(huge))
    cut = [t for t in topics_of(huge) if t.startswith("$SYS/big/")]
    assert cut and all(re.search(r"…\[\+[0-9]+ chars\]$", t) for t in cut)
    for name in ("report.junit.xml", "report.html", "report.oscal.json"):
        assert (scanned.outdir / name).stat().st_size < 4 * RECORD_BOUND, name
    assert len(scanned.run.stdout) < 4 * RECORD_BOUND


def test_no_output_holds_a_secret(scanned: Scanned) -> None:
    """Defect 3: the broker echoes the password, its Basic and URL forms, and the canary's."""
    for path in sorted(scanned.outdir.iterdir()):
        assert leaked(path.read_bytes()) == [], path.name
    assert leaked(scanned.run.stdout + scanned.run.stderr) == []
    assert leaked(scanned.terminal[1]) == []
    echo = load_records(scanned.outdir)["echo"]
    assert any("alice:***/canary/***" in t for t in topics_of(echo))
    assert "</psk/***>" in json.dumps(echo)
    subjects = [s for s in strings(load_records(scanned.outdir)["tls"]) if "CN=dev-" in s]
    assert subjects and all("CN=dev-***" in s and "\\x1b]0" in s for s in subjects)


def test_reports_show_controls_escaped(scanned: Scanned) -> None:
    """Defect 2: HTML, JUnit, OSCAL and the jsonl stream parse, and carry no raw control."""
    html = (scanned.outdir / "report.html").read_text()
    HTMLParser().feed(html)
    assert not UNSAFE.search(html)
    assert "\\x1b]0;owned" in html and "[/x] [bold red]" in html
    junit = (scanned.outdir / "report.junit.xml").read_text()
    root = ET.fromstring(junit)
    assert root.tag == "testsuites" and not UNSAFE.search(junit)
    oscal = json.loads((scanned.outdir / "report.oscal.json").read_text())
    assert not [s for s in strings(oscal) if UNSAFE.search(s)]
    lines = [json.loads(line) for line in scanned.run.stdout.splitlines()]
    assert sorted(r["device"]["id"] for r in lines) == ["echo", "huge", "tls", "web"]
    assert not [s for r in lines for s in strings(r) if UNSAFE.search(s)]


def test_the_terminal_gets_no_control_from_data(scanned: Scanned) -> None:
    code, out = scanned.terminal
    assert code == 1, out[-2000:]
    assert b"Traceback" not in out
    assert not [raw for raw in RAW_DATA if raw in out]


def sweep_and_diff(brokers: Brokers, setup: Setup, store: str) -> None:
    """Sweep 1 against clean brokers, sweep 2 against hostile ones, then diff (in a terminal),
    diff --json and every report of the store: no crash, no raw control, no secret."""
    env = {**setup.env}
    brokers.set(ECHO, clean_broker())
    brokers.set(HUGE, clean_broker())
    try:
        first = iotprobe("sweep", *setup.scan_args(), "--store", store, env=env,
                         cwd=setup.directory)
    finally:
        brokers.set(ECHO, hostile_broker(HOSTILE_TOPICS))
        brokers.set(HUGE, hostile_broker(BIG_TOPICS))
    second = iotprobe("sweep", *setup.scan_args(), "--store", store, env=env,
                      cwd=setup.directory)
    for run in (first, second):
        assert run.returncode == 1, run.stderr
        assert "Traceback" not in run.stderr and leaked(run.stdout + run.stderr) == []
    code, out = in_terminal("diff", "--store", store, env=env, cwd=setup.directory)
    assert code == 1, out[-3000:]
    assert b"Traceback" not in out and b"MarkupError" not in out
    assert not [raw for raw in RAW_DATA if raw in out]
    assert b"[/x]" in out and leaked(out) == []
    as_json = iotprobe("diff", "--json", "--store", store, env=env, cwd=setup.directory)
    assert as_json.returncode == 1 and leaked(as_json.stdout) == []
    regressions = json.loads(as_json.stdout)["regressions"]
    assert any(r["check"] == "mqtt.topic-authorization" for r in regressions)
    for fmt in ("html", "junit", "oscal"):
        report = iotprobe("report", "--store", store, "--format", fmt, "-o", "-", env=env,
                          cwd=setup.directory)
        assert report.returncode == 0, report.stderr
        assert not UNSAFE.search(report.stdout) and leaked(report.stdout) == []


def test_sweeps_and_diff_into_sqlite(brokers: Brokers, tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    sweep_and_diff(brokers, setup, str(tmp_path / "fleet.sqlite"))


def test_sweeps_and_diff_into_postgresql(brokers: Brokers, tmp_path: Path) -> None:
    """Defect 1: the record holding a NUL is stored; the store's password never shows."""
    with postgres_server() as server:
        url = server.url(server.create_database(), driver="postgresql+psycopg")
        setup = make_setup(tmp_path)
        sweep_and_diff(brokers, setup, url)
        listed = iotprobe("report", "--store", url, "--format", "junit", "-o", "-",
                          env=setup.env, cwd=setup.directory)
        assert 'name="echo"' in listed.stdout
        assert url.split(":")[2].split("@")[0] not in listed.stdout + listed.stderr


# ------------------------------------------------------------------------- inputs (defect 2)

@pytest.mark.parametrize("args", [("scan", "[/x]"), ("scan", "-i", "[/x]\x1b[2J.yaml"),
                                  ("diff", "--store", "[/x][bold red].sqlite")])
def test_markup_in_a_target_or_path_is_an_input_error(tmp_path: Path,
                                                       args: tuple[str, ...]) -> None:
    code, out = in_terminal(*args, env={}, cwd=tmp_path)
    assert code == 2, out
    assert b"Traceback" not in out and (b"[/x]" in out or b"%5B/x%5D" in out)
    assert not [raw for raw in RAW_DATA if raw in out]


def test_log_lines_are_redacted_and_escaped() -> None:
    """A log line quoting a device (or an exception holding a password) is shown safe."""
    from io import StringIO

    from probe.display import SafeLogFilter

    Secret(PASSWORD, "env:TEST")
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SafeLogFilter())
    logger = logging.getLogger("iotprobe.test.device-data")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError(f"login {PASSWORD} refused \x1b]0;owned\x07")
        except ValueError:
            logger.error("device said %r", f"\x1b[2J{PASSWORD}", exc_info=True)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert PASSWORD not in text and "***" in text
    assert "\x1b" not in text and "\\x1b]0;owned" in text


def test_markup_and_escapes_in_an_inventory_are_shown_not_obeyed(tmp_path: Path) -> None:
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(yaml.safe_dump({"devices": [
        {"id": "cam", "address": ECHO, "[/x]\x1b[2J": "[link=http://evil.example]x"}]}))
    code, out = in_terminal("scan", "-i", str(inventory), "-o", str(tmp_path / "out"),
                            env={}, cwd=tmp_path)
    assert code == 2, out
    assert b"Traceback" not in out and b"[/x]" in out
    assert not [raw for raw in RAW_DATA if raw in out]


def test_a_waiver_justification_is_shown_as_text(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(PROFILE + "waivers:\n  - {check: net.open-ports, class: broker, "
                       "justification: \"[/x] \\e]0;owned\\a [bold red]\", "
                       "expires: 2099-01-31}\n")
    code, out = in_terminal("profiles", "show", str(profile), env={"COLUMNS": "400"},
                            cwd=tmp_path)
    assert code == 0, out
    assert b"[/x]" in out and b"\\x1b]0;owned\\x07" in out
    assert not [raw for raw in RAW_DATA if raw in out]


# ------------------------------------------------------------------------- the convention

@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=200))
def test_escaping_is_reversible_and_leaves_no_control(text: str) -> None:
    escaped = escape(text)
    assert unescape(escaped) == text
    assert not UNSAFE.search(escaped)
    assert not re.search("[\ud800-\udfff\u2028\u2029]", escaped)


@settings(deadline=None)
@given(st.recursive(st.text(max_size=3000) | st.integers() | st.booleans(),
                    lambda inner: st.lists(inner, max_size=120)
                    | st.dictionaries(st.text(max_size=50), inner, max_size=120),
                    max_leaves=400))
def test_evidence_is_bounded_whatever_its_shape(value: Any) -> None:
    out = Bounder().value({"value": value})
    assert len(json.dumps(out, ensure_ascii=False)) < 3 * EVIDENCE_BUDGET
    for item in strings(out):
        assert len(item) <= MAX_TEXT + 24
    assert all(len(v) <= MAX_ITEMS + 1 for v in _containers(out))


def _containers(value: Any) -> Iterator[list[Any] | dict[Any, Any]]:
    if isinstance(value, list | dict):
        yield value
        for item in value.values() if isinstance(value, dict) else value:
            yield from _containers(item)


def test_a_cut_never_leaves_half_a_secret() -> None:
    """Secrets go before the cut: a password across the cut leaves no prefix behind."""
    redact = device_redactor({"mqtt": {"username": "alice", "password": Secret(
        "Z" * 40, "env:TEST")}})
    out = Bounder(redact=redact).text("A" * (MAX_TEXT - 10) + "Z" * 40 + "B" * 100)
    assert "Z" not in out and out.endswith("chars]")


async def _sweep(store: Store, profile: Profile, outcomes: list[Record]) -> int:
    sweep = store.begin_sweep(inventory="fleet.yaml", devices=len(outcomes), profile=profile,
                              intrusive=False)
    with ThreadPoolExecutor(max_workers=1) as writer:
        scan = ScanRun(Engine(profile, ScanOptions()), StoreSink(store, sweep.number, writer),
                       fail_on=Severity.LOW)
        for outcome in outcomes:
            await scan.finished(outcome)
    return scan.code


def _outcome(device_id: str, evidence: dict[str, Any], *, device: Device | None = None,
             summary: str = "said") -> Record:
    """The record the engine hands over for a device with an MQTT failure and a pass."""
    moment = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    results = tuple(Result(check, "27400-6.2", Severity.HIGH,
                           Finding(status, summary, "tcp/1883", evidence), "fix it", {}, 1)
                    for check, status in (("mqtt.anonymous-access", Status.FAIL),
                                          ("mqtt.cleartext-listener", Status.PASS)))
    return record_of(device=device or Device(id=device_id, address=ECHO), address=ECHO,
                     profile=ProfileRef(**load_profiles(["iso27400"]).meta()),
                     probe=ProbeInfo(__version__, False), started_at=moment,
                     finished_at=moment, services=(), results=results)


def test_a_refused_record_becomes_an_error_and_the_sweep_goes_on() -> None:
    """Defect 1's second half: PostgreSQL refuses a record (a NaN in its evidence, which its
    JSON does not take); the device gets a record saying why, its failure kept, and the next
    device is stored as it is. (An id the store cannot take, 300 characters, no longer gets
    this far: ids are bounded when the inventory loads, tests/test_input_safety.py.)"""
    profile = load_profiles(["iso27400"])
    with postgres_server() as server:
        url = server.url(server.create_database(), driver="postgresql+psycopg")
        with open_store(url) as store:
            code = asyncio.run(_sweep(store, profile, [
                _outcome("a-nan", {"ratio": math.nan}), _outcome("b-fine", {"ratio": 0.5})]))
            stored = {r.device.id: r.to_json() for r in store.records(1)}
    assert code == 1
    assert sorted(stored) == ["a-nan", "b-fine"]
    for record in stored.values():
        validate_record(record)
    refused = {r["check"]: r for r in stored["a-nan"]["results"]}
    assert refused["mqtt.anonymous-access"]["status"] == "fail"
    assert refused["mqtt.cleartext-listener"]["status"] == "error"
    assert "could not be stored" in refused["mqtt.cleartext-listener"]["summary"]
    fine = {r["check"]: r for r in stored["b-fine"]["results"]}
    assert fine["mqtt.cleartext-listener"]["evidence"] == {"ratio": 0.5}


# ------------------------------------------------------------------ every renderer, any text

HOSTILE = st.lists(st.sampled_from(
    ["\x00", "\x07", "\x1b", "\x1b]0;t\x07", "\x1b[2J", "\x1b]8;;http://e.example\x1b\\",
     "\x9b", "\x85", "\u202e", "\u2066", "\u2028", "\ufeff", "\ud800", "\\", "[/x]",
     "[bold red]", "[link=http://e.example]", ":smile:", "<script>", "&amp;", "\"", "'",
     "a", "é", " ", "\n", "\t", "\r", PASSWORD]), max_size=40).map("".join)
SGR = re.compile("\x1b\\[[0-9;]*m")
"""rich's own styling (colours, bold): the only escape sequence a renderer may write."""


def _renderings(text: str) -> dict[str, str]:
    """`text` as a device sent it, through the record into every report and the terminal
    summary and diff (a terminal-forced rich console)."""
    from io import StringIO

    from rich.console import Console

    from probe.report.html import write_html
    from probe.report.junit import write_junit
    from probe.report.oscal import write_oscal
    from probe.report.source import RecordSource
    from probe.report.tables import Summary
    from probe.store import SweepInfo
    from probe.store.queries import CheckChange, Diff
    from probe.sweep import render_diff

    profile = load_profiles(["iso27400"])
    device = Device(id="dev", address=ECHO, site=text, credentials={
        "mqtt": {"username": "alice", "password": Secret(PASSWORD, "env:TEST")}})
    outcome = _outcome("dev", {"banner": text, "headers": {text: [text, text]}}, device=device,
                       summary=f"banner {text}")
    record = outcome.to_json()
    validate_record(record)
    older = Record.from_json({
        **record, "device": {**record["device"], "id": f"old{text}", "class": f"c{text}"},
        "results": [{**r, "summary": f"banner {text}",
                     "remediation": f"Run `{text}`, then **{text}** [{text}]({text})"}
                    for r in record["results"]]})
    """A record as an older probe stored it: the device's text raw, for the reports alone (its
    class, and a profile's Markdown remediation, hold the text too)."""
    source = RecordSource(title="t", identity="t", profile=profile.meta(),
                          generated=outcome.started_at, records=lambda: iter([outcome, older]))
    out: dict[str, str] = {"record": json.dumps(record, ensure_ascii=False)}
    for name, writer in (("html", write_html), ("junit", write_junit), ("oscal", write_oscal)):
        buffer = StringIO()
        writer(source, buffer)
        out[name] = buffer.getvalue()
    terminal = StringIO()
    console = Console(file=terminal, force_terminal=True, color_system="truecolor", width=200)
    summary = Summary()
    summary.add(outcome)
    console.print(summary.render(profile, text))
    sweep = SweepInfo(1, outcome.started_at, None, "finished", text, 1, profile.meta(), "0",
                      False, 1)
    console.print(render_diff(Diff(sweep, sweep, regressions=[CheckChange(
        text, "mqtt.anonymous-access", "tcp/1883", "high", "pass", "fail",
        record["results"][0]["summary"])])))
    out["terminal"] = SGR.sub("", terminal.getvalue())
    return out


class _LiveMarkup(HTMLParser):
    """Markup that could run, fetch or restyle: a script, a frame, an image, a form target, an
    event handler, a javascript: or data: link; and more than the report's own style and
    meta elements."""

    TAGS = frozenset({"script", "img", "iframe", "object", "embed", "link", "base", "frame",
                      "audio", "video", "source", "style", "meta", "svg"})
    OWN = {"style": 1, "meta": 5}
    """The report's own: one stylesheet, five meta elements (charset, viewport, CSP,
    referrer, generator), and no chart (no history here)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.seen: Counter[str] = Counter()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen[tag] += 1
        if tag in self.TAGS and self.seen[tag] > self.OWN.get(tag, 0):
            self.found.append(tag)
        for name, value in attrs:
            link = (value or "").strip().lower()
            if name.startswith("on") or link.startswith(("javascript:", "data:", "vbscript:")):
                self.found.append(f"{tag} {name}={value}")


@settings(deadline=None, max_examples=60)
@given(HOSTILE)
def test_any_device_text_is_data_in_every_renderer(text: str) -> None:
    """Whatever the text, every output parses, holds no raw control (but rich's colours in
    the terminal), no live markup and no secret, and the statuses are those of clean text."""
    out = _renderings(text)
    record = json.loads(out["record"])
    assert [r["status"] for r in record["results"]] == ["fail", "pass"]
    assert record["verdict"] == "nonconformant"
    HTMLParser().feed(out["html"])
    ET.fromstring(out["junit"])
    json.loads(out["oscal"])
    for name, rendered in out.items():
        if name != "record":
            rendered = rendered.replace(PASSWORD, "")
        assert not UNSAFE.search(rendered.replace("\n", "").replace("\t", "")), name
        assert not re.search("[\ud800-\udfff\u2028\u2029]", rendered), name
    assert PASSWORD not in out["record"] and PASSWORD not in out["terminal"]
    page = without_own_script(out["html"])
    assert "<script>" not in page
    live = _LiveMarkup()
    live.feed(page)
    assert live.found == [], live.found
    if "[/x]" in text:
        assert "[/x]" in out["terminal"]
