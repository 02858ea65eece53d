"""The HTML report as a dashboard (issue 19), opened in headless Chromium: three real sweeps of
the emulated lab, the devices' personas changed between them, reported from the store.

The charts' numbers are read from the page (each mark's data-* attributes) and compared with
SQL run on the store and with `iotprobe diff`; the filters are driven by key presses; anchors
are compared across two reports of the same fleet. Hostile ids and remediation text are
rendered and opened too.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import without_own_script
from test_reports import Chromium, chromium, iotprobe, open_page, problems

from probe.exports import write_output_file
from probe.record.model import Record
from probe.record.schema import validate_record
from probe.report import html as report_html
from probe.report import pages_folder, write_report
from probe.report.anchors import device_anchor
from probe.report.source import RecordSource

__all__ = ["chromium"]

BASE = "127.163.0.1"
FAST = ("--timeout", "1", "--budget", "30", "--exclude-ports", "2024")
DEVICES = [("cam-01", "camera", "north"), ("sensor-01", "sensor", "north"),
           ("sensor-02", "sensor", "south"), ("gw-01", "gateway", "south")]
PERSONAS = [
    "telnet-camera,clean-sensor,coap-sensor,ftp-gateway",
    "clean-sensor,clean-sensor,coap-sensor,ftp-gateway",
    "clean-sensor,telnet-camera,clean-sensor,dark",
]
"""The lab behind the four devices in sweeps 1, 2 and 3: cam-01 fixed, then sensor-01
regressing, sensor-02 fixed and gw-01 gone dark."""
ANCHOR = re.compile(r"[A-Za-z0-9._~-]+")


class Swept:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = root / "fleet.sqlite"
        self.report = root / "report.html"
        self.earlier = root / "earlier" / "report.html"

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.store) as db:
            return db.execute(sql, args).fetchall()


def _inventory(lab_inventory: Path, out: Path) -> None:
    """The lab's inventory (its trust anchor, its exclusions) with our ids, classes, sites."""
    lab = yaml.safe_load(lab_inventory.read_text())
    addresses = [d["address"] for d in lab["devices"]]
    lab["devices"] = [{"id": i, "address": a, "class": c, "site": s}
                      for (i, c, s), a in zip(DEVICES, addresses, strict=True)]
    out.write_text(yaml.safe_dump(lab))


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Swept:
    out = Swept(tmp_path_factory.mktemp("dashboard"))
    env = {"IOTPROBE_STATE_DIR": str(out.root / "state")}
    inventory = out.root / "inventory.yaml"
    for personas in PERSONAS:
        up = iotprobe("lab", "up", "--base", BASE, "--personas", personas, "--inventory-out",
                      str(out.root / "lab.yaml"), env=env)
        assert up.returncode == 0, up.stderr
        try:
            _inventory(out.root / "lab.yaml", inventory)
            run = iotprobe("sweep", "-i", str(inventory), "--store", str(out.store), "-q",
                           *FAST, env=env)
            assert run.returncode in (0, 1), run.stderr
        finally:
            down = iotprobe("lab", "down", env=env)
            assert down.returncode == 0, down.stderr
    for path, sweep in ((out.report, "3"), (out.earlier, "2")):
        path.parent.mkdir(exist_ok=True)
        made = iotprobe("report", "--store", str(out.store), sweep, "--format", "html", "-o",
                        str(path))
        assert made.returncode == 0, made.stderr
    return out


def requests(browser: Chromium) -> list[str]:
    return [e["params"]["request"]["url"] for e in browser.events
            if e.get("method") == "Network.requestWillBeSent"]


def open_watched(browser: Chromium, path: Path) -> str:
    """The page at `path`, opened with every request it makes recorded."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target,
                                                     "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.send(f"{domain}.enable", session=session)
    browser.send("Emulation.setDeviceMetricsOverride", {
        "width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session)
    browser.send("Page.navigate", {"url": path.as_uri()}, session)
    browser.wait_event("Page.loadEventFired")
    return session


MARKS = """((chart) => [...document.querySelectorAll(
  `svg[data-chart="${chart}"] [data-value]`)].map(m => [m.dataset.x, m.dataset.key,
  Number(m.dataset.value)]))(%s)"""


def marks(browser: Chromium, session: str, chart: str) -> dict[tuple[str, str], int]:
    return {(x, key): value for x, key, value in browser.evaluate(
        session, MARKS % json.dumps(chart))}


# --------------------------------------------------------------------------------- the page


def test_the_dashboard_opens_with_no_error_and_no_request(swept: Swept,
                                                          chromium: Chromium) -> None:
    session = open_watched(chromium, swept.report)
    assert requests(chromium) == [swept.report.as_uri()], "the page fetches nothing"
    assert chromium.evaluate(session, "performance.getEntriesByType('resource').length") == 0
    assert chromium.evaluate(session, "document.querySelectorAll('svg.chart').length") == 3
    assert chromium.evaluate(session, "document.getElementById('filters').hidden") is False
    assert problems(chromium) == []


def test_the_charts_draw_the_stores_numbers(swept: Swept, chromium: Chromium) -> None:
    session = open_page(chromium, swept.report)
    posture = marks(chromium, session, "posture")
    stored = swept.query("SELECT sweep_id, verdict, count(*) FROM records GROUP BY 1, 2")
    assert {k: v for k, v in posture.items() if v} == {
        (f"#{n}", verdict): count for n, verdict, count in stored}
    assert {x for x, _ in posture} == {"#1", "#2", "#3"}
    failing = marks(chromium, session, "failing")
    stored = swept.query("SELECT sweep_id, check_id, count(DISTINCT device_id) FROM results "
                         "WHERE status = 'fail' AND NOT waived GROUP BY 1, 2")
    wanted = {(f"#{n}", check): count for n, check, count in stored}
    assert failing and all(wanted.get(key, 0) == value for key, value in failing.items())
    changes = marks(chromium, session, "changes")
    assert changes[("#1", "regressions")] == changes[("#1", "fixed")] == 0
    for a, b in ((1, 2), (2, 3)):
        diff = json.loads(iotprobe("diff", "--store", str(swept.store), "--json", str(a),
                                   str(b)).stdout)
        assert changes[(f"#{b}", "regressions")] == len(diff["regressions"])
        assert changes[(f"#{b}", "fixed")] == len(diff["newly_passing"])
    assert changes[("#2", "fixed")] > 0 and changes[("#3", "regressions")] > 0
    table = chromium.evaluate(session, """[...document.querySelectorAll(
        'table[data-table="posture"] tbody tr')].map(r => [r.dataset.key,
        [...r.querySelectorAll('td')].map(td => Number(td.textContent))])""")
    assert {key: values for key, values in table} == {
        v: [posture[(f"#{n}", v)] for n in (1, 2, 3)]
        for v in ("nonconformant", "inconclusive", "conformant")}
    assert problems(chromium) == []


def test_each_device_shows_its_verdict_in_every_sweep(swept: Swept,
                                                      chromium: Chromium) -> None:
    session = open_page(chromium, swept.report)
    for device, _, _ in DEVICES:
        cells = chromium.evaluate(session, f"""[...document.querySelectorAll(
            '#{device_anchor(device)} svg[data-chart="timeline"] [data-key]')].map(
            m => [m.dataset.x, m.dataset.key])""")
        stored = swept.query("SELECT sweep_id, verdict FROM records WHERE device_id = ? "
                             "ORDER BY sweep_id", device)
        assert [tuple(c) for c in cells] == [(f"#{n}", v) for n, v in stored]
    gone_dark = swept.query("SELECT verdict FROM records WHERE device_id = 'gw-01' "
                            "ORDER BY sweep_id")
    assert gone_dark[-1] == ("inconclusive",) and gone_dark[0] == ("nonconformant",)


def test_the_slices_count_devices_by_class_and_site(swept: Swept, chromium: Chromium) -> None:
    session = open_page(chromium, swept.report)
    for name, column in (("class", "json_extract(record, '$.device.class')"),
                         ("site", "json_extract(record, '$.device.site')")):
        shown = chromium.evaluate(session, f"""Object.fromEntries([...document.querySelectorAll(
            '#slice-{name} tbody tr')].map(r => [r.cells[0].textContent,
            Number(r.cells[1].textContent)]))""")
        stored = swept.query(f"SELECT {column}, count(*) FROM records WHERE sweep_id = 3 "
                             "GROUP BY 1")
        assert shown == dict(stored)


# ------------------------------------------------------------------------------- filtering

VISIBLE = """[...document.querySelectorAll('#device-index tbody tr')].filter(
  r => !r.hidden).map(r => ({...r.dataset}))"""


def key(browser: Chromium, session: str, name: str, code: int, text: str = "") -> None:
    for kind in ("keyDown", "keyUp"):
        browser.send("Input.dispatchKeyEvent", {
            "type": kind if text or kind == "keyUp" else "rawKeyDown", "key": name,
            "code": name if len(name) > 1 else f"Key{name.upper()}" if name.isalpha() else name,
            "windowsVirtualKeyCode": code, "text": text if kind == "keyDown" else ""}, session)


def focused(browser: Chromium, session: str) -> str:
    name: str = browser.evaluate(session, "document.activeElement.name || "
                                          "document.activeElement.tagName")
    return name


def test_the_filters_work_from_the_keyboard(swept: Swept, chromium: Chromium) -> None:
    session = open_page(chromium, swept.report)
    assert len(chromium.evaluate(session, VISIBLE)) == len(DEVICES)
    key(chromium, session, "/", 191, "/")
    assert focused(chromium, session) == "q"
    chromium.send("Input.insertText", {"text": "sensor-0"}, session)
    assert sorted(d["cls"] for d in chromium.evaluate(session, VISIBLE)) == ["sensor", "sensor"]
    assert chromium.evaluate(session, "document.getElementById('shown').textContent") == "2"
    key(chromium, session, "Tab", 9)
    assert focused(chromium, session) == "verdict"
    key(chromium, session, "ArrowDown", 40)
    verdict = chromium.evaluate(session, "document.activeElement.value")
    assert verdict == "nonconformant"
    stored = swept.query("SELECT device_id FROM records WHERE sweep_id = 3 AND verdict = ? "
                         "AND device_id LIKE 'sensor-0%'", verdict)
    rows = chromium.evaluate(session, VISIBLE)
    assert sorted(r["verdict"] for r in rows) == [verdict] * len(stored)
    for _ in range(2):
        key(chromium, session, "Tab", 9)
    assert focused(chromium, session) == "site"
    for _ in range(3):
        key(chromium, session, "Tab", 9)
    assert focused(chromium, session) == "BUTTON"
    key(chromium, session, "Enter", 13, "\r")
    assert len(chromium.evaluate(session, VISIBLE)) == len(DEVICES), "clear shows them all"
    chromium.evaluate(session, "document.querySelector('#worst a[data-filter]').focus()")
    check = chromium.evaluate(session, "document.activeElement.dataset.value")
    key(chromium, session, "Enter", 13, "\r")
    failing = swept.query("SELECT DISTINCT device_id FROM results WHERE sweep_id = 3 AND "
                          "check_id = ? AND status = 'fail' AND NOT waived", check)
    assert sorted(chromium.evaluate(session, "[...document.querySelectorAll("
                                             "'#device-index tbody tr')].filter(r => !r.hidden)"
                                             ".map(r => r.cells[0].textContent)")) == sorted(
        d for (d,) in failing)
    assert chromium.evaluate(session, "location.hash") == "#devices"
    assert problems(chromium) == []


# --------------------------------------------------------------------------------- anchors

ANCHORS = """({devices: Object.fromEntries([...document.querySelectorAll('article.device')].map(
  a => [a.querySelector('h3').textContent, a.id])),
  checks: [...document.querySelectorAll('#checks tbody tr')].map(r => [r.cells[0].textContent,
  r.id]), missing: [...document.querySelectorAll('a[href^="#"]')].filter(
  a => !document.getElementById(a.hash.slice(1))).map(a => a.getAttribute('href'))})"""


def test_anchors_are_the_same_in_two_reports_of_the_fleet(swept: Swept,
                                                          chromium: Chromium) -> None:
    seen = []
    for path in (swept.report, swept.earlier):
        assert problems(chromium) == []
        chromium.events.clear()
        session = open_page(chromium, path)
        seen.append(chromium.evaluate(session, ANCHORS))
    latest, earlier = seen
    assert latest["missing"] == earlier["missing"] == []
    assert latest["devices"] == earlier["devices"] == {
        d: f"d-{d}" for d, _, _ in DEVICES}
    shared = {c for c, _ in latest["checks"]} & {c for c, _ in earlier["checks"]}
    assert shared and all(dict(latest["checks"])[c] == dict(earlier["checks"])[c]
                          for c in shared)
    assert problems(chromium) == []


# ----------------------------------------------------------------------- hostile and large

HOSTILE_IDS = ['"><img src=x onerror=alert(1)>', "cam:1", "cam-1", "cam_1", "../../etc/passwd",
               "a b", "caméra", "d-cam-1~0000000000000000", "#top", "x" * 128]
REMEDIATION = ("Turn off `telnetd`, then **reboot**. <script>alert(1)</script> "
               "[docs](javascript:alert(1)) ![p](https://e.example/x.png) \x1b]0;t\x07")


def hostile_records() -> list[dict[str, Any]]:
    records = []
    for n, device_id in enumerate(HOSTILE_IDS):
        record = {
            "schema": "iotprobe.record/v1",
            "device": {"id": device_id, "address": f"127.163.9.{n + 1}",
                       "class": "<b>cam</b>", "site": "site \"'<>&"},
            "profile": {"id": "p", "version": "1", "digest": "sha256:" + "1" * 64},
            "probe": {"version": "0.1.0", "intrusive": False},
            "started_at": "2026-11-28T12:00:00Z", "finished_at": "2026-11-28T12:00:01Z",
            "verdict": "nonconformant", "services": [],
            "results": [{
                "check": "net.cleartext-management", "control": "27400-6.2",
                "target": "tcp/23", "status": "fail", "severity": "high",
                "summary": "telnet <script>alert(1)</script>",
                "evidence": {"banner": "<b>login:</b>", "ports": [23, 2323],
                             "nested": {"a": "<i>"}},
                "remediation": REMEDIATION, "references": {}, "duration_ms": 1},
                {"check": "tls.protocol-versions", "control": "27400-6.2", "target": "tcp/443",
                 "status": "pass", "severity": "high", "summary": "TLS 1.2 and 1.3 only",
                 "evidence": {"versions": ["TLSv1.2", "TLSv1.3"]}, "remediation": "",
                 "references": {}, "duration_ms": 1}],
        }
        validate_record(record)
        records.append(record)
    return records


def hostile_source() -> RecordSource:
    ordered = sorted(hostile_records(), key=lambda r: r["device"]["id"])
    return RecordSource(title="hostile fleet", identity="test:hostile",
                        profile=ordered[0]["profile"],
                        generated=dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC),
                        records=lambda: (Record.from_json(r) for r in ordered))


def test_hostile_ids_give_unique_safe_anchors() -> None:
    anchors = [device_anchor(i) for i in HOSTILE_IDS]
    assert len(set(anchors)) == len(anchors)
    assert all(ANCHOR.fullmatch(a) and len(a) < 80 for a in anchors)
    assert device_anchor("cam-1") == "d-cam-1" and device_anchor("cam:1") != "d-cam-1"
    assert anchors == [device_anchor(i) for i in HOSTILE_IDS], "the same id, the same anchor"


def test_hostile_data_renders_as_text_in_chromium(tmp_path: Path,
                                                  chromium: Chromium) -> None:
    buffer = io.StringIO()
    write_report("html", hostile_source(), buffer)
    page = tmp_path / "hostile.html"
    page.write_text(buffer.getvalue())
    rest = without_own_script(buffer.getvalue())
    assert "<img" not in rest and "<script>" not in rest and 'href="javascript' not in rest
    session = open_watched(chromium, page)
    assert requests(chromium) == [page.as_uri()]
    assert chromium.evaluate(session, "document.images.length") == 0
    assert chromium.evaluate(session, "document.scripts.length") == 1
    remedy = chromium.evaluate(session, "document.querySelector('.remedy').innerHTML")
    assert "<code>telnetd</code>" in remedy and "<strong>reboot</strong>" in remedy
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in remedy and "\\x1b]0;t\\x07" in remedy
    assert chromium.evaluate(session, "document.querySelector('.remedy')"
                                      ".querySelectorAll('a').length") == 1
    evidence = chromium.evaluate(session, """[...document.querySelector('table.kv')
        .querySelectorAll('tr')].map(r => [r.cells[0].textContent, r.cells[1].textContent])""")
    assert evidence == [["banner", "<b>login:</b>"], ["nested", '{"a": "<i>"}'],
                        ["ports", "23, 2323"]]
    collapsed = chromium.evaluate(session, """[...document.querySelectorAll(
        'details.settled')].map(d => [d.open,
        d.querySelectorAll(':scope > table > tbody > tr').length])""")
    assert collapsed == [[False, 1]] * len(HOSTILE_IDS), "passes are collapsed"
    text = chromium.evaluate(session, "document.body.innerText")
    assert all(i in text for i in HOSTILE_IDS[:-1])
    links = chromium.evaluate(session, ANCHORS)
    assert links["missing"] == [] and len(set(links["devices"].values())) == len(HOSTILE_IDS)
    assert problems(chromium) == []


@pytest.fixture
def few_inline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(report_html, "INLINE_DEVICES", 3)
    yield


def test_a_large_fleet_gets_a_page_per_device(tmp_path: Path, chromium: Chromium,
                                              few_inline: None) -> None:
    path = tmp_path / "report.html"
    stale = pages_folder(path) / "d-gone.html"
    stale.parent.mkdir()
    stale.write_text("an older report's page")
    write_output_file("html", hostile_source(), path)
    folder = pages_folder(path)
    pages = sorted(p.name for p in folder.iterdir())
    assert pages == sorted(f"{device_anchor(i)}.html" for i in HOSTILE_IDS)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert 'class="device"' not in path.read_text(), "no device detail on the overview"
    session = open_watched(chromium, path)
    hrefs = chromium.evaluate(session, "[...document.querySelectorAll("
                                       "'#device-index tbody a')].map(a => a.href)")
    assert sorted(hrefs) == sorted((folder / p).as_uri() for p in pages)
    assert problems(chromium) == []
    chromium.events.clear()
    chromium.evaluate(session, "document.querySelector('#device-index tbody a').click()")
    chromium.wait_event("Page.loadEventFired")
    title = chromium.evaluate(session, "document.querySelector('article.device h3')"
                                       ".textContent")
    assert title in HOSTILE_IDS
    back = chromium.evaluate(session, "document.querySelector('article.device a.top').href")
    assert back == path.as_uri()
    assert chromium.evaluate(session, "document.scripts.length") == 0
    assert set(requests(chromium)) <= {path.as_uri(), *(
        (folder / p).as_uri() for p in pages)}
    assert problems(chromium) == []


def test_a_file_where_the_device_pages_go_is_refused_first(swept: Swept, tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    pages_folder(path).write_text("not a folder")
    made = iotprobe("report", "--store", str(swept.store), "--format", "html", "-o", str(path))
    assert made.returncode == 2, made.stderr
    assert "report-devices: it is not a folder" in made.stderr
    assert not path.exists() and [p.name for p in tmp_path.iterdir()] == ["report-devices"]
