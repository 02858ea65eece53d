"""RTSP and plant-protocol checks against real peers on 127.174.10.x: GStreamer's RTSP server
open, with Basic authentication, and inside TLS with authentication; pymodbus's Modbus/TCP
server; a bacpypes3 BACnet/IP device. Each check passes on one and fails on another."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import load_records
from daemons import Listener, certificate, device_context, scan_context
from hypothesis import given
from hypothesis import strategies as st
from peers import bacnet_device, gst_rtsp, modbus_server
from pymodbus.client import AsyncModbusTcpClient

from probe.api import run_check
from probe.lab import PERSONAS, plan_fleet, run_fleet
from probe.model import Status
from probe.observe.discovery import services, udp_services
from probe.protocols.bacnet import codec as bacnet_codec
from probe.protocols.modbus import codec as modbus_codec
from probe.protocols.rtsp import codec as rtsp_codec

ACCOUNT = ("viewer", "s3cret-viewer")


async def test_open_rtsp_serves_its_description(tmp_path: Path) -> None:
    address = "127.174.10.1"
    with gst_rtsp(tmp_path, address, 8554, "/live"), device_context(address, (8554,)) as ctx:
        (auth,) = await run_check("rtsp.authentication", ctx.device, context=ctx)
        (clear,) = await run_check("rtsp.cleartext", ctx.device, context=ctx)
    assert auth.status is Status.FAIL, auth
    assert auth.target == clear.target == "tcp/8554"
    served = auth.evidence["answers"][-1]
    assert served["path"] == "/live" and served["status"] == 200
    assert served["content_type"] == "application/sdp" and served["body"].startswith("v=0")
    assert clear.status is Status.FAIL and clear.evidence["tls"] is False


async def test_rtsp_with_authentication_refuses_describe(tmp_path: Path) -> None:
    address = "127.174.10.2"
    with gst_rtsp(tmp_path, address, 554, "/live", account=ACCOUNT), \
            device_context(address, (554,)) as ctx:
        (auth,) = await run_check("rtsp.authentication", ctx.device, context=ctx)
        (clear,) = await run_check("rtsp.cleartext", ctx.device, context=ctx)
    assert auth.status is Status.PASS, auth
    live = next(a for a in auth.evidence["answers"] if a["path"] == "/live")
    assert live["status"] == 401 and live["schemes"] == ["Basic"]
    assert clear.status is Status.FAIL


async def test_rtsps_passes_both(tmp_path: Path) -> None:
    address = "127.174.10.3"
    with gst_rtsp(tmp_path, address, 322, "/live", tls=certificate(tmp_path), account=ACCOUNT), \
            device_context(address, (322,)) as ctx:
        found = await ctx.observe(services)
        (auth,) = await run_check("rtsp.authentication", ctx.device, context=ctx)
        (clear,) = await run_check("rtsp.cleartext", ctx.device, context=ctx)
    (ident,) = found.tcp
    assert (ident.protocol, ident.tls) == ("rtsp", True), ident
    assert clear.status is Status.PASS, clear
    assert auth.status is Status.PASS, auth


async def test_the_stream_path_list_is_a_parameter(tmp_path: Path) -> None:
    """An open server whose stream is not on the list: 404 everywhere is an error, not a pass;
    the path added, it fails."""
    address = "127.174.10.4"
    with gst_rtsp(tmp_path, address, 8554, "/vendor/main"):
        with device_context(address, (8554,)) as ctx:
            (unknown,) = await run_check("rtsp.authentication", ctx.device, context=ctx)
        with device_context(address, (8554,)) as ctx:
            (found,) = await run_check("rtsp.authentication", ctx.device, context=ctx,
                                       paths=["/live", "/vendor/main"])
    assert unknown.status is Status.ERROR, unknown
    assert {a["status"] for a in unknown.evidence["answers"]} == {404}
    assert found.status is Status.FAIL, found


async def test_modbus_exposure_by_class(tmp_path: Path) -> None:
    address = "127.174.10.5"
    with modbus_server(tmp_path, address), device_context(address, (502,)) as ctx:
        found = await ctx.observe(services)
        (exposed,) = await run_check("plant.exposure", ctx.device, context=ctx)
        (allowed,) = await run_check("plant.exposure", ctx.device, context=ctx,
                                     allowed=["modbus"])
    (ident,) = found.tcp
    assert ident.protocol == "modbus"
    assert ident.evidence["objects"] == {"vendor": "iotprobe-test", "product_code": "PLC-1",
                                         "revision": "3.16"}
    assert exposed.status is Status.FAIL and exposed.target == "tcp/502", exposed
    assert allowed.status is Status.PASS, allowed


async def test_bacnet_exposure_by_class(tmp_path: Path) -> None:
    address = "127.174.10.6"
    with bacnet_device(tmp_path, address, instance=4321), \
            scan_context(address, timeout=3.0) as ctx:
        found = await ctx.observe(udp_services)
        (exposed,) = await run_check("plant.exposure", ctx.device, context=ctx)
        (allowed,) = await run_check("plant.exposure", ctx.device, context=ctx,
                                     allowed=["bacnet", "modbus"])
    (bacnet,) = [s for s in found if s.protocol == "bacnet"]
    assert bacnet.port == 47808 and bacnet.evidence["instance"] == 4321
    assert exposed.status is Status.FAIL and exposed.target == "udp/47808", exposed
    assert allowed.status is Status.PASS, allowed


async def test_plant_exposure_passes_where_no_plant_protocol_answers(tmp_path: Path) -> None:
    address = "127.174.10.7"
    with gst_rtsp(tmp_path, address, 8554, "/live"), device_context(address, (502, 8554)) as ctx:
        (result,) = await run_check("plant.exposure", ctx.device, context=ctx)
    assert result.status is Status.PASS, result


def _scan(tmp: Path, devices: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The records of a scan of `devices` by the command line (default profile), by id."""
    inventory = tmp / "inventory.yaml"
    inventory.write_text(json.dumps({"devices": devices}))
    done = subprocess.run(
        [sys.executable, "-m", "probe", "scan", "-i", str(inventory), "-o", str(tmp / "out"),
         "--exclude-ports", "2024", "--timeout", "3", "--budget", "90"],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, cwd=tmp)
    assert done.returncode in (0, 1), done.stderr
    return load_records(tmp / "out")


def _status(record: dict[str, Any], check: str) -> dict[str, str]:
    return {r["target"]: r["status"] for r in record["results"] if r["check"] == check}


def test_the_profile_allows_plant_protocols_by_class(tmp_path: Path) -> None:
    """The built-in profile through the command line: the same Modbus and BACnet peers fail
    plant.exposure as a gateway and pass as the classes that allow them."""
    modbus_at, bacnet_at = "127.174.10.8", "127.174.10.9"
    with modbus_server(tmp_path, modbus_at), bacnet_device(tmp_path, bacnet_at, instance=77):
        records = _scan(tmp_path, [
            {"id": "mb-gateway", "address": modbus_at, "class": "gateway", "ports": "502"},
            {"id": "mb-plc", "address": modbus_at, "class": "plc", "ports": "502"},
            {"id": "bn-gateway", "address": bacnet_at, "class": "gateway", "ports": "80"},
            {"id": "bn-bms", "address": bacnet_at, "class": "building-controller",
             "ports": "80"},
        ])
    assert _status(records["mb-gateway"], "plant.exposure") == {"tcp/502": "fail"}
    assert _status(records["mb-plc"], "plant.exposure") == {"tcp/502": "pass"}
    assert _status(records["mb-plc"], "net.open-ports") == {"device": "pass"}
    assert _status(records["bn-gateway"], "plant.exposure") == {"udp/47808": "fail"}
    assert _status(records["bn-bms"], "plant.exposure") == {"udp/47808": "pass"}
    assert _status(records["bn-bms"], "net.open-ports") == {"device": "pass"}
    (result,) = [r for r in records["mb-gateway"]["results"] if r["check"] == "plant.exposure"]
    assert result["evidence"]["identified_by"]["objects"]["vendor"] == "iotprobe-test"


@given(st.binary(max_size=600))
def test_the_parsers_take_any_bytes(data: bytes) -> None:
    """Device data is attacker-controlled: every parser returns, and what it keeps is
    bounded."""
    reply = rtsp_codec.parse(data)
    assert len(reply.line) <= rtsp_codec.EXCERPT_CHARS
    assert len(reply.body) <= rtsp_codec.EXCERPT_CHARS
    rtsp_codec.complete(data)
    modbus_codec.complete(data)
    answer = modbus_codec.parse(data)
    if answer is not None:
        assert all(len(v) <= modbus_codec.OBJECT_CHARS for v in answer.objects.values())
    bacnet_codec.parse_i_am(data)


def test_a_modbus_frame_must_echo_the_request() -> None:
    good = modbus_codec.parse(bytes.fromhex("1a7e0000000301ab01"))
    assert good is not None and good.exception == 1
    assert modbus_codec.parse(bytes.fromhex("00010000000301ab01")) is None  # other id
    assert modbus_codec.parse(bytes.fromhex("1a7e0001000301ab01")) is None  # protocol 1
    assert modbus_codec.parse(bytes.fromhex("1a7e0000000901ab01")) is None  # short
    assert modbus_codec.parse(b"HTTP/1.1 400 Bad Request\r\n\r\n") is None


def test_an_i_am_must_name_a_device_object() -> None:
    i_am = bytes.fromhex("810a001501001000c4020004d222040091002203e7")
    assert bacnet_codec.parse_i_am(i_am) == bacnet_codec.IAm(1234, 1024, "both", 999)
    analog_input = i_am[:9] + bytes.fromhex("000004d2") + i_am[13:]
    assert bacnet_codec.parse_i_am(analog_input) is None
    assert bacnet_codec.parse_i_am(i_am[:-1]) is None  # the BVLC length no longer matches


async def _options_then_hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer OPTIONS like a camera, then hold every DESCRIBE without a byte."""
    request = await reader.read(4096)
    if request.startswith(b"OPTIONS"):
        writer.write(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nPublic: OPTIONS, DESCRIBE\r\n\r\n")
        await writer.drain()
    while await reader.read(4096):
        pass


async def test_an_endpoint_that_hangs_on_describe_costs_one_timeout() -> None:
    """Scripted (no real server behaves so): identified as RTSP by OPTIONS, then silent. The
    survey stops at the first silent path and the check is an error, not a pass."""
    address = "127.174.10.10"
    async with Listener(address, 8554, _options_then_hang) as listener:
        with device_context(address, (8554,), timeout=1.0) as ctx:
            (result,) = await run_check("rtsp.authentication", ctx.device, context=ctx)
    assert result.status is Status.ERROR, result
    assert [a["path"] for a in result.evidence["answers"]] == ["/"]
    assert result.evidence["answers"][0]["problem"] == "no byte within 1 s"
    assert listener.accepted == 3  # the port scan, OPTIONS, one DESCRIBE


async def test_rtsp_on_an_unusual_port_is_judged_where_the_inventory_names_it(
        tmp_path: Path) -> None:
    """GStreamer answers HTTP on its port too (RTSP over HTTP): on 9554 the HTTP probe names it
    HTTP, and its RTSP goes unjudged; named `rtsp` in the inventory, OPTIONS goes first."""
    address = "127.174.10.11"
    with gst_rtsp(tmp_path, address, 9554, "/live"):
        with scan_context(address, (9554,), udp=False) as ctx:
            (unnamed,) = (await ctx.observe(services)).tcp
            (unjudged,) = await run_check("rtsp.authentication", ctx.device, context=ctx)
        with scan_context(address, (9554,), udp=False, services={"rtsp": (9554,)}) as ctx:
            (named,) = (await ctx.observe(services)).tcp
            (judged,) = await run_check("rtsp.authentication", ctx.device, context=ctx)
    assert unnamed.protocol == "http" and unjudged.status is Status.NOT_APPLICABLE
    assert named.protocol == "rtsp" and judged.status is Status.FAIL, judged


async def test_the_lab_plant_gateway_answers_a_real_modbus_client() -> None:
    """The emulated plant gateway as pymodbus's client reads it: its identification objects,
    and an illegal-function exception to a write (the lab device keeps no state)."""
    specs = plan_fleet([PERSONAS["plant-gateway"]], 1, "127.174.12.1")
    fleet = await run_fleet(specs)
    client = AsyncModbusTcpClient(specs[0].address, port=502, timeout=5)
    try:
        assert await client.connect()
        identity = await client.read_device_information(read_code=1, object_id=0)
        written = await client.write_register(1, 99)
    finally:
        client.close()
        await fleet.stop()
    assert identity.information == {0: b"iotprobe lab", 1: b"PLC-GW", 2: b"1.0"}
    assert written.isError() and written.exception_code == 1
