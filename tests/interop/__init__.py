"""The interoperability matrix: the probe against independent implementations, side by side
with a reference tool.

Each protocol module (`peers_tls`, `peers_http`, `peers_mqtt`, `peers_coap`, `peers_syslog`,
`peers_ssh`, `peers_telnet`, `peers_rtsp`, `peers_plant`) lists `Peer`s: a real implementation
(a Debian, PyPI or npm package started as a child process on its own loopback address) in one
configuration, the statuses the probe must report for the checks that configuration decides,
and optionally a reference tool's reading of the same peer.

`run_matrix` starts every peer, writes one inventory for all of them, scans that fleet with the
real command line (`iotprobe scan -i ... -o ...`) as often as asked (the peers marked
`intrusive` by a second run with `--intrusive`, so that their credential trials run), and
returns what each scan said per device and check. `tests/test_interop.py` holds the probe to
the expectations, to the reference tools and to itself (every scan identical);
`scripts/interop_matrix.py` writes the table into `docs/interop.md`. Nothing in the table is
typed by hand.

Network safety: peers bind only 127.x addresses handed out here (one /24 per protocol), never
port 2024; every scan excludes 2024; reference tools are given IP literals.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.model import Status
from probe.record.model import Record

RESERVED_PORT = 2024
REPO = Path(__file__).resolve().parents[2]


class Protocol(enum.Enum):
    """The protocol a peer is in the matrix for, and the /24 its addresses come from."""

    TLS = 121
    HTTP = 122
    MQTT = 123
    COAP = 124
    SYSLOG = 125
    SSH = 126
    TELNET = 127
    RTSP = 128
    MODBUS = 129
    BACNET = 130

    @property
    def title(self) -> str:
        return {"COAP": "CoAP", "SYSLOG": "syslog", "TELNET": "Telnet", "MODBUS": "Modbus/TCP",
                "BACNET": "BACnet/IP"}.get(self.name, self.name)


@dataclass(frozen=True)
class Setup:
    """What a started peer adds to the scan: its inventory entry (without `id` and `address`,
    which the runner sets: typically `ports`, `credentials`, `monitor`, `hostname`,
    `trust_anchor`) and environment variables its secrets come from (`password_env`)."""

    inventory: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Reading:
    """A reference tool's answer for one check: the status it implies and what it said."""

    status: Status
    said: str


StartPeer = Callable[[Path, str], AbstractContextManager[Setup]]
"""Starts the peer on (tmp directory, address); yields its Setup; stops it by PID on exit."""
ReadPeer = Callable[[str, Setup], Mapping[str, Reading]]
"""Runs the reference tool against (address, setup): a Reading per check it can speak to."""


@dataclass(frozen=True)
class Peer:
    protocol: Protocol
    implementation: str  # "lighttpd + wolfSSL", "mosquitto", ...
    version: Callable[[], str]  # the installed version, read from the package manager
    configuration: str  # "good", "TLS 1.0 and 3DES", "anonymous", ...
    start: StartPeer
    expect: Mapping[str, Status]  # check id -> the status the probe must report
    reference_tool: str = ""  # "sslyze", "openssl s_client", "mosquitto_sub", ...
    reference: ReadPeer | None = None
    notes: Mapping[str, str] = field(default_factory=dict)
    """Check id -> why the reference tool's answer differs from the probe's, where it does."""
    intrusive: bool = False
    """Scanned with `--intrusive`: its intrusive checks (credential trials) run."""

    @property
    def key(self) -> str:
        words = f"{self.protocol.title} {self.implementation} {self.configuration}"
        return "-".join("".join(c if c.isalnum() else " " for c in words.lower()).split())


def debian_version(package: str) -> Callable[[], str]:
    def read() -> str:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or "not installed"
    return read


def pypi_version(distribution: str) -> Callable[[], str]:
    def read() -> str:
        from importlib.metadata import PackageNotFoundError, version
        try:
            return version(distribution)
        except PackageNotFoundError:
            return "not installed"
    return read


def npm_version(package: str, prefix: Path) -> Callable[[], str]:
    def read() -> str:
        manifest = prefix / "node_modules" / package / "package.json"
        if not manifest.is_file():
            return "not installed"
        return str(json.loads(manifest.read_text())["version"])
    return read


@dataclass(frozen=True)
class Scan:
    """What one scan of the matrix fleet said: device key -> check id -> cell status."""

    cells: Mapping[str, Mapping[str, Status]]
    records: Mapping[str, Mapping[str, Any]]


def addresses(peers: Sequence[Peer]) -> dict[str, str]:
    """Peer key -> its loopback address: 127.<protocol>.0.<n>, n counting from 1 per protocol."""
    out: dict[str, str] = {}
    counters: dict[Protocol, int] = {}
    for peer in peers:
        if peer.key in out:
            raise ValueError(f"two peers are called {peer.key}")
        counters[peer.protocol] = counters.get(peer.protocol, 0) + 1
        if counters[peer.protocol] > 250:
            raise ValueError(f"more than 250 {peer.protocol.title} peers")
        out[peer.key] = f"127.{peer.protocol.value}.0.{counters[peer.protocol]}"
    return out


@contextlib.contextmanager
def started(peers: Sequence[Peer], tmp: Path) -> Iterator[dict[str, Setup]]:
    """Start every peer on its address; stop them all (by PID, in their own context managers)
    on exit."""
    where = addresses(peers)
    with contextlib.ExitStack() as stack:
        setups: dict[str, Setup] = {}
        for peer in peers:
            home = tmp / peer.key
            home.mkdir(parents=True, exist_ok=True)
            setups[peer.key] = stack.enter_context(peer.start(home, where[peer.key]))
        yield setups


def inventory(peers: Sequence[Peer], setups: Mapping[str, Setup]) -> dict[str, Any]:
    """One inventory for the whole matrix: a device per peer, id = the peer's key."""
    where = addresses(peers)
    devices = []
    for peer in peers:
        entry = {"id": peer.key, "address": where[peer.key], **setups[peer.key].inventory}
        devices.append(entry)
    return {"devices": devices}


def scan(peers: Sequence[Peer], setups: Mapping[str, Setup], workdir: Path, *,
         extra: Sequence[str] = (), timeout: float = 900.0) -> Scan:
    """Scan the matrix fleet once through the command line, as a user would; read the
    records back. The intrusive peers are scanned by a second run, with `--intrusive`, whose
    records land in workdir/intrusive."""
    devices = inventory(peers, setups)["devices"]
    intrusive = {peer.key for peer in peers if peer.intrusive}
    cells: dict[str, Mapping[str, Status]] = {}
    records: dict[str, Mapping[str, Any]] = {}
    for where, flags, fleet in (
            (workdir, (), [d for d in devices if d["id"] not in intrusive]),
            (workdir / "intrusive", ("--intrusive",),
             [d for d in devices if d["id"] in intrusive])):
        if fleet:
            part = _scan_fleet(fleet, setups, where, (*extra, *flags), timeout)
            cells.update(part.cells)
            records.update(part.records)
    return Scan(cells, records)


def _scan_fleet(devices: Sequence[Mapping[str, Any]], setups: Mapping[str, Setup],
                workdir: Path, extra: Sequence[str], timeout: float) -> Scan:
    """One run of the command line over `devices`. Exit codes 0, 1 and 3 are verdicts;
    anything else fails loudly."""
    workdir.mkdir(parents=True, exist_ok=True)
    inv = workdir / "matrix.inventory.yaml"  # JSON is YAML
    inv.write_text(json.dumps({"devices": list(devices)}, indent=1))
    out = workdir / "records"
    env = {**os.environ}
    for setup in setups.values():
        env.update(setup.env)
    argv = [sys.executable, "-m", "probe", "scan", "-i", str(inv), "-o", str(out), "-q",
            "--exclude-ports", str(RESERVED_PORT), "--timeout", "3", "--budget", "90",
            "--rate", "2000", *extra]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=workdir)
    if done.returncode not in (0, 1, 3):
        raise AssertionError(f"scan exited {done.returncode}: {done.stderr[-4000:]}")
    records: dict[str, Mapping[str, Any]] = {}
    cells: dict[str, Mapping[str, Status]] = {}
    for path in sorted(out.glob("*.record.json")):
        record = json.loads(path.read_text())
        typed = Record.from_json(record)
        records[typed.device.id] = record
        cells[typed.device.id] = typed.statuses()
    return Scan(cells, records)
