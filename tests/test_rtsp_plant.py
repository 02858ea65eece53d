"""RTSP and plant-protocol checks against real peers on 127.172.0.x: GStreamer's RTSP server
open, with Basic authentication, and inside TLS with authentication; pymodbus's Modbus/TCP
server; a bacpypes3 BACnet/IP device. Each check passes on one and fails on another."""

from __future__ import annotations

from pathlib import Path

from daemons import certificate, device_context, scan_context
from peers import bacnet_device, gst_rtsp, modbus_server

from probe.api import run_check
from probe.model import Status
from probe.observe.discovery import services, udp_services

ACCOUNT = ("viewer", "s3cret-viewer")


async def test_open_rtsp_serves_its_description(tmp_path: Path) -> None:
    address = "127.172.0.1"
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
    address = "127.172.0.2"
    with gst_rtsp(tmp_path, address, 554, "/live", account=ACCOUNT), \
            device_context(address, (554,)) as ctx:
        (auth,) = await run_check("rtsp.authentication", ctx.device, context=ctx)
        (clear,) = await run_check("rtsp.cleartext", ctx.device, context=ctx)
    assert auth.status is Status.PASS, auth
    live = next(a for a in auth.evidence["answers"] if a["path"] == "/live")
    assert live["status"] == 401 and live["schemes"] == ["Basic"]
    assert clear.status is Status.FAIL


async def test_rtsps_passes_both(tmp_path: Path) -> None:
    address = "127.172.0.3"
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
    address = "127.172.0.4"
    with gst_rtsp(tmp_path, address, 8554, "/vendor/main"):
        with device_context(address, (8554,)) as ctx:
            (unknown,) = await run_check("rtsp.authentication", ctx.device, context=ctx)
        with device_context(address, (8554,), params={
                "rtsp.authentication": {"paths": ["/live", "/vendor/main"]}}) as ctx:
            (found,) = await run_check("rtsp.authentication", ctx.device, context=ctx)
    assert unknown.status is Status.ERROR, unknown
    assert {a["status"] for a in unknown.evidence["answers"]} == {404}
    assert found.status is Status.FAIL, found


async def test_modbus_exposure_by_class(tmp_path: Path) -> None:
    address = "127.172.0.5"
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
    address = "127.172.0.6"
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
    address = "127.172.0.7"
    with gst_rtsp(tmp_path, address, 8554, "/live"), device_context(address, (502, 8554)) as ctx:
        (result,) = await run_check("plant.exposure", ctx.device, context=ctx)
    assert result.status is Status.PASS, result
