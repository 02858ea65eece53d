"""The lab of real daemons without Docker: `iotprobe lab up --real`.

The devices of `lab/docker-compose.yml` (mosquitto brokers, nginx web interfaces, libcoap CoAP
servers, a busybox Telnet service) run as children of the lab process from the SAME files the
compose file mounts, each device on its own loopback address. The setup step
(`lab/certs/setup.sh`) writes certificates, accounts, the CoAP PSK and security.txt; compose
mounts its output at /lab/state, here it goes to `<state-dir>/real/state`.

Where compose and this lab differ, the files stay as compose uses them and the local lab
derives what it runs (into `<state-dir>/real/run/<device>/`):

- mosquitto configs: each `listener PORT` line gets the device's address; as root, `user root`
  is appended (mosquitto would otherwise drop to its own user, which cannot read the lab's
  private state directory).
- nginx configs are server blocks (compose mounts them into the image's conf.d); here each
  `listen PORT` gets the device's address and a generated nginx.conf includes the block, with
  the pid file, logs and temporary paths of the image's main configuration moved into the run
  directory and one foreground process.
- in both, paths under /lab/state/ point into the setup step's output and the other /lab/
  paths into the lab directory (compose mounts lab/X at /lab/X).
- the CoAP and Telnet launchers (`run.sh`) read the address to bind from $LAB_BIND (compose:
  0.0.0.0) and the setup output from $LAB_STATE.

Every daemon is started with Popen in the foreground (its PID is the daemon's), asked to die
with the lab process (PR_SET_PDEATHSIG), waited for until the kernel shows its sockets bound
(/proc/net, no traffic), and stopped by PID: terminate, wait, kill if it lingers, wait.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from ruamel.yaml import YAML

from probe.errors import InputError
from probe.lab.expectations import INTRUSIVE, as_text, statuses
from probe.lab.fleet import LOOPBACK
from probe.lab.personas.base import (
    CLEARTEXT_MANAGEMENT,
    CLOCK_SYNC,
    DISCLOSURE,
    ERROR,
    FAIL,
    GOOD_TLS,
    HTTP_AUTHENTICATION,
    HTTP_CLEARTEXT,
    HTTP_DEFAULT_CREDENTIALS,
    HTTP_HSTS,
    MQTT_ANONYMOUS,
    MQTT_CHECKS,
    MQTT_CLEARTEXT,
    MQTT_CLIENT_CERTIFICATE,
    MQTT_DEFAULT_CREDENTIALS,
    MQTT_TOPICS,
    NOT_APPLICABLE,
    OPEN_PORTS,
    PASS,
    REFUSING_MQTTS,
    SKIPPED,
    TLS_SUITES,
    TLS_VERSIONS,
    every,
)
from probe.lab.personas.coap import (
    COAP_AMPLIFICATION,
    COAP_CLEARTEXT,
    COAP_DTLS,
    COAP_WRITE,
    NO_COAP,
)
from probe.lab.personas.plant import PLANT_EXPOSURE
from probe.lab.personas.remote import TELNET_DEFAULT
from probe.lab.servers import FORBIDDEN_PORT, speaking
from probe.model import Status, Verdict

REAL_BASE = "127.52.0.1"
COMPOSE_PROBE = "172.30.42.100"
"""The probe service's address in docker-compose.yml: devices send syslog there."""
SYSLOG_PORT = 5514
STATE_MOUNT = "/lab/state"
LAB_MOUNT = "/lab"
READY_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
SETUP_TIMEOUT = 120.0

FLEET_KEYS = "fleet.unique-keys"
AUTH_FAILURE_EVENT = "monitor.auth-failure-event"
EVENT_TRANSPORT = "monitor.event-transport"
THROTTLING = "monitor.bruteforce-throttling"
HEARTBEAT = "monitor.heartbeat"

Daemon = Literal["mosquitto", "nginx", "coap", "telnetd"]
_SPEAKS: Mapping[Daemon, Literal["http", "mqtt"]] = {"mosquitto": "mqtt", "nginx": "http"}
"""The daemons whose TCP listeners offer a service the check catalogue judges."""
Certificate = Literal["", "ec", "vendor"]


class RealLabError(Exception):
    """The real lab could not be set up or started; the message says why."""


def lab_dir() -> Path:
    """The directory with docker-compose.yml and the device configurations: `lab/` of the
    source tree, or `probe/lab_files` where a wheel ships it."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "lab_files", package.parent / "lab"):
        if (candidate / "docker-compose.yml").is_file():
            return candidate
    raise RealLabError(f"the lab files (docker-compose.yml and configurations) are not in "
                       f"{package.parent / 'lab'}: run the real lab from a source checkout")


# ---------------------------------------------------------------------------------------------
# The devices
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listen:
    transport: Literal["tcp", "udp"]
    port: int
    tls: bool = False

    def __post_init__(self) -> None:
        if self.port == FORBIDDEN_PORT:
            raise ValueError(f"port {FORBIDDEN_PORT} belongs to the host")

    def as_state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"transport": self.transport, "port": self.port}
        if self.transport == "tcp":
            out["tls"] = self.tls
        return out


@dataclass(frozen=True)
class Account:
    """An account the setup step creates: the password is in `<setup output>/<secret>`."""

    username: str
    secret: str


@dataclass(frozen=True)
class CertificateFiles:
    """A client certificate and key the setup step creates (inventory `tls_client`)."""

    cert: str
    key: str


@dataclass(frozen=True)
class RealMqttSink:
    """The device's own broker as its monitoring sink (inventory `monitor.mqtt`), verified
    with the lab CA, with the topic of its heartbeat and the interval it ticks at."""

    port: int
    tls: bool
    topic: str
    account: Account
    heartbeat_topic: str
    heartbeat_interval: int


@dataclass(frozen=True)
class RealDevice:
    """A device of the real lab: its daemon, its configuration in the lab directory, what it
    listens on and the statuses its checks must get, as a persona writes them
    (probe.lab.expectations): `expect` for the default profile without --intrusive (the real
    lab's inventory declares the device's monitoring sinks), `expect_intrusive` for the
    intrusive checks with --intrusive."""

    name: str
    description: str
    device_class: str
    daemon: Daemon
    config: str
    listeners: tuple[Listen, ...]
    expect: Mapping[str, Status]
    expect_intrusive: Mapping[str, Status]
    expect_verdict: Verdict
    args: tuple[str, ...] = ()
    certificate: Certificate = ""
    credentials: Mapping[str, Account | CertificateFiles] = field(default_factory=dict)
    monitor: RealMqttSink | None = None
    syslog: bool = False
    """The device sends its log to the probe's syslog listener (UDP, SYSLOG_PORT)."""
    bursts_break_it: bool = False
    """It stops answering under an intrusive scan's bursts (probe.lab.expectations)."""

    def __post_init__(self) -> None:
        if not isinstance(self.expect_verdict, Verdict):
            raise ValueError(f"real device {self.name}: the verdict must be a Verdict, not "
                             f"{self.expect_verdict!r}")
        object.__setattr__(self, "expect", statuses(self.expect))
        object.__setattr__(self, "expect_intrusive", statuses(self.expect_intrusive))
        object.__setattr__(self, "credentials", MappingProxyType(dict(self.credentials)))

    @property
    def expect_monitored(self) -> Mapping[str, Status]:
        """Nothing apart: `expect` already holds the statuses with the sinks its inventory
        entry declares."""
        return MappingProxyType({})

    @property
    def offers(self) -> frozenset[str]:
        """The catalogue's services its TCP listeners offer (mosquitto: MQTT, nginx: HTTP)."""
        protocol = _SPEAKS.get(self.daemon)
        if protocol is None:
            return frozenset()
        return frozenset[str]().union(*(speaking(protocol, listen.tls)
                                        for listen in self.listeners
                                        if listen.transport == "tcp"))

    def lab_files(self, files: Path) -> list[str]:
        """The files of the lab directory this device runs from (relative paths): its
        configuration and every /lab/ path it names outside the setup output."""
        text = (files / self.config).read_text()
        named = {match.group(1).rstrip("/") for match in _LAB_FILE.finditer(text)}
        return [self.config, *sorted(named - {self.config})]


UNMONITORED = {AUTH_FAILURE_EVENT: SKIPPED, EVENT_TRANSPORT: SKIPPED, HEARTBEAT: SKIPPED}
"""No sink declared: no event or heartbeat to watch (brute-force throttling is intrusive)."""


PROBE = Account("probe", "probe.password")
CANARY = Account("canary", "canary.password")
MONITOR = Account("monitor", "monitor.password")
BROKER_IDENTITIES: dict[str, Account | CertificateFiles] = {"mqtt": PROBE,
                                                             "mqtt_canary": CANARY}
"""The probe's low-privilege identity and its canary on the password brokers."""
CLIENT = CertificateFiles("client.crt", "client.key")

TLS_BROKER = {OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, PLANT_EXPOSURE: PASS,
              **GOOD_TLS, FLEET_KEYS: PASS,
              **NO_COAP}
WEB_UI = {HTTP_AUTHENTICATION: PASS, HTTP_HSTS: PASS, CLOCK_SYNC: PASS, DISCLOSURE: PASS}
"""A web interface over HTTPS done right (cleartext HTTP: not applicable, by rule)."""


REAL_DEVICES: tuple[RealDevice, ...] = (
    RealDevice(
        name="broker-open",
        description="mosquitto, cleartext MQTT on 1883 open to anyone, every topic and $SYS "
                    "delivered",
        device_class="broker", daemon="mosquitto", config="mosquitto/broker-open.conf",
        listeners=(Listen("tcp", 1883),),
        expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: PASS, PLANT_EXPOSURE: PASS,
                MQTT_CLEARTEXT: FAIL,
                MQTT_ANONYMOUS: FAIL, MQTT_TOPICS: FAIL, FLEET_KEYS: NOT_APPLICABLE, **NO_COAP,
                **UNMONITORED},
        expect_intrusive={MQTT_DEFAULT_CREDENTIALS: FAIL, THROTTLING: FAIL},
        expect_verdict=Verdict.NONCONFORMANT,
    ),
    RealDevice(
        name="broker-acl",
        description="mosquitto, cleartext MQTT on 1883 with a password per client and an ACL "
                    "confining each to its own topics",
        device_class="broker", daemon="mosquitto", config="mosquitto/broker-acl.conf",
        listeners=(Listen("tcp", 1883),),
        expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: PASS, PLANT_EXPOSURE: PASS,
                MQTT_CLEARTEXT: FAIL,
                MQTT_ANONYMOUS: PASS, MQTT_TOPICS: PASS, FLEET_KEYS: NOT_APPLICABLE, **NO_COAP,
                **UNMONITORED},
        expect_intrusive={MQTT_DEFAULT_CREDENTIALS: PASS, THROTTLING: FAIL},
        expect_verdict=Verdict.NONCONFORMANT,
        credentials=BROKER_IDENTITIES,
    ),
    RealDevice(
        name="broker-tls",
        description="mosquitto, MQTT over TLS 1.2+ on 8883 with passwords, no client "
                    "certificate asked, the vendor's admin/admin account left in",
        device_class="broker", daemon="mosquitto", config="mosquitto/broker-tls.conf",
        listeners=(Listen("tcp", 8883, tls=True),), certificate="ec",
        expect={**TLS_BROKER, **REFUSING_MQTTS, **UNMONITORED},
        expect_intrusive={MQTT_DEFAULT_CREDENTIALS: FAIL, THROTTLING: FAIL},
        expect_verdict=Verdict.NONCONFORMANT,
    ),
    RealDevice(
        name="broker-mtls",
        description="mosquitto, MQTT over TLS on 8883 requiring a client certificate from the "
                    "lab CA, then a password per client and an ACL",
        device_class="broker", daemon="mosquitto", config="mosquitto/broker-mtls.conf",
        listeners=(Listen("tcp", 8883, tls=True),), certificate="ec",
        expect={**TLS_BROKER, **every(MQTT_CHECKS, PASS), **UNMONITORED},
        expect_intrusive={MQTT_DEFAULT_CREDENTIALS: PASS, THROTTLING: FAIL},
        expect_verdict=Verdict.CONFORMANT,
        credentials={**BROKER_IDENTITIES, "tls_client": CLIENT},
    ),
    RealDevice(
        name="broker-logging",
        description="mosquitto, MQTT over TLS on 8883 with passwords and ACL, publishing its "
                    "own log on $SYS/broker/log (log_dest topic), its declared monitoring "
                    "sink; the log never names who failed to log in",
        device_class="broker", daemon="mosquitto", config="mosquitto/broker-logging.conf",
        listeners=(Listen("tcp", 8883, tls=True),), certificate="ec",
        expect={**TLS_BROKER, **every(MQTT_CHECKS, PASS), MQTT_CLIENT_CERTIFICATE: FAIL,
                **UNMONITORED, AUTH_FAILURE_EVENT: FAIL, HEARTBEAT: PASS},
        expect_intrusive={MQTT_DEFAULT_CREDENTIALS: PASS, THROTTLING: FAIL},
        expect_verdict=Verdict.NONCONFORMANT,
        credentials=BROKER_IDENTITIES,
        monitor=RealMqttSink(8883, True, "$SYS/broker/log/#", MONITOR, "$SYS/broker/uptime", 5),
    ),
    RealDevice(
        name="web-strong",
        description="nginx, HTTPS only on 443: TLS 1.2+, HSTS, security.txt, Basic "
                    "authentication with a strong password on every management path, login "
                    "attempts rate-limited",
        device_class="camera", daemon="nginx", config="nginx/web-strong.conf",
        listeners=(Listen("tcp", 443, tls=True),), certificate="ec",
        expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, PLANT_EXPOSURE: PASS,
                **GOOD_TLS, FLEET_KEYS: PASS,
                **WEB_UI, **NO_COAP, **UNMONITORED},
        expect_intrusive={HTTP_DEFAULT_CREDENTIALS: PASS, THROTTLING: PASS,
                          TELNET_DEFAULT: NOT_APPLICABLE},
        expect_verdict=Verdict.CONFORMANT,
    ),
    RealDevice(
        name="web-weak",
        description="nginx, HTTPS on 443 with TLS 1.0/1.1 and every suite at SECLEVEL 0, "
                    "/admin without login, no HSTS, no security.txt, the vendor's shared key",
        device_class="camera", daemon="nginx", config="nginx/web-weak.conf",
        listeners=(Listen("tcp", 443, tls=True),), certificate="vendor",
        expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, PLANT_EXPOSURE: PASS,
                **GOOD_TLS, TLS_VERSIONS: FAIL,
                TLS_SUITES: FAIL, FLEET_KEYS: FAIL, HTTP_AUTHENTICATION: FAIL, HTTP_HSTS: FAIL,
                CLOCK_SYNC: PASS, DISCLOSURE: FAIL, **NO_COAP, **UNMONITORED},
        expect_intrusive={HTTP_DEFAULT_CREDENTIALS: NOT_APPLICABLE, THROTTLING: NOT_APPLICABLE},
        expect_verdict=Verdict.NONCONFORMANT,
    ),
    RealDevice(
        name="web-basic",
        description="nginx, a gateway console behind Basic authentication with the default "
                    "admin/admin, in cleartext on 80 and over TLS on 8443 with the vendor's "
                    "shared key; its access log goes to the probe's syslog over UDP",
        device_class="gateway", daemon="nginx", config="nginx/web-basic.conf",
        listeners=(Listen("tcp", 80), Listen("tcp", 8443, tls=True)), certificate="vendor",
        expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: PASS, PLANT_EXPOSURE: PASS,
                **GOOD_TLS, FLEET_KEYS: FAIL,
                HTTP_CLEARTEXT: FAIL, HTTP_AUTHENTICATION: PASS, HTTP_HSTS: FAIL, CLOCK_SYNC: PASS,
                DISCLOSURE: FAIL, **NO_COAP, **UNMONITORED, AUTH_FAILURE_EVENT: PASS,
                EVENT_TRANSPORT: FAIL},
        expect_intrusive={HTTP_DEFAULT_CREDENTIALS: FAIL, THROTTLING: FAIL},
        expect_verdict=Verdict.NONCONFORMANT,
        syslog=True,
    ),
    RealDevice(
        name="coap-plain",
        description="libcoap coap-server-notls on udp/5683: resources readable and writable "
                    "by anyone, a discovery answer far larger than the request",
        device_class="gateway", daemon="coap", config="coap/run.sh", args=("plain",),
        listeners=(Listen("udp", 5683),),
        expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, PLANT_EXPOSURE: PASS,
                FLEET_KEYS: NOT_APPLICABLE,
                COAP_CLEARTEXT: FAIL, COAP_DTLS: FAIL, COAP_AMPLIFICATION: FAIL, **UNMONITORED},
        expect_intrusive={COAP_WRITE: FAIL, THROTTLING: NOT_APPLICABLE},
        expect_verdict=Verdict.NONCONFORMANT,
    ),
    RealDevice(
        name="coaps-psk",
        description="libcoap coap-server-openssl: DTLS 1.2 with a pre-shared key on udp/5684 "
                    "(DTLS 1.0 refused), but the same resources in cleartext on udp/5683",
        device_class="gateway", daemon="coap", config="coap/run.sh", args=("psk",),
        listeners=(Listen("udp", 5683), Listen("udp", 5684)),
        expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, PLANT_EXPOSURE: PASS,
                FLEET_KEYS: NOT_APPLICABLE,
                COAP_CLEARTEXT: FAIL, COAP_DTLS: PASS, COAP_AMPLIFICATION: FAIL, **UNMONITORED},
        expect_intrusive={COAP_WRITE: FAIL, THROTTLING: NOT_APPLICABLE},
        expect_verdict=Verdict.NONCONFORMANT,
    ),
    RealDevice(
        name="telnet",
        description="busybox telnetd on 23 (the login program is /bin/false)",
        device_class="sensor", daemon="telnetd", config="telnet/run.sh",
        listeners=(Listen("tcp", 23),),
        expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: FAIL, PLANT_EXPOSURE: PASS,
                FLEET_KEYS: NOT_APPLICABLE, **NO_COAP,
                **UNMONITORED},
        expect_intrusive={THROTTLING: NOT_APPLICABLE, TELNET_DEFAULT: ERROR},
        expect_verdict=Verdict.NONCONFORMANT,
    ),
)
REAL: Mapping[str, RealDevice] = MappingProxyType({d.name: d for d in REAL_DEVICES})


@dataclass(frozen=True)
class RealSpec:
    """One device of a running real lab: which device, on which address."""

    id: str
    address: str
    device: RealDevice

    def as_state(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "address": self.address,
            "persona": self.device.name,
            "class": self.device.device_class,
            "daemon": self.device.daemon,
            "listeners": [listen.as_state() for listen in self.device.listeners],
            "expect": as_text(self.device),
            "expect_intrusive": as_text(self.device, INTRUSIVE),
            "expect_verdict": self.device.expect_verdict.value,
        }


def plan_real(base: str = REAL_BASE) -> tuple[RealSpec, ...]:
    """Device i of REAL_DEVICES on base + i (and the probe's syslog address after them);
    refuses anything outside 127.0.0.0/8."""
    try:
        first = ipaddress.IPv4Address(base)
    except ValueError:
        raise InputError(f"{base!r} is not an IPv4 address", field="--base") from None
    last = int(first) + len(REAL_DEVICES)
    if first not in LOOPBACK or first == LOOPBACK.network_address or \
            last >= int(LOOPBACK.broadcast_address):
        raise InputError(f"the real lab uses loopback addresses only: {len(REAL_DEVICES)} "
                         f"devices and the probe's syslog address from {first} leave "
                         "127.0.0.1-127.255.255.254", field="--base")
    return tuple(RealSpec(d.name, str(first + i), d) for i, d in enumerate(REAL_DEVICES))


def probe_address(specs: Sequence[RealSpec]) -> str:
    """Where the local lab's devices send syslog (the probe listens there when it scans): the
    address after the last device, as COMPOSE_PROBE is in docker-compose.yml."""
    return str(ipaddress.IPv4Address(specs[-1].address) + 1)


# ---------------------------------------------------------------------------------------------
# The setup step and the inventory
# ---------------------------------------------------------------------------------------------


def setup_arguments(entries: Sequence[tuple[RealDevice, str, str | None]]) -> list[str]:
    """The NAME=SANS arguments of lab/certs/setup.sh for (device, address, host name)."""
    out = []
    for device, address, hostname in entries:
        if not device.certificate:
            continue
        sans = ([f"DNS:{hostname}"] if hostname else []) + [f"IP:{address}"]
        suffix = "@vendor" if device.certificate == "vendor" else ""
        out.append(f"{device.name}{suffix}={','.join(sans)}")
    return out


def inventory_document(entries: Sequence[tuple[RealDevice, str, str | None]], state: str,
                       trust_anchor: str, probe: str) -> dict[str, Any]:
    """The inventory of the real lab: (device, address, host name) per device, the setup
    step's output at `state` (passwords are read from its files), the lab CA, the address
    where the probe receives the devices' syslog."""
    devices = []
    for device, address, hostname in entries:
        entry: dict[str, Any] = {"id": device.name, "address": address}
        if hostname:
            entry["hostname"] = hostname
        entry["class"] = device.device_class
        if device.credentials:
            entry["credentials"] = {
                name: {"cert_file": f"{state}/{item.cert}", "key_file": f"{state}/{item.key}"}
                if isinstance(item, CertificateFiles)
                else {"username": item.username, "password_file": f"{state}/{item.secret}"}
                for name, item in device.credentials.items()}
        monitor: dict[str, Any] = {}
        if device.monitor is not None:
            sink = device.monitor
            monitor["mqtt"] = {
                "address": address, "port": sink.port, "tls": sink.tls, "topic": sink.topic,
                "username": sink.account.username,
                "password_file": f"{state}/{sink.account.secret}",
                "ca_file": f"{state}/ca.crt", **({"hostname": hostname} if hostname else {}),
                "heartbeat_topic": sink.heartbeat_topic,
                "heartbeat_interval": sink.heartbeat_interval}
        if device.syslog:
            monitor["syslog"] = {"listen": f"udp://{probe}:{SYSLOG_PORT}"}
            if ipaddress.ip_address(address).is_loopback:
                # nginx cannot choose its source address: on loopback the kernel sends from
                # 127.0.0.1, the relay the probe must be told about
                monitor["syslog"]["forwarders"] = ["127.0.0.1"]
        if monitor:
            entry["monitor"] = monitor
        devices.append(entry)
    return {"defaults": {"exclude_ports": [FORBIDDEN_PORT], "trust_anchor": trust_anchor},
            "devices": devices}


def dump_yaml(data: Mapping[str, Any], header: str) -> str:
    out = StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.representer.sort_base_mapping_type_on_output = False
    yaml.dump(data, out)
    return header + out.getvalue()


# ---------------------------------------------------------------------------------------------
# Configurations as the local lab runs them
# ---------------------------------------------------------------------------------------------

_LAB_FILE = re.compile(r"(?<![\w./-])/lab/((?!state\b)[\w./-]+)")
_LAB_PATH = re.compile(r"(?<![\w./-])/lab/(state/)?")
_MOSQUITTO_LISTENER = re.compile(r"^(\s*listener\s+\d+)\s*$", re.MULTILINE)
_NGINX_LISTEN = re.compile(r"^(\s*listen\s+)(\d+)(?=[\s;])", re.MULTILINE)
_COMPOSE_PROBE = re.compile(rf"(?<![\d.]){re.escape(COMPOSE_PROBE)}(?![\d.])")


def map_paths(text: str, files: Path, state: Path) -> str:
    """/lab/state/X -> state/X and /lab/X -> files/X, as compose mounts them."""
    return _LAB_PATH.sub(lambda m: f"{state}/" if m.group(1) else f"{files}/", text)


def render_mosquitto(text: str, address: str, files: Path, state: Path) -> str:
    bound, count = _MOSQUITTO_LISTENER.subn(lambda m: f"{m.group(1)} {address}", text)
    if count == 0:
        raise RealLabError("a mosquitto configuration of the lab has no `listener PORT` line")
    out = map_paths(bound, files, state)
    if os.geteuid() == 0:
        out += "\n# added by the local lab: read the lab's files as root\nuser root\n"
    return out


def render_nginx_server(text: str, address: str, files: Path, state: Path, probe: str) -> str:
    bound, count = _NGINX_LISTEN.subn(lambda m: f"{m.group(1)}{address}:{m.group(2)}", text)
    if count == 0:
        raise RealLabError("an nginx configuration of the lab has no `listen PORT` line")
    return _COMPOSE_PROBE.sub(probe, map_paths(bound, files, state))


def nginx_main(run: Path, server: Path) -> str:
    """What the nginx image's /etc/nginx/nginx.conf does, in the run directory: one foreground
    process, its pid, logs and temporary files kept there."""
    temps = "\n".join(f"    {kind}_temp_path {run}/{kind};"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    mime = Path("/etc/nginx/mime.types")
    types = f"    include {mime};" if mime.is_file() else \
        "    types { text/html html; text/plain txt; }"
    return (
        "# generated by `iotprobe lab up --real`\n"
        f"daemon off;\nmaster_process off;\nworker_processes 1;\npid {run}/nginx.pid;\n"
        f"error_log {run}/error.log notice;\n"
        "events {\n    worker_connections 256;\n}\n"
        f"http {{\n{types}\n    default_type application/octet-stream;\n"
        f"    access_log {run}/access.log;\n{temps}\n    include {server};\n}}\n"
    )


# ---------------------------------------------------------------------------------------------
# Running the daemons
# ---------------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_PACKAGES: Mapping[str, str] = {"mosquitto": "mosquitto", "nginx": "nginx",
                                "coap": "libcoap3-bin", "telnetd": "busybox-static"}


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the lab process dies, so a lab killed with
    SIGKILL leaves no daemon holding its addresses."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _proc_address(address: str, port: int) -> str:
    return f"{ipaddress.IPv4Address(address).packed[::-1].hex().upper()}:{port:04X}"


def bound(address: str, listen: Listen) -> bool:
    """Whether a socket is bound to address:port (TCP: listening), per /proc/net."""
    want = _proc_address(address, listen.port)
    for line in Path(f"/proc/net/{listen.transport}").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == want and (listen.transport == "udp" or fields[3] == "0A"):
            return True
    return False


@dataclass
class Running:
    spec: RealSpec
    process: subprocess.Popen[bytes]


class RealLab:
    """The real daemons of `specs`, run from the lab directory `files`, their state under
    `<state_dir>/real`. `start()` runs the setup step and every daemon; `stop()` ends them."""

    def __init__(self, specs: Sequence[RealSpec], state_dir: Path,
                 files: Path | None = None) -> None:
        self.specs = tuple(specs)
        self.files = files or lab_dir()
        self.root = state_dir / "real"
        self.state = self.root / "state"
        self.run_dir = self.root / "run"
        self.probe = probe_address(self.specs)
        self.running: list[Running] = []
        for path in (self.files, self.root):
            if re.search(r"\s", str(path)):
                raise RealLabError(f"{path}: the daemons' configurations cannot name paths "
                                   "with white space")

    @property
    def ca_pem(self) -> str:
        return (self.state / "ca.crt").read_text()

    def inventory_yaml(self, trust_anchor: Path) -> str:
        document = inventory_document([(s.device, s.address, None) for s in self.specs],
                                      str(self.state), str(trust_anchor), self.probe)
        return dump_yaml(document, "# written by `iotprobe lab up --real`\n")

    def setup(self) -> None:
        """Run the setup step into a fresh `<state_dir>/real`."""
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, mode=0o700)
        self.run_dir.mkdir(mode=0o700)
        argv = ["sh", str(self.files / "certs" / "setup.sh"), str(self.state),
                *setup_arguments([(s.device, s.address, None) for s in self.specs])]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=SETUP_TIMEOUT,
                                  check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise RealLabError(f"the setup step took more than {SETUP_TIMEOUT:.0f}s") from None
        if done.returncode != 0:
            raise RealLabError(f"the setup step failed ({done.returncode}): "
                               f"{done.stderr.decode(errors='replace')[-1000:]}")

    def _command(self, spec: RealSpec, run: Path) -> tuple[list[str], dict[str, str]]:
        device, address = spec.device, spec.address
        source = (self.files / device.config).read_text()
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        if device.daemon == "mosquitto":
            conf = run / "mosquitto.conf"
            conf.write_text(render_mosquitto(source, address, self.files, self.state))
            return ["mosquitto", "-c", str(conf)], env
        if device.daemon == "nginx":
            server = run / "server.conf"
            server.write_text(render_nginx_server(source, address, self.files, self.state,
                                                  self.probe))
            main = run / "nginx.conf"
            main.write_text(nginx_main(run, server))
            return ["nginx", "-c", str(main), "-p", str(run), "-e", str(run / "error.log")], env
        env |= {"LAB_BIND": address, "LAB_STATE": str(self.state)}
        return ["sh", str(self.files / device.config), *device.args], env

    def _start_one(self, spec: RealSpec) -> None:
        run = self.run_dir / spec.id
        run.mkdir(mode=0o700)
        argv, env = self._command(spec, run)
        log = run / "daemon.log"
        with log.open("wb") as out:
            try:
                process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=subprocess.STDOUT, env=env, cwd=run,
                                           preexec_fn=_die_with_parent)
            except OSError as exc:
                raise RealLabError(f"{spec.id}: cannot run {argv[0]}: {exc.strerror} "
                                   f"(Debian package: {_PACKAGES[spec.device.daemon]})"
                                   ) from None
        self.running.append(Running(spec, process))
        deadline = time.monotonic() + READY_TIMEOUT
        while not all(bound(spec.address, listen) for listen in spec.device.listeners):
            if process.poll() is not None or time.monotonic() > deadline:
                what = (f"exited with {process.returncode}" if process.returncode is not None
                        else f"did not listen within {READY_TIMEOUT:.0f}s")
                tail = log.read_text(errors="replace")[-1500:]
                raise RealLabError(f"{spec.id} ({spec.device.daemon} on {spec.address}) {what}:"
                                   f"\n{tail}")
            time.sleep(0.02)

    def start(self) -> None:
        """Set up and start every device; on any failure nothing stays running."""
        try:
            self.setup()
            for spec in self.specs:
                self._start_one(spec)
        except BaseException:
            self.stop()
            raise

    def exited(self) -> list[tuple[str, int]]:
        """The devices whose daemon has exited, with its exit status (reaps it)."""
        return [(r.spec.id, code) for r in self.running
                if (code := r.process.poll()) is not None]

    def pids(self) -> dict[str, int]:
        return {r.spec.id: r.process.pid for r in self.running}

    def stop(self) -> None:
        """Terminate every daemon by PID, wait for it, kill it if it lingers; remove the
        setup output (keys and passwords), keep the daemons' logs."""
        for running in self.running:
            if running.process.poll() is None:
                running.process.terminate()
        for running in self.running:
            try:
                running.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                running.process.kill()
                running.process.wait()
        self.running.clear()
        shutil.rmtree(self.state, ignore_errors=True)

