"""Real MQTT-over-WebSockets brokers as child processes on one loopback address: amqtt (PyPI,
its `ws` listener type, served by the `websockets` library) and aedes (npm, through
`node/aedes_broker.mjs`, served by the `ws` package), in open and locked configurations.
Used by `tests/test_mqtt_ws.py`.

The accounts, passwords and ACL are those of `brokers_mqtt` (`probe` and `canary`). amqtt
answers the upgrade on any path with `Sec-WebSocket-Protocol: mqtt`, speaks MQTT 3.1.1 only,
and never requires a client certificate; aedes answers only on the path it is given (400
elsewhere). Debian's mosquitto 2.0.11 is not linked with libwebsockets: a `protocol
websockets` listener makes it exit at start ("Opening websockets listen socket ... Unable to
start any listening sockets"), so it is no peer here.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from daemons import Daemon, start

from interop.brokers_mqtt import AEDES_SCRIPT, BrokerTls, _ports, amqtt


def amqtt_ws(tmp: Path, address: str, listeners: Mapping[int, bool], *,
             users: Mapping[str, str] | None = None,
             acl: Mapping[str, Sequence[str]] | None = None,
             tls: BrokerTls | None = None) -> Daemon:
    """amqtt with only WebSocket listeners; `listeners` maps each port to whether it is `wss`
    (with `tls`). `users` None: every client is accepted, with or without credentials;
    otherwise only these accounts. `acl`: the topic ACL plugin for subscriptions and
    publications."""
    return amqtt(tmp, address, listeners, users=users, acl=acl, tls=tls, transport="ws")


def aedes_ws(tmp: Path, address: str, listeners: Mapping[int, tuple[str, bool]], *,
             users: Mapping[str, str] | None = None,
             acl: Mapping[str, Sequence[str]] | None = None,
             tls: BrokerTls | None = None, require_certificate: bool = False) -> Daemon:
    """aedes under node with only WebSocket listeners: `listeners` maps each port to (the path
    it upgrades on, whether it is `wss` with `tls`). `users` and `acl` as in
    `brokers_mqtt.aedes`; `require_certificate`: a `wss` listener requires a client
    certificate from the test CA."""
    node = shutil.which("node")
    if node is None:
        raise FileNotFoundError("node is not installed (scripts/setup.sh installs it)")
    ports = _ports(tmp, {port: secure for port, (_, secure) in listeners.items()})
    entries = []
    for port, (path, secure) in listeners.items():
        entry: dict[str, object] = {"port": port, "ws": path}
        if secure and tls is not None:
            entry.update(cert=str(tls.cert), key=str(tls.key))
            if require_certificate:
                entry["ca"] = str(tls.ca)
        entries.append(entry)
    config = tmp / "aedes-ws.json"
    config.write_text(json.dumps({
        "host": address, "listeners": entries, "users": dict(users) if users else None,
        "acl": {user: list(topics) for user, topics in acl.items()} if acl else None}))
    return start("aedes-ws", [node, str(AEDES_SCRIPT), str(config)], tmp, address, ports)
