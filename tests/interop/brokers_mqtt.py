"""Real MQTT brokers as child processes on one loopback address: mosquitto (Debian), aedes
(npm, through `node/aedes_broker.mjs`) and amqtt (PyPI), each in anonymous, password, ACL and
TLS configurations. Shared by the interoperability matrix (`peers_mqtt`) and `tests/test_mqtt.py`.

Every configuration speaks of the same two accounts: `probe` (the probe's low-privilege
identity, confined to `devices/probe/#` where there is an ACL) and `canary` (the second
identity, confined to the canary prefix `iotprobe/canary/#`). The passwords are test values,
never written into an inventory: it names them through `password_env`.

aedes 1.2.0 and amqtt 0.12 speak MQTT 3.1.1 only: both answer an MQTT 5 CONNECT with the 3.1.1
CONNACK return code 1, "unacceptable protocol version". mqttools 0.50 (PyPI) speaks MQTT 5 only,
leaves a 3.1.1 CONNECT unanswered, accepts everyone and supports QoS 0 only. mosquitto speaks
both levels.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from daemons import Daemon, start

from probe.lab import pki
from probe.lab.servers_mqtt import issue_client

NODE_DIR = Path(__file__).resolve().parent / "node"
AEDES_SCRIPT = NODE_DIR / "aedes_broker.mjs"
AMQTT = Path(sys.executable).with_name("amqtt")
MQTTOOLS = Path(sys.executable).with_name("mqttools")

PROBE, CANARY = "probe", "canary"
PROBE_PASSWORD = "pr0be-Hv7-interop-Qe2"
CANARY_PASSWORD = "can4ry-Tz3-interop-Wd8"
ACCOUNTS = {PROBE: PROBE_PASSWORD, CANARY: CANARY_PASSWORD}
ACL = {PROBE: ("devices/probe/#",), CANARY: ("iotprobe/canary/#",)}
"""Each account's own topics: `#` and `$SYS/#` lie outside both."""


@dataclass(frozen=True)
class BrokerTls:
    """A test CA, the broker's certificate for its address and a client certificate."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


def broker_tls(tmp: Path, address: str) -> BrokerTls:
    ca = pki.new_ca()
    cert, key = pki.issue(ca, address, "broker")
    client_cert, client_key = issue_client(ca, "probe-client")
    paths = BrokerTls(tmp / "ca.pem", tmp / "broker.pem", tmp / "broker.key",
                      tmp / "client.pem", tmp / "client.key")
    for path, data in ((paths.ca, ca.cert_pem), (paths.cert, cert), (paths.key, key),
                       (paths.client_cert, client_cert), (paths.client_key, client_key)):
        path.write_bytes(data)
    return paths


def _ports(tmp: Path, listeners: Mapping[int, bool]) -> list[tuple[int, str]]:
    """The (port, transport) pairs to wait for; makes the broker's directory."""
    tmp.mkdir(parents=True, exist_ok=True)
    if 2024 in listeners:
        raise ValueError("port 2024 belongs to the machine")
    return [(port, "tcp") for port in listeners]


def mosquitto(tmp: Path, address: str, listeners: Mapping[int, bool], *,
              users: Mapping[str, str] | None = None,
              acl: Mapping[str, Sequence[str]] | None = None, tls: BrokerTls | None = None,
              require_certificate: bool = False) -> Daemon:
    """mosquitto; `listeners` maps each port to whether it is TLS. `users` None: anonymous
    clients are accepted; otherwise only these accounts (password file)."""
    ports = _ports(tmp, listeners)
    lines = ["per_listener_settings true", "persistence false", "log_dest stdout"]
    if os.geteuid() == 0:
        lines.append("user root")
    for port, secure in listeners.items():
        lines += [f"listener {port} {address}"]
        if users is None:
            lines.append("allow_anonymous true")
        else:
            lines += ["allow_anonymous false", f"password_file {_mosquitto_passwords(tmp, users)}"]
        if acl is not None:
            path = tmp / "mosquitto.acl"
            path.write_text("".join(f"user {user}\n" + "".join(f"topic readwrite {t}\n"
                                                                for t in topics)
                                    for user, topics in acl.items()))
            lines.append(f"acl_file {path}")
        if secure and tls is not None:
            lines += [f"certfile {tls.cert}", f"keyfile {tls.key}"]
            if require_certificate:
                lines += [f"cafile {tls.ca}", "require_certificate true"]
    conf = tmp / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    return start("mosquitto", ["mosquitto", "-c", str(conf)], tmp, address, ports)


def _mosquitto_passwords(tmp: Path, users: Mapping[str, str]) -> Path:
    path = tmp / "mosquitto.passwd"
    path.unlink(missing_ok=True)
    for index, (user, password) in enumerate(users.items()):
        create = ["-c"] if index == 0 else []
        subprocess.run(["mosquitto_passwd", *create, "-b", str(path), user, password],
                       check=True, capture_output=True, timeout=30)
    return path


def aedes(tmp: Path, address: str, listeners: Mapping[int, bool], *,
          users: Mapping[str, str] | None = None,
          acl: Mapping[str, Sequence[str]] | None = None, tls: BrokerTls | None = None,
          require_certificate: bool = False) -> Daemon:
    """aedes under node (see `node/aedes_broker.mjs` for what `users` and `acl` do)."""
    node = shutil.which("node")
    if node is None:
        raise FileNotFoundError("node is not installed (scripts/setup.sh installs it)")
    ports = _ports(tmp, listeners)
    entries = []
    for port, secure in listeners.items():
        entry: dict[str, object] = {"port": port}
        if secure and tls is not None:
            entry.update(cert=str(tls.cert), key=str(tls.key))
            if require_certificate:
                entry["ca"] = str(tls.ca)
        entries.append(entry)
    config = tmp / "aedes.json"
    config.write_text(json.dumps({
        "host": address, "listeners": entries, "users": dict(users) if users else None,
        "acl": {user: list(topics) for user, topics in acl.items()} if acl else None}))
    return start("aedes", [node, str(AEDES_SCRIPT), str(config)], tmp, address, ports)


def amqtt(tmp: Path, address: str, listeners: Mapping[int, bool], *,
          users: Mapping[str, str] | None = None,
          acl: Mapping[str, Sequence[str]] | None = None, tls: BrokerTls | None = None,
          request_certificate: bool = False, transport: str = "tcp") -> Daemon:
    """amqtt's broker. `users`: the password file plugin (argon2 hashes) and anonymous
    clients refused; `acl`: the topic ACL plugin for subscriptions and publications.
    `request_certificate`: the TLS listener asks for a client certificate from the test CA,
    which amqtt never requires (its TLS verify mode is CERT_OPTIONAL). `transport`: `tcp`, or
    `ws` for MQTT over WebSockets on every listener (`wss` with TLS)."""
    ports = _ports(tmp, listeners)
    bound: dict[str, dict[str, object]] = {}
    for port, secure in listeners.items():
        entry: dict[str, object] = {"type": transport, "bind": f"{address}:{port}"}
        if secure and tls is not None:
            entry.update(ssl=True, certfile=str(tls.cert), keyfile=str(tls.key))
            if request_certificate:
                entry["cafile"] = str(tls.ca)
        bound["default" if not bound else f"listener-{port}"] = entry
    auth = "amqtt.plugins.authentication."
    plugins: dict[str, object] = {f"{auth}AnonymousAuthPlugin": {"allow_anonymous": users is None}}
    if users is not None:
        plugins[f"{auth}FileAuthPlugin"] = {"password_file": str(_amqtt_passwords(tmp, users))}
    if acl is not None:
        table = {user: list(topics) for user, topics in acl.items()}
        plugins["amqtt.plugins.topic_checking.TopicAccessControlListPlugin"] = {
            "acl": table, "publish_acl": table}
    config = tmp / "amqtt.yaml"  # JSON is YAML
    config.write_text(json.dumps({"listeners": bound, "plugins": plugins}))
    return start("amqtt", [str(AMQTT), "-c", str(config)], tmp, address, ports)


def _amqtt_passwords(tmp: Path, users: Mapping[str, str]) -> Path:
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    hasher = PasswordHash((Argon2Hasher(),))
    path = tmp / "amqtt.passwd"
    path.write_text("".join(f"{user}:{hasher.hash(password)}\n"
                            for user, password in users.items()))
    return path


def mqttools(tmp: Path, address: str, port: int = 1883) -> Daemon:
    """mqttools' broker in cleartext: anyone, MQTT 5 only, no ACL. It would also listen on
    --secure-port, but only when given a certificate, key and CA."""
    return start("mqttools", [str(MQTTOOLS), "broker", "--host", address, "--port", str(port)],
                 tmp, address, _ports(tmp, {port: False}))
