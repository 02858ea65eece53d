"""Benchmark (not a test): iotprobe on fleets of 100, 1,000 and 5,000 emulated devices, beside
sslyze and nmap on the same devices.

Run as root from the repository: `.venv/bin/python bench/fleet.py` (options: `--sizes`,
`--anchors`, `--anchor-size`, `--concurrency`, `--rate`, `--processes`, `--profile-size`;
`--probe-args '...'` replaces the last three, `''` being the probe's defaults; `--base` puts
every fleet on one block). For each fleet size N:

- the lab (`iotprobe lab up --foreground --devices n --personas bench-device`) runs in child
  processes of this one, never in the probe's: every device has cleartext MQTT (1883, open to
  anyone), MQTT over TLS (8883), HTTPS (443), HTTP (80) and CoAP (5683/udp). A device holds five
  sockets, so a lab process runs at most `SHARD` devices (the machines allow 20,000 open files
  a process); larger fleets run in several, each with its own CA, named per device in the
  inventory;
- `iotprobe scan -i <inventory> -q` with the default, non-intrusive iso27400 profile, as a
  child process: wall time, devices per second, the peak of its process tree's summed RSS
  (the scan and its worker processes, sampled), its CPU seconds with its workers' (`wait4`),
  and the emulator's CPU seconds (/proc/<pid>/stat) over the same interval;
- on the first `--anchors` devices of the `--anchor-size` fleet (default: the smallest; all of
  them when the fleet is that small): iotprobe again on
  just those, then the sslyze CLI with the scan commands of the same TLS verdicts on their two
  TLS ports, then nmap `-n -Pn -sT -sU` on the probe's TCP ports and 5683/udp with
  `ssl-enum-ciphers,mqtt-subscribe,coap-resources`; the ratios are tool time / iotprobe time;
- every record's statuses per check, compared with the same device id's in the other fleets.

Then one extra scan of the `--profile-size` fleet under py-spy (`--gil`: where the probe holds
the interpreter), whose top items are printed. Port 2024 is excluded everywhere. Times are wall
clock on a shared 2-core machine: read them as ratios and orders of magnitude.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import json
import os
import re
import resource
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv" / "bin"
IOTPROBE = str(VENV / "iotprobe")
PYTHON = str(VENV / "python")
PERSONA = "bench-device"
SHARD = 2500
"""Devices per lab process: five sockets each, 12,500 listeners, room for the connections."""
BASES = {100: "127.61.0.1", 1000: "127.62.0.1", 5000: "127.63.0.1"}
FORBIDDEN = 2024
TLS_PORTS = (443, 8883)
NMAP_SCRIPTS = "ssl-enum-ciphers,mqtt-subscribe,coap-resources"
SSLYZE_COMMANDS = ("--sslv2", "--sslv3", "--tlsv1", "--tlsv1_1", "--tlsv1_2", "--tlsv1_3",
                   "--certinfo", "--heartbleed", "--openssl_ccs", "--robot", "--reneg",
                   "--compression")
READY = "iotprobe lab ready"
LAB_START = 300.0
TICK = os.sysconf("SC_CLK_TCK")
GENERIC = re.compile(r"runpy|click/|asyncio/(base_events|events|runners|selector_events)|"
                     r"threading\.py|concurrent/futures|contextlib\.py|importlib|<module>|"
                     r"^main \(probe/cli|^scan \(probe/cli|^run \(asyncio")


# ---------------------------------------------------------------------------------------------
# Child processes: bounded, waited on, stopped by pid
# ---------------------------------------------------------------------------------------------


@dataclass
class Usage:
    seconds: float
    cpu: float
    max_rss_mib: float
    code: int
    errors: str = ""
    """The last lines the process wrote to stderr."""


def tree_rss_mib(pid: int) -> float:
    """The resident memory of `pid` and all its descendants (the probe's worker processes),
    summed, from /proc; 0 for a process that is gone."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError, ValueError):
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next((line.split()[1] for line in status.splitlines()
                               if line.startswith("VmRSS:")), 0))  # none: a zombie
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return total / 1024


def run_measured(argv: Sequence[str], deadline: float, stdout: Any = subprocess.DEVNULL
                 ) -> Usage:
    """Run `argv` to its end (killed after `deadline` s); wall time, the CPU seconds of the
    process and of the children it waited for (wait4: the probe's worker processes included),
    and the peak of the process tree's summed RSS, sampled every 0.2 s."""
    begin = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=subprocess.PIPE, cwd=REPO)
    timer = threading.Timer(deadline, proc.kill)
    timer.start()
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], tree_rss_mib(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        assert proc.stderr is not None
        errors = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
        done.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - begin
    if proc.returncode not in (0, 1, 3):
        tail = errors.decode(errors="replace").strip().splitlines()[-3:]
        print(f"  ! {Path(argv[0]).name} exited {proc.returncode}: {' | '.join(tail)}",
              file=sys.stderr)
    return Usage(seconds, usage.ru_utime + usage.ru_stime, max(peak[0], usage.ru_maxrss / 1024),
                 proc.returncode,
                 "\n".join(errors.decode(errors="replace").strip().splitlines()[-80:]))


def cpu_seconds(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


@dataclass
class LabShard:
    process: subprocess.Popen[bytes]
    state_dir: Path
    inventory: Path


def _wait_ready(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    end = time.monotonic() + LAB_START
    buf = b""
    while time.monotonic() < end:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if not ready:
            continue
        chunk = os.read(proc.stdout.fileno(), 1 << 16)
        if not chunk:
            raise RuntimeError(f"the lab exited with {proc.wait()}")
        buf = buf[-200:] + chunk
        if READY.encode() in buf:
            return
    raise RuntimeError(f"the lab did not come up within {LAB_START:.0f} s")


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def fleet(tmp: Path, count: int, base: str) -> Iterator[list[LabShard]]:
    """The lab processes of a fleet of `count` devices from `base`; stopped and waited on when
    the block ends, whatever happens."""
    first = [int(x) for x in base.split(".")]
    start = (first[1] << 16) | (first[2] << 8) | first[3]
    shards: list[LabShard] = []
    try:
        for index, offset in enumerate(range(0, count, SHARD)):
            at = start + offset
            shard_base = f"127.{at >> 16 & 255}.{at >> 8 & 255}.{at & 255}"
            state = tmp / f"lab-{count}-{index}"
            inventory = tmp / f"lab-{count}-{index}.yaml"
            log = (tmp / f"lab-{count}-{index}.log").open("wb")
            with log:
                proc = subprocess.Popen(
                    [IOTPROBE, "lab", "up", "--foreground", "--devices",
                     str(min(SHARD, count - offset)), "--personas", PERSONA, "--base",
                     shard_base, "--state-dir", str(state), "--inventory-out", str(inventory)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, cwd=REPO)
            shards.append(LabShard(proc, state, inventory))
            _wait_ready(proc)
            assert proc.stdout is not None
            proc.stdout.close()
        yield shards
    finally:
        for shard in shards:
            _stop(shard.process)


# ---------------------------------------------------------------------------------------------
# Inventories and records
# ---------------------------------------------------------------------------------------------


def _yaml() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    return yaml


def merged_inventory(shards: Sequence[LabShard], path: Path, limit: int | None = None
                     ) -> list[dict[str, Any]]:
    """One inventory of every shard's devices (the first `limit`), each naming its shard's CA;
    the devices as written. Every lab process numbers its devices from 1, so the devices of
    the second shard on are renamed `s<shard>-<id>` (the first keep their names, by which
    fleets are compared)."""
    devices: list[dict[str, Any]] = []
    for index, shard in enumerate(shards):
        data = _yaml().load(shard.inventory.read_text())
        anchor = data["defaults"]["trust_anchor"]
        devices += [{**d, "trust_anchor": anchor} | ({"id": f"s{index}-{d['id']}"} if index else {})
                    for d in data["devices"]]
    devices = devices[:limit]
    out = StringIO()
    _yaml().dump({"defaults": {"exclude_ports": [FORBIDDEN]}, "devices": devices}, out)
    path.write_text(out.getvalue())
    return devices


def statuses(outdir: Path) -> dict[str, tuple[tuple[str, str], ...]]:
    """Each device's (check, status) pairs, sorted, from its record."""
    out = {}
    for path in outdir.glob("*.record.json"):
        record = json.loads(path.read_text())
        out[record["device"]["id"]] = tuple(sorted((r["check"], r["status"])
                                                   for r in record["results"]))
    return out


# ---------------------------------------------------------------------------------------------
# The tools
# ---------------------------------------------------------------------------------------------


def tuning(args: argparse.Namespace) -> list[str]:
    """The probe's options under test: `--probe-args` when given (empty: its defaults), else
    the lifted limits (`--concurrency`, `--rate`, `--processes`)."""
    if args.probe_args is not None:
        return shlex.split(args.probe_args)
    return ["--concurrency", str(args.concurrency), "--rate", str(args.rate), "--processes",
            args.processes]


def scan_argv(inventory: Path, outdir: Path, args: argparse.Namespace) -> list[str]:
    return [IOTPROBE, "scan", "-i", str(inventory), "-q", "-o", str(outdir), *tuning(args),
            "--exclude-ports", str(FORBIDDEN)]


def sslyze(devices: Sequence[dict[str, Any]], tmp: Path) -> tuple[Usage, str]:
    """The sslyze CLI on both TLS ports of `devices` (one CA: the first shard's); the usage and
    how many scans completed."""
    out = tmp / "sslyze.json"
    targets = [f"{d['address']}:{port}{{{d['address']}}}" for d in devices for port in TLS_PORTS]
    usage = run_measured([PYTHON, "-m", "sslyze", "--quiet", "--json_out", str(out),
                          *SSLYZE_COMMANDS, "--certinfo_ca_file", devices[0]["trust_anchor"],
                          *targets], deadline=3600)
    try:
        results = json.loads(out.read_text())["server_scan_results"]
    except (OSError, ValueError, KeyError):
        return usage, "no results"
    done = sum(1 for r in results if r.get("scan_status") == "COMPLETED" and all(
        (c or {}).get("status") in ("COMPLETED", "NOT_SCHEDULED")
        for c in (r.get("scan_result") or {}).values()))
    return usage, f"{done}/{len(targets)} complete"


def nmap(devices: Sequence[dict[str, Any]], tcp_ports: str, tmp: Path) -> tuple[Usage, str]:
    """nmap with the three scripts on the probe's TCP ports and 5683/udp; the usage and how
    many ports each script reported on."""
    out = tmp / "nmap.xml"
    usage = run_measured(["nmap", "-n", "-Pn", "-sT", "-sU", "-p", f"T:{tcp_ports},U:5683",
                          "--exclude-ports", str(FORBIDDEN), "--script", NMAP_SCRIPTS,
                          "-oX", str(out), *(d["address"] for d in devices)], deadline=3600)
    try:
        root = ElementTree.parse(out).getroot()
    except (OSError, ElementTree.ParseError):
        return usage, "no results"
    seen = collections.Counter(s.get("id") for s in root.iter("script"))
    return usage, ", ".join(f"{name} {seen[name]}" for name in NMAP_SCRIPTS.split(","))


def profile_tcp_ports() -> str:
    from probe.profile_loader import load_profiles

    return ",".join(str(p) for p in load_profiles(["iso27400"]).tcp_ports if p != FORBIDDEN)


# ---------------------------------------------------------------------------------------------
# Profile
# ---------------------------------------------------------------------------------------------


def _frame(text: str) -> str:
    name, _, where = text.partition(" (")
    return f"{name} ({where.split(':')[0]})" if where else name


def _package(frame: str) -> str:
    """`httpx` for "AsyncClient.send (httpx/_client.py)", `asyncio`, `ssl.py`, ..."""
    where = frame.rpartition(" (")[2].rstrip(")")
    return where.split("/")[0] if "/" in where else where or frame


def profile_top(raw: Path, count: int = 12) -> tuple[int, list[tuple[str, float]],
                                                     list[tuple[str, float]],
                                                     list[tuple[str, float]]]:
    """From py-spy's raw output: the samples; the probe's functions by inclusive share; where
    each sample's time went below the probe (the library the deepest probe frame called, or
    `probe` itself); the top leaves."""
    inclusive: collections.Counter[str] = collections.Counter()
    below: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        samples = int(n)
        total += samples
        frames = [_frame(f) for f in stack.split(";")[1:]]
        ours = [i for i, f in enumerate(frames) if "(probe/" in f and not GENERIC.search(f)]
        for name in {frames[i] for i in ours}:
            inclusive[name] += samples
        if ours:
            called = [_package(f) for f in frames[ours[-1] + 1:]
                      if not f.endswith("(contextlib.py)")]
            below[called[0] if called else f"probe: {frames[ours[-1]]}"] += samples
        elif frames:
            below[_package(frames[-1]) + " (outside the probe's frames)"] += samples
        if frames:
            leaves[frames[-1]] += samples
    share = max(total, 1) / 100
    return (total, [(k, v / share) for k, v in inclusive.most_common(count)],
            [(k, v / share) for k, v in below.most_common(count)],
            [(k, v / share) for k, v in leaves.most_common(8)])


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


@dataclass
class Row:
    size: int
    labs: int
    probe: Usage
    emulator_cpu: float
    anchors: int = 0
    probe_subset: Usage | None = None
    sslyze: Usage | None = None
    sslyze_note: str = ""
    nmap: Usage | None = None
    nmap_note: str = ""
    records: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)


def measure(size: int, tmp: Path, args: argparse.Namespace, tcp_ports: str) -> Row:
    with fleet(tmp, size, args.base or BASES.get(size, "127.64.0.1")) as shards:
        pids = [s.process.pid for s in shards]
        inventory = tmp / f"fleet-{size}.yaml"
        merged_inventory(shards, inventory)
        outdir = tmp / f"out-{size}"
        time.sleep(1.0)
        before = cpu_seconds(pids)
        probe = run_measured(scan_argv(inventory, outdir, args), deadline=max(900, size))
        row = Row(size, len(shards), probe, cpu_seconds(pids) - before,
                  records=statuses(outdir))
        if len(row.records) < size:
            print(f"  ! {len(row.records)} records of {size}; the probe exited {probe.code}, "
                  f"its lab processes {[s.process.poll() for s in shards]}; its stderr ends:\n"
                  f"{probe.errors}", file=sys.stderr, flush=True)
        print(f"  N={size}: {probe.seconds:.1f} s, {size / probe.seconds:.1f} devices/s, "
              f"RSS {probe.max_rss_mib:.0f} MiB, CPU {probe.cpu:.1f} s, emulator "
              f"{row.emulator_cpu:.1f} s, {len(row.records)} records", flush=True)
        if args.anchors and size == args.anchor_size:
            row.anchors = min(args.anchors, size, SHARD)
            subset = tmp / f"subset-{size}.yaml"
            chosen = merged_inventory(shards, subset, row.anchors)
            time.sleep(2.0)
            row.probe_subset = run_measured(scan_argv(subset, tmp / f"sub-{size}", args),
                                            deadline=900)
            time.sleep(2.0)
            row.sslyze, row.sslyze_note = sslyze(chosen, tmp)
            time.sleep(2.0)
            row.nmap, row.nmap_note = nmap(chosen, tcp_ports, tmp)
            print(f"  anchors on {row.anchors}: iotprobe {row.probe_subset.seconds:.1f} s, "
                  f"sslyze {row.sslyze.seconds:.1f} s ({row.sslyze_note}), nmap "
                  f"{row.nmap.seconds:.1f} s ({row.nmap_note})", flush=True)
        if size == args.profile_size and shutil.which("py-spy", path=str(VENV)):
            raw = tmp / f"profile-{size}.txt"
            time.sleep(2.0)
            run_measured([str(VENV / "py-spy"), "record", "--gil", "--subprocesses", "-r",
                          "100", "-f", "raw",
                          "-o", str(raw), "--", *scan_argv(inventory, tmp / "prof", args)],
                         deadline=max(900, size * 2))
            report_profile(size, raw)
    return row


def report_profile(size: int, raw: Path) -> None:
    if not raw.exists():
        print("  ! py-spy wrote no profile", file=sys.stderr)
        return
    total, top, below, leaves = profile_top(raw)
    print(f"\nprofile of the probe, N={size} ({total} samples holding the GIL)")
    for title, items in (("probe functions, inclusive:", top),
                         ("time below the probe's frames, by library:", below),
                         ("leaves (self time):", leaves)):
        print(title)
        for name, pct in items:
            print(f"  {pct:5.1f}%  {name}")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b > 0 else "-"


def report(rows: Sequence[Row], args: argparse.Namespace) -> None:
    print(f"\nprobe options: {' '.join(tuning(args)) or '(the defaults)'}, persona {PERSONA} "
          "(MQTT 1883, MQTT/TLS 8883, HTTPS 443, HTTP 80, CoAP 5683/udp)\n")
    print("| N | labs | wall s | devices/s | probe RSS MiB | probe CPU s | emulator CPU s | "
          "anchors on | iotprobe s | sslyze s | nmap s | vs sslyze | vs nmap |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        p = r.probe
        anchor = ["-"] * 6
        if r.probe_subset and r.sslyze and r.nmap:
            anchor = [f"{r.anchors}" + ("" if r.anchors == r.size else " (subset)"),
                      f"{r.probe_subset.seconds:.1f}", f"{r.sslyze.seconds:.1f}",
                      f"{r.nmap.seconds:.1f}", ratio(r.sslyze.seconds, r.probe_subset.seconds),
                      ratio(r.nmap.seconds, r.probe_subset.seconds)]
        print(f"| {r.size:,} | {r.labs} | {p.seconds:.1f} | {r.size / p.seconds:.1f} | "
              f"{p.max_rss_mib:.0f} | {p.cpu:.1f} | {r.emulator_cpu:.1f} | "
              + " | ".join(anchor) + " |")
    print()
    for small, large in itertools.pairwise(rows):
        factor = large.size / small.size
        print(f"growth {small.size:,} -> {large.size:,} (x{factor:g} devices): wall "
              f"x{large.probe.seconds / small.probe.seconds:.2f}, per device "
              f"x{large.probe.seconds / small.probe.seconds / factor:.2f}; peak RSS "
              f"x{large.probe.max_rss_mib / small.probe.max_rss_mib:.2f}; probe CPU "
              f"x{large.probe.cpu / small.probe.cpu:.2f}; emulator CPU "
              f"x{large.emulator_cpu / max(small.emulator_cpu, 1e-9):.2f}")
    for r in rows:
        if r.sslyze_note or r.nmap_note:
            print(f"N={r.size:,} anchors: sslyze {r.sslyze_note}; nmap scripts: {r.nmap_note}")
    consistent(rows)


def consistent(rows: Sequence[Row]) -> None:
    """Whether each device id has the same statuses per check in every fleet, and whether all
    devices (one persona) agree with each other."""
    for r in rows:
        shapes = collections.Counter(r.records.values())
        print(f"N={r.size:,}: {len(r.records)} records, {len(shapes)} distinct status set(s)"
              + ("" if len(shapes) == 1 else f": {shapes.most_common(3)}"))
    first = rows[0]
    for other in rows[1:]:
        shared = first.records.keys() & other.records.keys()
        differ = sorted(d for d in shared if first.records[d] != other.records[d])
        print(f"same device in N={first.size:,} and N={other.size:,}: {len(shared)} compared, "
              f"{len(differ)} differ" + (f" ({', '.join(differ[:5])})" if differ else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,5000",
                        help="fleet sizes, comma-separated (default: 100,1000,5000)")
    parser.add_argument("--anchor-size", type=int, default=None,
                        help="the fleet size whose first devices the anchors scan (default: the "
                        "smallest; the same devices in any fleet, so once is enough)")
    parser.add_argument("--anchors", type=int, default=100,
                        help="devices given to sslyze and nmap per size (0: none)")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20000.0)
    parser.add_argument("--processes", default="auto",
                        help="the probe's --processes (default: auto, one per core)")
    parser.add_argument("--probe-args", default=None,
                        help="the probe's options instead of --concurrency, --rate and "
                        "--processes; '' runs it at its defaults")
    parser.add_argument("--base", default=None,
                        help="first device address of every fleet (they run one after the "
                        "other); default: one block per size")
    parser.add_argument("--profile-size", type=int, default=100,
                        help="fleet size to profile with py-spy (0: none)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.anchor_size is None:
        args.anchor_size = min(sizes)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tcp_ports = profile_tcp_ports()
    tmp = Path(tempfile.mkdtemp(prefix="iotprobe-fleet-"))
    print(f"work directory {tmp}; open-file limit {hard}", flush=True)
    rows = []
    for size in sizes:
        rows.append(measure(size, tmp, args, tcp_ports))
    report(rows, args)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
