"""The MQTT peers of the interoperability matrix (see `interop`): mosquitto (Debian), aedes
(npm) and amqtt (PyPI), each anonymous, with passwords, with passwords and a topic ACL, and
over TLS (client certificate required, or only asked for by amqtt, which cannot require one);
and mqttools (PyPI), anonymous only. mosquitto speaks MQTT 3.1.1 and 5; aedes and amqtt speak
3.1.1 and answer an MQTT 5 CONNECT with the 3.1.1 CONNACK 1, so their verdicts come from level
4; mqttools speaks 5 only and ignores 3.1.1, so its verdicts come from level 5 (see
`brokers_mqtt`).

The reference tool is mosquitto_sub (mosquitto-clients): it connects without credentials at
3.1.1 and at 5 (mqtt.anonymous-access), in cleartext (mqtt.cleartext-listener), over TLS
without a client certificate (mqtt.client-certificate), and subscribes to `#` and `$SYS/#` as
the probe identity while mosquitto_pub publishes on the canary topic as the canary
(mqtt.topic-authorization).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interop import (
    REPO,
    Peer,
    Protocol,
    Reading,
    Setup,
    debian_version,
    npm_version,
    pypi_version,
)
from interop import brokers_mqtt as brokers
from probe.model import Status

PROBE_ENV, CANARY_ENV = "IOTPROBE_INTEROP_MQTT_PROBE", "IOTPROBE_INTEROP_MQTT_CANARY"
CLEARTEXT, TLS = 1883, 8883
WAIT = 3
"""Seconds mosquitto_sub waits for a CONNACK or a message (`-W`)."""
CHECKS = ("mqtt.cleartext-listener", "mqtt.anonymous-access", "mqtt.topic-authorization",
          "mqtt.client-certificate")


@dataclass(frozen=True)
class Config:
    """One broker configuration: who may log in, what they may touch, and its transport."""

    name: str
    users: bool = False
    acl: bool = False
    tls: bool = False
    require_certificate: bool = False
    versions: tuple[str, ...] = ("mqttv311", "mqttv5")
    """The protocol versions the broker speaks, as mosquitto_sub's -V names them."""


ANONYMOUS = Config("anonymous")
PASSWORD = Config("password, no ACL", users=True)
ACL = Config("password and ACL", users=True, acl=True)
MUTUAL_TLS = Config("TLS with client certificate, password and ACL", users=True, acl=True,
                    tls=True, require_certificate=True)
MQTT5_ONLY = Config("anonymous, MQTT 5 only, QoS 0 only", versions=("mqttv5",))
TLS_OPTIONAL = Config("TLS asking for a client certificate it does not require, password and "
                      "ACL", users=True, acl=True, tls=True)


def _starter(broker: Callable[..., Any], config: Config
             ) -> Callable[[Path, str], contextlib.AbstractContextManager[Setup]]:
    @contextlib.contextmanager
    def start(tmp: Path, address: str) -> Iterator[Setup]:
        if broker is brokers.mqttools:
            with brokers.mqttools(tmp / "broker", address, CLEARTEXT):
                yield Setup(_inventory(config, None))
            return
        tls = brokers.broker_tls(tmp, address) if config.tls else None
        certificate = ({"request_certificate": True} if broker is brokers.amqtt
                       else {"require_certificate": config.require_certificate})
        with broker(tmp / "broker", address, {TLS if config.tls else CLEARTEXT: config.tls},
                    users=brokers.ACCOUNTS if config.users else None,
                    acl=brokers.ACL if config.acl else None, tls=tls,
                    **(certificate if config.tls else {})):
            yield Setup(_inventory(config, tls), {PROBE_ENV: brokers.PROBE_PASSWORD,
                                                  CANARY_ENV: brokers.CANARY_PASSWORD})
    return start


def _inventory(config: Config, tls: brokers.BrokerTls | None) -> dict[str, Any]:
    return inventory(TLS if config.tls else CLEARTEXT, config.users, tls)


def inventory(port: int, users: bool, tls: brokers.BrokerTls | None) -> dict[str, Any]:
    """A broker's inventory entry: its port, the accounts' passwords by variable when it has
    `users`, and with `tls` the CA as trust anchor and the client certificate."""
    inventory: dict[str, Any] = {"ports": str(port)}
    credentials: dict[str, Any] = {}
    if users:
        credentials["mqtt"] = {"username": brokers.PROBE, "password_env": PROBE_ENV}
        credentials["mqtt_canary"] = {"username": brokers.CANARY, "password_env": CANARY_ENV}
    if tls is not None:
        inventory["trust_anchor"] = str(tls.ca)
        credentials["tls_client"] = {"cert_file": str(tls.client_cert),
                                     "key_file": str(tls.client_key)}
    if credentials:
        inventory["credentials"] = credentials
    return inventory


# ---------------------------------------------------------------------------------------------
# The reference tool: mosquitto_sub and mosquitto_pub
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Client:
    """How mosquitto_sub/mosquitto_pub reach one peer, read from its Setup."""

    address: str
    port: int
    ca: str | None
    cert: tuple[str, str] | None

    def argv(self, tool: str, version: str, *, tls: bool = True, certificate: bool = True,
             user: tuple[str, str] | None = None) -> list[str]:
        # A client id of its own per tool: at MQTT 5 both would otherwise send an empty one,
        # and mqttools gives the publisher's session the subscriber's.
        argv = [tool, "-h", self.address, "-p", str(self.port), "-V", version, "-d",
                "-i", f"iotprobe-reference-{tool}"]
        if tls and self.ca is not None:
            argv += ["--cafile", self.ca, "--insecure"]
        if certificate and self.cert is not None:
            argv += ["--cert", self.cert[0], "--key", self.cert[1]]
        if user is not None:
            argv += ["-u", user[0], "-P", user[1]]
        return argv


def _run(argv: Sequence[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT + 10)
    return (done.stdout + done.stderr).strip()


def _connack(output: str) -> str | None:
    """The CONNACK line of mosquitto's debug output ("... received CONNACK (5)"), if any."""
    return next((line.strip() for line in output.splitlines() if "received CONNACK" in line),
                None)


def _last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1][:160] if lines else "no output"


def _anonymous(client: _Client) -> Reading:
    """CONNECT without credentials at 3.1.1 and at 5 (-E: exit once subscribed)."""
    said = []
    accepted = decided = 0
    for version in ("mqttv311", "mqttv5"):
        output = _run([*client.argv("mosquitto_sub", version),
                       "-t", "$SYS/#", "-E", "-W", str(WAIT)])
        line = _connack(output)
        if line is not None and line.endswith("(0)"):
            accepted += 1
        if line is not None or "certificate" in output.lower():
            decided += 1
        said.append(f"{version}: {line or _last_line(output)}")
    status = Status.FAIL if accepted else Status.PASS if decided == 2 else Status.ERROR
    return Reading(status, "; ".join(said))


def _cleartext(client: _Client, version: str) -> Reading:
    output = _run([*client.argv("mosquitto_sub", version, tls=False, certificate=False),
                   "-t", "$SYS/#", "-E", "-W", str(WAIT)])
    line = _connack(output)
    if line is not None:
        return Reading(Status.FAIL, f"cleartext CONNECT answered: {line}")
    return Reading(Status.PASS, f"no CONNACK in cleartext: {_last_line(output)}")


def _client_certificate(client: _Client, version: str) -> Reading:
    output = _run([*client.argv("mosquitto_sub", version, certificate=False),
                   "-t", "$SYS/#", "-E", "-W", str(WAIT)])
    line = _connack(output)
    if line is not None:
        return Reading(Status.FAIL, f"TLS without a client certificate reached MQTT: {line}")
    return Reading(Status.PASS, f"refused without a client certificate: {_last_line(output)}")


def _topics(client: _Client, users: bool, version: str) -> Reading:
    """As the probe identity (anonymous without accounts), subscribe to `#` and `$SYS/#`;
    once subscribed, publish on the canary topic as the canary; any message received fails.
    mosquitto_sub's output is line-buffered (stdbuf) so that "Subscribed" is seen when said."""
    probe = (brokers.PROBE, brokers.PROBE_PASSWORD) if users else None
    canary = (brokers.CANARY, brokers.CANARY_PASSWORD) if users else None
    argv = ["stdbuf", "-oL", *client.argv("mosquitto_sub", version, user=probe),
            "-t", "#", "-t", "$SYS/#", "-v", "-C", "1", "-W", str(WAIT)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as sub:
        assert sub.stdout is not None
        lines: list[str] = []
        for line in sub.stdout:  # ends by itself: -W bounds mosquitto_sub
            lines.append(line.strip())
            if line.startswith("Subscribed"):
                _run([*client.argv("mosquitto_pub", version, user=canary),
                      "-t", "iotprobe/canary/reference", "-m", "canary"])
        sub.wait(WAIT + 10)
    granted = next((line for line in lines if line.startswith("Subscribed")), "")
    received = [line for line in lines if "received PUBLISH" in line]
    if received:
        return Reading(Status.FAIL, f"{granted}; {received[0][:160]}")
    if granted:
        return Reading(Status.PASS, f"{granted}; no message within {WAIT} s")
    return Reading(Status.ERROR, f"not subscribed: {_last_line(chr(10).join(lines))}")


def _reference(config: Config) -> Callable[[str, Setup], Mapping[str, Reading]]:
    def read(address: str, setup: Setup) -> Mapping[str, Reading]:
        credentials = setup.inventory.get("credentials", {})
        cert = credentials.get("tls_client")
        client = _Client(address, int(setup.inventory["ports"]),
                         setup.inventory.get("trust_anchor"),
                         (cert["cert_file"], cert["key_file"]) if cert else None)
        version = config.versions[0]  # the first the broker speaks
        readings = {"mqtt.anonymous-access": _anonymous(client),
                    "mqtt.cleartext-listener": _cleartext(client, version),
                    "mqtt.topic-authorization": _topics(client, config.users, version)}
        if config.tls:
            readings["mqtt.client-certificate"] = _client_certificate(client, version)
        return readings
    return read


# ---------------------------------------------------------------------------------------------
# The peers
# ---------------------------------------------------------------------------------------------


def _expect(cleartext: Status, anonymous: Status, topics: Status, certificate: Status
            ) -> dict[str, Status]:
    return dict(zip(CHECKS, (cleartext, anonymous, topics, certificate), strict=True))


F, P, NA = Status.FAIL, Status.PASS, Status.NOT_APPLICABLE
EXPECT = {
    ANONYMOUS: _expect(F, F, F, NA),
    PASSWORD: _expect(F, P, F, NA),
    ACL: _expect(F, P, P, NA),
    MUTUAL_TLS: _expect(P, P, P, P),
    TLS_OPTIONAL: _expect(P, P, P, F),
    MQTT5_ONLY: _expect(F, F, F, NA),
}
BROKERS: tuple[tuple[str, Callable[[], str], Callable[..., Any], tuple[Config, ...]], ...] = (
    ("mosquitto", debian_version("mosquitto"), brokers.mosquitto,
     (ANONYMOUS, PASSWORD, ACL, MUTUAL_TLS)),
    ("aedes", npm_version("aedes", REPO / "tests" / "interop" / "node"), brokers.aedes,
     (ANONYMOUS, PASSWORD, ACL, MUTUAL_TLS)),
    ("amqtt", pypi_version("amqtt"), brokers.amqtt, (ANONYMOUS, PASSWORD, ACL, TLS_OPTIONAL)),
    ("mqttools", pypi_version("mqttools"), brokers.mqttools, (MQTT5_ONLY,)),
)
AMQTT_MQTT5 = {"mqtt.anonymous-access": (
    "mosquitto_sub -V mqttv5 gets no answer: its MQTT 5 CONNECT carries a Receive Maximum "
    "property, which amqtt 0.12 (it speaks 3.1.1 only) reads as 3.1.1 and waits 3 s for "
    "bytes that never come, then closes; mosquitto_sub cannot tell that close from a "
    "timeout. The probe's MQTT 5 CONNECT carries no property and gets amqtt's 3.1.1 CONNACK "
    "1 (unacceptable protocol version) at once, so it judges at 3.1.1, where mosquitto_sub "
    "reads the same CONNACK 5.")}
"""Why mosquitto_sub's reading of an amqtt peer that refuses anonymous clients is no verdict."""


def _notes(name: str, config: Config) -> Mapping[str, str]:
    return AMQTT_MQTT5 if name == "amqtt" and config.users else {}

PEERS: list[Peer] = [
    Peer(Protocol.MQTT, name, version, config.name, _starter(broker, config), EXPECT[config],
         "mosquitto_sub", _reference(config), _notes(name, config))
    for name, version, broker, configs in BROKERS for config in configs
]
