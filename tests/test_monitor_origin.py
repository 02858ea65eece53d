"""Forged reports must not pass `monitor.auth-failure-event` (issue 15, defect 7).

The device is a real mosquitto 2.0 with a password file on 127.135.1.1 that reports nothing.
A sprayer that sees the probe's connection (as anyone on the path would: it reads the
connection's TIME_WAIT entry in /proc/net/tcp) writes "Failed password ... from 127.0.0.1 port
PORT" to the probe's UDP syslog sink, with `logger` (util-linux, which sends from 127.0.0.1)
or from a socket bound to another 127.135 address. None of these may make the check pass;
the same line from a declared forwarder does.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from daemons import Daemon, _proc_address, monitored_context, mosquitto_logging

from probe.api import run_check
from probe.errors import InputError
from probe.inventory import load_inventory
from probe.model import Status
from probe.monitoring.collectors import login_targets
from probe.protocols.http.checks import AuthenticationParams

DEVICE = "127.135.1.1"
SINK = "127.135.1.9"
STRANGER = "127.135.1.7"
PORT = 1883
SINK_PORT = 15700
AUTH = "monitor.auth-failure-event"
EVENTS = {AUTH: {"event_timeout": 3}}
WATCH_ROUNDS = 500  # x 20 ms: the sprayer gives up after 10 s


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Daemon]:
    with mosquitto_logging(tmp_path, DEVICE, PORT, {"owner": "own-Pq7-pw"}) as daemon:
        yield daemon


def client_ports() -> set[int]:
    """The client ports of every TCP connection to the device's broker, from either end's
    entry (the broker closes a refused client, so TIME_WAIT is on its side)."""
    broker = _proc_address(DEVICE, PORT)
    found = set()
    for entry in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = entry.split()[1:4]
        if state == "0A":
            continue
        if remote == broker:
            found.add(int(local.rpartition(":")[2], 16))
        elif local == broker:
            found.add(int(remote.rpartition(":")[2], 16))
    return found


def line(port: int) -> str:
    return f"sshd[4242]: Failed password for root from 127.0.0.1 port {port} ssh2"


async def by_logger(lines: list[str]) -> None:
    """util-linux logger, one RFC 3164 datagram per line, from 127.0.0.1."""
    logger = await asyncio.create_subprocess_exec(
        "logger", "-n", SINK, "-P", str(SINK_PORT), "-d", "--rfc3164", "-t", "sshd",
        stdin=asyncio.subprocess.PIPE)
    await logger.communicate("\n".join(lines).encode() + b"\n")
    assert logger.returncode == 0


async def by_stranger(lines: list[str]) -> None:
    """Datagrams from a socket bound to another loopback address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind((STRANGER, 0))
        for text in lines:
            sender.sendto(f"<36>{text}".encode(), (SINK, SINK_PORT))


Spray = Callable[[int], list[str]]


async def sprayer(before: set[int], spray: Spray,
                  send: Callable[[list[str]], Awaitable[None]]) -> int | None:
    """Wait for the probe's new connection to the broker, then send `spray(its port)`."""
    for _ in range(WATCH_ROUNDS):
        new = client_ports() - before
        if new:
            port = min(new)
            await send(spray(port))
            return port
        await asyncio.sleep(0.02)
    return None


async def scan(forwarders: list[str], spray: Spray,
               send: Callable[[list[str]], Awaitable[None]]) -> tuple[Status, dict, int | None]:
    monitor = {"syslog": {"listen": f"udp://{SINK}:{SINK_PORT}", "forwarders": forwarders}}
    with monitored_context(DEVICE, (PORT,), monitor) as ctx:
        # the endpoint probes happen before the sprayer looks
        await ctx.observe(login_targets, paths=AuthenticationParams().protected_paths)
        task = asyncio.create_task(sprayer(client_ports(), spray, send))
        (finding,) = await run_check(AUTH, ctx.device, context=ctx, plan=EVENTS)
        port = await task
    return finding.status, finding.evidence, port


def exact(port: int) -> list[str]:
    return [line(port)]


def around(port: int) -> list[str]:
    return [line(p) for p in range(port - 20, port + 21)]


def listed(port: int) -> list[str]:
    ports = ", ".join(f"127.0.0.1:{p}" for p in range(port - 3, port + 4))
    return [f"sshd[4242]: Failed password for root from {ports}"]


@pytest.mark.parametrize(("forwarders", "spray", "send", "why"), [
    ([], exact, by_logger, "neither the device nor a declared forwarder"),
    ([], exact, by_stranger, "neither the device nor a declared forwarder"),
    (["127.135.1.0/29"], exact, by_logger, "neither the device nor a declared forwarder"),
    (["127.0.0.1"], listed, by_logger, "names 7 attempts: a spray"),
], ids=["logger-undeclared", "bound-socket-undeclared", "logger-outside-forwarders",
        "forwarder-one-line-listing-ports"])
async def test_a_forged_report_does_not_pass(broker: Daemon, forwarders: list[str],
                                             spray: Spray,
                                             send: Callable[[list[str]], Awaitable[None]],
                                             why: str) -> None:
    status, evidence, port = await scan(forwarders, spray, send)
    assert port is not None, "the sprayer never saw the probe's connection"
    assert status is Status.FAIL, evidence
    assert evidence["attempts"][0]["source"] == f"127.0.0.1:{port}"
    assert any(why in r["rejected_because"] for r in evidence["rejected"]), evidence


async def test_a_spray_through_a_declared_forwarder_does_not_pass(broker: Daemon) -> None:
    status, evidence, port = await scan(["127.0.0.1"], around, by_logger)
    assert port is not None
    assert status is Status.FAIL, evidence
    assert "events" not in evidence


async def test_the_same_line_from_a_declared_forwarder_passes(broker: Daemon) -> None:
    status, evidence, port = await scan(["127.0.0.1"], exact, by_logger)
    assert port is not None
    assert status is Status.PASS, evidence
    (event, *_) = evidence["events"]
    assert event["named_by"] == "source" and event["delivered_by"] == "a declared forwarder"
    assert event["origin"].startswith("127.0.0.1:") and event["sink"] == "syslog"
    assert f"port {port}" in event["text"]


def test_forwarders_are_checked_when_the_inventory_loads(tmp_path: Path) -> None:
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(
        "devices:\n  - id: cam\n    address: 127.135.1.1\n    monitor:\n      syslog:\n"
        "        listen: udp://127.135.1.9:15700\n        forwarders:\n"
        "          - 127.0.0.1\n          - relay.plant.example\n")
    with pytest.raises(InputError) as caught:
        load_inventory(inventory)
    message = str(caught.value)
    assert "fleet.yaml:7" in message and "monitor.syslog.forwarders" in message
    assert "relay.plant.example" in message and "IP" in message
