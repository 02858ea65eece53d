"""The MQTT-over-WebSockets peers of the interoperability matrix (see `interop`): amqtt (PyPI,
served by the `websockets` library) and aedes (npm, served by the `ws` package), open on `ws`
and locked (passwords and a topic ACL) on `wss`, and aedes on a `wss` listener that requires a
client certificate. Both speak MQTT 3.1.1 only. aedes upgrades on the one path it is given
(`/ws` when open, so that the probe finds it on the second path of its list); amqtt on any.
Debian's mosquitto is built without libwebsockets, so it is no peer here (`brokers_mqtt_ws`).

The reference tool is Eclipse paho-mqtt (PyPI), the common Python MQTT client, over its own
WebSocket transport with the peer's path: it connects without credentials (mqtt.anonymous-
access), over `ws` in cleartext (mqtt.cleartext-listener), over `wss` without a client
certificate (mqtt.client-certificate), and subscribes to `#` and `$SYS/#` as the probe
identity while a second client publishes on the canary topic as the canary
(mqtt.topic-authorization). Every wait is bounded by `WAIT`. Like the probe, it presents the
client certificate only where the listener requires one: amqtt 0.12's `wss` listener refuses
the upgrade (no 101) of a client that presents a certificate it did not ask for.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion

from interop import REPO, Peer, Protocol, Reading, Setup, npm_version, pypi_version
from interop import brokers_mqtt as brokers
from interop.brokers_mqtt_ws import aedes_ws, amqtt_ws
from interop.peers_mqtt import CANARY_ENV, CHECKS, PROBE_ENV, inventory
from probe.model import Status

WS, WSS = 8080, 8443
WAIT = 3.0
"""Seconds the reference client waits for a CONNACK, a SUBACK or a message."""
STEP = 0.1


@dataclass(frozen=True)
class Config:
    """One listener: its path, `wss` or not, who may log in, and the client certificate."""

    name: str
    path: str
    tls: bool = False
    users: bool = False
    require_certificate: bool = False

    @property
    def port(self) -> int:
        return WSS if self.tls else WS


OPEN = Config("open, ws /mqtt", "/mqtt")
OPEN_WS_PATH = Config("open, ws /ws", "/ws")
LOCKED = Config("password and ACL, wss /mqtt", "/mqtt", tls=True, users=True)
MUTUAL = Config("client certificate, password and ACL, wss /mqtt", "/mqtt", tls=True,
                users=True, require_certificate=True)


def _amqtt(config: Config) -> Callable[[Path, str], contextlib.AbstractContextManager[Setup]]:
    @contextlib.contextmanager
    def start(tmp: Path, address: str) -> Iterator[Setup]:
        tls = brokers.broker_tls(tmp, address) if config.tls else None
        with amqtt_ws(tmp / "broker", address, {config.port: config.tls},
                      users=brokers.ACCOUNTS if config.users else None,
                      acl=brokers.ACL if config.users else None, tls=tls):
            yield _setup(config, tls)
    return start


def _aedes(config: Config) -> Callable[[Path, str], contextlib.AbstractContextManager[Setup]]:
    @contextlib.contextmanager
    def start(tmp: Path, address: str) -> Iterator[Setup]:
        tls = brokers.broker_tls(tmp, address) if config.tls else None
        with aedes_ws(tmp / "broker", address, {config.port: (config.path, config.tls)},
                      users=brokers.ACCOUNTS if config.users else None,
                      acl=brokers.ACL if config.users else None, tls=tls,
                      require_certificate=config.require_certificate):
            yield _setup(config, tls)
    return start


def _setup(config: Config, tls: brokers.BrokerTls | None) -> Setup:
    return Setup(inventory(config.port, config.users, tls),
                 {PROBE_ENV: brokers.PROBE_PASSWORD, CANARY_ENV: brokers.CANARY_PASSWORD})


# ---------------------------------------------------------------------------------------------
# The reference tool: paho-mqtt over WebSockets
# ---------------------------------------------------------------------------------------------


@dataclass
class _Session:
    """One paho client on the peer's WebSocket listener, driven by bounded `loop` calls."""

    client: paho.Client
    connack: int | None = None
    suback: list[int] | None = None
    messages: int = 0
    error: str = ""

    def run(self, until: Callable[[], bool]) -> None:
        for _ in range(int(WAIT / STEP)):
            if until() or self.client.loop(timeout=STEP) != paho.MQTT_ERR_SUCCESS:
                return


def _session(address: str, config: Config, setup: Setup, *, tls: bool, certificate: bool,
             user: tuple[str, str] | None, name: str) -> _Session:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"iotprobe-reference-{name}",
                         protocol=paho.MQTTv311, transport="websockets")
    client.ws_set_options(path=config.path, headers={"Host": f"{address}:{config.port}"})
    if tls:
        cert = setup.inventory.get("credentials", {}).get("tls_client")
        chain = (cert["cert_file"], cert["key_file"]) if certificate and cert else (None, None)
        client.tls_set(ca_certs=setup.inventory.get("trust_anchor"), certfile=chain[0],
                       keyfile=chain[1], cert_reqs=ssl.CERT_REQUIRED)
        client.tls_insecure_set(True)  # the certificate names the IP, not a host name
    if user is not None:
        client.username_pw_set(*user)
    session = _Session(client)

    def connected(_c: paho.Client, _u: object, _f: object, code: Any, _p: object) -> None:
        session.connack = int(code.value if hasattr(code, "value") else code)

    def subscribed(_c: paho.Client, _u: object, _m: int, codes: Any, _p: object) -> None:
        session.suback = [int(c.value if hasattr(c, "value") else c) for c in codes]

    def received(_c: paho.Client, _u: object, _m: object) -> None:
        session.messages += 1

    client.on_connect, client.on_subscribe, client.on_message = connected, subscribed, received
    try:
        client.connect(address, config.port, keepalive=30)
    except (OSError, ssl.SSLError, paho.WebsocketConnectionError) as exc:
        session.error = f"{type(exc).__name__}: {exc}"[:160]
        return session
    session.run(lambda: session.connack is not None)
    return session


def _said(session: _Session) -> str:
    if session.connack is not None:
        return f"CONNACK {session.connack}"
    return session.error or f"no CONNACK within {WAIT:g} s"


def _close(session: _Session) -> None:
    with contextlib.suppress(OSError):
        session.client.disconnect()


def _reference(config: Config) -> Callable[[str, Setup], Mapping[str, Reading]]:
    def read(address: str, setup: Setup) -> Mapping[str, Reading]:
        probe = (brokers.PROBE, brokers.PROBE_PASSWORD) if config.users else None
        canary = (brokers.CANARY, brokers.CANARY_PASSWORD) if config.users else None
        readings: dict[str, Reading] = {}

        anonymous = _session(address, config, setup, tls=config.tls,
                             certificate=config.require_certificate, user=None,
                             name="anonymous")
        _close(anonymous)
        status = (Status.FAIL if anonymous.connack == 0 else Status.PASS
                  if anonymous.connack is not None or "certificate" in anonymous.error
                  else Status.ERROR)
        readings["mqtt.anonymous-access"] = Reading(status, _said(anonymous))

        plain = _session(address, config, setup, tls=False, certificate=False, user=None,
                         name="cleartext")
        _close(plain)
        readings["mqtt.cleartext-listener"] = Reading(
            Status.FAIL if plain.connack is not None else Status.PASS,
            f"ws in cleartext: {_said(plain)}")

        if config.tls:
            bare = _session(address, config, setup, tls=True, certificate=False,
                            user=probe, name="no-certificate")
            _close(bare)
            readings["mqtt.client-certificate"] = Reading(
                Status.FAIL if bare.connack is not None else Status.PASS,
                f"wss without a client certificate: {_said(bare)}")

        readings["mqtt.topic-authorization"] = _topics(address, config, setup, probe, canary)
        return readings
    return read


def _topics(address: str, config: Config, setup: Setup, probe: tuple[str, str] | None,
            canary: tuple[str, str] | None) -> Reading:
    """Subscribe to `#` and `$SYS/#` as the probe identity; once subscribed, publish on the
    canary topic as the canary; any message received fails."""
    sub = _session(address, config, setup, tls=config.tls,
                   certificate=config.require_certificate, user=probe, name="subscriber")
    if sub.connack != 0:
        _close(sub)
        return Reading(Status.ERROR, f"not connected: {_said(sub)}")
    sub.client.subscribe([("#", 0), ("$SYS/#", 0)])
    sub.run(lambda: sub.suback is not None)
    if sub.suback is None:
        _close(sub)
        return Reading(Status.ERROR, f"no SUBACK within {WAIT:g} s")
    pub = _session(address, config, setup, tls=config.tls,
                   certificate=config.require_certificate, user=canary, name="publisher")
    if pub.connack == 0:
        pub.client.publish("iotprobe/canary/reference", b"canary", qos=1)
        pub.run(lambda: False)
    _close(pub)
    sub.run(lambda: sub.messages > 0)
    _close(sub)
    granted = f"SUBACK {sub.suback}"
    if sub.messages:
        return Reading(Status.FAIL, f"{granted}; {sub.messages} message(s) received")
    return Reading(Status.PASS, f"{granted}; no message within {WAIT:g} s")


# ---------------------------------------------------------------------------------------------
# The peers
# ---------------------------------------------------------------------------------------------


F, P, NA = Status.FAIL, Status.PASS, Status.NOT_APPLICABLE
EXPECT: dict[Config, tuple[Status, ...]] = {
    OPEN: (F, F, F, NA), OPEN_WS_PATH: (F, F, F, NA),
    LOCKED: (P, P, P, F), MUTUAL: (P, P, P, P),
}
"""Per configuration, the statuses of `CHECKS` (cleartext, anonymous, topics, certificate):
neither broker can be told to require a client certificate on LOCKED, so it fails there."""
BROKERS: tuple[tuple[str, Callable[[], str], Callable[[Config], Any], tuple[Config, ...]],
               ...] = (
    ("amqtt", pypi_version("amqtt"), _amqtt, (OPEN, LOCKED)),
    ("aedes + ws", npm_version("aedes", REPO / "tests" / "interop" / "node"), _aedes,
     (OPEN_WS_PATH, LOCKED, MUTUAL)),
)

PEERS: list[Peer] = [
    Peer(Protocol.MQTT, f"{name} (WebSockets)", version, config.name, start(config),
         dict(zip(CHECKS, EXPECT[config], strict=True)), "paho-mqtt", _reference(config))
    for name, version, start, configs in BROKERS for config in configs
]
