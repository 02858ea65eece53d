"""Benchmark (not a test): iotprobe, sslyze and nmap on a fleet of real mosquitto and nginx
daemons, at the probe's default settings and with its rate lifted, in the same run.

Run as root from the repository: `.venv/bin/python bench/realfleet.py` (options: `--devices`,
`--base`, `--runs`, `--profile RAW`, `--no-write`). The fleet:

- N devices (default 200), device i on its own address, `--base` + i - 1 (default 127.185.0.1);
- each device runs one real mosquitto (Debian `mosquitto`: cleartext MQTT on 1883, MQTT over
  TLS on 8883, anonymous clients allowed) and one real nginx (Debian `nginx`: HTTP on 80, HTTPS
  on 443, one process: `daemon off`, `master_process off`, `worker_processes 1`), both with the
  device's certificate (P-256, its address in subjectAltName) from a CA made for the run, which
  the inventory names as the trust anchor;
- every daemon is a child of this process (Popen in the foreground, asked to die with it),
  ready when /proc/net shows its sockets bound (`tests/daemons.py`'s `bound`), stopped by PID.

Each run measures, one tool at a time on the whole fleet, with a quiet pause before each:

- iotprobe at its defaults: `python -m probe scan -i INV -o DIR -q --exclude-ports 2024`;
- iotprobe with `--rate 20000`, otherwise the same;
- the sslyze CLI minimal scan (the commands of `bench/fleet.py`'s anchors, the run's CA as
  `--certinfo_ca_file`) on the 2N TLS endpoints, targets `IP:port{IP}`;
- nmap `-n -Pn -sT -p 80,443,1883,8883 --script ssl-enum-ciphers,mqtt-subscribe`.

The anchors run once per run and both probe settings are compared with them. For each: wall
seconds, CPU seconds (wait4: the probe's worker processes included), the peak of the process
tree's summed RSS, the daemons' CPU seconds over the same time. Work done is checked: a valid
record (the shipped schema) for every device and one status set across them (the devices are
identical) and across the two settings; sslyze completed every command on every endpoint; nmap
found the 4N ports open and ran its scripts on them. Unless `--no-write`, the tables replace
the section of bench/README.md between `<!-- realfleet:begin -->` and
`<!-- realfleet:end -->`. The exit status is 1 when a check of work done failed.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import datetime as dt
import ipaddress
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import jsonschema
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from daemons import Certificate, bound, issue, make_ca  # noqa: E402
from fleet import (  # noqa: E402
    FORBIDDEN,
    SSLYZE_COMMANDS,
    TLS_PORTS,
    Usage,
    cpu_seconds,
    ratio,
    report_profile,
    run_measured,
    statuses,
)
from interop import debian_version, pypi_version  # noqa: E402

from probe.record.schema import validate_record  # noqa: E402

BASE = "127.185.0.1"
DEVICES = 200
HTTP, HTTPS, MQTT, MQTTS = 80, 443, 1883, 8883
PORTS = (HTTP, HTTPS, MQTT, MQTTS)
NMAP_SCRIPTS = ("ssl-enum-ciphers", "mqtt-subscribe")
SCRIPT_PORTS = {"ssl-enum-ciphers": TLS_PORTS, "mqtt-subscribe": (MQTT,)}
"""Where each nmap script must have reported for the run to count (mqtt-subscribe may also
answer on 8883; that is shown, not required)."""
LIFTED = ("--rate", "20000")
SETTINGS = (("defaults", ()), ("`--rate 20000`", LIFTED))
READY = 120.0
"""Seconds the whole fleet may take to show its sockets bound."""
QUIET = 3.0
"""Seconds of quiet before each tool (the previous one's connections close)."""
TOOL_DEADLINE = 3600.0
BEGIN, END = "<!-- realfleet:begin -->", "<!-- realfleet:end -->"
README = REPO / "bench" / "README.md"
_PR_SET_PDEATHSIG = 1


# ---------------------------------------------------------------------------------------------
# The fleet: one mosquitto and one nginx per device, children of this process
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    id: str
    address: str
    certificate: Certificate


@dataclass
class Fleet:
    ca: Path
    devices: list[Device]
    daemons: list[subprocess.Popen[bytes]]


def fleet_addresses(base: str, count: int) -> list[str]:
    """`count` consecutive addresses from `base`, all on loopback (refused otherwise)."""
    first = ipaddress.IPv4Address(base)
    out = [first + i for i in range(count)]
    if not all(a.is_loopback for a in out):
        raise SystemExit(f"{count} devices from {base} leave 127.0.0.0/8")
    return [str(a) for a in out]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the benchmark dies, so a benchmark killed with
    SIGKILL leaves no daemon holding its addresses."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(argv: list[str], home: Path) -> subprocess.Popen[bytes]:
    with (home / f"{Path(argv[0]).name}.log").open("wb") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=home,
                                preexec_fn=_die_with_parent)


def mosquitto_argv(home: Path, device: Device) -> list[str]:
    """mosquitto 2.0 in the foreground: 1883 cleartext and 8883 TLS on the device's address,
    anonymous clients allowed, nothing kept on disk."""
    conf = home / "mosquitto.conf"
    conf.write_text("\n".join([
        "user root", "persistence false", "log_dest stdout", "allow_anonymous true",
        f"listener {MQTT} {device.address}",
        f"listener {MQTTS} {device.address}",
        f"certfile {device.certificate.cert}", f"keyfile {device.certificate.key}", ""]))
    return ["mosquitto", "-c", str(conf)]


def nginx_argv(home: Path, device: Device) -> list[str]:
    """nginx as one foreground process: 80 and 443 on the device's address, a page on every
    path."""
    temps = " ".join(f"{kind}_temp_path {home}/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    cert = device.certificate
    conf = home / "nginx.conf"
    conf.write_text(
        f"user root; daemon off; master_process off; worker_processes 1; pid {home}/nginx.pid;\n"
        f"error_log {home}/error.log;\nevents {{ worker_connections 512; }}\n"
        f"http {{ access_log off; {temps}\n"
        f"  server {{ listen {device.address}:{HTTP}; listen {device.address}:{HTTPS} ssl;\n"
        f"    ssl_certificate {cert.cert}; ssl_certificate_key {cert.key};\n"
        "    location / { default_type text/html; return 200 \"<h1>device</h1>\\n\"; } } }\n")
    return ["nginx", "-c", str(conf), "-p", str(home), "-e", str(home / "error.log")]


def _wait_bound(fleet: Fleet) -> None:
    """Until /proc/net shows every device's four TCP listeners; bounded by READY, and a daemon
    that exits first stops the wait."""
    end = time.monotonic() + READY
    for device in fleet.devices:
        for port in PORTS:
            while not bound(device.address, port, "tcp"):
                dead = [p.args for p in fleet.daemons if p.poll() is not None]
                if dead or time.monotonic() > end:
                    raise RuntimeError(f"{device.id}: {port} never bound on {device.address}"
                                       + (f"; exited: {dead[:3]}" if dead else ""))
                time.sleep(0.05)


def _stop(daemons: Sequence[subprocess.Popen[bytes]]) -> None:
    """Terminate every daemon, then wait for each (kill one that lingers), by PID."""
    for proc in daemons:
        if proc.poll() is None:
            proc.terminate()
    for proc in daemons:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def real_fleet(tmp: Path, count: int, base: str) -> Iterator[Fleet]:
    """The fleet of `count` devices from `base`, ready; every daemon stopped and waited on
    when the block ends, whatever happens."""
    ca_cert, ca = make_ca(tmp, "realfleet-ca")
    fleet = Fleet(ca_cert.cert, [], [])
    try:
        for index, address in enumerate(fleet_addresses(base, count), start=1):
            home = tmp / f"dev-{index:05d}"
            home.mkdir()
            cert, _ = issue(home, "device", ca, names=[address])
            device = Device(f"real-{index:05d}", address, cert)
            fleet.devices.append(device)
            for argv in (mosquitto_argv(home, device), nginx_argv(home, device)):
                fleet.daemons.append(_spawn(argv, home))
        _wait_bound(fleet)
        yield fleet
    finally:
        _stop(fleet.daemons)


def write_inventory(fleet: Fleet, path: Path) -> None:
    """The inventory: each device's id and address, the run's CA as trust anchor, 2024
    excluded. No ports: the probe scans its profile's."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    with path.open("w") as out:
        yaml.dump({"defaults": {"exclude_ports": [FORBIDDEN], "trust_anchor": str(fleet.ca)},
                   "devices": [{"id": d.id, "address": d.address} for d in fleet.devices]}, out)


# ---------------------------------------------------------------------------------------------
# The tools
# ---------------------------------------------------------------------------------------------


@dataclass
class ProbeRun:
    label: str
    options: tuple[str, ...]
    usage: Usage
    daemons_cpu: float
    records: dict[str, tuple[tuple[str, str], ...]]
    invalid: list[str]


@dataclass
class Anchor:
    usage: Usage
    checks: list[tuple[str, int, int]]
    """(what, done, expected) per check of work done."""
    extra: str = ""

    def ok(self) -> bool:
        return all(done == expected for _, done, expected in self.checks)

    def said(self) -> str:
        return (f"{self.usage.cpu:.1f} CPU s; " + "; ".join(
            f"{what} {done}/{expected}" for what, done, expected in self.checks)
            + (f" ({self.extra})" if self.extra else ""))


def probe_argv(inventory: Path, outdir: Path, options: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "probe", "scan", "-i", str(inventory), "-o", str(outdir),
            "-q", "--exclude-ports", str(FORBIDDEN), *options]


def invalid_records(outdir: Path) -> list[str]:
    """The records under `outdir` the shipped schema refuses, with the reason."""
    refused = []
    for path in sorted(outdir.glob("*.record.json")):
        try:
            validate_record(json.loads(path.read_text()))
        except (ValueError, jsonschema.ValidationError) as exc:
            refused.append(f"{path.name}: {str(exc).splitlines()[0]}")
    return refused


def probe(fleet: Fleet, inventory: Path, outdir: Path, label: str,
          options: Sequence[str]) -> ProbeRun:
    pids = [p.pid for p in fleet.daemons]
    before = cpu_seconds(pids)
    usage = run_measured(probe_argv(inventory, outdir, options),
                         deadline=max(900.0, 3.0 * len(fleet.devices)))
    return ProbeRun(label, tuple(options), usage, cpu_seconds(pids) - before,
                    statuses(outdir), invalid_records(outdir))


def sslyze(fleet: Fleet, tmp: Path) -> Anchor:
    """The sslyze CLI on both TLS ports of every device; done: endpoints whose scan and every
    command completed."""
    out = tmp / "sslyze.json"
    targets = [f"{d.address}:{port}{{{d.address}}}" for d in fleet.devices for port in TLS_PORTS]
    usage = run_measured([sys.executable, "-m", "sslyze", "--quiet", "--json_out", str(out),
                          *SSLYZE_COMMANDS, "--certinfo_ca_file", str(fleet.ca), *targets],
                         deadline=TOOL_DEADLINE)
    try:
        results = json.loads(out.read_text())["server_scan_results"]
    except (OSError, ValueError, KeyError):
        results = []
    done = sum(1 for r in results if r.get("scan_status") == "COMPLETED" and sum(
        (c or {}).get("status") == "COMPLETED"
        for c in (r.get("scan_result") or {}).values()) == len(SSLYZE_COMMANDS))
    return Anchor(usage, [("endpoints with every command completed", done, len(targets))])


def nmap_argv(fleet: Fleet, out: Path) -> list[str]:
    return ["nmap", "-n", "-Pn", "-sT", "-p", ",".join(str(p) for p in PORTS),
            "--exclude-ports", str(FORBIDDEN), "--script", ",".join(NMAP_SCRIPTS),
            "-oX", str(out), *(d.address for d in fleet.devices)]


def nmap(fleet: Fleet, tmp: Path) -> Anchor:
    """nmap on the four ports with the two scripts; done: open ports, and the ports each
    script reported on."""
    out = tmp / "nmap.xml"
    usage = run_measured(nmap_argv(fleet, out), deadline=TOOL_DEADLINE)
    opened: collections.Counter[int] = collections.Counter()
    ran: collections.Counter[tuple[str, int]] = collections.Counter()
    with contextlib.suppress(OSError, ElementTree.ParseError):
        for port in ElementTree.parse(out).getroot().iter("port"):
            number = int(port.get("portid", "0"))
            state = port.find("state")
            if state is not None and state.get("state") == "open":
                opened[number] += 1
            for script in port.iter("script"):
                ran[script.get("id", ""), number] += 1
    count = len(fleet.devices)
    checks = [("ports open", sum(opened.values()), len(PORTS) * count)]
    checks += [(f"{name} on {port}", ran[name, port], count)
               for name, ports in SCRIPT_PORTS.items() for port in ports]
    extra = ", ".join(f"{name} also on {port}: {n}" for (name, port), n in sorted(ran.items())
                      if port not in SCRIPT_PORTS.get(name, ()))
    return Anchor(usage, checks, extra)


# ---------------------------------------------------------------------------------------------
# A run, its checks, its report
# ---------------------------------------------------------------------------------------------


@dataclass
class Run:
    started: dt.datetime
    load_start: float
    load_end: float = 0.0
    probes: list[ProbeRun] = field(default_factory=list)
    sslyze: Anchor | None = None
    nmap: Anchor | None = None


def measure(fleet: Fleet, tmp: Path, index: int) -> Run:
    """One run: the probe at each setting, then sslyze, then nmap, one at a time."""
    inventory = tmp / "inventory.yaml"
    run = Run(dt.datetime.now(dt.UTC), os.getloadavg()[0])
    for number, (label, options) in enumerate(SETTINGS):
        time.sleep(QUIET)
        outdir = tmp / f"run{index}-probe{number}"
        run.probes.append(probe(fleet, inventory, outdir, label, options))
        shutil.rmtree(outdir, ignore_errors=True)
        print(f"  iotprobe {label}: {describe(run.probes[-1], len(fleet.devices))}", flush=True)
    time.sleep(QUIET)
    run.sslyze = sslyze(fleet, tmp)
    print(f"  sslyze: {run.sslyze.usage.seconds:.1f} s, {run.sslyze.said()}", flush=True)
    time.sleep(QUIET)
    run.nmap = nmap(fleet, tmp)
    print(f"  nmap: {run.nmap.usage.seconds:.1f} s, {run.nmap.said()}", flush=True)
    run.load_end = os.getloadavg()[0]
    return run


def profiled(fleet: Fleet, inventory: Path, tmp: Path, raw: Path) -> None:
    """One more scan at the defaults under py-spy (`--gil --subprocesses`, raw samples into
    `raw`); its top printed."""
    spy = Path(sys.executable).parent / "py-spy"
    time.sleep(QUIET)
    run_measured([str(spy), "record", "--gil", "--subprocesses", "-r", "100", "-f", "raw",
                  "-o", str(raw), "--", *probe_argv(inventory, tmp / "profiled", ())],
                 deadline=max(900.0, 6.0 * len(fleet.devices)))
    report_profile(len(fleet.devices), raw)


def describe(p: ProbeRun, count: int) -> str:
    return (f"{p.usage.seconds:.1f} s, CPU {p.usage.cpu:.1f} s, RSS {p.usage.max_rss_mib:.0f} "
            f"MiB, daemons {p.daemons_cpu:.1f} s, {len(p.records)}/{count} records, "
            f"{len(p.invalid)} invalid, exit {p.usage.code}")


def status_sets(runs: Sequence[Run]) -> collections.Counter[tuple[tuple[str, str], ...]]:
    """How many records of every scan of every run had each (check, status) set."""
    return collections.Counter(s for r in runs for p in r.probes for s in p.records.values())


def failures(runs: Sequence[Run], count: int) -> list[str]:
    """What the checks of work done found wrong, in words (empty: nothing)."""
    wrong = []
    for number, run in enumerate(runs, start=1):
        for p in run.probes:
            if len(p.records) != count or p.invalid:
                wrong.append(f"run {number}, iotprobe {p.label}: {len(p.records)}/{count} "
                             f"records, {len(p.invalid)} refused by the schema "
                             f"{p.invalid[:2]}; exit {p.usage.code}: {p.usage.errors[-300:]}")
        for name, anchor in (("sslyze", run.sslyze), ("nmap", run.nmap)):
            if anchor is not None and not anchor.ok():
                wrong.append(f"run {number}, {name}: {anchor.said()}")
    shapes = status_sets(runs)
    if len(shapes) > 1:
        wrong.append(f"{len(shapes)} status sets across the records: " + "; ".join(
            f"{n} records: {summary(s)}" for s, n in shapes.most_common(3)))
    return wrong


def summary(shape: tuple[tuple[str, str], ...]) -> str:
    """'40 results: 22 pass, 9 fail, ...' of one status set."""
    counts = collections.Counter(status for _, status in shape)
    return f"{len(shape)} results: " + ", ".join(f"{n} {s}" for s, n in counts.most_common())


def versions() -> str:
    tools = [f"mosquitto {debian_version('mosquitto')()}", f"nginx {debian_version('nginx')()}",
             f"sslyze {pypi_version('sslyze')()}", f"nmap {debian_version('nmap')()}"]
    return ", ".join(tools)


def table(runs: Sequence[Run], count: int) -> list[str]:
    lines = [
        "| run (UTC) | load average, start → end | iotprobe options | iotprobe s | devices/s "
        "| probe CPU s | CPU s/device | peak RSS MiB (tree) | daemons' CPU s | sslyze s | nmap s "
        "| sslyze / iotprobe | nmap / iotprobe |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for number, run in enumerate(runs, start=1):
        assert run.sslyze is not None and run.nmap is not None
        for p in run.probes:
            u = p.usage
            lines.append(
                f"| {number}: {run.started:%Y-%m-%d %H:%M} | {run.load_start:.2f} → "
                f"{run.load_end:.2f} | {p.label} | {u.seconds:.1f} | {count / u.seconds:.1f} | "
                f"{u.cpu:.1f} | {u.cpu / count:.3f} | {u.max_rss_mib:.0f} | {p.daemons_cpu:.1f} "
                f"| {run.sslyze.usage.seconds:.1f} | {run.nmap.usage.seconds:.1f} | "
                f"{ratio(run.sslyze.usage.seconds, u.seconds)} | "
                f"{ratio(run.nmap.usage.seconds, u.seconds)} |")
    return lines


def goals(runs: Sequence[Run]) -> list[str]:
    """Issue 20's goal at the defaults, per run: faster than nmap, at least 10x sslyze."""
    out = []
    for number, run in enumerate(runs, start=1):
        assert run.sslyze is not None and run.nmap is not None
        p = run.probes[0].usage.seconds
        vs_nmap, vs_sslyze = run.nmap.usage.seconds / p, run.sslyze.usage.seconds / p
        out.append(f"- run {number}, defaults: {vs_nmap:.2f}x nmap's speed (goal: above 1, "
                   f"{'met' if vs_nmap > 1 else 'not met'}), {vs_sslyze:.1f}x sslyze's (goal: "
                   f"at least 10, {'met' if vs_sslyze >= 10 else 'not met'})")
    return out


def section(runs: Sequence[Run], count: int, command: str, wrong: Sequence[str]) -> str:
    """The generated part of bench/README.md: the table, the goals, the work done."""
    shapes = status_sets(runs)
    anchors = [f"- run {n}: sslyze {r.sslyze.said()}; nmap {r.nmap.said()}"
               for n, r in enumerate(runs, start=1) if r.sslyze and r.nmap]
    lines = [
        BEGIN,
        "<!-- written by bench/realfleet.py: do not edit by hand, run it again -->",
        f"{count} devices, {len(PORTS) * count} listeners ({2 * count} TLS endpoints); "
        f"{versions()}; {os.cpu_count()} CPUs. Command:",
        "", "```", command, "```", "",
        *table(runs, count), "",
        "Each run's sslyze and nmap times are measured once, after both probe scans, and "
        "compared with each. Against issue 20's goals:", "",
        *goals(runs), "",
        "Work done:", "",
        f"- iotprobe: {sum(len(p.records) for r in runs for p in r.probes)} records in "
        f"{sum(len(r.probes) for r in runs)} scans of {count} devices, "
        f"{sum(len(p.invalid) for r in runs for p in r.probes)} refused by the record schema, "
        f"{len(shapes)} status set(s) across all of them"
        + (f" ({summary(shapes.most_common(1)[0][0])})" if shapes else ""),
        *anchors,
        *(["", "**Checks of work done that failed:**", "", *(f"- {w}" for w in wrong)]
          if wrong else []),
        END]
    return "\n".join(lines)


def rewrite(readme: Path, text: str) -> None:
    """Replace the section between the markers of `readme` with `text` (markers included);
    everything outside them stays as it is. A file without exactly one pair, in order, is
    refused and left alone."""
    old = readme.read_text()
    start, end = old.find(BEGIN), old.find(END)
    if old.count(BEGIN) != 1 or old.count(END) != 1 or end < start:
        raise SystemExit(f"{readme} needs exactly one {BEGIN} ... {END} section")
    readme.write_text(old[:start] + text + old[end + len(END):])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=DEVICES,
                        help=f"devices in the fleet (default {DEVICES})")
    parser.add_argument("--base", default=BASE,
                        help=f"address of the first device (default {BASE})")
    parser.add_argument("--runs", type=int, default=1,
                        help="runs on the same fleet, each with its anchors (default 1; 0: "
                        "none, for --profile alone)")
    parser.add_argument("--profile", type=Path, default=None, metavar="RAW",
                        help="after the runs, one more scan at the defaults under py-spy: its "
                        "raw samples into RAW, its top functions printed")
    parser.add_argument("--no-write", action="store_true",
                        help=f"print the section instead of writing it into {README.name}")
    args = parser.parse_args()
    command = shlex.join([".venv/bin/python", "bench/realfleet.py", *sys.argv[1:]])
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.environ["PYTHONPATH"] = str(REPO)  # the probe's workers import this checkout's probe
    tmp = Path(tempfile.mkdtemp(prefix="iotprobe-realfleet-"))
    print(f"work directory {tmp}", flush=True)
    runs = []
    try:
        with real_fleet(tmp, args.devices, args.base) as fleet:
            write_inventory(fleet, tmp / "inventory.yaml")
            print(f"{len(fleet.devices)} devices up, {len(fleet.daemons)} daemons", flush=True)
            for index in range(1, args.runs + 1):
                print(f"run {index}", flush=True)
                runs.append(measure(fleet, tmp, index))
            if args.profile:
                profiled(fleet, tmp / "inventory.yaml", tmp, args.profile.resolve())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not runs:
        return 0
    wrong = failures(runs, args.devices)
    text = section(runs, args.devices, command, wrong)
    print(text)
    if not args.no_write:
        rewrite(README, text)
        print(f"written into {README}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
