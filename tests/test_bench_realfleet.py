"""bench/realfleet.py: the real-daemon fleet benchmark does the work it times, says when it did
not, and writes only its own section of bench/README.md.

The end-to-end test runs the benchmark's command line on two devices (real mosquitto and nginx
on 127.186.0.1-2, the probe, sslyze and nmap) without writing the README; its times are not
looked at, only the checks of work done and that every daemon is gone afterwards.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from daemons import bound

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
BASE = "127.186.0.1"
GUARD = 1800.0
"""Seconds after which a hung benchmark is killed (a guard, not a measure)."""


def _load(name: str) -> ModuleType:
    """A script of bench/, loaded from its file (bench/ is not a package and stays off
    sys.path: its record.py and report.py would shadow other modules)."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def realfleet() -> ModuleType:
    _load("fleet")
    return _load("realfleet")


def test_the_section_between_the_markers_is_replaced_and_nothing_else(
        realfleet: ModuleType, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    before, after = "# Benchmarks\n\nhand-written\n\n", "\n\n## Next\n\nalso hand-written\n"
    readme.write_text(f"{before}{realfleet.BEGIN}\nold table\n{realfleet.END}{after}")
    realfleet.rewrite(readme, f"{realfleet.BEGIN}\nnew table\n{realfleet.END}")
    assert readme.read_text() == f"{before}{realfleet.BEGIN}\nnew table\n{realfleet.END}{after}"


PAIR = "<!-- realfleet:begin -->\n<!-- realfleet:end -->\n"


@pytest.mark.parametrize("text", ["no markers\n", "".join(reversed(PAIR.splitlines(True))),
                                  PAIR * 2])
def test_a_readme_without_one_ordered_pair_of_markers_is_left_alone(
        realfleet: ModuleType, tmp_path: Path, text: str) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(text)
    with pytest.raises(SystemExit):
        realfleet.rewrite(readme, f"{realfleet.BEGIN}\nnew\n{realfleet.END}")
    assert readme.read_text() == text


def test_the_bench_readme_has_the_section(realfleet: ModuleType) -> None:
    text = (BENCH / "README.md").read_text()
    assert text.count(realfleet.BEGIN) == 1 and text.count(realfleet.END) == 1
    assert text.index(realfleet.BEGIN) < text.index(realfleet.END)


def _run(realfleet: ModuleType, records: int, anchor_done: int) -> Any:
    """A run of two devices whose scans wrote `records` records and whose sslyze completed
    `anchor_done` of 4 endpoints."""
    usage = realfleet.Usage(1.0, 1.0, 100.0, 1)
    shape = (("mqtt.anonymous-access", "fail"),)
    probes = [realfleet.ProbeRun(label, options, usage, 0.1,
                                 {f"real-{i}": shape for i in range(records)}, [])
              for label, options in realfleet.SETTINGS]
    return realfleet.Run(dt.datetime.now(dt.UTC), 1.0, 1.0, probes,
                         realfleet.Anchor(usage, [("endpoints", anchor_done, 4)]),
                         realfleet.Anchor(usage, [("ports open", 8, 8)]))


def test_missing_work_is_reported(realfleet: ModuleType) -> None:
    """The checks of work done can fail: a missing record, an endpoint sslyze did not finish,
    two status sets among identical devices."""
    assert realfleet.failures([_run(realfleet, 2, 4)], 2) == []
    short = realfleet.failures([_run(realfleet, 1, 4)], 2)
    assert len(short) == 2 and all("1/2 records" in line for line in short)
    assert realfleet.failures([_run(realfleet, 2, 3)], 2) == ["run 1, sslyze: 1.0 CPU s; "
                                                             "endpoints 3/4"]
    split = _run(realfleet, 2, 4)
    split.probes[1].records["real-0"] = (("mqtt.anonymous-access", "pass"),)
    assert [w for w in realfleet.failures([split], 2) if "2 status sets" in w]


def test_two_real_devices_every_tool_does_its_work_and_the_daemons_go() -> None:
    """The command line on two devices: a valid record of each at both settings with one
    status set, sslyze completing every command on the 4 endpoints, nmap's scripts on every
    port they must cover; exit 0, the README untouched, no listener left."""
    readme = (BENCH / "README.md").read_text()
    done = subprocess.run([sys.executable, str(BENCH / "realfleet.py"), "--devices", "2",
                           "--base", BASE, "--no-write"], cwd=REPO, capture_output=True,
                          text=True, timeout=GUARD)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "4 records in 2 scans of 2 devices, 0 refused by the record schema, 1 status set" in out
    assert "endpoints with every command completed 4/4" in out
    for wanted in ("ports open 8/8", "ssl-enum-ciphers on 443 2/2", "ssl-enum-ciphers on 8883 2/2",
                   "mqtt-subscribe on 1883 2/2"):
        assert wanted in out
    assert "Checks of work done that failed" not in out
    assert (BENCH / "README.md").read_text() == readme
    assert not any(bound(address, port, "tcp") for address in ("127.186.0.1", "127.186.0.2")
                   for port in (80, 443, 1883, 8883))
