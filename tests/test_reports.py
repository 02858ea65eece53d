"""The reports of a real scan of the lab: JUnit read back with junitparser, OSCAL validated with
compliance-trestle's models of the NIST schema, HTML opened in headless Chromium."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import load_records, without_own_script
from junitparser import Error, Failure, JUnitXml, Skipped
from trestle.oscal.assessment_results import Model

from probe.record.model import Record
from probe.record.schema import validate_record
from probe.report import write_report
from probe.report.oscal import profile_urn, token
from probe.report.source import RecordSource

BASE = "127.92.0.1"
PERSONAS = "clean-sensor,telnet-camera,dark,mqtt-open-broker,coap-sensor,ftp-gateway"
FAST = ("--timeout", "1", "--budget", "30", "--exclude-ports", "2024")
SCREENSHOT = Path("/tmp/iotprobe-report-screenshot.png")


def iotprobe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True,
                          text=True, timeout=180, env={**os.environ, **(env or {})},
                          stdin=subprocess.DEVNULL)


class Scanned:
    def __init__(self, outdir: Path, stdout: str, records: dict[str, dict[str, Any]]) -> None:
        self.outdir = outdir
        self.stdout = stdout
        self.records = records


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scanned]:
    root = tmp_path_factory.mktemp("reports")
    env = {"IOTPROBE_STATE_DIR": str(root / "state")}
    inventory = root / "inventory.yaml"
    up = iotprobe("lab", "up", "--base", BASE, "--personas", PERSONAS, "--inventory-out",
                  str(inventory), env=env)
    assert up.returncode == 0, up.stderr
    try:
        out = root / "out"
        run = iotprobe("scan", "-i", str(inventory), "-o", str(out), "--format", "junit",
                       "--format", "html", "--format", "oscal", "--format", "jsonl", *FAST,
                       env=env)
        assert run.returncode == 1, run.stderr
        yield Scanned(out, run.stdout, load_records(out))
    finally:
        down = iotprobe("lab", "down", env=env)
        assert down.returncode == 0, down.stderr


def source_of(records: list[dict[str, Any]]) -> RecordSource:
    ordered = sorted(records, key=lambda r: r["device"]["id"])
    profile = (ordered[0]["profile"] if ordered
               else {"id": "p", "version": "1", "digest": "sha256:" + "0" * 64})
    return RecordSource(title=f"test of {len(ordered)} device(s)", identity="test:1",
                        profile=profile, generated=dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC),
                        records=lambda: (Record.from_json(r) for r in ordered))


def render(fmt: str, source: RecordSource) -> str:
    buffer = io.StringIO()
    write_report(fmt, source, buffer)
    return buffer.getvalue()


def kind(result: dict[str, Any]) -> str:
    if result["status"] == "fail":
        return "skipped" if "waived" in result else "failure"
    if result["status"] == "error":
        return "error"
    return "skipped" if result["status"] in ("skipped", "not_applicable") else "pass"


# ------------------------------------------------------------------------------------- jsonl


def test_jsonl_and_record_files_agree(scanned: Scanned) -> None:
    lines = [json.loads(line) for line in scanned.stdout.splitlines() if line.startswith("{")]
    for line in lines:
        validate_record(line)
    assert {r["device"]["id"]: r for r in lines} == scanned.records


# ------------------------------------------------------------------------------------- junit


def test_junit_has_a_case_per_device_and_result(scanned: Scanned) -> None:
    path = scanned.outdir / "report.junit.xml"
    ET.parse(path)
    xml = JUnitXml.fromfile(str(path))
    suites = {suite.name: suite for suite in xml}
    assert set(suites) == set(scanned.records)
    totals = {"tests": 0, "failure": 0, "error": 0, "skipped": 0}
    for device_id, record in scanned.records.items():
        suite = suites[device_id]
        cases = list(suite)
        assert len(cases) == len(record["results"]) == suite.tests
        for case, result in zip(cases, record["results"], strict=True):
            assert case.classname == device_id
            assert case.name == f"{result['check']} {result['target']}"
            want = kind(result)
            outcome = case.result
            if want == "pass":
                assert outcome == [] and case.is_passed
            elif want == "failure":
                [failure] = outcome
                assert isinstance(failure, Failure)
                assert failure.message == result["summary"] and failure.type == result["severity"]
                assert json.dumps(result["evidence"], indent=2, sort_keys=True) in failure.text
                assert "remediation: " in failure.text
            elif want == "error":
                [error] = outcome
                assert isinstance(error, Error) and error.message == result["summary"]
            else:
                [skipped] = outcome
                assert isinstance(skipped, Skipped)
        for name in ("failure", "error", "skipped"):
            totals[name] += sum(kind(r) == name for r in record["results"])
        totals["tests"] += len(record["results"])
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    assert int(root.get("tests", -1)) == totals["tests"]
    assert int(root.get("skipped", -1)) == totals["skipped"]
    assert int(root.get("failures", -1)) == totals["failure"] > 0
    assert int(root.get("errors", -1)) == totals["error"] > 0


# ------------------------------------------------------------------------------------- oscal


def test_oscal_validates_against_the_nist_model(scanned: Scanned) -> None:
    document = json.loads((scanned.outdir / "report.oscal.json").read_text())
    Model.model_validate(document)
    results = document["assessment-results"]["results"]
    assert len(results) == len(scanned.records)
    profile = next(iter(scanned.records.values()))["profile"]
    assert document["assessment-results"]["import-ap"]["href"] == profile_urn(profile)
    assert profile_urn(profile).startswith(f"urn:iotprobe:profile:{profile['id']}:sha256:")
    ids: list[str] = [document["assessment-results"]["uuid"]]
    for result in results:
        device_id = next(p["value"] for p in result["local-definitions"]["inventory-items"][0]
                         ["props"] if p["name"] == "device-id")
        record = scanned.records[device_id]
        observations = {o["uuid"]: o for o in result["observations"]}
        assert len(observations) == len(record["results"])
        controls = sorted({r["control"] for r in record["results"]})
        assert [f["target"]["target-id"] for f in result["findings"]] == [
            token(c) for c in controls]
        for finding in result["findings"]:
            control = next(p["value"] for p in finding["props"] if p["name"] == "control")
            members = [r for r in record["results"] if r["control"] == control]
            bad = any((r["status"] == "fail" and "waived" not in r) or r["status"] == "error"
                      for r in members)
            assert finding["target"]["status"]["state"] == (
                "not-satisfied" if bad else "satisfied")
            related = [o["observation-uuid"] for o in finding["related-observations"]]
            assert len(related) == len(members) and set(related) <= set(observations)
        ids += [result["uuid"], *observations, *(f["uuid"] for f in result["findings"])]
    assert len(ids) == len(set(ids))
    assert all(uuid.UUID(i).version == 5 for i in ids)


def test_oscal_is_deterministic(scanned: Scanned) -> None:
    source = source_of(list(scanned.records.values()))
    first = render("oscal", source)
    assert first == render("oscal", source)
    Model.model_validate(json.loads(first))
    other = RecordSource(**{**source.__dict__, "identity": "test:2"})
    assert json.loads(render("oscal", other))["assessment-results"]["uuid"] != \
        json.loads(first)["assessment-results"]["uuid"]


def test_an_empty_scan_still_gives_valid_reports() -> None:
    source = source_of([])
    Model.model_validate(json.loads(render("oscal", source)))
    ET.fromstring(render("junit", source))
    assert "0</span>device(s)" in render("html", source)


# --------------------------------------------------------------------------- hostile content


def hostile_record() -> dict[str, Any]:
    record = {
        "schema": "iotprobe.record/v1",
        "device": {"id": "<img src=x onerror=alert(1)>", "address": "127.92.9.9"},
        "profile": {"id": "p", "version": "1", "digest": "sha256:" + "1" * 64},
        "probe": {"version": "0.1.0", "intrusive": False},
        "started_at": "2026-11-28T12:00:00Z", "finished_at": "2026-11-28T12:00:01Z",
        "verdict": "nonconformant", "services": [],
        "results": [{
            "check": "net.cleartext-management", "control": "27400-6.2", "target": "tcp/23",
            "status": "fail", "severity": "high",
            "summary": "banner <script>alert(1)</script> \x1b[31mred\x00",
            "evidence": {"banner": "\x1b[31m<b>login:</b>\x07"}, "remediation": "<i>x</i>",
            "references": {}, "duration_ms": 1}],
    }
    validate_record(record)
    return record


def test_hostile_text_stays_text(tmp_path: Path) -> None:
    source = source_of([hostile_record()])
    junit = render("junit", source)
    root = ET.fromstring(junit)
    failure = root.find("./testsuite/testcase/failure")
    assert failure is not None and "\\x1b[31mred\\x00" in failure.get("message", "")
    Model.model_validate(json.loads(render("oscal", source)))
    page = without_own_script(render("html", source))
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# -------------------------------------------------------------------------------------- html


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4)."""

    def __init__(self, binary: str, profile: Path) -> None:
        self._to_browser_r, self._to_browser_w = os.pipe()
        self._from_browser_r, self._from_browser_w = os.pipe()
        reader, writer = self._to_browser_r, self._from_browser_w

        def wire() -> None:
            high_in = fcntl.fcntl(reader, fcntl.F_DUPFD, 10)
            high_out = fcntl.fcntl(writer, fcntl.F_DUPFD, 10)
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--no-default-browser-check", f"--user-data-dir={profile}",
             "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire, pass_fds=(3, 4))
        os.close(self._to_browser_r)
        os.close(self._from_browser_w)
        self._buffer = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from Chromium")
            ready, _, _ = select.select([self._from_browser_r], [], [], left)
            if ready:
                chunk = os.read(self._from_browser_r, 1 << 16)
                if not chunk:
                    raise EOFError("Chromium closed the pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None, timeout: float = 60) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser_w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read(deadline)
            if answer.get("id") == self._next:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer["result"]
                return result
            self.events.append(answer)

    def wait_event(self, method: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(self._read(deadline))

    def evaluate(self, session: str, expression: str) -> Any:
        answer = self.send("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True}, session)
        assert "exceptionDetails" not in answer, answer
        return answer["result"].get("value")

    def close(self) -> None:
        with contextlib.suppress(TimeoutError, EOFError, OSError):
            self.send("Browser.close", timeout=10)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)
        os.close(self._to_browser_w)
        os.close(self._from_browser_r)


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Chromium]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium is not installed: Debian package chromium")
    browser = Chromium(binary, tmp_path / "chromium-profile")
    try:
        yield browser
    finally:
        browser.close()


def open_page(browser: Chromium, path: Path) -> str:
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target,
                                                     "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log"):
        browser.send(f"{domain}.enable", session=session)
    browser.send("Emulation.setDeviceMetricsOverride", {
        "width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session)
    browser.send("Page.navigate", {"url": path.as_uri()}, session)
    browser.wait_event("Page.loadEventFired")
    return session


def problems(browser: Chromium) -> list[dict[str, Any]]:
    found = []
    for event in browser.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown" or (
                method == "Runtime.consoleAPICalled" and params.get("type") in ("error",
                                                                                "assert")) or (
                method == "Log.entryAdded" and params["entry"]["level"] == "error"):
            found.append(event)
    return found


CHECK_LINKS = """(() => {
  const links = [...document.querySelectorAll('a[href^="#"]')];
  const missing = links.filter(a => !document.getElementById(a.hash.slice(1)))
                       .map(a => a.getAttribute('href'));
  return {count: links.length, missing};
})()"""

CLICK = """((selector) => {
  const link = document.querySelector(selector);
  link.click();
  const target = document.getElementById(link.hash.slice(1));
  const top = target.getBoundingClientRect().top;
  return {href: link.getAttribute('href'), hash: location.hash,
          target: document.querySelector(':target') && document.querySelector(':target').id,
          visible: top > -2 && top < window.innerHeight};
})(%s)"""


def test_html_renders_in_chromium_with_working_links(scanned: Scanned,
                                                     chromium: Chromium) -> None:
    page = scanned.outdir / "report.html"
    session = open_page(chromium, page)
    devices = chromium.evaluate(session, "document.querySelectorAll('article.device').length")
    assert devices == len(scanned.records)
    assert chromium.evaluate(session, "document.scripts.length") == 1, "the filters' only"
    assert chromium.evaluate(
        session, "performance.getEntriesByType('resource').length") == 0, "nothing is fetched"
    red = chromium.evaluate(session, "getComputedStyle(document.querySelector("
                                     "'.tile.v-nonconformant')).backgroundColor")
    assert red == "rgb(198, 40, 40)", "the inline stylesheet applies"
    links = chromium.evaluate(session, CHECK_LINKS)
    assert links["missing"] == [] and links["count"] > 3 * len(scanned.records)
    for selector in ("#devices tbody a", "#worst .devlinks a", "#checks tbody a",
                     "article.device td a", "nav a[href='#controls']", "article.device a.top"):
        clicked = chromium.evaluate(session, CLICK % json.dumps(selector))
        assert clicked["hash"] == clicked["href"], clicked
        assert clicked["target"] == clicked["href"][1:] and clicked["visible"], clicked
    chromium.evaluate(session, "window.scrollTo(0, 0)")
    height = chromium.evaluate(session, "document.documentElement.scrollHeight")
    shot = chromium.send("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": 1280, "height": min(height, 3000), "scale": 1}},
        session)
    SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))
    assert SCREENSHOT.read_bytes().startswith(b"\x89PNG")
    assert problems(chromium) == []


def test_hostile_html_runs_nothing_in_chromium(tmp_path: Path, chromium: Chromium) -> None:
    page = tmp_path / "hostile.html"
    page.write_text(render("html", source_of([hostile_record()])))
    session = open_page(chromium, page)
    assert chromium.evaluate(session, "document.scripts.length") == 1, "the filters' only"
    assert chromium.evaluate(session, "document.images.length") == 0
    text = chromium.evaluate(session, "document.body.innerText")
    assert "<script>alert(1)</script>" in text and "<img src=x onerror=alert(1)>" in text
    assert problems(chromium) == []

