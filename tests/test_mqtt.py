"""The MQTT checks against real mosquitto 2.0 brokers on 127.81.x.y.

Every broker is a mosquitto child process with its own configuration (anonymous allowed or
refused, password file, ACL file, dynamic security plugin, TLS with a test CA, TLS requiring
client certificates, a default admin/admin account). Behaviours no mosquitto shows (silence,
a 3.1.1-only peer that ignores MQTT 5, a peer that answers MQTT 5 with garbage, a front that
admits only MQTT 5) come from listeners on the test's own loop; the MQTT-5-only front forwards
to a real mosquitto.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from daemons import (
    Daemon,
    Handler,
    Listener,
    monitored_context,
    reply,
    silent,
    start,
)
from interop import brokers_mqtt

from probe.api import device_context, run_check
from probe.checks.catalogue import catalogue
from probe.context import DeviceContext, ScanOptions
from probe.lab import pki
from probe.lab.servers_mqtt import issue_client
from probe.model import Device, Finding, Status
from probe.observe.discovery import services
from probe.observe.monitor import login_targets
from probe.observe.mqtt import (
    ClientCertificate,
    Endpoint,
    Outcome,
    anonymous_access,
    endpoints,
    login,
)
from probe.observe.mqtt_codec import (
    ANONYMOUS,
    CONNACK,
    PUBACK,
    SUBACK,
    Identity,
    MalformedPacket,
    connack_level,
    connect_packet,
    frame,
    maximum_qos,
    meaning,
    publish_packet,
)
from probe.secrets import Secret

DYNSEC = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
PROBE_PASSWORD = "pr0be-Zq8-secret-Xv3"
CANARY_PASSWORD = "can4ry-Wm5-secret-Lk9"
FAST = {"pace_seconds": 0.0, "window_seconds": 0.5}
MQTT_CHECKS = ("mqtt.cleartext-listener", "mqtt.anonymous-access", "mqtt.default-credentials",
               "mqtt.topic-authorization", "mqtt.client-certificate")


# ---------------------------------------------------------------------------------------------
# Brokers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


def make_tls(tmp: Path, address: str) -> Tls:
    """A test CA, a server certificate for `address` and a client certificate, all issued
    here with `cryptography` (through the lab's PKI helpers)."""
    ca = pki.new_ca()
    cert, key = pki.issue(ca, address, "broker")
    client_cert, client_key = issue_client(ca, "probe-client")
    paths = Tls(tmp / "ca.pem", tmp / "broker.pem", tmp / "broker.key", tmp / "client.pem",
                tmp / "client.key")
    for path, data in ((paths.ca, ca.cert_pem), (paths.cert, cert), (paths.key, key),
                       (paths.client_cert, client_cert), (paths.client_key, client_key)):
        path.write_bytes(data)
    return paths


def passwords(tmp: Path, name: str, accounts: dict[str, str]) -> Path:
    path = tmp / f"{name}.passwd"
    for index, (user, password) in enumerate(accounts.items()):
        create = ["-c"] if index == 0 else []
        subprocess.run(["mosquitto_passwd", *create, "-b", str(path), user, password],
                       check=True, capture_output=True, timeout=30)
    return path


def mosquitto(tmp: Path, name: str, address: str, listeners: dict[int, list[str]]) -> Daemon:
    """mosquitto with per-listener settings: `listeners` maps a port to its lines (every
    setting goes under a listener: one before the first would make a default listener on
    all interfaces)."""
    lines = ["per_listener_settings true", "persistence false", "log_dest stdout",
             "log_type error", "log_type warning", "log_type notice"]
    if os.geteuid() == 0:
        lines.append("user root")
    for port, extra in listeners.items():
        assert port != 2024
        lines += [f"listener {port} {address}", *extra]
    conf = tmp / f"{name}.conf"
    conf.write_text("\n".join(lines) + "\n")
    return start(f"mosquitto-{name}", ["mosquitto", "-c", str(conf)], tmp, address,
                 [(port, "tcp") for port in listeners])


def password_lines(tmp: Path, name: str, accounts: dict[str, str]) -> list[str]:
    return ["allow_anonymous false", f"password_file {passwords(tmp, name, accounts)}"]


def tls_lines(tls: Tls, require_certificate: bool = False) -> list[str]:
    lines = [f"certfile {tls.cert}", f"keyfile {tls.key}"]
    if require_certificate:
        lines += [f"cafile {tls.ca}", "require_certificate true"]
    return lines


def acl(tmp: Path, name: str, text: str) -> str:
    path = tmp / f"{name}.acl"
    path.write_text(text)
    return f"acl_file {path}"


def dynsec_config(tmp: Path) -> Path:
    """A dynamic-security configuration: probe and canary confined to their own topics,
    subscriptions denied by default (so `#` and `$SYS/#` are refused at SUBACK)."""

    def client(user: str, password: str, role: str) -> dict[str, Any]:
        salt = os.urandom(12)
        digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
        return {"username": user, "password": base64.b64encode(digest).decode(),
                "salt": base64.b64encode(salt).decode(), "iterations": 101,
                "roles": [{"rolename": role}]}

    def role(name: str, topic: str) -> dict[str, Any]:
        return {"rolename": name, "acls": [
            {"acltype": kind, "topic": topic, "allow": True}
            for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")]}

    config = {
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                             "subscribe": False, "unsubscribe": True},
        "clients": [client("probe", PROBE_PASSWORD, "probe-role"),
                    client("canary", CANARY_PASSWORD, "canary-role")],
        "groups": [],
        "roles": [role("probe-role", "devices/probe/#"), role("canary-role", "iotprobe/#")],
    }
    path = tmp / "dynamic-security.json"
    path.write_text(json.dumps(config))
    return path


# ---------------------------------------------------------------------------------------------
# Running checks the way the engine does
# ---------------------------------------------------------------------------------------------


def credentials(probe: bool = True, canary: bool = False, tls: Tls | None = None
                ) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if probe:
        out["mqtt"] = {"username": "probe",
                       "password": Secret(PROBE_PASSWORD, "env:TEST_PROBE_PASSWORD")}
    if canary:
        out["mqtt_canary"] = {"username": "canary",
                              "password": Secret(CANARY_PASSWORD, "env:TEST_CANARY_PASSWORD")}
    if tls is not None:
        out["tls_client"] = {"cert_file": str(tls.client_cert), "key_file": str(tls.client_key)}
    return out


@contextlib.contextmanager
def device(address: str, ports: tuple[int, ...], creds: dict[str, dict[str, Any]] | None = None,
           timeout: float = 1.5, mqtt: tuple[int, ...] = (), **params: Any
           ) -> Iterator[DeviceContext]:
    """A device context as the engine builds it: every check that takes one of `params` gets
    it over its defaults; `mqtt` names ports the inventory declares as MQTT."""
    target = Device(id=address, address=address, credentials=creds or {},
                    services={"mqtt": mqtt} if mqtt else {})
    chosen = {cid: {k: v for k, v in params.items() if k in check.params.model_fields}
              for cid, check in catalogue().items()}
    options = ScanOptions(timeout=timeout, tcp_ports=ports, exclude_ports=(2024,), udp=False)
    with device_context(target, options, chosen) as ctx:
        yield ctx


async def statuses(ctx: DeviceContext, check_id: str) -> dict[str, Status]:
    return {f.target: f.status for f in await run_check(check_id, ctx.device, context=ctx)}


def no_secret_in(findings: list[Finding]) -> None:
    text = json.dumps([[f.summary, f.evidence] for f in findings])
    assert PROBE_PASSWORD not in text and CANARY_PASSWORD not in text


# ---------------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------------


async def test_open_broker_fails_every_check_and_shares_round_trips(tmp_path: Path) -> None:
    address = "127.81.0.1"
    with mosquitto(tmp_path, "open", address, {1883: ["allow_anonymous true"]}), \
            device(address, (1883,), **FAST) as ctx:
        await ctx.observe(endpoints)
        after_discovery = ctx.connections
        assert await statuses(ctx, "mqtt.cleartext-listener") == {"tcp/1883": Status.FAIL}
        assert ctx.connections == after_discovery  # the CONNECT of identification is reused
        (anonymous,) = await run_check("mqtt.anonymous-access", ctx.device, context=ctx)
        assert ctx.connections == after_discovery + 1  # one MQTT 5 CONNECT
        (default,) = await run_check("mqtt.default-credentials", ctx.device, context=ctx)
        (topics,) = await run_check("mqtt.topic-authorization", ctx.device, context=ctx)
        used = ctx.connections
        for check_id in MQTT_CHECKS:
            await run_check(check_id, ctx.device, context=ctx)
        assert ctx.connections == used  # nothing is asked twice
        (certificate,) = await run_check("mqtt.client-certificate", ctx.device, context=ctx)
    assert anonymous.status is Status.FAIL
    assert anonymous.summary == ("MQTT 3.1.1 CONNECT without credentials was accepted on "
                                 "tcp/1883 (CONNACK 0)")
    assert [(lv["protocol_level"], lv["outcome"]) for lv in anonymous.evidence["levels"]] == [
        (4, "connack"), (5, "connack")]
    assert anonymous.evidence["levels"][1]["reason_code"] == 0
    assert default.status is Status.FAIL
    assert default.evidence["accepted_username"] == "admin"
    assert len(default.evidence["attempts"]) == 1  # stopped at the first success
    assert default.evidence["anonymous_accepted"] is True
    assert topics.status is Status.FAIL
    assert topics.evidence["identity"] == "anonymous"
    assert topics.evidence["received"]["canary_received"] is True
    assert "$SYS/broker/version" in topics.evidence["received"]["sys_topics"]
    assert certificate.status is Status.NOT_APPLICABLE


async def test_password_file_refuses_anonymous_at_both_levels(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    address = "127.81.0.2"
    accounts = {"probe": PROBE_PASSWORD, "canary": CANARY_PASSWORD}
    with mosquitto(tmp_path, "passwd", address,
                   {1883: password_lines(tmp_path, "passwd", accounts)}):
        with device(address, (1883,), **FAST) as ctx:
            (anonymous,) = await run_check("mqtt.anonymous-access", ctx.device, context=ctx)
            (default,) = await run_check("mqtt.default-credentials", ctx.device, context=ctx)
            (unprobed,) = await run_check("mqtt.topic-authorization", ctx.device, context=ctx)
        with device(address, (1883,), credentials(canary=True), **FAST) as ctx:
            (topics,) = await run_check("mqtt.topic-authorization", ctx.device, context=ctx)
    assert anonymous.status is Status.PASS
    levels = anonymous.evidence["levels"]
    assert (levels[0]["connack_code"], levels[1]["reason_code"]) == (5, 135)
    assert default.status is Status.PASS
    assert [a["username"] for a in default.evidence["attempts"]] == [
        "admin", "admin", "admin", "root", "user", "mqtt", "guest", "test", "admin", "pi"]
    assert {a["connack_code"] for a in default.evidence["attempts"]} == {5}
    assert unprobed.status is Status.SKIPPED
    assert "no credentials.mqtt" in unprobed.summary
    assert topics.status is Status.FAIL  # no ACL: the probe identity reads everything
    assert topics.evidence["identity"] == "probe"
    assert topics.evidence["canary"]["identity"] == "canary"
    assert topics.evidence["received"]["canary_received"] is True
    no_secret_in([anonymous, default, unprobed, topics])
    assert PROBE_PASSWORD not in caplog.text and CANARY_PASSWORD not in caplog.text


async def test_acl_file_filters_at_delivery(tmp_path: Path) -> None:
    address = "127.81.0.3"
    accounts = {"probe": PROBE_PASSWORD, "canary": CANARY_PASSWORD}
    rules = acl(tmp_path, "scoped", "user probe\ntopic read devices/probe/#\n\n"
                "user canary\ntopic readwrite iotprobe/canary/#\n")
    wide = acl(tmp_path, "wide", "user probe\ntopic read #\n\n"
               "user canary\ntopic readwrite iotprobe/canary/#\n")
    mute = acl(tmp_path, "mute", "user probe\ntopic read devices/probe/#\n")
    with mosquitto(tmp_path, "acl", address, {
            1883: [*password_lines(tmp_path, "acl1", accounts), rules],
            1884: [*password_lines(tmp_path, "acl2", accounts), wide],
            1885: [*password_lines(tmp_path, "acl3", accounts), mute]}), \
            device(address, (1883, 1884, 1885), credentials(canary=True),
                   mqtt=(1884, 1885), window_seconds=1.0) as ctx:
        findings = {f.target: f for f in await run_check("mqtt.topic-authorization", ctx.device,
                                                         context=ctx)}
    scoped, wide_open, unproven = findings["tcp/1883"], findings["tcp/1884"], findings["tcp/1885"]
    assert scoped.status is Status.PASS, scoped.summary
    assert {f: s["code"] for f, s in scoped.evidence["suback"].items()} == {"#": 0, "$SYS/#": 0}
    assert scoped.evidence["canary"]["echoed"] is True  # the canary's message was routed
    assert scoped.evidence["received"] == {"canary_received": False, "sys_messages": 0,
                                           "sys_topics": [], "other_messages": 0}
    assert wide_open.status is Status.FAIL
    assert wide_open.evidence["received"]["canary_received"] is True
    assert wide_open.evidence["received"]["sys_messages"] == 0
    # the canary may neither publish nor read: nothing arrives, but nothing is proven either
    assert (unproven.status, unproven.evidence["reason"]) == (Status.SKIPPED, "canary-unusable")
    assert unproven.evidence["canary"]["echoed"] is False
    assert unproven.evidence["canary"]["puback"] == 0


@pytest.mark.skipif(not DYNSEC.exists(), reason="mosquitto dynamic security plugin missing")
async def test_dynamic_security_refuses_wildcards_at_suback(tmp_path: Path) -> None:
    address = "127.81.0.4"
    config = dynsec_config(tmp_path)
    with mosquitto(tmp_path, "dynsec", address, {1883: [
            "allow_anonymous false", f"plugin {DYNSEC}", f"plugin_opt_config_file {config}"]}), \
            device(address, (1883,), credentials(canary=True), **FAST) as ctx:
        (topics,) = await run_check("mqtt.topic-authorization", ctx.device, context=ctx)
    assert topics.status is Status.PASS, topics.summary
    assert topics.summary == "SUBACK refused # and $SYS/# to identity 'probe' on tcp/1883"
    assert {f: s["code"] for f, s in topics.evidence["suback"].items()} == {
        "#": 0x80, "$SYS/#": 0x80}
    assert "canary" not in topics.evidence  # decided at SUBACK: no canary needed


async def test_tls_broker_without_and_with_client_certificates(tmp_path: Path) -> None:
    address = "127.81.0.5"
    tls = make_tls(tmp_path, address)
    accounts = {"probe": PROBE_PASSWORD, "canary": CANARY_PASSWORD}
    rules = acl(tmp_path, "tls", "user probe\ntopic read devices/probe/#\n\n"
                "user canary\ntopic readwrite iotprobe/canary/#\n")
    with mosquitto(tmp_path, "tls", address, {
            8883: [*tls_lines(tls), *password_lines(tmp_path, "tls1", accounts), rules],
            8884: [*tls_lines(tls, require_certificate=True),
                   *password_lines(tmp_path, "tls2", accounts), rules]}):
        with device(address, (8883, 8884), **FAST) as ctx:
            cleartext = await statuses(ctx, "mqtt.cleartext-listener")
            certificate = {f.target: f for f in await run_check(
                "mqtt.client-certificate", ctx.device, context=ctx)}
            anonymous = {f.target: f for f in await run_check("mqtt.anonymous-access", ctx.device,
                                                              context=ctx)}
            default = {f.target: f for f in await run_check("mqtt.default-credentials", ctx.device,
                                                            context=ctx)}
            found = {e.port: e for e in await ctx.observe(endpoints)}
        with device(address, (8883, 8884), credentials(canary=True, tls=tls), **FAST) as ctx:
            topics = await statuses(ctx, "mqtt.topic-authorization")
            default_with_certificate = await statuses(ctx, "mqtt.default-credentials")
    assert found[8884].tls and found[8884].needs_certificate
    assert cleartext == {"tcp/8883": Status.PASS, "tcp/8884": Status.PASS}
    assert certificate["tcp/8883"].status is Status.FAIL
    assert certificate["tcp/8883"].evidence["connect"]["connack_code"] == 5
    assert certificate["tcp/8884"].status is Status.PASS
    assert certificate["tcp/8884"].evidence["connect"]["outcome"] == "certificate-required"
    assert anonymous["tcp/8883"].status is Status.PASS
    assert anonymous["tcp/8884"].status is Status.PASS
    assert [lv["outcome"] for lv in anonymous["tcp/8884"].evidence["levels"]] == [
        "certificate-required", "certificate-required"]
    assert default["tcp/8883"].status is Status.PASS
    assert default["tcp/8884"].status is Status.PASS
    assert default["tcp/8884"].evidence["attempts"] == []  # no certificate: nothing tried
    assert topics == {"tcp/8883": Status.PASS, "tcp/8884": Status.PASS}
    assert default_with_certificate == {"tcp/8883": Status.PASS, "tcp/8884": Status.PASS}


async def test_default_admin_account_is_found_and_named_by_user_only(tmp_path: Path) -> None:
    address = "127.81.0.6"
    pairs = [["root", "root"], ["admin", "admin"], ["guest", "guest"]]
    with mosquitto(tmp_path, "admin", address, {1883: password_lines(
            tmp_path, "admin", {"admin": "admin", "probe": PROBE_PASSWORD})}), \
            device(address, (1883,), pairs=pairs, pace_seconds=0.05) as ctx:
        (finding,) = await run_check("mqtt.default-credentials", ctx.device, context=ctx)
    assert finding.status is Status.FAIL
    assert finding.evidence["accepted_username"] == "admin"
    attempts = finding.evidence["attempts"]
    assert [(a["username"], a["connack_code"]) for a in attempts] == [
        ("root", 5), ("admin", 0)]  # guest/guest was never tried
    assert all("password" not in a for a in attempts)
    assert "user 'admin'" in finding.summary


async def test_attempts_are_paced_and_bounded(tmp_path: Path) -> None:
    address = "127.81.0.7"
    seen: list[float] = []

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(asyncio.get_running_loop().time())
        data = await reader.read(4096)
        writer.write(b"\x20\x03\x00\x87\x00" if b"MQTT\x05" in data else b"\x20\x02\x00\x05")
        await writer.drain()

    pairs = [[f"user{i}", "x"] for i in range(6)]
    async with Listener(address, 1883, refuse):
        with device(address, (1883,), pairs=pairs, max_attempts=4, pace_seconds=0.2) as ctx:
            (finding,) = await run_check("mqtt.default-credentials", ctx.device, context=ctx)
    assert finding.status is Status.PASS
    assert len(finding.evidence["attempts"]) == 4
    logins = seen[-4:]  # after identification and the MQTT 5 CONNECT
    assert all(b - a >= 0.15 for a, b in itertools.pairwise(logins))


async def test_a_silent_broker_costs_two_timeouts(tmp_path: Path) -> None:
    address = "127.81.0.8"
    async with Listener(address, 1883, silent) as listener:
        with device(address, (1883,), creds=credentials(canary=True), **FAST) as ctx:
            results = {cid: await run_check(cid, ctx.device, context=ctx) for cid in MQTT_CHECKS}
        accepted = listener.accepted
    assert accepted == 3  # the port scan, identification's CONNECT and one MQTT 5 CONNECT
    for check_id in ("mqtt.cleartext-listener", "mqtt.anonymous-access",
                     "mqtt.default-credentials", "mqtt.topic-authorization"):
        (finding,) = results[check_id]
        assert (finding.status, finding.evidence["reason"]) == (Status.ERROR, "timeout")
    assert results["mqtt.client-certificate"][0].status is Status.NOT_APPLICABLE


def _answering_only(level: int, connack: bytes) -> Handler:
    """A peer that answers a CONNECT at protocol `level` with `connack` and stays silent to
    any other."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(4096)
        if b"MQTT" + bytes([level]) in data:
            writer.write(connack)
            await writer.drain()
            return
        await silent(reader, writer)

    return serve


_connack_v4_only = _answering_only(4, b"\x20\x02\x00\x05")
"""A 3.1.1-only peer: refuses level 4 with CONNACK 5, ignores anything else."""


async def _garbage_for_v5(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = await reader.read(4096)
    writer.write(b"\x20\x02\x00\x05" if b"MQTT\x04" in data else b"HTTP/1.0 400 Bad\r\n\r\n")
    await writer.drain()


@pytest.mark.parametrize(("handler", "outcome", "reason"), [
    (_connack_v4_only, "timeout", "timeout"),
    (_garbage_for_v5, "not-mqtt", "not-mqtt"),
])
async def test_undecided_mqtt5_answers_are_errors(handler: Any, outcome: str,
                                                  reason: str) -> None:
    address = "127.81.0.9"
    async with Listener(address, 1883, handler) as listener:
        with device(address, (1883,), timeout=1.0) as ctx:
            (finding,) = await run_check("mqtt.anonymous-access", ctx.device, context=ctx)
        accepted = listener.accepted
    assert finding.status is Status.ERROR
    assert finding.evidence["reason"] == reason
    assert [lv["outcome"] for lv in finding.evidence["levels"]] == ["connack", outcome]
    assert accepted == 3  # scan, identification, one MQTT 5 CONNECT


async def test_outcomes_are_told_apart(tmp_path: Path) -> None:
    address = "127.81.0.10"
    tls = make_tls(tmp_path, address)
    accounts = {"probe": PROBE_PASSWORD}

    def endpoint(port: int, tls: bool) -> Endpoint:
        return Endpoint(port, tls, False, Outcome(4, "connack", 5), {})

    probe = Identity("probe", "probe", Secret(PROBE_PASSWORD, "env:TEST"))
    wrong = Identity("probe", "probe", "wrong")
    with mosquitto(tmp_path, "outcomes", address, {
            1883: password_lines(tmp_path, "o1", accounts),
            8884: [*tls_lines(tls, require_certificate=True),
                   *password_lines(tmp_path, "o2", accounts)]}):
        async with Listener(address, 1884, silent):
            with device(address, (), timeout=1.0) as ctx:
                accepted, _ = await login(ctx, endpoint(1883, False), 5, probe)
                refused, _ = await login(ctx, endpoint(1883, False), 5, wrong)
                needs_certificate, _ = await login(ctx, endpoint(8884, True), 4, probe)
                with_certificate, _ = await login(
                    ctx, endpoint(8884, True), 4, probe,
                    ClientCertificate(str(tls.client_cert), str(tls.client_key)))
                cleartext_on_tls, _ = await login(ctx, endpoint(8884, False), 4, ANONYMOUS)
                not_tls, _ = await login(ctx, endpoint(1883, True), 4, probe)
                timed_out, _ = await login(ctx, endpoint(1884, False), 4, probe)
                closed_port, _ = await login(ctx, endpoint(1885, False), 4, probe)
                used = ctx.connections
    assert (accepted.result, accepted.code) == ("connack", 0)
    assert (refused.result, refused.code) == ("connack", 135)
    assert needs_certificate.result == "certificate-required"
    assert (with_certificate.result, with_certificate.code) == ("connack", 0)
    assert cleartext_on_tls.result == "closed"
    assert not_tls.result == "tls-error"
    assert timed_out.result == "timeout"
    assert closed_port.result == "tcp-refused"
    assert used == 8  # one connection each


@pytest.mark.parametrize("refusal", [
    b"\x20\x02\x00\x01",  # a 3.1.1 CONNACK: unacceptable protocol version
    b"\x20\x03\x00\x84\x00",  # an MQTT 5 CONNACK: unsupported protocol version
], ids=["connack-3.1.1", "connack-5"])
async def test_mqtt5_sessions_against_mosquitto(tmp_path: Path, refusal: bytes) -> None:
    """Topic authorization at level 5 through a front that refuses MQTT 3.1.1 (in either
    CONNACK form) and forwards MQTT 5 to mosquitto: SUBACK reason codes and PUBLISH properties
    parsed from the real one."""
    address = "127.81.0.11"

    async def only_v5(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.read(4096)
        if b"MQTT\x05" not in head:
            writer.write(refusal)
            await writer.drain()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(address, 11883)
        upstream_writer.write(head)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            for _ in range(10_000):
                chunk = await source.read(65536)
                if not chunk:
                    break
                sink.write(chunk)
                await sink.drain()
            sink.close()

        try:
            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        finally:
            upstream_writer.close()

    with mosquitto(tmp_path, "v5", address, {11883: ["allow_anonymous true"]}):
        async with Listener(address, 1883, only_v5):
            with device(address, (1883,), **FAST) as ctx:
                (anonymous,) = await run_check("mqtt.anonymous-access", ctx.device, context=ctx)
                (topics,) = await run_check("mqtt.topic-authorization", ctx.device, context=ctx)
    assert anonymous.status is Status.FAIL
    assert anonymous.evidence["protocol_level"] == 5
    four, five = anonymous.evidence["levels"]
    assert (four.get("connack_code", four.get("reason_code")), five["reason_code"]) == (
        refusal[3], 0)
    assert four["meaning"] == ("unacceptable protocol version" if refusal[3] == 1
                               else "unsupported protocol version")
    assert topics.status is Status.FAIL
    assert topics.evidence["protocol_level"] == 5
    assert topics.evidence["received"]["canary_received"] is True
    assert topics.evidence["canary"]["puback"] == 0


def test_codec_round_trips() -> None:
    packet = connect_packet(5, "iotprobe-x", Identity("u", "u", Secret("p", "env:P")))
    found = frame(packet + b"\xe0")
    assert found is not None
    parsed, size = found
    assert (parsed.kind, size) == (1, len(packet))
    assert parsed.body.startswith(b"\x00\x04MQTT\x05\xc2\x00\x1e\x00")
    assert parsed.body.endswith(b"\x00\x01u\x00\x01p")
    assert frame(packet[:-1]) is None
    with pytest.raises(MalformedPacket):
        frame(b"\x30\xff\xff\xff\xff\x01")


def test_anonymous_access_is_a_shared_collector() -> None:
    # Besides `services`, which every check that `applies_to` a service reads to judge the
    # ports that could not be identified.
    needs = {cid: tuple(n for n in catalogue()[cid].needs if n is not services)
             for cid in MQTT_CHECKS}
    assert all(services in catalogue()[cid].needs for cid in MQTT_CHECKS)
    assert needs["mqtt.anonymous-access"] == (anonymous_access,)
    assert needs["mqtt.cleartext-listener"] == needs["mqtt.client-certificate"] == (endpoints,)
    assert catalogue()["mqtt.default-credentials"].intrusive


@pytest.mark.parametrize("broker", [brokers_mqtt.aedes, brokers_mqtt.amqtt],
                         ids=["aedes", "amqtt"])
async def test_brokers_without_mqtt5_are_judged_at_the_level_they_speak(
        tmp_path: Path, broker: Any) -> None:
    """aedes and amqtt answer an MQTT 5 CONNECT with the 3.1.1 CONNACK 1: the evidence names
    that code in the 3.1.1 CONNACK table (it once read "CONNACK reason 1, granted QoS 1", from
    the SUBACK table), and the verdict comes from MQTT 3.1.1, the level they speak."""
    address = "127.133.0.1" if broker is brokers_mqtt.aedes else "127.133.0.2"
    with broker(tmp_path / "closed", address, {1883: False}, users=brokers_mqtt.ACCOUNTS), \
            device(address, (1883,)) as ctx:
        (closed,) = await run_check("mqtt.anonymous-access", ctx.device, context=ctx)
    with broker(tmp_path / "open", address, {1883: False}), device(address, (1883,)) as ctx:
        (open_door,) = await run_check("mqtt.anonymous-access", ctx.device, context=ctx)
    four, five = closed.evidence["levels"]
    assert (four["connack_code"], five["connack_code"]) == (5, 1)
    assert five == {"protocol_level": 5, "outcome": "connack", "source": "exchange",
                    "connack_code": 1, "meaning": "unacceptable protocol version",
                    "session_present": False, "connack_protocol_level": 4}
    assert closed.status is Status.PASS
    assert closed.summary == (
        "CONNECT without credentials is refused on tcp/1883 at the level it speaks (MQTT "
        "3.1.1: CONNACK 5, not authorized); it does not speak MQTT 5 (MQTT 3.1.1 CONNACK 1, "
        "unacceptable protocol version (an MQTT 3.1.1 answer to the MQTT 5 CONNECT))")
    assert "granted" not in json.dumps([closed.summary, closed.evidence])
    assert open_door.status is Status.FAIL
    assert open_door.evidence["protocol_level"] == 4


async def test_a_peer_that_refuses_every_protocol_version_is_undecided() -> None:
    """Refusing the protocol version says nothing about credentials: a peer that refuses both
    3.1.1 and 5 (it may speak 3.1) is not judged to refuse anonymous clients. No broker
    packaged for Debian, PyPI or npm answers this way, hence the scripted peer."""
    address = "127.133.0.3"
    async with Listener(address, 1883, reply(b"\x20\x02\x00\x01")):
        with device(address, (1883,)) as ctx:
            (finding,) = await run_check("mqtt.anonymous-access", ctx.device, context=ctx)
    assert (finding.status, finding.evidence["reason"]) == (Status.ERROR, "protocol-version")
    assert [lv["meaning"] for lv in finding.evidence["levels"]] == [
        "unacceptable protocol version"] * 2


def test_codes_are_read_in_the_table_of_their_packet() -> None:
    assert meaning(4, 1) == "unacceptable protocol version"
    assert meaning(5, 1) == "unknown code"  # no MQTT 5 CONNACK reason code 1
    assert meaning(5, 0x84, CONNACK) == "unsupported protocol version"
    assert (meaning(4, 1, SUBACK), meaning(5, 1, SUBACK)) == ("granted QoS 1",) * 2
    assert meaning(5, 0x87, SUBACK) == meaning(5, 0x87, PUBACK) == "not authorized"
    assert meaning(5, 0x10, PUBACK) == "no matching subscribers"
    assert meaning(5, 0x10, SUBACK) == "unknown code"
    assert connack_level(5, b"\x00\x01") == 4  # a 3.1.1 CONNACK has no properties
    assert connack_level(5, b"\x00\x87\x00") == 5
    assert connack_level(4, b"\x00\x84\x00") == 5  # an MQTT 5 broker refusing 3.1.1
    assert connack_level(4, b"\x00\x05") == 4


async def test_a_broker_that_speaks_only_mqtt5_is_judged_at_mqtt5(tmp_path: Path) -> None:
    """mqttools leaves a 3.1.1 CONNECT unanswered, accepts anyone at MQTT 5 and allows QoS 0
    only: one MQTT 5 CONNECT after identification's silence makes it an MQTT endpoint (it was
    "silent" and every check `error` before), and the canary publishes at QoS 0."""
    address = "127.133.0.4"
    with brokers_mqtt.mqttools(tmp_path, address), \
            device(address, (1883,), creds=credentials(probe=False), **FAST) as ctx:
        await ctx.observe(endpoints)
        connections = ctx.connections
        results = {cid: await run_check(cid, ctx.device, context=ctx) for cid in MQTT_CHECKS}
        targets = await ctx.observe(login_targets)
    assert connections == 3  # the port scan, identification, one MQTT 5 CONNECT
    status = {cid: [f.status for f in found] for cid, found in results.items()}
    assert status == {"mqtt.cleartext-listener": [Status.FAIL],
                      "mqtt.anonymous-access": [Status.FAIL],
                      "mqtt.default-credentials": [Status.PASS],
                      "mqtt.topic-authorization": [Status.FAIL],
                      "mqtt.client-certificate": [Status.NOT_APPLICABLE]}
    (anonymous,) = results["mqtt.anonymous-access"]
    assert (anonymous.evidence["protocol_level"], anonymous.evidence["reason_code"]) == (5, 0)
    (topics,) = results["mqtt.topic-authorization"]
    assert topics.evidence["protocol_level"] == 5
    assert topics.evidence["received"]["canary_received"] is True
    assert topics.evidence["canary"]["qos"] == 0
    (default,) = results["mqtt.default-credentials"]  # mqttools refuses any user name
    assert {a["reason_code"] for a in default.evidence["attempts"]} == {0x86}
    (target,) = targets
    assert (target.port, target.level) == (1883, 5)  # the monitor's failed login, at MQTT 5


def test_qos0_publications_and_maximum_qos() -> None:
    assert publish_packet(4, 2, "t", b"x", 0) == b"\x30\x04\x00\x01tx"
    assert publish_packet(4, 2, "t", b"x") == b"\x32\x06\x00\x01t\x00\x02x"
    assert (maximum_qos({0x24: 0}), maximum_qos({0x24: 1}), maximum_qos({})) == (0, 1, 2)


async def test_a_refused_sink_subscription_is_named_from_the_suback_table(tmp_path: Path
                                                                          ) -> None:
    """The monitor's MQTT sink named a refused SUBACK code from the CONNACK table ("unknown
    code" for 0x80); aedes refuses a subscription outside the account's ACL with 0x80."""
    address = "127.133.0.5"
    sink = {"mqtt": {"address": address, "port": 1883, "username": brokers_mqtt.PROBE,
                     "password": Secret(brokers_mqtt.PROBE_PASSWORD, "env:TEST"),
                     "topic": "security/#"}}
    with brokers_mqtt.aedes(tmp_path, address, {1883: False}, users=brokers_mqtt.ACCOUNTS,
                            acl=brokers_mqtt.ACL), \
            monitored_context(address, (1883,), sink) as ctx:
        (event,) = await run_check("monitor.auth-failure-event", ctx.device, context=ctx)
    assert (event.status, event.evidence["reason"]) == (Status.ERROR, "sink")
    assert "refused the subscription to security/# (failure)" in event.summary


async def test_silence_at_3_1_1_is_undecided_even_when_mqtt5_refuses() -> None:
    """A 3.1.1 CONNECT left unanswered may be a login that hangs, not a level the broker does
    not speak: with MQTT 5 refusing anonymous clients, anonymous access stays undecided (a
    pass would rest on one level only). mqttools, the real MQTT-5-only broker, accepts
    anonymous clients, hence the scripted peer."""
    address = "127.133.0.6"

    refuse_v5 = _answering_only(5, b"\x20\x03\x00\x87\x00")
    async with Listener(address, 1883, refuse_v5):
        with device(address, (1883,), timeout=1.0) as ctx:
            (anonymous,) = await run_check("mqtt.anonymous-access", ctx.device, context=ctx)
            (cleartext,) = await run_check("mqtt.cleartext-listener", ctx.device, context=ctx)
    assert (anonymous.status, anonymous.evidence["reason"]) == (Status.ERROR, "timeout")
    assert [lv["outcome"] for lv in anonymous.evidence["levels"]] == ["timeout", "connack"]
    assert cleartext.status is Status.FAIL  # it answers MQTT 5 in cleartext
