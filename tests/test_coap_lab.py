"""The CoAP personas on 127.84.x.y: what they speak (checked with independent clients: aiocoap
and `openssl s_client`), and what the engine reports on them, against each persona's declared
expectations, in a default and an intrusive scan. Every record is validated against the schema.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiocoap
import pytest

from probe.context import ScanOptions
from probe.engine import Engine
from probe.lab.expectations import expected
from probe.lab.fleet import DeviceSpec, plan_fleet, run_fleet
from probe.lab.personas import PERSONAS, coap
from probe.lab.personas.coap import COAP_WRITE
from probe.model import Device, Status, verdict_of
from probe.profile_loader import load_profile
from probe.record.model import Record
from probe.record.schema import validate_record

COAP_PERSONAS = tuple(persona.name for persona in coap.PERSONAS)
BASE = "127.84.0.1"
MAX_LINES = 200
LINE_WAIT = 10.0

# The checks as the built-in profile iso27400-6.2 is to carry them (see the report), beside
# the exposure checks with the built-in allow-lists of the classes the personas use.
PROFILE = """
id: coap-lab
title: CoAP checks over the lab
version: "1"
controls:
  27400-6.2:
    title: Secure communication
    references:
      iso-27400-2022: ["7.1.2.14"]
    checks:
      net.open-ports:
        classes:
          sensor: {allowed_tcp: [8883], allowed_udp: [5684]}
          gateway: {allowed_tcp: [443, 8443, 8883], allowed_udp: [5683, 5684]}
      net.cleartext-management: {}
      coap.cleartext:
        params: {max_resources: 32}
        references:
          iso-27400-2022: ["7.1.2.14"]
          etsi-en-303-645: ["5.5-1", "5.5-4", "5.6-2"]
          owasp-isvs: ["4.1.1"]
          iec-62443-4-2: ["CR 1.2", "CR 3.1"]
          nistir-8259a: ["Logical access to interfaces (AUN)"]
      coap.dtls:
        references:
          iso-27400-2022: ["7.1.2.14"]
          etsi-en-303-645: ["5.5-1"]
          owasp-isvs: ["4.1.1", "4.1.2"]
          iec-62443-4-2: ["CR 4.3"]
          nistir-8259a: ["Data protection (CRY)"]
      coap.unauthenticated-write:
        references:
          iso-27400-2022: ["7.1.2.14"]
          etsi-en-303-645: ["5.5-5"]
          owasp-isvs: ["4.2.2"]
          iec-62443-4-2: ["CR 2.1"]
          nistir-8259a: ["Device configuration (AUT)"]
      coap.amplification:
        params: {max_amplification: 10}
        references:
          iso-27400-2022: ["7.1.2.14"]
          etsi-en-303-645: ["5.6-1"]
          owasp-isvs: ["3.2.2"]
          iec-62443-4-2: ["CR 7.1"]
"""


@pytest.fixture
async def fleet() -> AsyncIterator[dict[str, DeviceSpec]]:
    specs = plan_fleet([PERSONAS[name] for name in COAP_PERSONAS], len(COAP_PERSONAS), BASE)
    running = await run_fleet(specs)
    try:
        yield {spec.persona.name: spec for spec in specs}
    finally:
        await running.stop()


async def scan(tmp_path: Path, specs: list[DeviceSpec], **options: Any
               ) -> dict[str, Record]:
    path = tmp_path / "coap-lab.yaml"
    path.write_text(PROFILE)
    profile = load_profile(str(path))
    devices = [Device(id=s.id, address=s.address, device_class=s.persona.device_class,
                      exclude_ports=(2024,)) for s in specs]
    outcomes: dict[str, Record] = {}

    def keep(outcome: Record) -> None:
        validate_record(outcome.to_json())
        outcomes[outcome.device.id] = outcome

    settings = {"timeout": 1.0, "budget": 30.0, "tcp_ports": (), **options}
    await Engine(profile, ScanOptions(**settings)).run(devices, keep)
    return outcomes


def statuses(outcome: Record, check_id: str) -> set[str]:
    return {r.status.value for r in outcome.results if r.check == check_id}


async def test_every_coap_persona_gets_what_it_declares(
        fleet: dict[str, DeviceSpec], tmp_path: Path) -> None:
    outcomes = await scan(tmp_path, list(fleet.values()))
    for spec in fleet.values():
        outcome = outcomes[spec.id]
        present = {r.check for r in outcome.results}
        for check_id, want in expected(spec.persona).items():
            if check_id not in present:
                continue
            got = statuses(outcome, check_id)
            assert got == {want}, f"{spec.id} {check_id}: expected {want}, got {got}"
        assert verdict_of(list(outcome.results)).value == spec.persona.expect_verdict
    chatty = outcomes[fleet["coap-chatty"].id]
    (amplification,) = [r for r in chatty.results if r.check == "coap.amplification"]
    worst = amplification.finding.evidence["worst"][0]
    assert worst["resource"] == "/.well-known/core" and worst["ratio"] > 50
    (cleartext,) = [r for r in chatty.results if r.check == "coap.cleartext"]
    assert cleartext.finding.evidence["listed"] == cleartext.finding.evidence["read"] == 24
    assert set(cleartext.finding.evidence["not_served"].values()) == {"4.01"}
    assert cleartext.references["etsi-en-303-645"] == ("5.5-1", "5.5-4", "5.6-2")


async def test_an_intrusive_scan_writes_back(fleet: dict[str, DeviceSpec],
                                             tmp_path: Path) -> None:
    outcomes = await scan(tmp_path, list(fleet.values()), intrusive=True)
    for name in COAP_PERSONAS:
        want = fleet[name].persona.expect_intrusive[COAP_WRITE]
        outcome = outcomes[fleet[name].id]
        got = statuses(outcome, "coap.unauthenticated-write")
        assert got == {want}, f"{name}: expected {want}, got {got}"
        others = {c: s for c, s in fleet[name].persona.expect.items()
                  if c != "coap.unauthenticated-write"}
        assert all(statuses(outcome, c) == {s} for c, s in others.items()), name
    actuator = outcomes[fleet["coap-actuator"].id]
    (write,) = [r for r in actuator.results if r.check == "coap.unauthenticated-write"]
    assert write.status is Status.FAIL
    assert [w["resource"] for w in write.finding.evidence["writes"] if w["accepted"]] == [
        "/actuators/valve"]


async def test_coap_personas_speak_to_aiocoap(fleet: dict[str, DeviceSpec]) -> None:
    sensor, actuator = fleet["coap-sensor"].address, fleet["coap-actuator"].address
    client = await aiocoap.Context.create_client_context()
    try:
        async with asyncio.timeout(30):
            async def ask(code: aiocoap.Code, uri: str, payload: bytes = b"") -> aiocoap.Message:
                message = aiocoap.Message(code=code, uri=uri, payload=payload)
                return await client.request(message).response

            read = await ask(aiocoap.GET, f"coap://{sensor}/sensors/temperature")
            assert (read.code, read.payload) == (aiocoap.CONTENT, b"21.5")
            listing = await ask(aiocoap.GET, f"coap://{sensor}/.well-known/core")
            assert listing.opt.content_format == 40
            assert listing.payload.startswith(b'</sensors/temperature>;rt="temperature";obs')
            refused = await ask(aiocoap.PUT, f"coap://{sensor}/sensors/temperature", b"99")
            assert refused.code == aiocoap.METHOD_NOT_ALLOWED
            missing = await ask(aiocoap.GET, f"coap://{sensor}/nothing")
            assert missing.code == aiocoap.NOT_FOUND
            valve = f"coap://{actuator}/actuators/valve"
            assert (await ask(aiocoap.PUT, valve, b"open")).code == aiocoap.CHANGED
            assert (await ask(aiocoap.GET, valve)).payload == b"open"
            assert (await ask(aiocoap.PUT, valve, b"closed")).code == aiocoap.CHANGED
            too_big = await ask(aiocoap.PUT, valve, b"x" * 2000)  # goes block-wise
            assert too_big.code == aiocoap.BAD_OPTION
            locked = fleet["coap-locked"].address
            assert (await ask(aiocoap.GET, f"coap://{locked}/.well-known/core")).code == \
                aiocoap.UNAUTHORIZED
    finally:
        await client.shutdown()


async def _s_client(address: str, flag: str, until: str) -> list[str]:
    """`openssl s_client`'s state lines until one contains `until` (or it exits), then stop."""
    process = await asyncio.create_subprocess_exec(
        "openssl", "s_client", flag, "-psk", "0102030405060708", "-state",
        "-connect", f"{address}:5684", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert process.stdout is not None
    lines: list[str] = []
    try:
        for _ in range(MAX_LINES):
            line = (await asyncio.wait_for(process.stdout.readline(), LINE_WAIT)).decode()
            if not line:
                break
            lines.append(line.strip())
            if until in line:
                break
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
    return lines


async def test_dtls_personas_speak_to_openssl(fleet: dict[str, DeviceSpec]) -> None:
    strict, legacy = fleet["coaps-sensor"].address, fleet["coaps-legacy"].address
    hello = await _s_client(strict, "-dtls1_2", "read server done")
    assert "SSL_connect:DTLS1 read hello verify request" in hello
    assert "SSL_connect:SSLv3/TLS read server hello" in hello
    assert hello[-1] == "SSL_connect:SSLv3/TLS read server done"
    refused = await _s_client(strict, "-dtls1", "alert read")
    assert refused[-1] == "SSL3 alert read:fatal:protocol version"
    old = await _s_client(legacy, "-dtls1", "read server done")
    assert old[-1] == "SSL_connect:SSLv3/TLS read server done"
