"""The device's monitoring sinks (inventory `monitor:`) and how the probe watches each.

```yaml
monitor:
  mqtt:                  # a broker where security events (and heartbeats) are published
    address: 10.20.0.2   # IP literal: the probe connects here (and only here) for this device
    port: 8883           # default 8883 with tls, else 1883
    tls: true            # default false
    topic: "fleet/security/#"          # where security events appear
    username: monitor                  # optional, with password_env / password_file
    password_env: FLEET_MONITOR_PASSWORD
    ca_file: pki/broker-ca.pem         # optional: verify the broker (else it is only observed)
    hostname: broker.plant.example     # optional: TLS server name, checked with ca_file
    cert_file: ...                     # optional client certificate (key_file beside it)
    heartbeat_topic: "fleet/heartbeat/thermostat-001"   # monitor.heartbeat
    heartbeat_interval: 60             # seconds (or "60s", "5m", "1h")
  syslog:                # the probe itself receives syslog here
    listen: "tls://0.0.0.0:6514"       # udp://, tcp:// or tls:// (RFC 5425)
    cert_file: pki/probe.crt           # tls:// only: the probe's certificate and key
    key_file: pki/probe.key
    ca_file: pki/fleet-ca.pem          # optional: require client certificates from this CA
    forwarders: [10.20.0.3]            # relays whose events count besides the device's own
  command:               # a query (e.g. a SIEM search) that prints matching events
    run: ["siem-search", "--since", "{since}", "{nonce}"]   # or one string, split like a shell
    timeout: 20          # seconds per run (default 10)
    interval: 5          # seconds between runs (default 5)
```

`command` never goes through a shell: `run` becomes an argument vector, in which the
placeholders {nonce}, {since}, {until}, {since_epoch}, {until_epoch}, {device} and {address}
are replaced (and nothing else is); the same values are in the environment as IOTPROBE_NONCE,
IOTPROBE_SINCE, ... The command inherits the probe's environment otherwise, runs in its own
session with no input, is killed (its process group, by its id) at `timeout`, and at most
`MAX_OUTPUT` bytes of its output are read. Its exit status is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import secrets
import shlex
import signal
import ssl
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from probe.context import DeviceContext
from probe.model import Device
from probe.monitoring.syslog import ListenSpec, Network, forwarder_networks, listen_spec
from probe.observe.base import ObservationError
from probe.protocols.mqtt.codec import (
    DISCONNECT_PACKET,
    KEEP_ALIVE,
    PUBLISH,
    SUBACK,
    Identity,
    MalformedPacket,
    connect_packet,
    meaning,
    parse_publish,
    parse_suback,
    subscribe_packet,
)
from probe.protocols.mqtt.collectors import (
    _Closed,
    _connack,
    _Link,
    _tls_reason,
)
from probe.secrets import Secret
from probe.stamps import STAMP

SinkName = Literal["mqtt", "syslog", "command"]
SINK_NAMES: tuple[SinkName, ...] = ("mqtt", "syslog", "command")
MAX_OUTPUT = 1024 * 1024
MAX_RUNS = 100
COMMAND_TIMEOUT = 10.0
COMMAND_INTERVAL = 5.0
MAX_SUBSCRIPTION_BYTES = 16 * 1024 * 1024
MAX_PACKETS = 100_000
PINGREQ = b"\xc0\x00"
PING_EVERY = KEEP_ALIVE / 2
PLACEHOLDERS = ("nonce", "since", "until", "since_epoch", "until_epoch", "device", "address")

_MQTT_KEYS = frozenset({"address", "port", "tls", "topic", "username", "password", "ca_file",
                        "hostname", "cert_file", "key_file", "heartbeat_topic",
                        "heartbeat_interval"})
_SYSLOG_KEYS = frozenset({"listen", "cert_file", "key_file", "ca_file", "forwarders"})
_COMMAND_KEYS = frozenset({"run", "timeout", "interval"})
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h)?")
_UNITS = {None: 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Event:
    """Something a sink delivered while the probe watched it."""

    sink: SinkName
    channel: str
    encrypted: bool | None  # None: the sink does not show how the event travelled
    text: str
    at: float  # time.monotonic()
    origin: str
    fields: Mapping[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# What the inventory declares
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MqttSink:
    address: str
    port: int
    tls: bool
    topic: str | None
    username: str | Secret | None = None
    password: Secret | None = field(default=None, repr=False)
    ca_file: str | None = None
    hostname: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    heartbeat_topic: str | None = None
    heartbeat_interval: float | None = None

    @property
    def channel(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"MQTT{' over TLS' if self.tls else ''} ({host}:{self.port})"

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"address": self.address, "port": self.port, "tls": self.tls}
        if self.topic is not None:
            out["topic"] = self.topic
        if self.username is not None:
            out["username"] = str(self.username)
        return out


@dataclass(frozen=True)
class CommandSink:
    argv: tuple[str, ...]
    timeout: float = COMMAND_TIMEOUT
    interval: float = COMMAND_INTERVAL

    def evidence(self) -> dict[str, Any]:
        return {"program": os.path.basename(self.argv[0]), "timeout": self.timeout,
                "interval": self.interval}


@dataclass(frozen=True)
class Sinks:
    mqtt: MqttSink | None = None
    syslog: ListenSpec | None = None
    command: CommandSink | None = None
    forwarders: tuple[Network, ...] = ()
    """`monitor.syslog.forwarders`: besides the device itself, who may deliver its syslog."""

    @property
    def for_events(self) -> tuple[SinkName, ...]:
        """The sinks where security events can be watched."""
        out: list[SinkName] = []
        if self.mqtt is not None and self.mqtt.topic is not None:
            out.append("mqtt")
        if self.syslog is not None:
            out.append("syslog")
        if self.command is not None:
            out.append("command")
        return tuple(out)


def _problem(device: Device, where: str, message: str) -> ObservationError:
    return ObservationError("inventory", f"{device.source}: device {device.id}: "
                            f"monitor.{where}: {message}")


def _unknown(device: Device, name: str, entry: Mapping[str, Any], known: frozenset[str]) -> None:
    for key in entry:
        if key not in known:
            raise _problem(device, f"{name}.{key}", "unknown field (known: "
                           + ", ".join(sorted(known)) + ")")


def duration(value: object) -> float:
    """Seconds from a number or a string like "90", "90s", "5m", "1h"; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (found := _DURATION.fullmatch(value.strip())):
        seconds = float(found.group(1)) * _UNITS[found.group(2)]
    else:
        raise ValueError("expected a duration in seconds, or a string such as 30s, 5m, 1h")
    if not 0 < seconds <= 86400:
        raise ValueError("expected a duration above 0 and at most one day")
    return seconds


def _text(device: Device, where: str, value: object, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise _problem(device, where, "expected a non-empty string")
    return value


def _mqtt(device: Device, entry: Mapping[str, Any]) -> MqttSink:
    _unknown(device, "mqtt", entry, _MQTT_KEYS)
    address = entry.get("address")
    try:
        address = str(ipaddress.ip_address(address if isinstance(address, str) else ""))
    except ValueError:
        raise _problem(device, "mqtt.address", "expected the broker's IP address (an IP "
                       "literal: the probe reaches no name it was not given)") from None
    tls = entry.get("tls", False)
    if not isinstance(tls, bool):
        raise _problem(device, "mqtt.tls", "expected true or false")
    port = entry.get("port", 8883 if tls else 1883)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise _problem(device, "mqtt.port", "expected a port number")
    username = entry.get("username")
    if username is not None and not isinstance(username, str | Secret):
        raise _problem(device, "mqtt.username", "expected a string")
    password = entry.get("password")
    if password is not None and not isinstance(password, Secret):
        raise _problem(device, "mqtt.password", "use password_env or password_file")
    interval = entry.get("heartbeat_interval")
    seconds = None
    if interval is not None:
        try:
            seconds = duration(interval)
        except ValueError as exc:
            raise _problem(device, "mqtt.heartbeat_interval", str(exc)) from None
    heartbeat = _text(device, "mqtt.heartbeat_topic", entry.get("heartbeat_topic"))
    if (heartbeat is None) != (seconds is None):
        raise _problem(device, "mqtt.heartbeat_topic" if heartbeat is None
                       else "mqtt.heartbeat_interval",
                       "heartbeat_topic and heartbeat_interval go together")
    files = {name: _text(device, f"mqtt.{name}", entry.get(name))
             for name in ("ca_file", "cert_file", "key_file", "hostname")}
    return MqttSink(address, port, tls, _text(device, "mqtt.topic", entry.get("topic")),
                    username, password, files["ca_file"], files["hostname"],
                    files["cert_file"], files["key_file"], heartbeat, seconds)


def _command(device: Device, entry: Mapping[str, Any]) -> CommandSink:
    _unknown(device, "command", entry, _COMMAND_KEYS)
    run = entry.get("run")
    if isinstance(run, str):
        try:
            argv = tuple(shlex.split(run))
        except ValueError as exc:
            raise _problem(device, "command.run", f"cannot split the command: {exc}") from None
    elif isinstance(run, list) and all(isinstance(item, str) for item in run):
        argv = tuple(run)
    else:
        raise _problem(device, "command.run", "expected a command line or a list of "
                       "arguments")
    if not argv or not argv[0]:
        raise _problem(device, "command.run", "the command is empty")
    limits = {}
    for name, default in (("timeout", COMMAND_TIMEOUT), ("interval", COMMAND_INTERVAL)):
        try:
            limits[name] = duration(entry.get(name, default))
        except ValueError as exc:
            raise _problem(device, f"command.{name}", str(exc)) from None
    return CommandSink(argv, limits["timeout"], limits["interval"])


def declared_sinks(device: Device) -> Sinks:
    """The sinks the device's inventory `monitor:` declares; ObservationError ("inventory")
    names the file, device and field of anything malformed."""
    monitor = device.monitor
    for name, entry in monitor.items():
        if name not in SINK_NAMES:
            raise _problem(device, name, "unknown sink (known: mqtt, syslog, command)")
        if not isinstance(entry, Mapping):
            raise _problem(device, name, "expected a mapping")
    syslog = None
    forwarders: tuple[Network, ...] = ()
    if "syslog" in monitor:
        _unknown(device, "syslog", monitor["syslog"], _SYSLOG_KEYS)
        try:
            syslog = listen_spec(monitor["syslog"])
        except ValueError as exc:
            raise _problem(device, "syslog", str(exc)) from None
        try:
            forwarders = forwarder_networks(monitor["syslog"].get("forwarders"))
        except ValueError as exc:
            raise _problem(device, "syslog.forwarders", str(exc)) from None
    return Sinks(
        mqtt=_mqtt(device, monitor["mqtt"]) if "mqtt" in monitor else None,
        syslog=syslog,
        command=_command(device, monitor["command"]) if "command" in monitor else None,
        forwarders=forwarders,
    )


def hidden_values(device: Device) -> tuple[str, ...]:
    """The revealed values of every secret of the device's inventory, to scrub from anything
    the probe shows (an event text could echo one)."""
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, Secret):
            if len(value.reveal()) >= 3:
                found.append(value.reveal())
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(device.monitor)
    walk(device.credentials)
    return tuple(sorted(set(found), key=len, reverse=True))


# ---------------------------------------------------------------------------------------------
# MQTT: a subscription on the declared broker
# ---------------------------------------------------------------------------------------------


class SinkUnavailable(Exception):
    """The sink could not be watched; the message says why (never a secret)."""


def _context(sink: MqttSink) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if sink.ca_file is not None:
        context.load_verify_locations(cafile=sink.ca_file)
        context.check_hostname = sink.hostname is not None
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if sink.cert_file is not None:
        context.load_cert_chain(sink.cert_file, sink.key_file)
    return context


@dataclass(frozen=True)
class Publication:
    topic: str
    payload: bytes
    retained: bool
    at: float  # time.monotonic()


class Subscription:
    """A live subscription on the sink broker: publications, one at a time, with PINGREQs
    so that the broker keeps a long wait (a heartbeat interval) open."""

    def __init__(self, link: _Link, sink: MqttSink) -> None:
        self.link = link
        self.sink = sink
        self.last_sent = time.monotonic()

    async def next(self, seconds: float) -> Publication | None:
        """The next publication, None when `seconds` pass first; SinkUnavailable when the
        broker closes the connection, sends garbage or too much."""
        end = time.monotonic() + seconds
        for _ in range(MAX_PACKETS):
            now = time.monotonic()
            if now >= end:
                return None
            if self.link.received > MAX_SUBSCRIPTION_BYTES:
                raise SinkUnavailable(f"more than {MAX_SUBSCRIPTION_BYTES} bytes arrived")
            try:
                if now - self.last_sent >= PING_EVERY:
                    await self.link.send(PINGREQ)
                    self.last_sent = now
                wait = min(end - now, PING_EVERY - (now - self.last_sent))
                packet = await self.link.receive(wait)
            except (_Closed, OSError) as exc:
                raise SinkUnavailable("the broker closed the subscription") from exc
            except MalformedPacket as exc:
                raise SinkUnavailable(f"the broker sent a malformed packet: {exc}") from exc
            if packet is not None and packet.kind == PUBLISH:
                try:
                    topic, payload = parse_publish(self.link.level, packet)
                except MalformedPacket as exc:
                    raise SinkUnavailable(f"a malformed PUBLISH: {exc}") from exc
                return Publication(topic, payload, bool(packet.flags & 1), time.monotonic())
        raise SinkUnavailable(f"more than {MAX_PACKETS} packets without a publication")


async def _login(ctx: DeviceContext, sink: MqttSink, topics: Sequence[str],
                 stack: contextlib.AsyncExitStack) -> _Link:
    level = 4
    identity = None
    if sink.username is not None:
        identity = Identity(str(sink.username), sink.username, sink.password)
    try:
        tls = _context(sink) if sink.tls else None
    except (OSError, ssl.SSLError) as exc:
        raise SinkUnavailable("the TLS files of monitor.mqtt could not be loaded: "
                              f"{_tls_reason(exc)}") from None
    reader, writer = await stack.enter_async_context(ctx.connect_declared(
        sink.address, sink.port, tls=tls, server_hostname=sink.hostname))
    link = _Link(ctx, reader, writer, level)
    await link.send(connect_packet(level, f"iotprobe-monitor-{secrets.token_hex(4)}",
                                   identity))
    packet = await link.receive(ctx.timeout)
    if packet is None:
        raise SinkUnavailable(f"the broker sent no CONNACK within {ctx.timeout:g} s")
    outcome = _connack(level, packet, link.seen)
    if not outcome.accepted:
        raise SinkUnavailable(f"the broker refused the monitor login: {outcome.describe()}")
    await link.send(subscribe_packet(level, 1, topics))
    end = time.monotonic() + ctx.timeout
    for _ in range(MAX_PACKETS):
        packet = await link.receive(end - time.monotonic())
        if packet is None:
            break
        if packet.kind == SUBACK:
            codes = parse_suback(level, packet.body)[1]
            refused = [t for t, c in zip(topics, codes, strict=False) if c >= 0x80]
            if refused or len(codes) != len(topics):
                code = codes[0] if codes else 0x80
                raise SinkUnavailable("the broker refused the subscription to "
                                      f"{', '.join(refused) or 'the topics'} "
                                      f"({meaning(level, code, SUBACK)})")
            return link
    raise SinkUnavailable(f"no SUBACK within {ctx.timeout:g} s")


@contextlib.asynccontextmanager
async def subscribed(ctx: DeviceContext, sink: MqttSink, topics: Sequence[str]
                     ) -> AsyncIterator[Subscription]:
    """Log in to the declared broker and subscribe to `topics` (QoS 0) before the block runs;
    SinkUnavailable says why that failed. DISCONNECT and close when the block ends."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            link = await _login(ctx, sink, topics, stack)
        except ConnectionRefusedError:
            raise SinkUnavailable(f"{sink.address}:{sink.port} refused the connection"
                                  ) from None
        except TimeoutError:
            raise SinkUnavailable(f"no connection to {sink.address}:{sink.port} within "
                                  f"{ctx.timeout:g} s") from None
        except _Closed:
            raise SinkUnavailable("the broker closed the connection during the login"
                                  ) from None
        except MalformedPacket as exc:
            raise SinkUnavailable(f"the broker's answer is not MQTT: {exc}") from None
        except (OSError, ssl.SSLError) as exc:
            raise SinkUnavailable(f"the connection to the broker failed: {_tls_reason(exc)}"
                                  ) from None
        except ValueError as exc:  # an excluded port
            raise SinkUnavailable(str(exc)) from None
        yield Subscription(link, sink)
        with contextlib.suppress(OSError):
            await link.send(DISCONNECT_PACKET)


# ---------------------------------------------------------------------------------------------
# Command
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandRun:
    """One run of the sink command."""

    exit_status: int | None
    timed_out: bool
    output: bytes
    truncated: bool
    error: str | None = None
    at: float = 0.0  # time.monotonic() when it ended

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"exit_status": self.exit_status,
                               "output_bytes": len(self.output)}
        if self.timed_out:
            out["timed_out"] = True
        if self.truncated:
            out["output_truncated"] = True
        if self.error is not None:
            out["error"] = self.error
        return out


def command_values(nonce: str, since: float, until: float, device: Device,
                   address: str) -> dict[str, str]:
    """The placeholder values for one run (times in UTC, RFC 3339, and epoch seconds)."""
    def stamp(epoch: float) -> str:
        return time.strftime(STAMP, time.gmtime(epoch))

    return {"nonce": nonce, "since": stamp(since), "until": stamp(until),
            "since_epoch": str(int(since)), "until_epoch": str(int(until) + 1),
            "device": device.id, "address": address}


def command_argv(sink: CommandSink, values: Mapping[str, str]) -> list[str]:
    argv = []
    for item in sink.argv:
        for name in PLACEHOLDERS:
            item = item.replace("{" + name + "}", values[name])
        argv.append(item)
    return argv


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def run_command(sink: CommandSink, values: Mapping[str, str]) -> CommandRun:
    """Run the command once, bounded by its timeout and MAX_OUTPUT; never raises for what the
    command does."""
    env = {**os.environ, **{f"IOTPROBE_{k.upper()}": v for k, v in values.items()}}
    try:
        process = await asyncio.create_subprocess_exec(
            *command_argv(sink, values), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env,
            start_new_session=True)
    except OSError as exc:
        return CommandRun(None, False, b"", False, f"cannot run {sink.argv[0]}: "
                          f"{exc.strerror or type(exc).__name__}", time.monotonic())
    assert process.stdout is not None
    output = bytearray()
    truncated = timed_out = False
    try:
        async with asyncio.timeout(sink.timeout):
            while chunk := await process.stdout.read(64 * 1024):
                output += chunk
                if len(output) > MAX_OUTPUT:
                    truncated = True
                    _kill(process)
                    break
            await process.wait()
    except TimeoutError:
        timed_out = True
    finally:
        if process.returncode is None:
            _kill(process)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 5.0)
    status = None if timed_out or truncated else process.returncode
    return CommandRun(status, timed_out, bytes(output[:MAX_OUTPUT]), truncated,
                      at=time.monotonic())
