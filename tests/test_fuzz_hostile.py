"""The hostile-device fuzzer: device data is data, whatever a device sends.

Each example is a pair of emulated devices built from the same drawn strings: the *tainted* one
sends them (FTP and Telnet banners with raw bytes, an HTTP page, an HTTP Server header, MQTT
`$SYS` topic names and payloads, a CoAP resource, a TLS certificate's subject), the *clean* one
sends plain ASCII of the same byte lengths, so every size the probe measures is the same. The
strings are drawn by hypothesis from adversarial alphabets: NUL, C0 and C1 controls, terminal
escape sequences (clear screen, window title, hyperlinks), rich markup, HTML and JavaScript,
bidi overrides, invalid UTF-8, the probe's own MQTT password (a device that echoes a secret),
and long runs up to a megabyte.

For every draw the two devices are scanned side by side through the real command line:
- `scan` on a pseudo-terminal (progress display and summary as a user sees them) writing
  records, JSONL, JUnit, HTML and OSCAL;
- `sweep` into a SQLite store (after a first sweep of clean strings) and `diff` of the two
  sweeps on the pseudo-terminal; `sweep` into a real PostgreSQL server.

and every output must be well-formed (records valid against the schema, JSONL, JUnit and OSCAL
parsed, HTML parsed with no script, handler attribute or link the device put there), hold no
raw control or bidi character and no secret, the terminal must receive no escape sequence the
device sent, every store must hold both devices, no check may run out of its budget or fail
inside the probe, and the tainted device's statuses must equal the clean one's.

Examples are derandomized: the same draws on every run. Devices on 127.139.x.y.
"""

from __future__ import annotations

import asyncio
import contextlib
import html.parser
import json
import os
import re
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import psycopg
import pytest
import yaml
from conftest import load_records, without_own_script
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pgserver import PASSWORD, USER, PostgresServer, postgres_server
from test_device_data import in_terminal
from test_hostile import REPO, ThreadLab, iotprobe, loop_thread, worst, write_profile

from probe.lab import Fleet, plan_fleet, run_fleet
from probe.lab.personas.base import Persona
from probe.lab.servers import TcpListener, UdpListener, serve_http
from probe.lab.servers_coap import CoapDevice, CoapResource
from probe.lab.servers_mqtt import MqttBroker
from probe.lab.servers_tls import issue_certificate, server_context
from probe.model import Verdict

SECRET = "Fz-mqtt-S3cret-echoed-by-the-device"
ACCOUNT = "fuzz-probe"
BASE = "127.139.0.1"
MEGABYTE = 1024 * 1024
TOPIC_LIMIT = 60_000
"""An MQTT topic name is at most 65,535 bytes on the wire."""
CN_LIMIT = 64
"""A certificate's common name is at most 64 characters (RFC 5280 ub-common-name)."""
SCHEMA = json.loads((REPO / "probe" / "schema" / "record.schema.json").read_text())

ADVERSARIAL = (
    "\x00", "\x07", "\x08", "\x7f", "\x1b[2J", "\x1b]0;PWNED-TITLE\x07",
    "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\", "\x1b[31mred\x1b[0m", "\x9b2J",
    "\x85", "\x90q\x9c", "[bold red]", "[/x]", "[/]", "[link=http://evil.example]x[/link]",
    ":warning:", "<script>alert(1)</script>", "\"'><img src=x onerror=alert(1)>", "]]>",
    "&amp;&#x1b;", "\u202e", "\u2066", "\u200f", "\ufeff", "%s%n%x", "{nonce}", "${jndi:x}",
    SECRET,
)
INVALID_UTF8 = (b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80")
FORBIDDEN_IN_OUTPUT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f"
                                 "\u202a-\u202e\u2066-\u2069]")
"""Raw controls (tab, newline and carriage return aside) and bidi marks: an output shows them
escaped, never raw."""


def _piece() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(ADVERSARIAL),
                     st.text(st.characters(codec="utf-8"), max_size=12))


@st.composite
def taint(draw: st.DrawFn) -> str:
    text = "".join(draw(st.lists(_piece(), min_size=1, max_size=8)))
    size = draw(st.sampled_from(("short", "short", "long", "megabyte")))
    if size == "long":
        text = (text or "x") * (4096 // max(1, len(text)) + 1)
    elif size == "megabyte":
        text = (text or "x") * (MEGABYTE // max(1, len(text.encode())) + 1)
    return text


@st.composite
def raw_taint(draw: st.DrawFn) -> bytes:
    """Bytes for the banners: a drawn string, with invalid UTF-8 mixed in, on one line."""
    data = draw(taint()).encode("utf-8", "surrogatepass")
    cut = draw(st.integers(0, len(data)))
    data = data[:cut] + draw(st.sampled_from(INVALID_UTF8)) + data[cut:]
    return data.replace(b"\r", b"").replace(b"\n", b"")


@dataclass(frozen=True)
class Strings:
    banner: bytes
    page: str
    server: str
    topic: str
    payload: str
    resource: str
    subject: str

    def cleaned(self) -> Strings:
        """The same lengths in plain ASCII."""
        def clean(text: str) -> str:
            return "x" * len(text.encode())
        return Strings(b"x" * len(self.banner), clean(self.page), clean(self.server),
                       clean(self.topic), clean(self.payload), clean(self.resource),
                       clean(self.subject))


def _utf8_prefix(text: str, limit: int) -> str:
    return text.encode()[:limit].decode("utf-8", "ignore")


@st.composite
def strings(draw: st.DrawFn) -> Strings:
    def header(text: str) -> str:
        """A header value: RFC 9110 allows no C0 control or DEL in one (a response with them
        is not HTTP, and its listener's results are `error`); everything else stays."""
        return "".join(c for c in text if c >= " " and c != "\x7f")[:8192]

    return Strings(
        banner=draw(raw_taint()),
        page=draw(taint()),
        server=header(draw(taint())),
        topic=_utf8_prefix(draw(taint()).replace("#", "").replace("+", ""), TOPIC_LIMIT),
        payload=draw(taint()),
        resource=_utf8_prefix(draw(taint()), 200),
        subject=draw(taint())[:CN_LIMIT] or "x",
    )


# ---------------------------------------------------------------------------------------------
# The device: lab services that send the drawn strings
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawFtp:
    """An FTP server whose greeting is `banner`, raw bytes; it refuses every login."""

    banner: bytes

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 " + self.banner + b"\r\n")
        await writer.drain()
        for _ in range(16):
            async with asyncio.timeout(10):
                line = await reader.readuntil(b"\n")
            if line.upper().startswith(b"QUIT"):
                writer.write(b"221 " + self.banner[:200] + b"\r\n")
                await writer.drain()
                return
            writer.write(b"530 " + self.banner[:200] + b"\r\n")
            await writer.drain()


@dataclass(frozen=True)
class RawTelnet:
    """A Telnet login prompt after `banner`, raw bytes; every login is refused."""

    banner: bytes

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(bytes([255, 251, 1, 255, 251, 3]) + self.banner + b"\r\nlogin: ")
        await writer.drain()
        async with asyncio.timeout(10):
            await reader.readuntil(b"\n")
        writer.write(b"\r\nLogin incorrect\r\n")
        await writer.drain()


@dataclass(frozen=True)
class TaintedWeb:
    """An HTTP/1.1 server: `page` as the body of every path, `server` as its Server header."""

    page: str
    server: str

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_http(reader, writer, self._answer)

    def _answer(self, parts: list[str], headers: dict[str, str]) -> tuple[list[str], bytes]:
        body = self.page.encode("utf-8", "surrogatepass")
        # serve_http writes the head as Latin-1: the header's UTF-8 bytes go out as they are.
        server = self.server.encode("utf-8", "surrogatepass").decode("latin-1")
        return ["HTTP/1.1 200 OK", f"Server: {server}",
                "Content-Type: text/html; charset=utf-8",
                f"Content-Length: {len(body)}"], b"" if parts[0] == "HEAD" else body


@dataclass(frozen=True)
class TaintedTls:
    """HTTPS whose certificate's subject common name is `subject` (self-signed, for the
    address the connection arrived on), serving `inner`."""

    inner: TaintedWeb
    subject: str

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = str(writer.get_extra_info("sockname")[0])
        context = server_context(issue_certificate(None, self.subject, names=[address]),
                                 "modern")
        await writer.start_tls(context, ssl_handshake_timeout=10)
        await self.inner.serve(reader, writer)


def persona(name: str, s: Strings) -> Persona:
    broker = MqttBroker(accounts=((ACCOUNT, SECRET),), anonymous=True,
                        sys_topics=((f"$SYS/broker/{s.topic}", s.payload),
                                    ("$SYS/broker/version", s.payload[:4096])))
    coap = CoapDevice(resources=(CoapResource("sensor", s.resource.encode()),))
    web = TaintedWeb(s.page, s.server)
    return Persona(
        name=name, description="strings drawn by the fuzzer", device_class="sensor",
        listeners=(TcpListener(21, RawFtp(s.banner)), TcpListener(23, RawTelnet(s.banner)),
                   TcpListener(80, web), TcpListener(443, TaintedTls(web, s.subject)),
                   TcpListener(1883, broker), UdpListener(5683, coap)),
        expect={}, expect_verdict=Verdict.NONCONFORMANT)


# ---------------------------------------------------------------------------------------------
# Running the probe
# ---------------------------------------------------------------------------------------------


@dataclass
class Setting:
    root: Path
    thread_lab: ThreadLab
    postgres: PostgresServer
    profile: Path
    store: Path
    examples: int = 0


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setting]:
    root = tmp_path_factory.mktemp("fuzz")
    with loop_thread() as lab, postgres_server() as server:
        yield Setting(root, lab, server, write_profile(root), root / "fleet.iotprobe.sqlite")


ENV = {"FUZZ_MQTT_PASSWORD": SECRET}


def on_terminal(*args: str) -> tuple[int, bytes]:
    """`iotprobe ARGS` on a pseudo-terminal of 120 columns (tests/test_device_data.py)."""
    return in_terminal(*args, env={**ENV, "COLUMNS": "120", "LINES": "40"}, cwd=REPO)
PHASES = ((Phase.explicit, Phase.generate, Phase.shrink) if os.environ.get("FUZZ_SHRINK")
          else (Phase.explicit, Phase.generate))
"""Shrinking a failure scans dozens of smaller devices: set $FUZZ_SHRINK to have it, when
reading a failure; the suite reports the failing draw as it was found."""


def scan_options(setting: Setting) -> tuple[str, ...]:
    return ("-p", str(setting.profile), "--timeout", "1", "--budget", "60",
            "--exclude-ports", "2024")


def inventory(path: Path, tainted: str, clean: str) -> Path:
    credentials = {"mqtt": {"username": ACCOUNT, "password_env": "FUZZ_MQTT_PASSWORD"}}
    path.write_text(yaml.safe_dump({"defaults": {"exclude_ports": [2024], "class": "sensor",
                                                 "credentials": credentials},
                                    "devices": [{"id": "tainted", "address": tainted},
                                                {"id": "clean", "address": clean}]}))
    return path


# ---------------------------------------------------------------------------------------------
# What every output must hold to
# ---------------------------------------------------------------------------------------------


def no_raw_controls(text: str, where: str) -> None:
    found = FORBIDDEN_IN_OUTPUT.search(text)
    assert found is None, f"{where}: raw {found.group()!r} at {found.start()}"


def no_secret(data: bytes | str, where: str) -> None:
    blob = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    assert SECRET.encode() not in blob, f"{where} holds the MQTT password"


TERMINAL_INJECTIONS = (b"\x1b]", b"\x1b[2J", b"\x07", b"\x00", b"\x9b", b"\xc2\x9b",
                       b"\xe2\x80\xae", b"evil.example/\x1b")
"""Bytes a device sent that must never reach a terminal raw: OSC (title, hyperlink), clear
screen, bell, NUL, CSI as a C1 control (raw and UTF-8), RIGHT-TO-LEFT OVERRIDE."""


def terminal_clean(output: bytes, where: str) -> None:
    for bad in TERMINAL_INJECTIONS:
        assert bad not in output, f"{where}: {bad!r} reached the terminal"
    assert b"Traceback" not in output, output[-3000:].decode("utf-8", "replace")
    no_secret(output, where)


class _Html(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.bad: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "img", "iframe", "object", "embed"):
            self.bad.append(tag)
        for name, value in attrs:
            if name.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                self.bad.append(f"{tag} {name}")
            if name == "href" and "evil.example" in (value or ""):
                self.bad.append(f"{tag} href {value}")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def html_clean(path: Path) -> None:
    text = without_own_script(path.read_text(encoding="utf-8"))
    no_raw_controls(text, path.name)
    no_secret(text, path.name)
    parser = _Html()
    parser.feed(text)
    parser.close()
    assert parser.bad == [], f"{path.name}: live markup from a device: {parser.bad}"
    no_raw_controls("".join(parser.text), f"{path.name} (text after entities)")


def stored_report(store: Path | str, path: Path, env: dict[str, str] | None = None) -> None:
    """The HTML report of the store's latest sweep, its history charts included, is clean."""
    made = iotprobe("report", "--store", str(store), "--format", "html", "-o", str(path),
                    env=env or ENV)
    assert made.returncode == 0, made.stderr[-3000:]
    html_clean(path)
    assert 'data-chart="posture"' in path.read_text(encoding="utf-8")


def structured_clean(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    no_raw_controls(text, path.name)
    no_secret(text, path.name)
    if path.suffix == ".xml":
        ET.fromstring(text.encode())
    else:
        json.loads(text)


def statuses(records: dict[str, dict[str, Any]]) -> tuple[dict[str, str], dict[str, str]]:
    return worst(records["tainted"]), worst(records["clean"])


def ended_in_time(record: dict[str, Any]) -> None:
    for result in record["results"]:
        reason = result["evidence"].get("reason") if isinstance(result["evidence"], dict) else None
        assert reason not in ("budget", "internal"), result


# ---------------------------------------------------------------------------------------------
# The fuzzer
# ---------------------------------------------------------------------------------------------


def start_pair(setting: Setting, drawn: Strings) -> tuple[str, str]:
    n = setting.examples
    setting.examples += 1
    assert n < 250 * 125, "more examples than addresses"
    third, fourth = divmod(n, 125)
    specs = (plan_fleet([persona("tainted", drawn)], 1, f"127.139.{third}.{2 * fourth + 1}")
             + plan_fleet([persona("clean", drawn.cleaned())], 1,
                          f"127.139.{third}.{2 * fourth + 2}"))

    async def start() -> Fleet:
        return await run_fleet(specs)

    fleet = setting.thread_lab.run(start())
    setting.thread_lab.fleets.append(fleet)
    return specs[0].address, specs[1].address


def stop_last(setting: Setting) -> None:
    fleet = setting.thread_lab.fleets.pop()
    setting.thread_lab.run(fleet.stop())


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "6")), deadline=None,
          derandomize=True, database=None, phases=PHASES,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example])
@given(drawn=strings())
def test_a_hostile_device_cannot_break_any_output(setting: Setting, drawn: Strings) -> None:
    tainted, clean = start_pair(setting, drawn)
    try:
        work = setting.root / f"example-{setting.examples}"
        work.mkdir()
        inv = inventory(work / "fleet.yaml", tainted, clean)
        out = work / "out"
        formats = ("--format", "junit", "--format", "html", "--format", "oscal",
                   "--format", "jsonl")
        code, screen = on_terminal("scan", "-i", str(inv), "-o", str(out), *formats,
                                   *scan_options(setting))
        assert code in (1, 3), screen[-3000:].decode("utf-8", "replace")
        terminal_clean(screen, "scan on a terminal")

        records = load_records(out)
        assert set(records) == {"tainted", "clean"}
        for name, record in records.items():
            jsonschema.validate(record, SCHEMA)
            ended_in_time(record)
            raw = (out / f"{name}.record.json").read_text(encoding="utf-8")
            no_raw_controls(raw, f"{name}.record.json")
            no_secret(raw, f"{name}.record.json")
        got, want = statuses(records)
        assert got == want, {c: (got.get(c), s) for c, s in want.items() if got.get(c) != s}
        for report in ("report.junit.xml", "report.oscal.json"):
            structured_clean(out / report)
        html_clean(out / "report.html")

        store = work / "fleet.iotprobe.sqlite"
        clean_inv = inventory(work / "clean.yaml", clean, clean)
        for inv_path in (clean_inv, inv):
            swept = iotprobe("sweep", "-i", str(inv_path), "--store", str(store), "-q",
                             *scan_options(setting), env=ENV)
            assert swept.returncode in (1, 3), swept.stderr[-3000:]
            no_secret(swept.stdout + swept.stderr, "sweep output")
        code, screen = on_terminal("diff", "--store", str(store))
        assert code in (0, 1), screen[-3000:].decode("utf-8", "replace")
        terminal_clean(screen, "diff on a terminal")
        stored_report(store, work / "sweep.html")
        no_secret(store.read_bytes(), "the SQLite store")
        with contextlib.closing(sqlite3.connect(store)) as db:
            stored = [json.loads(row[0]) for row in db.execute("SELECT record FROM records")]
        assert {r["device"]["id"] for r in stored} >= {"tainted", "clean"}
        for record in stored:
            jsonschema.validate(record, SCHEMA)

        database = setting.postgres.create_database()
        url = f"postgresql://{USER}@127.0.0.1:{setting.postgres.port}/{database}"
        swept = iotprobe("sweep", "-i", str(inv), "--store", url, "-q", *scan_options(setting),
                         env={**ENV, "PGPASSWORD": PASSWORD})
        assert swept.returncode in (1, 3), swept.stderr[-3000:]
        with psycopg.connect(host="127.0.0.1", port=setting.postgres.port, user=USER,
                             password=PASSWORD, dbname=database) as conn:
            rows = conn.execute("SELECT record::text FROM records").fetchall()
        assert len(rows) == 2
        for (text,) in rows:
            no_secret(text, "the PostgreSQL store")
            jsonschema.validate(json.loads(text), SCHEMA)
        stored_report(url, work / "postgres.html", env={**ENV, "PGPASSWORD": PASSWORD})
    finally:
        stop_last(setting)
