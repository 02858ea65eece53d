"""Real MQTT-over-WebSockets brokers as child processes on one loopback address: amqtt (PyPI,
its `ws` listener type, served by the `websockets` library) in open and locked configurations.
Shared by `tests/test_mqtt_ws.py` and the interoperability matrix (`peers_mqtt`).

The accounts, passwords and ACL are those of `brokers_mqtt` (`probe` and `canary`). amqtt
answers the upgrade on any path with `Sec-WebSocket-Protocol: mqtt`, speaks MQTT 3.1.1 only, and
never requires a client certificate. Debian's mosquitto 2.0.11 is not linked with
libwebsockets: a `protocol websockets` listener makes it exit at start ("Opening websockets
listen socket ... Unable to start any listening sockets"), so it is no peer here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from daemons import Daemon, start

from interop.brokers_mqtt import AMQTT, BrokerTls, _amqtt_passwords, _ports


def amqtt_ws(tmp: Path, address: str, listeners: Mapping[int, bool], *,
             users: Mapping[str, str] | None = None,
             acl: Mapping[str, Sequence[str]] | None = None,
             tls: BrokerTls | None = None) -> Daemon:
    """amqtt with only WebSocket listeners; `listeners` maps each port to whether it is `wss`
    (with `tls`). `users` None: every client is accepted, with or without credentials;
    otherwise only these accounts. `acl`: the topic ACL plugin for subscriptions and
    publications."""
    ports = _ports(tmp, listeners)
    bound: dict[str, dict[str, object]] = {}
    for port, secure in listeners.items():
        entry: dict[str, object] = {"type": "ws", "bind": f"{address}:{port}"}
        if secure and tls is not None:
            entry.update(ssl=True, certfile=str(tls.cert), keyfile=str(tls.key))
        bound["default" if not bound else f"listener-{port}"] = entry
    auth = "amqtt.plugins.authentication."
    plugins: dict[str, object] = {f"{auth}AnonymousAuthPlugin": {"allow_anonymous": users is None}}
    if users is not None:
        plugins[f"{auth}FileAuthPlugin"] = {"password_file": str(_amqtt_passwords(tmp, users))}
    if acl is not None:
        table = {user: list(topics) for user, topics in acl.items()}
        plugins["amqtt.plugins.topic_checking.TopicAccessControlListPlugin"] = {
            "acl": table, "publish_acl": table}
    config = tmp / "amqtt-ws.yaml"  # JSON is YAML
    config.write_text(json.dumps({"listeners": bound, "plugins": plugins}))
    return start("amqtt-ws", [str(AMQTT), "-c", str(config)], tmp, address, ports)
