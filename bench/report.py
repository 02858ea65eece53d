"""Benchmark (not a test): the HTML report of 100, 1,000 and 5,000 devices, rendered and opened
in headless Chromium.

Run from the repository: `.venv/bin/python bench/report.py` (options: `--devices`, `--inline`).
The records are copies of a real scan's record (`bench/data/bench-device.record.json`, 40
results, see bench/record.py), each with its own id, a class and a site out of a few, and one
device in three with its failures turned into passes, so that verdicts, slices and filters
have something to tell apart.

For each fleet size and each layout:
- **inline**: every device's detail on the one page (what `-o -` writes, and any file report
  up to probe.report.html.INLINE_DEVICES devices);
- **paged**: the overview, and a page per device in `report-devices/` (a file report past
  INLINE_DEVICES devices);
it prints the seconds to render (process time), the overview's size, the device pages' total
size, the overview's DOM nodes and its load time in Chromium (navigation start to the end of
the load event, the best of three loads of a fresh tab), and the same for one device page.
Inline pages are measured up to `--inline` devices (default 1,000: at 5,000 the page is some
300 MB).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from probe.exports import write_output_file
from probe.model import Status
from probe.record.files import read_record
from probe.record.model import Record
from probe.report import html as report_html
from probe.report import pages_folder, write_report
from probe.report.source import RecordSource

REPO = Path(__file__).resolve().parent.parent
RECORD = REPO / "bench" / "data" / "bench-device.record.json"
CLASSES = ("camera", "sensor", "gateway", "meter")
SITES = ("north", "south", "east", "west", "lab")

sys.path.insert(0, str(REPO / "tests"))
from test_reports import Chromium  # noqa: E402  (the tests' DevTools driver)


def fleet(count: int) -> list[Record]:
    base = read_record(RECORD)
    passed = [dataclasses.replace(r, finding=dataclasses.replace(r.finding, status=Status.PASS))
              if r.status is Status.FAIL else r for r in base.results]
    records = []
    for n in range(count):
        device = dataclasses.replace(base.device, id=f"dev-{n:05d}",
                                     address=f"127.163.{n // 250}.{n % 250 + 1}",
                                     device_class=CLASSES[n % len(CLASSES)],
                                     site=SITES[n % len(SITES)])
        records.append(dataclasses.replace(base, device=device,
                                           results=passed if n % 3 == 0 else base.results))
    return records


def source(records: list[Record]) -> RecordSource:
    def each() -> Iterator[Record]:
        return iter(records)
    return RecordSource(title=f"bench of {len(records)} device(s)", identity="bench",
                        profile={"id": "iso27400", "version": "bench", "digest": "sha256:0"},
                        generated=dt.datetime(2026, 12, 6, tzinfo=dt.UTC), records=each)


LOAD = """(() => { const t = performance.getEntriesByType('navigation')[0];
  return {ms: t.loadEventEnd - t.startTime,
          nodes: document.getElementsByTagName('*').length}; })()"""


def opened(browser: Chromium, path: Path) -> tuple[float, int]:
    """The best load time (ms) of three fresh tabs on `path`, and its element count."""
    best, nodes = float("inf"), 0
    for _ in range(3):
        browser.events.clear()
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target,
                                                         "flatten": True})["sessionId"]
        browser.send("Page.enable", session=session)
        browser.send("Page.navigate", {"url": path.as_uri()}, session, timeout=300)
        browser.wait_event("Page.loadEventFired", timeout=300)
        measured = browser.evaluate(session, LOAD)
        best, nodes = min(best, measured["ms"]), measured["nodes"]
        browser.send("Target.closeTarget", {"targetId": target})
    return best, nodes


def size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir())
    return path.stat().st_size if path.exists() else 0


def measure(browser: Chromium, records: list[Record], work: Path, paged: bool) -> str:
    path = work / "report.html"
    started = time.process_time()
    if paged:
        report_html.INLINE_DEVICES = 0
        write_output_file("html", source(records), path)
    else:
        with path.open("w", encoding="utf-8") as out:
            write_report("html", source(records), out)
    rendered = time.process_time() - started
    folder = pages_folder(path)
    load, nodes = opened(browser, path)
    row = (f"| {len(records):,} | {'paged' if paged else 'inline'} | {rendered:.1f} | "
           f"{size(path) / 1e6:.2f} | {size(folder) / 1e6:.1f} | {nodes:,} | {load:.0f} |")
    if paged:
        page = next(iter(sorted(folder.iterdir())))
        page_load, page_nodes = opened(browser, page)
        row += f" {size(page) / 1e3:.0f} KB, {page_nodes:,} nodes, {page_load:.0f} ms |"
    else:
        row += " - |"
    shutil.rmtree(work)
    work.mkdir()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--inline", type=int, default=1000,
                        help="largest fleet measured on a single page")
    args = parser.parse_args()
    binary = shutil.which("chromium") or "/usr/bin/chromium"
    print("| devices | layout | render s | overview MB | device pages MB | overview nodes |"
          " overview load ms | one device page |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        browser = Chromium(binary, Path(tmp) / "profile")
        work = Path(tmp) / "work"
        work.mkdir()
        try:
            for count in args.devices:
                records = fleet(count)
                if count <= args.inline:
                    print(measure(browser, records, work, paged=False), flush=True)
                print(measure(browser, records, work, paged=True), flush=True)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
