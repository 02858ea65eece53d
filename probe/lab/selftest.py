"""`iotprobe lab selftest [--real]`: start a lab, scan it, compare with what it declares.

The self-test starts the emulated lab (or, with --real, the real daemons) in the background as
`iotprobe lab up` does, scans it twice with the built-in `iso27400` profile, without and with
--intrusive (IP literals only, port 2024 excluded, the lab CA as trust anchor), and compares
every result with the status its device declares. A check that returns several results (one per
endpoint) is judged by the worst of them: fail, error, skipped, pass, not_applicable. A check a
device does not declare, or that the profile does not run, is not compared. It prints the table
(expected and got, per device and check, for both scans), the disagreements, and the coverage
of the check catalogue: for every check, which devices of either lab declare a pass and which a
failure, naming the checks that lack either side. The exit status is 1 on any disagreement.

What the devices declare:

- a persona's `expect` is the default scan of the inventory `iotprobe lab up` writes; the
  monitoring personas' results with their sinks declared (`MONITORED_EXPECT`) replace their 6.5
  statuses, because the self-test's inventory declares those sinks (`lab_monitor`).
- in the intrusive scan an intrusive check gets the status declared for intrusive scans
  (`INTRUSIVE_WRITE`, `INTRUSIVE_EXPECT`, `PERSONA_INTRUSIVE` below), `not_applicable` where the
  persona declares the endpoints it needs absent, and is not compared otherwise; every other
  check keeps its default status.
- a real device declares both scans itself (probe.lab.real).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from ruamel.yaml import YAML

from probe.checks import catalogue
from probe.checks.base import Check
from probe.context import ScanOptions
from probe.inventory import load_inventory
from probe.lab import pki
from probe.lab.lifecycle import LabError, start_background, stop_lab
from probe.lab.personas import PERSONAS
from probe.lab.personas.base import Persona
from probe.lab.personas.coap import INTRUSIVE_WRITE
from probe.lab.personas.monitor import (
    INTRUSIVE_EXPECT,
    MONITOR_ACCOUNT,
    MONITORED_EXPECT,
    SINK_ADDRESS,
    lab_monitor,
)
from probe.lab.real import REAL_DEVICES, RealDevice, dump_yaml
from probe.lab.servers import FORBIDDEN_PORT, ports_of
from probe.lab.state import running_lab
from probe.model import Severity
from probe.profile_loader import load_profiles
from probe.record.files import read_record
from probe.record.model import Record
from probe.run import run_scan
from probe.secrets import Secret

PROFILE = "iso27400"
Lab = Literal["emulated", "real"]
Echo = Callable[[str], None]

MQTT_DEFAULT = "mqtt.default-credentials"
HTTP_DEFAULT = "http.default-credentials"
COAP_WRITE = "coap.unauthenticated-write"
THROTTLING = "monitor.bruteforce-throttling"

PERSONA_INTRUSIVE: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "clean-sensor": {MQTT_DEFAULT: "pass"},
    "snmp-public": {MQTT_DEFAULT: "pass"},
    "tftp-sensor": {MQTT_DEFAULT: "pass"},
    "extra-ports": {MQTT_DEFAULT: "pass", HTTP_DEFAULT: "not_applicable"},
    "hang": {MQTT_DEFAULT: "error"},
    "telnet-camera": {HTTP_DEFAULT: "not_applicable", "telnet.default-credentials": "pass"},
    "ftp-gateway": {HTTP_DEFAULT: "not_applicable"},
    "mqtt-open-broker": {MQTT_DEFAULT: "fail"},
    "mqtt-device-login": {MQTT_DEFAULT: "pass"},
    "mqtt-mutual-tls": {MQTT_DEFAULT: "pass"},
    "mqtt-silent": {MQTT_DEFAULT: "error"},
    "weak-webui": {HTTP_DEFAULT: "fail"},
    "telnet-default-login": {"telnet.default-credentials": "fail"},
    "ssh-legacy-gateway": {"ssh.default-credentials": "fail"},
    "ssh-hardened-gateway": {"ssh.default-credentials": "pass"},
    "expired-broker": {MQTT_DEFAULT: "pass"},
    "selfsigned-camera": {HTTP_DEFAULT: "pass"},
    "skewed-clock": {HTTP_DEFAULT: "pass"},
    "good-webui": {HTTP_DEFAULT: "pass"},
    "disclosure-gateway": {HTTP_DEFAULT: "pass"},
    "monitor-syslog-tls": {MQTT_DEFAULT: "pass"},
    "monitor-mqtt-events": {MQTT_DEFAULT: "pass"},
    "monitor-unreported": {MQTT_DEFAULT: "pass"},
    "monitor-throttled": {MQTT_DEFAULT: "pass"},
})
"""The default-credential checks in an intrusive scan of the personas, from their descriptions
(a broker open to anyone fails, one that refuses everyone passes, a silent one is an error; a
web UI with admin/admin on a Basic path fails, one with its own account passes, one without an
authenticated path is not applicable) and the lab tests that measured them."""

ABSENT_WITHOUT: Mapping[str, tuple[str, ...]] = MappingProxyType({
    MQTT_DEFAULT: ("mqtt.cleartext-listener", "mqtt.anonymous-access"),
    HTTP_DEFAULT: ("http.authentication",),
    COAP_WRITE: ("coap.cleartext",),
    THROTTLING: ("mqtt.anonymous-access", "http.authentication"),
})
"""An intrusive check is `not_applicable` on a device that declares these all
`not_applicable` (no MQTT endpoint, no HTTP listener, no CoAP at all: docs/record.md)."""


@dataclass(frozen=True)
class Declared:
    """What a device of either lab declares: the statuses of the default and the intrusive
    scan, and the verdict of the default scan."""

    name: str
    lab: Lab
    device_class: str
    description: str
    listens: str
    default: Mapping[str, str]
    intrusive: Mapping[str, str]
    verdict: str


def _intrusive_view(default: Mapping[str, str], statuses: Mapping[str, str],
                    checks: Mapping[str, Check]) -> dict[str, str]:
    out: dict[str, str] = {}
    for check_id, status in default.items():
        check = checks.get(check_id)
        if check is None or not check.intrusive or status != "skipped":
            out[check_id] = status
        elif check_id in statuses:
            out[check_id] = statuses[check_id]
        elif (needs := ABSENT_WITHOUT.get(check_id)) and all(
                default.get(other) == "not_applicable" for other in needs):
            out[check_id] = "not_applicable"
    for check_id, status in statuses.items():
        out.setdefault(check_id, status)
    return out


def _listens(items: Iterable[Mapping[str, Any]]) -> str:
    return " ".join(f"{i['transport']}/{i['port']}" + ("+tls" if i.get("tls") else "")
                    for i in items) or "-"


def persona_declared(persona: Persona, checks: Mapping[str, Check]) -> Declared:
    default = {**persona.expect, **MONITORED_EXPECT.get(persona.name, {})}
    statuses = dict(PERSONA_INTRUSIVE.get(persona.name, {}))
    if persona.name in INTRUSIVE_WRITE:
        statuses[COAP_WRITE] = INTRUSIVE_WRITE[persona.name]
    if persona.name in INTRUSIVE_EXPECT:
        statuses[THROTTLING] = INTRUSIVE_EXPECT[persona.name]
    statuses = {c: s for c, s in statuses.items() if default.get(c) == "skipped"}
    return Declared(persona.name, "emulated", persona.device_class, persona.description,
                    _listens(ports_of(persona.listeners)), default,
                    _intrusive_view(default, statuses, checks), persona.expect_verdict)


def real_declared(device: RealDevice, checks: Mapping[str, Check]) -> Declared:
    return Declared(device.name, "real", device.device_class, device.description,
                    _listens(listen.as_state() for listen in device.listeners),
                    dict(device.expect),
                    _intrusive_view(device.expect, device.expect_intrusive, checks),
                    device.expect_verdict)


def every_declared(checks: Mapping[str, Check] | None = None) -> list[Declared]:
    """Every device of both labs: the personas, then the real devices."""
    known = catalogue() if checks is None else checks
    return ([persona_declared(p, known) for p in PERSONAS.values()]
            + [real_declared(d, known) for d in REAL_DEVICES])


# ---------------------------------------------------------------------------------------------
# Comparing
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    device: str
    check: str
    expected: tuple[str | None, str | None]
    got: tuple[str | None, str | None]

    @property
    def agrees(self) -> bool:
        return all(e is None or e == g for e, g in zip(self.expected, self.got, strict=True))


def implied_verdict(statuses: Iterable[str]) -> str:
    """The verdict that results with these statuses get (no waivers): docs/record.md."""
    seen = set(statuses)
    if "fail" in seen:
        return "nonconformant"
    return "inconclusive" if "error" in seen else "conformant"


def compare(device_id: str, declared: Declared, records: tuple[Record | None, Record | None]
            ) -> list[Row]:
    """The rows of one device: each declared check the records hold (default, intrusive),
    then, where it declares every check of a record, the verdict its statuses imply."""
    got: tuple[dict[str, str], ...] = tuple(
        {c: status.value for c, status in r.statuses().items()} if r is not None else {}
        for r in records)
    order: list[str] = []
    for found in got:
        order += [c for c in found if c not in order]
    rows = []
    for check_id in order:
        expected = tuple(
            wanted.get(check_id) if check_id in found else None
            for wanted, found in zip((declared.default, declared.intrusive), got, strict=True))
        if expected != (None, None):
            rows.append(Row(device_id, check_id, (expected[0], expected[1]),
                            (got[0].get(check_id), got[1].get(check_id))))
    verdicts: list[tuple[str | None, str | None]] = []
    for wanted, found, record in zip((declared.default, declared.intrusive), got, records,
                                     strict=True):
        if record is not None and found and set(found) <= set(wanted):
            verdicts.append((implied_verdict(wanted[c] for c in found), record.verdict.value))
        else:
            verdicts.append((None, None))
    if verdicts != [(None, None), (None, None)]:
        rows.append(Row(device_id, "verdict", (verdicts[0][0], verdicts[1][0]),
                        (verdicts[0][1], verdicts[1][1])))
    return rows


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            .rstrip() for row in rows]


def render_rows(rows: Sequence[Row]) -> list[str]:
    header = ("DEVICE", "CHECK", "EXPECTED", "GOT", "INTRUSIVE EXPECTED", "GOT", "")
    body = [(r.device, r.check, r.expected[0] or "-", r.got[0] or "-",
             r.expected[1] or "-", r.got[1] or "-", "" if r.agrees else "<-- DISAGREES")
            for r in rows]
    return _table([header, *body])


@dataclass(frozen=True)
class Coverage:
    """Per catalogue check, the devices (lab, name) declared to pass and to fail it."""

    passing: Mapping[str, tuple[tuple[Lab, str], ...]]
    failing: Mapping[str, tuple[tuple[Lab, str], ...]]

    def gaps(self) -> tuple[list[str], list[str]]:
        """(checks that no device passes, checks that no device fails)."""
        return ([c for c, who in self.passing.items() if not who],
                [c for c, who in self.failing.items() if not who])


def coverage(declared: Iterable[Declared], checks: Iterable[str]) -> Coverage:
    ids = sorted(checks)
    passing: dict[str, list[tuple[Lab, str]]] = {c: [] for c in ids}
    failing: dict[str, list[tuple[Lab, str]]] = {c: [] for c in ids}
    for device in declared:
        for check_id in ids:
            seen = {device.default.get(check_id), device.intrusive.get(check_id)}
            if "pass" in seen:
                passing[check_id].append((device.lab, device.name))
            if "fail" in seen:
                failing[check_id].append((device.lab, device.name))
    return Coverage({c: tuple(v) for c, v in passing.items()},
                    {c: tuple(v) for c, v in failing.items()})


def _names(who: Sequence[tuple[Lab, str]], limit: int = 3) -> str:
    if not who:
        return "NONE"
    shown = [name + ("*" if lab == "real" else "") for lab, name in who[:limit]]
    more = f" +{len(who) - limit}" if len(who) > limit else ""
    return ", ".join(shown) + more


def render_coverage(cover: Coverage) -> list[str]:
    rows = [("CHECK", "PASSES ON", "FAILS ON")]
    rows += [(c, _names(cover.passing[c]), _names(cover.failing[c])) for c in cover.passing]
    lines = ["coverage: the devices of both labs declared to pass and to fail each check "
             "(* = real lab)", *_table(rows)]
    no_pass, no_fail = cover.gaps()
    if no_pass or no_fail:
        if no_pass:
            lines.append(f"checks no device passes: {', '.join(no_pass)}")
        if no_fail:
            lines.append(f"checks no device fails: {', '.join(no_fail)}")
    else:
        lines.append(f"every one of the {len(cover.passing)} checks passes on a device and "
                     "fails on another")
    return lines


def _compact(check_ids: Sequence[str], known: Iterable[str]) -> str:
    """`a.x`, `a.y`, ... with every check of a family present shortened to `a.*`."""
    families: dict[str, list[str]] = {}
    for check_id in known:
        families.setdefault(check_id.split(".", 1)[0], []).append(check_id)
    out: list[str] = []
    for check_id in check_ids:
        family = check_id.split(".", 1)[0]
        members = families.get(family, [])
        if len(members) > 1 and set(members) <= set(check_ids):
            if f"`{family}.*`" not in out:
                out.append(f"`{family}.*`")
        else:
            out.append(f"`{check_id}`")
    return ", ".join(out) or "-"


def markdown_table(declared: Iterable[Declared] | None = None) -> str:
    """Every device of both labs as a Markdown table: what it runs, the checks it is declared
    to fail and to pass (default scan, then what --intrusive adds), its verdict."""
    known = list(catalogue())
    items = every_declared() if declared is None else list(declared)

    def checks(device: Declared, status: str) -> str:
        default = [c for c, s in device.default.items() if s == status]
        extra = [c for c, s in device.intrusive.items()
                 if s == status and device.default.get(c) != status]
        return _compact(default, known) + (
            f"; with --intrusive: {_compact(extra, known)}" if extra else "")

    lines = ["| device | lab | class | listens | what it is | fails | passes | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for device in items:
        cells = (f"`{device.name}`", device.lab, device.device_class, device.listens,
                 device.description.replace("|", "\\|"), checks(device, "fail"),
                 checks(device, "pass"), device.verdict)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def monitored_inventory(lab_inventory: Path, personas: Mapping[str, str], work: Path) -> Path:
    """The emulated lab's inventory with the monitoring personas' sinks declared: the probe's
    TLS syslog listener gets a certificate of its own, the MQTT sinks log in with the monitor
    account (its password in a file)."""
    yaml = YAML(typ="safe", pure=True)
    document = yaml.load(lab_inventory.read_text())
    ca = pki.new_ca()
    cert, key = pki.issue(ca, SINK_ADDRESS, "iotprobe lab syslog sink")
    cert_file, key_file, password_file = (work / "sink.crt", work / "sink.key",
                                          work / "monitor.password")
    cert_file.write_bytes(cert)
    _write_private(key_file, key)
    _write_private(password_file, MONITOR_ACCOUNT[1].encode())
    secret = Secret(MONITOR_ACCOUNT[1], origin=f"file:{password_file}")
    for entry in document["devices"]:
        sinks = lab_monitor(personas[entry["id"]], entry["address"], str(cert_file),
                            str(key_file), secret)
        for sink in sinks.values():
            if isinstance(sink.pop("password", None), Secret):
                sink["password_file"] = str(password_file)
        if sinks:
            entry["monitor"] = sinks
    path = work / "inventory.yaml"
    path.write_text(dump_yaml(document, "# written by `iotprobe lab selftest`: the lab's "
                                        "inventory with the monitoring sinks declared\n"))
    return path


def scan(inventory: Path, outdir: Path, *, trust_anchor: str, timeout: float,
         intrusive: bool) -> dict[str, Record]:
    """Scan with the built-in profile into `outdir`; the records by device id."""
    options = ScanOptions(timeout=timeout, intrusive=intrusive, exclude_ports=(FORBIDDEN_PORT,),
                          trust_anchor=trust_anchor)
    asyncio.run(run_scan([load_inventory(inventory)], load_profiles([PROFILE]), options,
                         outdir=outdir, formats=(), fail_on=Severity.LOW, quiet=True))
    records: dict[str, Record] = {}
    for path in sorted(outdir.glob("*.record.json")):
        record = read_record(path)
        records[record.device.id] = record
    return records


def run_selftest(state_dir: Path, *, real: bool, base: str, timeout: float,
                 echo: Echo) -> int:
    """Start the lab, scan it twice, print the comparison and the coverage; 0 when every
    declared status holds, else 1. Raises LabError when the lab does not start."""
    running = running_lab(state_dir)
    if running is not None:
        raise LabError(f"a lab is already running (pid {running['pid']}, state in "
                       f"{state_dir}); stop it or choose another --state-dir")
    kind: Lab = "real" if real else "emulated"
    work = state_dir / "selftest"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, mode=0o700)
    lab_inventory = work / "lab-inventory.yaml"
    state = start_background(state_dir, base=base, inventory_out=lab_inventory, real=real,
                             devices=len(PERSONAS), personas=list(PERSONAS.values()))
    checks = catalogue()
    names = {d["id"]: d["persona"] for d in state["devices"]}
    declared = {d.name: d for d in every_declared(checks) if d.lab == kind}
    echo(f"iotprobe lab selftest: the {kind} lab, {len(names)} devices from {base}, profile "
         f"{PROFILE}, timeout {timeout:g}s, port {FORBIDDEN_PORT} excluded")
    try:
        inventory = lab_inventory if real else monitored_inventory(lab_inventory, names, work)
        records = [scan(inventory, work / name, trust_anchor=state["trust_anchor"],
                        timeout=timeout, intrusive=intrusive)
                   for name, intrusive in (("default", False), ("intrusive", True))]
    finally:
        echo(stop_lab(state_dir))
    echo(f"records: {work / 'default'}, {work / 'intrusive'}")
    rows: list[Row] = []
    for device_id, name in names.items():
        rows += compare(device_id, declared[name],
                        (records[0].get(device_id), records[1].get(device_id)))
    echo("")
    for line in render_rows(rows):
        echo(line)
    missing = [(scan_name, device_id) for device_id in names
               for scan_name, found in zip(("default", "intrusive"), records, strict=True)
               if device_id not in found]
    bad = [r for r in rows if not r.agrees]
    echo("")
    for scan_name, device_id in missing:
        echo(f"NO RECORD: {device_id} in the {scan_name} scan")
    for row in bad:
        echo(f"DISAGREES: {row.device} {row.check}: expected {row.expected[0] or '-'}, got "
             f"{row.got[0] or '-'}; with --intrusive expected {row.expected[1] or '-'}, got "
             f"{row.got[1] or '-'}")
    echo(f"{len(rows)} comparisons over {len(names)} devices: {len(bad)} disagreement(s)")
    echo("")
    for line in render_coverage(coverage(every_declared(checks), checks)):
        echo(line)
    return 1 if bad or missing else 0
