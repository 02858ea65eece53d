"""The 6.5 monitoring checks against real peers on 127.67.x.y: nginx sending its access log to
syslog (UDP) and to a file, rsyslog forwarding over TLS (RFC 5425), mosquitto 2.0 logging to
`$SYS/broker/log/#`, `logger` (bsdutils) for RFC 5424 and 3164 over UDP and TCP; plus the
parsers, the sink declarations, the matching rules and the scope of `connect_declared`."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemons import (
    RESERVED_PORT,
    Daemon,
    Listener,
    certificate,
    monitored_context,
    mosquitto_logging,
    nginx_site,
    rsyslog_tls_forwarder,
    silent,
)

from probe.api import plan_view, run_check
from probe.model import Device, Status
from probe.monitoring.checks import provoked
from probe.monitoring.collectors import Box, CanaryRun
from probe.monitoring.sinks import (
    CommandSink,
    Event,
    command_values,
    declared_sinks,
    run_command,
)
from probe.monitoring.syslog import ListenSpec, Received, listening, parse_listen, parse_syslog
from probe.observe.base import ObservationError
from probe.secrets import Secret

WEB_ADDRESS = "127.67.2.1"
RELAY_ADDRESS = "127.67.2.2"
SINK_ADDRESS = "127.67.2.9"
BROKER_ADDRESS = "127.67.3.1"
LOGGER_ADDRESS = "127.67.1.1"
MONITOR_PASSWORD = "mon-Hx82-pw"
AUTH = "monitor.auth-failure-event"
TRANSPORT = "monitor.event-transport"
THROTTLING = "monitor.bruteforce-throttling"
HEARTBEAT = "monitor.heartbeat"
FAST_EVENTS = {AUTH: {"event_timeout": 10}}
SHORT_EVENTS = {AUTH: {"event_timeout": 2}}
LOOPBACK_SENDERS = ["127.0.0.1"]
"""nginx and rsyslog cannot choose their source address: on loopback the kernel sends from
127.0.0.1, so the tests declare it as the relay it stands for (monitor.syslog.forwarders)."""
BURST = {THROTTLING: {"attempts": 10, "max_rate": 20.0}}


def web(tmp: Path, port: int, *, syslog: str | None = None, log_file: Path | None = None,
        limit: bool = False) -> Daemon:
    """nginx on WEB_ADDRESS:`port`: / is public, /admin wants Basic credentials; the access
    log (combined: it names the user of a refused login) goes to `syslog` and/or `log_file`;
    `limit` rate-limits /admin (1 request/s, burst 3, then 429)."""
    site = tmp / f"site-{port}"
    (site / "admin").mkdir(parents=True, exist_ok=True)
    (site / "admin" / "index.html").write_text("settings\n")
    users = tmp / f"htpasswd-{port}"
    users.write_text("admin:{PLAIN}web-Kq2-secret\n")
    logs = []
    if syslog is not None:
        logs.append(f"access_log syslog:server={syslog},tag=nginx combined;")
    if log_file is not None:
        logs.append(f"access_log {log_file} combined;")
    zone = "limit_req_zone $binary_remote_addr zone=login:1m rate=1r/s;" if limit else ""
    throttle = "limit_req zone=login burst=3 nodelay; limit_req_status 429;" if limit else ""
    http = (f"{zone}\nserver {{ listen {WEB_ADDRESS}:{port}; {' '.join(logs)}\n"
            '  location / { return 200 "device\\n"; }\n'
            f"  location /admin {{ root {site}; {throttle} auth_basic \"device\"; "
            f"auth_basic_user_file {users}; }}\n}}")
    return nginx_site(tmp, WEB_ADDRESS, [port], http, name=f"web-{port}")


def statuses(findings: list[Any]) -> list[Status]:
    return [f.status for f in findings]


# ---------------------------------------------------------------------------------------------
# Syslog: parsers and the listener, fed by logger
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("flags", "scheme", "format"), [
    (["-d", "--rfc5424"], "udp", "rfc5424"),
    (["-d", "--rfc3164"], "udp", "rfc3164"),
    (["-T", "--rfc5424"], "tcp", "rfc5424"),
    (["-T", "--rfc5424", "--octet-count"], "tcp", "rfc5424"),
    (["-T", "--rfc3164"], "tcp", "rfc3164"),
])
async def test_logger_messages_are_received_and_parsed(flags: list[str], scheme: str,
                                                       format: str) -> None:
    port = 15514 + len(flags) + (10 if scheme == "tcp" else 0)
    spec = ListenSpec("udp" if scheme == "udp" else "tcp", LOGGER_ADDRESS, port)
    got: list[Received] = []
    extra = (["--msgid", "AUTHFAIL", "--sd-id", "auth@32473", "--sd-param", 'user="x\\]y"']
             if format == "rfc5424" else [])
    async with listening(spec, got.append):
        logger = await asyncio.create_subprocess_exec(
            "logger", "-n", LOGGER_ADDRESS, "-P", str(port), *flags, *extra, "-t", "authd",
            "-p", "auth.warning", "login failed for iotprobe-0123456789ab")
        assert await asyncio.wait_for(logger.wait(), 10) == 0
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.05)
    (received,) = got
    message = received.message
    assert received.scheme == spec.scheme and received.sender.startswith("127.")
    assert message.format == format
    assert (message.facility, message.severity, message.app_name) == (4, 4, "authd")
    assert message.message.strip() == "login failed for iotprobe-0123456789ab"
    if format == "rfc5424":
        assert message.msgid == "AUTHFAIL"
        assert message.structured_data is not None
        assert message.structured_data.endswith('[auth@32473 user="x\\]y"]')
    else:
        assert message.timestamp is not None and message.hostname is not None


def test_parser_edge_cases() -> None:
    bom = parse_syslog(b'<165>1 2026-11-28T12:00:00.003Z h app 1 ID [a@1 k="\\"]"][b@2] '
                       b"\xef\xbb\xbftext")
    assert (bom.format, bom.structured_data, bom.message) == (
        "rfc5424", '[a@1 k="\\"]"][b@2]', "text")
    nil = parse_syslog(b"<13>1 - - - - - -")
    assert nil.format == "rfc5424" and nil.hostname is None and nil.message == ""
    bare = parse_syslog(b"<34>sshd[22]: Failed password for root from 127.0.0.1 port 5 ssh2\n")
    assert (bare.format, bare.app_name, bare.procid, bare.hostname) == (
        "rfc3164", "sshd", "22", None)
    assert parse_syslog(b"<999>1 x").format == "unknown"
    assert parse_syslog(b"\xff\xfe no header").format == "unknown"
    broken = parse_syslog(b'<13>1 2026-11-28T12:00:00Z h a p m [unterminated k="v" text')
    assert broken.format == "rfc3164"


@pytest.mark.parametrize(("value", "problem"), [
    ("udp://127.0.0.1", "port"), ("http://127.0.0.1:514", "scheme"),
    ("udp://collector.example:514", "IP address"), (f"tcp://127.0.0.1:{RESERVED_PORT}", "2024"),
    ("udp://127.0.0.1:514/path", "only"), (514, "string"),
])
def test_listen_urls_are_checked(value: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_listen(value)


async def test_a_listener_is_shared_and_closed_by_its_last_user() -> None:
    spec = ListenSpec("udp", LOGGER_ADDRESS, 15540)
    first: list[Received] = []
    second: list[Received] = []
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        async with listening(spec, first.append):
            async with listening(spec, second.append):
                sender.sendto(b"<13>hello both", (LOGGER_ADDRESS, 15540))
                for _ in range(100):
                    if first and second:
                        break
                    await asyncio.sleep(0.02)
            sender.sendto(b"<13>hello first", (LOGGER_ADDRESS, 15540))
            for _ in range(100):
                if len(first) == 2:
                    break
                await asyncio.sleep(0.02)
    finally:
        sender.close()
    assert [r.message.message for r in first] == ["hello both", "hello first"]
    assert [r.message.message for r in second] == ["hello both"]
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind((LOGGER_ADDRESS, 15540))  # released
    finally:
        probe.close()


async def test_a_stream_sender_that_breaks_the_framing_is_dropped() -> None:
    spec = ListenSpec("tcp", LOGGER_ADDRESS, 15541)
    got: list[Received] = []
    async with listening(spec, got.append):
        reader, writer = await asyncio.open_connection(LOGGER_ADDRESS, 15541)
        writer.write(b"13 <13>hello one<13>hello two\n99999999 ")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(10), 5) == b""  # closed by the listener
        writer.close()
    assert [r.message.message for r in got] == ["hello one", "hello two"]


# ---------------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------------


def _event(text: str) -> Event:
    return Event("syslog", "syslog over UDP", False, text, 0.0, "127.0.0.1:1")


def test_events_count_only_when_they_name_the_attempt_and_its_failure() -> None:
    box = Box("iotprobe-0123456789ab", "127.0.0.1")
    box.add_source("127.0.0.1:44392")
    box.offer(_event("1795914366: New connection from 127.0.0.1:44392 on port 1883."))
    box.offer(_event("1795914366: Client <unknown> disconnected, not authorised."))
    box.offer(_event("New connection from 127.0.0.1:443920 on port 1883."))
    assert not box.matched and len(box.named) == 1 and len(box.failures) == 1
    box.offer(_event('127.0.0.1 - IOTPROBE-0123456789AB [x] "GET /admin HTTP/1.1" 401 0 "-"'))
    box.offer(_event("Failed password for invalid user x from 127.0.0.1 port 44392 ssh2"))
    box.offer(_event('{"user": "iotprobe-0123456789ab", "status": 403}'))
    assert len(box.matched) == 3 and box.found.is_set()
    assert box.seen == 6


def test_an_mqtt_topic_counts_only_the_nonce_and_syslog_only_trusted_senders() -> None:
    box = Box("iotprobe-0123456789ab", "127.67.5.1", (ipaddress.ip_network("127.67.5.8/30"),))
    box.add_source("127.0.0.1:44392")
    failed = "Failed password for x from 127.0.0.1 port 44392 ssh2"
    box.offer(Event("mqtt", "MQTT", False, failed, 0.0, "security/auth"))
    box.offer(_event(failed))  # from 127.0.0.1:1: neither the device nor a forwarder
    box.offer(Event("syslog", "syslog over UDP", False, failed, 0.0, "[::ffff:127.67.5.7]:9"))
    assert not box.matched and not box.found.is_set() and len(box.rejected) == 3
    box.offer(Event("mqtt", "MQTT", False, "login failed: iotprobe-0123456789ab", 0.0, "t"))
    box.offer(Event("syslog", "syslog over UDP", False, failed, 0.0, "[::ffff:127.67.5.9]:9"))
    assert [(a.named_by, a.origin) for a in box.matched] == [
        ("nonce", "the MQTT sink"), ("source", "a declared forwarder")]


def test_event_texts_are_scrubbed_of_secrets() -> None:
    run = CanaryRun(sinks=declared_sinks(Device("d", "127.0.0.1")), tag="iotprobe-0123456789ab",
                    hide=("s3cret-value",))
    shown = run.event(_event("login failed: iotprobe-0123456789ab with s3cret-value"))
    assert "s3cret-value" not in shown["text"] and "***" in shown["text"]


# ---------------------------------------------------------------------------------------------
# Declarations and scope
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("monitor", "field"), [
    ({"splunk": {"url": "x"}}, "monitor.splunk"),
    ({"mqtt": {"address": "broker.example", "topic": "t"}}, "monitor.mqtt.address"),
    ({"mqtt": {"address": "127.0.0.1", "tls": "yes"}}, "monitor.mqtt.tls"),
    ({"mqtt": {"address": "127.0.0.1", "heartbeat_topic": "hb"}}, "heartbeat_interval"),
    ({"mqtt": {"address": "127.0.0.1", "password": "plain"}}, "monitor.mqtt.password"),
    ({"mqtt": {"address": "127.0.0.1", "adress": "x"}}, "monitor.mqtt.adress"),
    ({"syslog": {"listen": "tls://127.0.0.1:6514"}}, "cert_file"),
    ({"command": {"run": ""}}, "monitor.command.run"),
    ({"syslog": {"listen": "udp://127.0.0.1:5514", "forwarders": ["relay.example"]}},
     "monitor.syslog.forwarders"),
    ({"syslog": {"listen": "udp://127.0.0.1:5514", "forwarders": "127.0.0.1"}},
     "monitor.syslog.forwarders"),
    ({"command": {"run": ["x"], "timeout": -1}}, "monitor.command.timeout"),
])
def test_malformed_sinks_name_the_file_and_field(monitor: dict[str, Any], field: str) -> None:
    device = Device("cam-1", "127.0.0.1", monitor=monitor, source="fleet.yaml:12")
    with pytest.raises(ObservationError) as caught:
        declared_sinks(device)
    assert caught.value.reason == "inventory"
    assert "fleet.yaml:12" in caught.value.message and field in caught.value.message


async def test_no_sink_means_skipped_without_traffic() -> None:
    with monitored_context("127.67.9.9", (8080,), {}) as ctx:
        for check_id in (AUTH, TRANSPORT, HEARTBEAT):
            (finding,) = await run_check(check_id, ctx.device, context=ctx)
            assert finding.status is Status.SKIPPED, check_id
        assert ctx.connections == 0 and ctx.datagrams == 0


async def test_connect_declared_reaches_only_the_declared_sink() -> None:
    monitor = {"mqtt": {"address": "127.67.4.2", "port": 18832, "topic": "t"}}
    with monitored_context("127.67.4.1", (8080,), monitor) as ctx:
        async with Listener("127.67.4.2", 18832, silent) as sink:
            async with ctx.connect_declared("127.67.4.2", 18832):
                pass
            assert sink.accepted == 1 and ctx.connections == 1
        for address, port in (("127.67.4.3", 18832), ("127.67.4.2", RESERVED_PORT),
                              ("localhost", 18832)):
            with pytest.raises(ValueError):
                async with ctx.connect_declared(address, port):
                    pass
        assert ctx.connections == 1


async def test_the_command_gets_values_as_arguments_and_environment_never_a_shell(
        tmp_path: Path) -> None:
    device = Device("cam; rm -rf /", "127.0.0.1")
    values = command_values("iotprobe-0123456789ab", 1.0e9, 1.0e9 + 30, device, "127.0.0.1")
    sink = CommandSink(("printf", "%s|%s|%s|$(id)\\n", "{nonce}", "{device}", "{since}"))
    run = await run_command(sink, values)
    assert run.exit_status == 0
    assert run.output == b"iotprobe-0123456789ab|cam; rm -rf /|2001-09-09T01:46:40Z|$(id)\n"
    env = await run_command(CommandSink(("env",)), values)
    assert b"IOTPROBE_NONCE=iotprobe-0123456789ab" in env.output
    assert b"IOTPROBE_UNTIL_EPOCH=1000000031" in env.output
    slow = await run_command(CommandSink(("sleep", "30"), timeout=0.3), values)
    assert slow.timed_out and slow.exit_status is None
    missing = await run_command(CommandSink((str(tmp_path / "nonesuch"),)), values)
    assert missing.error is not None and "cannot run" in missing.error


# ---------------------------------------------------------------------------------------------
# nginx: access log to syslog over UDP, to rsyslog and over TLS, to a file (command sink)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def sink_certificate(tmp_path: Path) -> Any:
    return certificate(tmp_path, "sink")


async def test_nginx_reports_over_udp_syslog_so_transport_fails(tmp_path: Path) -> None:
    monitor = {"syslog": {"listen": f"udp://{SINK_ADDRESS}:15600",
                          "forwarders": LOOPBACK_SENDERS}}
    with web(tmp_path, 8080, syslog=f"{SINK_ADDRESS}:15600"), \
            monitored_context(WEB_ADDRESS, (8080,), monitor) as ctx:
        (event,) = await run_check(AUTH, ctx.device, context=ctx, plan=FAST_EVENTS)
        (transport,) = await run_check(TRANSPORT, ctx.device, context=ctx, plan=FAST_EVENTS)
    assert event.status is Status.PASS, event.summary
    evidence = event.evidence
    nonce = evidence["nonce"]
    # The probe's own requests before the sink listens (identification, the HTTP paths, the
    # MQTT-over-WebSockets upgrades) make nginx log to a port without listener; the ICMP error
    # of the last one fails nginx's next send, which may be the login's line: then the login
    # is made again (the check's step 5), so there may be two attempts, both this one.
    assert {(a["protocol"], a["path"], a["answer"]) for a in evidence["attempts"]} == {
        ("http", "/admin", "HTTP 401")}
    text = evidence["events"][0]["text"]
    assert nonce in text and '"GET /admin HTTP/1.1" 401' in text
    assert evidence["events"][0]["app_name"] == "nginx"
    assert transport.status is Status.FAIL and "UDP" in transport.summary


async def test_rsyslog_forwards_over_tls_so_transport_passes(tmp_path: Path,
                                                             sink_certificate: Any) -> None:
    monitor = {"syslog": {"listen": f"tls://{SINK_ADDRESS}:16514",
                          "cert_file": str(sink_certificate.cert),
                          "key_file": str(sink_certificate.key),
                          "forwarders": LOOPBACK_SENDERS}}
    with rsyslog_tls_forwarder(tmp_path, RELAY_ADDRESS, 15515, (SINK_ADDRESS, 16514),
                               sink_certificate.cert), \
            web(tmp_path, 8080, syslog=f"{RELAY_ADDRESS}:15515"), \
            monitored_context(WEB_ADDRESS, (8080,), monitor) as ctx:
        (event,) = await run_check(AUTH, ctx.device, context=ctx, plan=FAST_EVENTS)
        (transport,) = await run_check(TRANSPORT, ctx.device, context=ctx, plan=FAST_EVENTS)
    assert event.status is Status.PASS, event.summary
    shown = event.evidence["events"][0]
    assert shown["encrypted"] is True and shown["format"] == "rfc5424"
    assert event.evidence["nonce"] in shown["text"]
    assert transport.status is Status.PASS, transport.summary


async def test_a_command_sink_searches_the_access_log(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    found = {"command": {"run": ["grep", "-F", "{nonce}", str(log)], "interval": 0.2}}
    nothing = {"command": {"run": ["grep", "-F", "{nonce}", "/dev/null"], "interval": 0.5}}
    with web(tmp_path, 8080, log_file=log):
        with monitored_context(WEB_ADDRESS, (8080,), found) as ctx:
            (event,) = await run_check(AUTH, ctx.device, context=ctx, plan=FAST_EVENTS)
            (transport,) = await run_check(TRANSPORT, ctx.device, context=ctx, plan=FAST_EVENTS)
        with monitored_context(WEB_ADDRESS, (8080,), nothing) as ctx:
            (missing,) = await run_check(AUTH, ctx.device, context=ctx, plan=SHORT_EVENTS)
    assert event.status is Status.PASS, event.summary
    assert event.evidence["events"][0]["sink"] == "command"
    assert event.evidence["command_runs"][-1]["exit_status"] == 0
    assert transport.status is Status.SKIPPED and "command" in transport.summary
    assert missing.status is Status.FAIL, missing.summary
    runs = missing.evidence["command_runs"]
    assert runs and all(r["exit_status"] == 1 for r in runs)


async def test_throttling_nginx_with_and_without_limit_req(tmp_path: Path) -> None:
    with web(tmp_path, 8080), \
            monitored_context(WEB_ADDRESS, (8080,), {}) as ctx:
        (plain,) = await run_check(THROTTLING, ctx.device, context=ctx, plan=BURST)
    with web(tmp_path, 8081, limit=True), \
            monitored_context(WEB_ADDRESS, (8081,), {}) as ctx:
        (limited,) = await run_check(THROTTLING, ctx.device, context=ctx, plan=BURST)
    assert plain.status is Status.FAIL, plain.summary
    assert len(plain.evidence["attempts"]) == 10
    assert {a["answer"] for a in plain.evidence["attempts"]} == {"HTTP 401"}
    assert limited.status is Status.PASS, limited.summary
    assert "HTTP 429" in limited.summary
    assert len(limited.evidence["attempts"]) <= 10


# ---------------------------------------------------------------------------------------------
# mosquitto: log_dest topic names neither client nor user of a refused CONNECT
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Daemon]:
    with mosquitto_logging(tmp_path, BROKER_ADDRESS, 1883, {"monitor": MONITOR_PASSWORD},
                           sys_interval=1) as daemon:
        yield daemon


def broker_sink(**extra: Any) -> dict[str, dict[str, Any]]:
    return {"mqtt": {"address": BROKER_ADDRESS, "port": 1883, "username": "monitor",
                     "password": Secret(MONITOR_PASSWORD, "env:TEST_MONITOR"), **extra}}


async def test_mosquitto_log_topic_does_not_name_the_failed_login(broker: Daemon) -> None:
    with monitored_context(BROKER_ADDRESS, (1883,), broker_sink(topic="$SYS/broker/log/#")
                           ) as ctx:
        (event,) = await run_check(AUTH, ctx.device, context=ctx, plan=SHORT_EVENTS)
        (transport,) = await run_check(TRANSPORT, ctx.device, context=ctx, plan=SHORT_EVENTS)
    assert event.status is Status.FAIL, event.summary
    evidence = event.evidence
    attempt, again = evidence["attempts"]  # nothing counted by half the window: once more
    assert attempt["answer"] == again["answer"] == "CONNACK 5, not authorized"
    assert evidence["repeated_after_seconds"] > 0
    named = [e["text"] for e in evidence["naming_without_failure"]]
    assert any(f"New connection from {attempt['source']}" in t for t in named)
    failures = [e["text"] for e in evidence["failures_not_naming_the_attempt"]]
    assert any("Client <unknown> disconnected, not authorised." in t for t in failures)
    assert transport.status is Status.SKIPPED
    assert MONITOR_PASSWORD not in str(evidence)


async def test_a_refused_monitor_login_is_an_error_and_provokes_nothing(broker: Daemon) -> None:
    sink = broker_sink(topic="$SYS/broker/log/#")
    sink["mqtt"]["password"] = Secret("wrong-password", "env:TEST_MONITOR")
    with monitored_context(BROKER_ADDRESS, (1883,), sink) as ctx:
        (event,) = await run_check(AUTH, ctx.device, context=ctx, plan=SHORT_EVENTS)
        shared = provoked(plan_view(SHORT_EVENTS))
        run: CanaryRun = await ctx.observe(shared.collector, **shared.kwargs)
    assert event.status is Status.ERROR and event.evidence["reason"] == "sink"
    assert "refused the monitor login" in event.summary
    assert run.attempts == ()


async def test_mosquitto_heartbeat_on_sys_uptime(broker: Daemon) -> None:
    with monitored_context(BROKER_ADDRESS, (1883,), broker_sink(
            heartbeat_topic="$SYS/broker/uptime", heartbeat_interval="2s")) as ctx:
        (alive,) = await run_check(HEARTBEAT, ctx.device, context=ctx, grace_seconds=1.0)
    with monitored_context(BROKER_ADDRESS, (1883,), broker_sink(
            heartbeat_topic="fleet/heartbeat/nobody", heartbeat_interval=1)) as ctx:
        (quiet,) = await run_check(HEARTBEAT, ctx.device, context=ctx, grace_seconds=0.5)
    assert alive.status is Status.PASS, alive.summary
    assert alive.evidence["retained_ignored"] == 1
    assert quiet.status is Status.FAIL, quiet.summary
    assert quiet.evidence["topic"] == "fleet/heartbeat/nobody"


async def test_mosquitto_does_not_throttle(broker: Daemon) -> None:
    with monitored_context(BROKER_ADDRESS, (1883,), {}) as ctx:
        (finding,) = await run_check(THROTTLING, ctx.device, context=ctx, plan=BURST)
    assert finding.status is Status.FAIL, finding.summary
    attempts = finding.evidence["attempts"]
    assert len(attempts) == 10 and {a["code"] for a in attempts} == {5}


async def test_a_busy_syslog_port_is_a_sink_error(tmp_path: Path) -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind((SINK_ADDRESS, 15601))
    try:
        with web(tmp_path, 8080), monitored_context(
                WEB_ADDRESS, (8080,), {"syslog": {"listen": f"udp://{SINK_ADDRESS}:15601"}}
                ) as ctx:
            (event,) = await run_check(AUTH, ctx.device, context=ctx, plan=SHORT_EVENTS)
    finally:
        holder.close()
    assert event.status is Status.ERROR and event.evidence["reason"] == "sink"
    assert "cannot listen" in event.summary

