"""Monitoring collectors (27400-6.5): provoke a tagged failed login, watch where the device's
security events go, burst failed logins to see throttling, and wait for a heartbeat.

The canary (`canary`, shared by `monitor.auth-failure-event` and `monitor.event-transport`):
1. the sinks the inventory declares (`probe.monitoring.sinks`) are opened first: the probe binds
   its syslog listener and subscribes on the MQTT sink broker before it provokes anything, and
   provokes nothing when no sink could be watched;
2. one failed login per login endpoint, tagged with a fresh nonce `iotprobe-<12 hex>`: on MQTT
   the nonce is the client id and the user name (with a random password), on HTTP the Basic (or
   Digest) user name on the first protected path of the listener that asks for credentials;
3. an event counts when it names the attempt (the nonce, or the probe's own source address and
   port of an MQTT attempt) and says that it failed (a failure word, or an HTTP 401/403/407
   status as access logs write it). Events that only name the attempt, or only report some
   failure, are kept as near misses for the evidence;
4. the wait ends at the first counted event (plus `LINGER` to see it on other sinks too), or
   `event_timeout` after the first attempt, and never later than the device budget allows; a
   `command` sink is run every `interval` seconds within that window;
5. when nothing counted by half the window, each refused login is made once more with the same
   nonce: a stream sender may still hold a session to the sink of an earlier scan, which it
   finds dead only by losing the first event written into it (syslog-ng over TLS does not
   read while idle, syslog-ng issue 3026), then reconnects and delivers the next one.

The burst (`throttling`, intrusive): per login endpoint, at most `attempts` tagged failed logins,
started at most `max_rate` per second, each timed from connect to answer; it stops early once
the endpoint refused or dropped two attempts in a row.

The heartbeat (`heartbeat`): a subscription to `monitor.mqtt.heartbeat_topic` for
`heartbeat_interval` + `grace_seconds` (within the device budget); retained messages do not
count, only a publication made while the probe watched.

Passwords (the canary's random one and every inventory secret) are scrubbed from event texts
before they reach the evidence.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import secrets
import ssl
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from probe.context import DeviceContext
from probe.monitoring.sinks import (
    MAX_RUNS,
    CommandRun,
    CommandSink,
    Event,
    MqttSink,
    Publication,
    SinkName,
    Sinks,
    SinkUnavailable,
    Subscription,
    command_values,
    declared_sinks,
    hidden_values,
    run_command,
    subscribed,
)
from probe.monitoring.syslog import Network, Received, listening
from probe.observe.identify import TlsClient
from probe.observe.tcp import excerpt
from probe.protocols.http.collectors import authenticated_paths, http_protected, http_roots, request
from probe.protocols.mqtt.codec import (
    DISCONNECT_PACKET,
    Identity,
    MalformedPacket,
    connect_packet,
)
from probe.protocols.mqtt.collectors import (
    ClientCertificate,
    Outcome,
    _broken,
    _Closed,
    _connack,
    _Link,
    _tls_client,
    client_certificate,
    endpoints,
    upgrade,
)

MEDIAN_WINDOW = 3
BUDGET_MARGIN = 1.0
LINGER = 0.5
MAX_KEPT = 3
MAX_EVENT_CHARS = 600
MAX_COMMAND_LINES = 10_000
MAX_EVENTS = 100_000
MAX_RETAINED = 1000

Kind = Literal["denied", "accepted", "refused", "dropped", "undecided"]
"""What one login attempt got: an ordinary refusal of the credentials; acceptance; a refusal
that is no verdict on the credentials (busy, banned, rate limited, locked); nothing (closed,
refused at TCP, timed out); something that decides nothing (not MQTT, a TLS failure)."""

_MQTT_DENIED = {4: frozenset({4, 5}), 5: frozenset({0x86, 0x87, 0x8C})}
_MQTT_REFUSED = {4: frozenset({3}), 5: frozenset({0x88, 0x89, 0x8A, 0x97, 0x9F})}
_HTTP_DENIED = frozenset({401, 403, 407})
_HTTP_REFUSED = frozenset({423, 429, 503})
MAX_NAMED = 3
"""An event naming more login attempts (client address:port pairs, nonces) is a spray."""
SPRAY_DECOYS = 4
"""Failures naming this many other ports of the probe's own address: source matches stop
counting, only the nonce does."""
MAX_SCANNED_CHARS = 64 * 1024

FAILURE_RULE = """An event reports the probe's failed login when all of these hold:
1. it came from the device's own address or from a forwarder the inventory declares
   (monitor.syslog.forwarders), for syslog; an MQTT sink's and a command's events are taken
   from the declared channel;
2. it names the attempt: the nonce (iotprobe-<12 hex>, any case), or the exact source address
   and port of the probe's MQTT attempt (not on an MQTT topic, where only the nonce counts,
   and not once failures naming other ports of the probe's address show a spray);
3. it names at most three attempts (client address:port pairs and nonces together);
4. it says that the login failed: "fail" (failed, failure), denied/deny, refused, rejected,
   invalid, unauthorized or not authorized, forbidden, locked, blocked; bad, wrong or
   incorrect user name/password/credentials/login; "mismatch" or "does not match"/"doesn't
   match"; a user "not found", a "nonexistent", "unknown" or "no such" user; or an HTTP 401,
   403 or 407 as an access log writes it ("GET /admin HTTP/1.1" 401) or a status field."""
_FAILURE = re.compile(
    r"fail|denied|\bden(?:y|ies)\b|refus|reject|invalid|unauthori[sz]ed|not authori[sz]ed"
    r"|forbidden|locked|blocked|incorrect"
    r"|(?:bad|wrong) (?:user ?name|password|credentials|login)"
    r"|mismatch|\bdo(?:es)?(?:n['\u2019]t| not) match\b|\buser\b.{0,120}?\bnot found\b"
    r"|\bnon-?existent user\b|\bunknown user\b|\bno such user\b"
    r"|\"\s+(?:401|403|407)\s|\bstatus[\"']?\s*[:=]\s*[\"']?(?:401|403|407)\b",
    re.IGNORECASE)
_ENDPOINT = re.compile(
    r"(?<![\w.:\[])(?:(?P<v4>\d{1,3}(?:\.\d{1,3}){3})(?::|\s+port\s+|#)(?P<p4>\d{1,5})"
    r"|\[(?P<v6>[0-9a-f:.]{2,45})\]:(?P<p6>\d{1,5})"
    r"|(?P<w6>[0-9a-f]{0,4}:[0-9a-f:.]{1,44})\s+port\s+(?P<pw>\d{1,5}))(?!\d)",
    re.IGNORECASE)
_NONCE = re.compile(r"iotprobe-[0-9a-f]{12}", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# Login endpoints and tagged attempts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginTarget:
    """A login endpoint: an MQTT endpoint or an HTTP path that asks for credentials."""

    kind: Literal["mqtt", "http"]
    port: int
    tls: bool
    level: int = 4
    path: str = ""
    scheme: str = ""
    certificate: ClientCertificate | None = None
    not_tried: str = ""
    ws_target: str = ""
    """MQTT over WebSockets: the endpoint's target (`tcp/8080 ws /mqtt`)."""
    ws_path: str | None = None

    @property
    def target(self) -> str:
        return self.ws_target or f"tcp/{self.port}"

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol": self.kind, "port": self.port, "tls": self.tls}
        if self.kind == "http":
            out.update(path=self.path, auth_scheme=self.scheme)
        else:
            out["protocol_level"] = self.level
        if self.not_tried:
            out["not_tried"] = self.not_tried
        return out


async def login_targets(ctx: DeviceContext, *, paths: tuple[str, ...]
                        ) -> tuple[LoginTarget, ...]:
    """Collector: the device's MQTT endpoints and, per HTTP listener, the first path (`/` or
    one of `paths`) that asks for Basic or Digest credentials (from the HTTP collectors'
    unauthenticated GETs)."""
    found: list[LoginTarget] = []
    certificate = client_certificate(ctx.device)
    for endpoint in await ctx.observe(endpoints):
        level = 5 if endpoint.mqtt5 is not None or endpoint.hello.version_refused else 4
        why = ""
        if endpoint.silent:
            why = "the endpoint never answered a CONNECT"
        elif endpoint.needs_certificate and certificate is None:
            why = ("the TLS layer requires a client certificate and the inventory has no "
                   "credentials.tls_client")
        found.append(LoginTarget("mqtt", endpoint.port, endpoint.tls, level,
                                 certificate=certificate if endpoint.needs_certificate
                                 else None, not_tried=why,
                                 ws_target=endpoint.target if endpoint.ws_path else "",
                                 ws_path=endpoint.ws_path))
    roots, protected = await asyncio.gather(ctx.observe(http_roots),
                                            ctx.observe(http_protected, paths=paths))
    for listener, path, scheme in authenticated_paths([*roots, *protected]):
        found.append(LoginTarget("http", listener.port, listener.tls, path=path, scheme=scheme))
    return tuple(found)


@dataclass(frozen=True)
class LoginAttempt:
    """One tagged failed-login attempt and what it got."""

    target: LoginTarget
    begin: float  # time.monotonic() when the connection started
    elapsed: float  # seconds from the connection's start to the answer (or to giving up)
    kind: Kind
    answer: str
    code: int | None = None
    source: str | None = None
    wait: float | None = None
    """MQTT: seconds from the CONNECT sent to the CONNACK (the handshakes left out)."""

    def evidence(self, origin: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"outcome": self.kind, "answer": self.answer,
                               "elapsed_ms": round(self.elapsed * 1000, 1)}
        if self.wait is not None:
            out["connack_wait_ms"] = round(self.wait * 1000, 1)
        if origin is not None:
            out["at_ms"] = round((self.begin - origin) * 1000, 1)
        if self.code is not None:
            out["code"] = self.code
        if self.source is not None:
            out["source"] = self.source
        return out


def _mqtt_kind(outcome: Outcome) -> Kind:
    if outcome.result == "connack" and outcome.code is not None:
        if outcome.code == 0:
            return "accepted"
        if outcome.code in _MQTT_DENIED[outcome.level]:
            return "denied"
        return "refused" if outcome.code in _MQTT_REFUSED[outcome.level] else "undecided"
    if outcome.result in ("closed", "tcp-refused", "timeout", "network-error"):
        return "dropped"
    return "undecided"


async def _mqtt_exchange(link: _Link, tag: str, password: str, client: TlsClient | None,
                         presented: bool) -> tuple[Outcome, float | None]:
    """One tagged CONNECT on an open link: its outcome and the seconds until the CONNACK."""
    level, timeout = link.level, link.ctx.timeout
    sent = time.monotonic()
    try:
        await link.send(connect_packet(level, tag, Identity(tag, tag, password)))
        packet = await link.receive(timeout)
    except MalformedPacket as exc:
        return Outcome(level, "not-mqtt", detail=str(exc)), None
    except _Closed:
        return Outcome(level, "closed"), None
    except OSError as exc:
        return _broken(level, exc, client, presented), None
    if packet is None:
        return Outcome(level, "timeout", detail=f"no CONNACK within {timeout:g} s"), None
    wait = time.monotonic() - sent
    outcome = _connack(level, packet, link.seen)
    if outcome.accepted:
        with contextlib.suppress(OSError):
            await link.send(DISCONNECT_PACKET)
    return outcome, wait


async def _mqtt_attempt(ctx: DeviceContext, target: LoginTarget, tag: str, password: str,
                        on_source: Callable[[str], None]) -> LoginAttempt:
    level = target.level
    client = _tls_client(target.certificate) if target.tls else None
    presented = target.certificate is not None
    source: str | None = None
    wait: float | None = None
    begin = time.monotonic()
    try:
        async with ctx.connect(target.port, tls=client.context if client else None,
                               server_hostname=ctx.device.hostname) as (reader, writer):
            name = writer.get_extra_info("sockname")
            if isinstance(name, tuple):
                source = f"{name[0]}:{name[1]}"
                on_source(source)
            upgraded = None if target.ws_path is None else await upgrade(
                ctx, reader, writer, target.port, target.ws_path, level)
            if isinstance(upgraded, Outcome):
                outcome = upgraded
            else:
                link = _Link(ctx, reader, writer, level, upgraded)
                outcome, wait = await _mqtt_exchange(link, tag, password, client, presented)
    except ConnectionRefusedError:
        outcome = Outcome(level, "tcp-refused")
    except TimeoutError:
        outcome = Outcome(level, "timeout", detail="the connection did not complete within "
                          f"{ctx.timeout:g} s")
    except OSError as exc:
        outcome = _broken(level, exc, client, presented, handshake=True)
    return LoginAttempt(target, begin, time.monotonic() - begin, _mqtt_kind(outcome),
                        outcome.describe(), outcome.code, source, wait)


async def _http_attempt(ctx: DeviceContext, target: LoginTarget, tag: str,
                        password: str) -> LoginAttempt:
    auth: httpx.Auth = (httpx.DigestAuth(tag, password) if target.scheme == "digest"
                        else httpx.BasicAuth(tag, password))
    begin = time.monotonic()
    answer = await request(ctx, target.port, target.tls, target.path, auth)
    elapsed = time.monotonic() - begin
    status = answer.status
    if status is None:
        return LoginAttempt(target, begin, elapsed, "dropped", answer.error or "no answer")
    kind: Kind
    if status in _HTTP_DENIED:
        kind = "denied"
    elif status < 400:
        kind = "accepted"
    else:
        kind = "refused" if status in _HTTP_REFUSED else "undecided"
    return LoginAttempt(target, begin, elapsed, kind, f"HTTP {status}", status)


async def attempt(ctx: DeviceContext, target: LoginTarget, tag: str, password: str,
                  on_source: Callable[[str], None]) -> LoginAttempt:
    """One failed login on `target` with the tag as client id and user name."""
    if target.kind == "mqtt":
        return await _mqtt_attempt(ctx, target, tag, password, on_source)
    return await _http_attempt(ctx, target, tag, password)


def new_tag() -> tuple[str, str]:
    """A fresh (nonce tag, random password)."""
    return f"iotprobe-{secrets.token_hex(6)}", secrets.token_urlsafe(12)


# ---------------------------------------------------------------------------------------------
# Matching events
# ---------------------------------------------------------------------------------------------


def _source_pattern(source: str) -> re.Pattern[str]:
    host, _, port = source.rpartition(":")
    with contextlib.suppress(ValueError):
        host = str(ipaddress.ip_address(host.strip("[]")))
    return re.compile(r"(?<![\w.:])\[?" + re.escape(host) + r"\]?(?::|\s+port\s+|#)"
                      + re.escape(port) + r"(?!\d)", re.IGNORECASE)


def names_failure(text: str) -> bool:
    """Whether an event text says that a login failed (`FAILURE_RULE`)."""
    return _FAILURE.search(text) is not None


def _host(text: str) -> str | None:
    """An IP address in its canonical form (IPv4-mapped IPv6 as IPv4); None if not one."""
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def named_endpoints(text: str) -> set[tuple[str, str]]:
    """The (address, port) pairs an event text names ("10.0.0.5:4711", "10.0.0.5 port 4711",
    "[fe80::1]:4711", "fe80::1 port 4711"), the addresses canonical."""
    found = set()
    for match in _ENDPOINT.finditer(text[:MAX_SCANNED_CHARS]):
        host = _host(match.group("v4") or match.group("v6") or match.group("w6") or "")
        if host is not None:
            found.add((host, match.group("p4") or match.group("p6") or match.group("pw")))
    return found


def attempts_named(text: str) -> int:
    """How many distinct login attempts a text names: client endpoints plus nonces."""
    window = text[:MAX_SCANNED_CHARS]
    return len(named_endpoints(window)) + len({n.lower() for n in _NONCE.findall(window)})


@dataclass(frozen=True)
class Accepted:
    """An event that counts, with why: it named the attempt by its "nonce" or its "source"
    (address and port), and came from "the device", "a declared forwarder", "the MQTT sink"
    or "the command sink"."""

    event: Event
    named_by: Literal["nonce", "source"]
    origin: str


@dataclass(frozen=True)
class Rejected:
    """An event that named the attempt or a failure but cannot count, and why."""

    event: Event
    reason: str


class Box:
    """Events that arrive while the probe watches, sorted by whether they count (module
    docstring, and `FAILURE_RULE` for the wording)."""

    def __init__(self, tag: str, device: str = "", forwarders: tuple[Network, ...] = ()
                 ) -> None:
        self.tag = tag
        self.nonce = tag.rpartition("-")[2].lower()
        self.device = _host(device)
        self.forwarders = forwarders
        self.sources: list[re.Pattern[str]] = []
        self.own: set[tuple[str, str]] = set()
        self.decoys: set[tuple[str, str]] = set()
        self.by_nonce: list[Accepted] = []
        self.by_source: list[Accepted] = []
        self.named: list[Event] = []
        self.failures: list[Event] = []
        self.rejected: list[Rejected] = []
        self.seen = 0
        self.found = asyncio.Event()

    def add_source(self, source: str) -> None:
        self.sources.append(_source_pattern(source))
        host, _, port = source.rpartition(":")
        self.own.add((_host(host) or host, port))

    def names(self, text: str) -> bool:
        return self.nonce in text.lower() or any(p.search(text) for p in self.sources)

    @property
    def sprayed(self) -> bool:
        """Whether failures naming other ports of the probe's own address arrived: someone
        lists attempts the probe never made, so a source match proves nothing."""
        return len(self.decoys) >= SPRAY_DECOYS

    @property
    def matched(self) -> list[Accepted]:
        """The events that count, those naming the nonce first; source matches only while no
        spray was seen."""
        found = self.by_nonce + ([] if self.sprayed else self.by_source)
        return found[:MAX_KEPT]

    def origin(self, event: Event) -> str | None:
        """Who delivered the event, if it may count: syslog only from the device or a
        declared forwarder (by the sender's address); MQTT and command sinks are declared
        channels whose publisher the probe cannot see."""
        if event.sink == "mqtt":
            return "the MQTT sink"
        if event.sink == "command":
            return "the command sink"
        sender = _host(event.origin.rpartition(":")[0])
        if sender is None:
            return None
        if sender == self.device:
            return "the device"
        address = ipaddress.ip_address(sender)
        if any(address in network for network in self.forwarders):
            return "a declared forwarder"
        return None

    def _reject(self, event: Event, reason: str) -> None:
        if len(self.rejected) < MAX_KEPT:
            self.rejected.append(Rejected(event, reason))

    def offer(self, event: Event) -> None:
        self.seen += 1
        text = event.text
        by_nonce = self.nonce in text.lower()
        by_source = not by_nonce and any(p.search(text) for p in self.sources)
        failed = names_failure(text)
        if not (by_nonce or by_source or failed):
            return
        origin = self.origin(event)
        if origin is None:
            self._reject(event, f"sent by {event.origin}, which is neither the device nor a "
                                "declared forwarder (monitor.syslog.forwarders)")
            return
        count = attempts_named(text)
        if count > MAX_NAMED:
            self._reject(event, f"names {count} attempts: a spray, not a report")
            return
        if failed:
            self.decoys |= {e for e in named_endpoints(text)
                            if e not in self.own and e[0] in {h for h, _ in self.own}}
        if by_source and failed and event.sink == "mqtt":
            self._reject(event, "names only the attempt's source: on an MQTT topic anyone "
                                "allowed to publish could have written it, so only the nonce "
                                "counts there")
            return
        if (by_nonce or by_source) and failed:
            kept = self.by_nonce if by_nonce else self.by_source
            if len(kept) < MAX_KEPT:
                kept.append(Accepted(event, "nonce" if by_nonce else "source", origin))
            if by_nonce or not self.sprayed:
                self.found.set()
        elif (by_nonce or by_source) and len(self.named) < MAX_KEPT:
            self.named.append(event)
        elif failed and not (by_nonce or by_source) and len(self.failures) < MAX_KEPT:
            self.failures.append(event)


def _syslog_event(received: Received) -> Event:
    scheme = received.scheme.upper()
    fields = received.message.fields()
    if received.subject is not None:
        fields["client_certificate"] = received.subject
    return Event("syslog", f"syslog over {scheme} ({received.url})", received.scheme == "tls",
                 received.message.text, received.at, received.sender, fields)


def _mqtt_event(sink: MqttSink, publication: Publication) -> Event:
    text = f"{publication.topic} {publication.payload.decode('utf-8', 'replace')}"
    return Event("mqtt", sink.channel, sink.tls, text, publication.at, publication.topic,
                 {"topic": publication.topic, "retained": publication.retained})


def scrub(text: str, hide: tuple[str, ...]) -> str:
    for value in hide:
        text = text.replace(value, "***")
    return text


# ---------------------------------------------------------------------------------------------
# The canary
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SinkReport:
    sink: SinkName
    channel: str
    problem: str | None = None

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sink": self.sink, "channel": self.channel,
                               "watched": self.problem is None}
        if self.problem is not None:
            out["problem"] = self.problem
        return out


@dataclass(frozen=True, kw_only=True)
class CanaryRun:
    """What the canary did and what reached the sinks."""

    sinks: Sinks
    targets: tuple[LoginTarget, ...] = ()
    tag: str = ""
    window: float = 0.0
    reports: tuple[SinkReport, ...] = ()
    attempts: tuple[LoginAttempt, ...] = ()
    first_sent: float | None = None
    matched: tuple[Accepted, ...] = ()
    named: tuple[Event, ...] = ()
    failures: tuple[Event, ...] = ()
    rejected: tuple[Rejected, ...] = ()
    events_seen: int = 0
    waited: float = 0.0
    repeated_after: float | None = None
    """Seconds after the first attempt when the refused logins were made once more."""
    cut_short: bool = False
    commands: tuple[CommandRun, ...] = ()
    hide: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def usable(self) -> tuple[LoginTarget, ...]:
        return tuple(t for t in self.targets if not t.not_tried)

    @property
    def provoked(self) -> bool:
        return any(a.kind == "denied" for a in self.attempts)

    @property
    def watched(self) -> bool:
        return any(r.problem is None for r in self.reports)

    @property
    def problems(self) -> tuple[SinkReport, ...]:
        return tuple(r for r in self.reports if r.problem is not None)

    def event(self, item: Event | Accepted) -> dict[str, Any]:
        """An event as evidence; an accepted one says what named the attempt and who
        delivered it."""
        event = item.event if isinstance(item, Accepted) else item
        out: dict[str, Any] = {"sink": event.sink, "channel": event.channel,
                               "origin": event.origin,
                               "text": excerpt(scrub(event.text, self.hide).encode(),
                                               MAX_EVENT_CHARS)}
        if event.encrypted is not None:
            out["encrypted"] = event.encrypted
        if self.first_sent is not None:
            out["delay_seconds"] = round(max(0.0, event.at - self.first_sent), 3)
        if isinstance(item, Accepted):
            out.update(named_by=item.named_by, delivered_by=item.origin)
        out.update({k: v for k, v in event.fields.items() if k not in out})
        return out

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "nonce": self.tag, "event_timeout": self.window,
            "sinks": [r.evidence() for r in self.reports],
            "attempts": [{**a.target.evidence(), **a.evidence()} for a in self.attempts],
            "events_seen": self.events_seen, "waited_seconds": round(self.waited, 3),
        }
        skipped = [t.evidence() for t in self.targets if t.not_tried]
        if skipped:
            out["not_tried"] = skipped
        if self.matched:
            out["events"] = [self.event(e) for e in self.matched]
        if self.named:
            out["naming_without_failure"] = [self.event(e) for e in self.named]
        if self.failures:
            out["failures_not_naming_the_attempt"] = [self.event(e) for e in self.failures]
        if self.rejected:
            out["rejected"] = [{**self.event(r.event), "rejected_because": r.reason}
                               for r in self.rejected]
        if self.commands:
            out["command_runs"] = [r.evidence() for r in self.commands]
        if self.repeated_after is not None:
            out["repeated_after_seconds"] = round(self.repeated_after, 3)
        if self.cut_short:
            out["cut_short_by_budget"] = True
        return out


async def _pump(subscription: Subscription, sink: MqttSink, box: Box,
                problems: dict[str, str]) -> None:
    """Feed the MQTT sink's publications to the box until cancelled."""
    try:
        for _ in range(MAX_EVENTS):
            publication = await subscription.next(3600.0)
            if publication is not None:
                box.offer(_mqtt_event(sink, publication))
    except SinkUnavailable as exc:
        problems["mqtt"] = f"the subscription ended: {exc}"


async def _poll(ctx: DeviceContext, sink: CommandSink, box: Box, since: float, deadline: float,
                runs: list[CommandRun]) -> None:
    """Run the command sink every `interval` until the event is found or the window ends."""
    program = sink.argv[0]
    for _ in range(MAX_RUNS):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        bounded = CommandSink(sink.argv, min(sink.timeout, left), sink.interval)
        run = await run_command(bounded, command_values(box.tag, since, time.time(),
                                                        ctx.device, ctx.address))
        runs.append(run)
        text = run.output.decode("utf-8", "replace")
        for line in text.splitlines()[:MAX_COMMAND_LINES]:
            box.offer(Event("command", f"command ({program})", None, line, run.at,
                            program, {"exit_status": run.exit_status}))
        if box.found.is_set():
            return
        await asyncio.sleep(max(0.0, min(sink.interval, deadline - time.monotonic())))


async def _wait(box: Box, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(box.found.wait(), max(0.0, seconds))


async def _repeat(ctx: DeviceContext, box: Box, attempts: list[LoginAttempt], password: str,
                  first: float, deadline: float) -> float | None:
    """Step 5 of the canary (module docstring): wait half the window for a counted event; if
    none came and the window is still open, make each refused login once more. Returns when
    the second round began (seconds after `first`), None without one."""
    await _wait(box, min(first + (deadline - first) / 2, deadline) - time.monotonic())
    if box.found.is_set() or time.monotonic() >= deadline:
        return None
    again = time.monotonic()
    for denied in [a for a in attempts if a.kind == "denied"]:
        attempts.append(await attempt(ctx, denied.target, box.tag, password, box.add_source))
    return again - first


async def canary(ctx: DeviceContext, *, window: float, paths: tuple[str, ...]) -> CanaryRun:
    """Collector: the tagged failed logins on the login targets (`paths` for HTTP) and the
    events they caused within `window` seconds (module docstring)."""
    sinks = declared_sinks(ctx.device)
    if not sinks.for_events:
        return CanaryRun(sinks=sinks)
    targets = await ctx.observe(login_targets, paths=paths)
    if not any(not t.not_tried for t in targets):
        return CanaryRun(sinks=sinks, targets=targets, window=window)
    tag, password = new_tag()
    hide = (*hidden_values(ctx.device), password)
    box = Box(tag, ctx.address, sinks.forwarders)
    problems: dict[str, str] = {}
    channels: dict[SinkName, str] = {}
    tasks: list[asyncio.Task[None]] = []
    runs: list[CommandRun] = []
    attempts: list[LoginAttempt] = []
    since = time.time() - 1.0
    first: float | None = None
    repeated: float | None = None
    begin = time.monotonic()
    cut_short = False
    async with contextlib.AsyncExitStack() as stack:
        if sinks.syslog is not None:
            channels["syslog"] = f"syslog over {sinks.syslog.scheme.upper()} ({sinks.syslog.url})"
            try:
                await stack.enter_async_context(
                    listening(sinks.syslog, lambda r: box.offer(_syslog_event(r))))
            except (OSError, ssl.SSLError, ValueError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                problems["syslog"] = f"cannot listen on {sinks.syslog.url}: {reason}"
        mqtt = sinks.mqtt
        if mqtt is not None and mqtt.topic is not None:
            channels["mqtt"] = mqtt.channel
            try:
                subscription = await stack.enter_async_context(
                    subscribed(ctx, mqtt, [mqtt.topic]))
                tasks.append(asyncio.create_task(_pump(subscription, mqtt, box, problems)))
            except SinkUnavailable as exc:
                problems["mqtt"] = str(exc)
        if sinks.command is not None:
            channels["command"] = f"command ({sinks.command.argv[0]})"
        try:
            if len(problems) < len(channels):
                for target in targets:
                    if not target.not_tried:
                        attempts.append(await attempt(ctx, target, tag, password,
                                                      box.add_source))
                denied = [a for a in attempts if a.kind == "denied"]
                if denied:
                    first = denied[0].begin
                    box_deadline = first + window
                    budget_end = time.monotonic() + ctx.remaining() - BUDGET_MARGIN
                    cut_short = budget_end < box_deadline
                    deadline = min(box_deadline, budget_end)
                    if sinks.command is not None:
                        tasks.append(asyncio.create_task(
                            _poll(ctx, sinks.command, box, since, deadline, runs)))
                    repeated = await _repeat(ctx, box, attempts, password, first, deadline)
                    await _wait(box, deadline - time.monotonic())
                    if box.found.is_set():
                        await asyncio.sleep(max(0.0, min(LINGER, deadline - time.monotonic())))
                        cut_short = False
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    reports = tuple(SinkReport(name, channel, problems.get(name))
                    for name, channel in channels.items())
    return CanaryRun(sinks=sinks, targets=targets, tag=tag, window=window, reports=reports,
                     attempts=tuple(attempts), first_sent=first, matched=tuple(box.matched),
                     named=tuple(box.named), failures=tuple(box.failures),
                     rejected=tuple(box.rejected), events_seen=box.seen,
                     waited=time.monotonic() - (first if first is not None else begin),
                     repeated_after=repeated, cut_short=cut_short, commands=tuple(runs),
                     hide=hide)


# ---------------------------------------------------------------------------------------------
# Brute-force throttling (intrusive)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Burst:
    """The failed logins sent to one endpoint, in order."""

    target: LoginTarget
    attempts: tuple[LoginAttempt, ...] = ()
    planned: int = 0
    max_rate: float = 0.0

    def timings(self) -> list[dict[str, Any]]:
        origin = self.attempts[0].begin if self.attempts else None
        return [{"n": n, **a.evidence(origin)} for n, a in enumerate(self.attempts, 1)]


def _stops(attempts: list[LoginAttempt]) -> bool:
    """Whether the burst has shown enough: an accepted login, a first attempt that got no
    ordinary refusal, or two attempts in a row that were not ordinary refusals."""
    last = attempts[-1]
    if last.kind == "accepted" or (len(attempts) == 1 and last.kind != "denied"):
        return True
    baseline = attempts[0].code
    tail = attempts[-2:]
    return len(tail) == 2 and all(a.kind != "denied" or a.code != baseline for a in tail)


async def _burst(ctx: DeviceContext, target: LoginTarget, count: int, rate: float) -> Burst:
    tag, password = new_tag()
    attempts: list[LoginAttempt] = []
    spacing = 1.0 / rate
    for _ in range(count):
        if attempts:
            await asyncio.sleep(max(0.0, attempts[-1].begin + spacing - time.monotonic()))
        attempts.append(await attempt(ctx, target, tag, password, lambda _source: None))
        if _stops(attempts):
            break
    return Burst(target, tuple(attempts), count, rate)


async def throttling(ctx: DeviceContext, *, attempts: int, max_rate: float,
                     paths: tuple[str, ...]) -> tuple[Burst, ...]:
    """Collector (intrusive): a burst of at most `attempts` tagged failed logins, `max_rate`
    per second, on every login endpoint (`paths` for HTTP), one endpoint after the other."""
    bursts = []
    for target in await ctx.observe(login_targets, paths=paths):
        if target.not_tried:
            bursts.append(Burst(target))
        else:
            bursts.append(await _burst(ctx, target, attempts, max_rate))
    return tuple(bursts)


@dataclass(frozen=True)
class Slowdown:
    """How the answers of a burst changed from its first attempts to its last: `measure` is
    "answer" (request sent to answer: MQTT CONNECT to CONNACK) or "attempt" (connection start
    to answer, the TCP and TLS handshakes included)."""

    measure: Literal["answer", "attempt"]
    baseline: float
    final: float
    window: int

    @property
    def factor(self) -> float:
        return self.final / self.baseline if self.baseline > 0 else float("inf")

    def evidence(self) -> dict[str, Any]:
        return {"measure": self.measure, "baseline_median_ms": round(self.baseline * 1000, 1),
                "final_median_ms": round(self.final * 1000, 1),
                "delay_factor": round(min(self.factor, 1e6), 2), "window": self.window}


def slowdowns(attempts: tuple[LoginAttempt, ...]) -> list[Slowdown]:
    """Per measure, the median delay of the first and of the last `MEDIAN_WINDOW` ordinary
    refusals (fewer when the burst is short); nothing with fewer than two. The answer alone
    shows a tarpit that handshake jitter would hide; the whole attempt shows one in the
    handshakes."""
    denied = [a for a in attempts if a.kind == "denied"]
    window = min(MEDIAN_WINDOW, len(denied) // 2)
    if window < 1:
        return []
    out = []
    waits = [a.wait for a in denied if a.wait is not None]
    if len(waits) == len(denied):
        out.append(Slowdown("answer", statistics.median(waits[:window]),
                            statistics.median(waits[-window:]), window))
    totals = [a.elapsed for a in denied]
    out.append(Slowdown("attempt", statistics.median(totals[:window]),
                        statistics.median(totals[-window:]), window))
    return out


# ---------------------------------------------------------------------------------------------
# Heartbeat
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeartbeatWatch:
    sink: MqttSink | None
    waited: float = 0.0
    wanted: float = 0.0
    arrived: Publication | None = None
    delay: float | None = None
    retained_ignored: int = 0
    problem: str | None = None

    @property
    def cut_short(self) -> bool:
        return self.waited + 1e-3 < self.wanted

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.sink is not None:
            out.update(broker=self.sink.channel, topic=self.sink.heartbeat_topic,
                       heartbeat_interval=self.sink.heartbeat_interval,
                       waited_seconds=round(self.waited, 3))
        if self.arrived is not None and self.delay is not None:
            out.update(received_topic=self.arrived.topic,
                       received_after_seconds=round(self.delay, 3),
                       payload=excerpt(self.arrived.payload, 200))
        if self.retained_ignored:
            out["retained_ignored"] = self.retained_ignored
        if self.problem is not None:
            out["problem"] = self.problem
        return out


async def heartbeat(ctx: DeviceContext, *, grace: float) -> HeartbeatWatch:
    """Collector: wait up to one declared heartbeat interval (plus `grace` seconds) for a
    publication on the heartbeat topic, within the device budget."""
    sink = declared_sinks(ctx.device).mqtt
    if sink is None or sink.heartbeat_topic is None or sink.heartbeat_interval is None:
        return HeartbeatWatch(None)
    wanted = sink.heartbeat_interval + grace
    allowed = max(0.0, ctx.remaining() - BUDGET_MARGIN - ctx.timeout)
    wait = min(wanted, allowed)
    ignored = 0
    start = time.monotonic()
    try:
        async with subscribed(ctx, sink, [sink.heartbeat_topic]) as subscription:
            start = time.monotonic()
            for _ in range(MAX_RETAINED):
                publication = await subscription.next(start + wait - time.monotonic())
                if publication is None:
                    break
                if publication.retained:
                    ignored += 1
                    continue
                return HeartbeatWatch(sink, publication.at - start, wanted, publication,
                                      publication.at - start, ignored)
    except SinkUnavailable as exc:
        return HeartbeatWatch(sink, time.monotonic() - start, wanted, retained_ignored=ignored,
                              problem=str(exc))
    return HeartbeatWatch(sink, time.monotonic() - start, wanted, retained_ignored=ignored)
