"""probe.api: one check on one device, as the engine runs it, against real peers on
127.154.1.x (mosquitto with anonymous access, nginx answering 200 on every path)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from probe.api import device_context, judge_check, run_check
from probe.context import ScanOptions
from probe.errors import InputError
from probe.model import Status
from probe.observe.discovery import services
from tests.daemons import mosquitto, nginx

OPTIONS = ScanOptions(timeout=3.0, exclude_ports=(2024,), udp=False)


async def test_run_check_judges_a_real_broker_with_the_given_params(tmp_path: Path) -> None:
    address = "127.154.1.1"
    with mosquitto(tmp_path, address, 1883):
        anonymous = await run_check("mqtt.anonymous-access", address, ports=(1883,),
                                    options=OPTIONS)
        default = await run_check("net.open-ports", address, ports=(1883,), options=OPTIONS)
        allowed = await run_check("net.open-ports", address, ports=(1883,), options=OPTIONS,
                                  allowed_tcp=[1883])
    assert [(f.target, f.status) for f in anonymous] == [("tcp/1883", Status.FAIL)]
    assert [f.status for f in default] == [Status.FAIL]
    assert [f.status for f in allowed] == [Status.PASS]


async def test_collectors_read_the_params_of_run_check(tmp_path: Path) -> None:
    """`protected_paths` reaches the collector: the one path given is the one visited."""
    address = "127.154.1.2"
    with nginx(tmp_path, address, 8080):
        findings = await run_check("http.authentication", address, ports=(8080,),
                                   options=OPTIONS, protected_paths=["/only-this"])
    assert [f.status for f in findings] == [Status.FAIL]
    text = json.dumps([[f.summary, f.evidence] for f in findings])
    assert "/only-this" in text and "/admin" not in text


async def test_a_shared_context_gathers_once_and_judge_check_is_pure(tmp_path: Path) -> None:
    address = "127.154.1.3"
    with mosquitto(tmp_path, address, 1883), \
            device_context(address, ScanOptions(timeout=3.0, tcp_ports=(1883,),
                                                exclude_ports=(2024,), udp=False)) as ctx:
        first = await run_check("net.open-ports", address, context=ctx)
        connections = ctx.connections
        again = await run_check("net.open-ports", address, context=ctx, allowed_tcp=[1883])
        assert ctx.connections == connections
        found = await ctx.observe(services)
    assert [f.status for f in first] == [Status.FAIL]
    assert [f.status for f in again] == [Status.PASS]
    judged = judge_check("net.open-ports", {services: found}, address, allowed_tcp=[1883])
    assert judged == again


@pytest.mark.parametrize(("params", "field"), [
    ({"allowed_tcp": [0]}, "allowed_tcp.0"),
    ({"allowed_tcp": "443"}, "allowed_tcp"),
    ({"alowed_tcp": [443]}, "alowed_tcp"),
])
async def test_a_bad_parameter_is_an_input_error_before_any_traffic(
        params: dict[str, object], field: str) -> None:
    with device_context("127.154.1.4", OPTIONS) as ctx:
        with pytest.raises(InputError) as info:
            await run_check("net.open-ports", "127.154.1.4", context=ctx, **params)
        assert ctx.connections == 0
    assert info.value.field == field
    with pytest.raises(InputError):
        judge_check("net.open-ports", {}, "127.154.1.4", **params)
    with pytest.raises(InputError):
        await run_check("no.such-check", "127.154.1.4")
