"""A collector several checks need runs once per device, with its owner's parameters (issue 17,
risk 6.3): the CoAP checks all read `coap.cleartext`'s survey, the HTTP checks the visits of
`http.authentication`'s `protected_paths`. Counted on the wire, against lab personas on
127.160.100.x: a check that reads a shared collector after its owner sends nothing more.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from probe.api import Plan, device_context, plan_view
from probe.checks.catalogue import catalogue
from probe.context import DeviceContext, ScanOptions
from probe.lab.fleet import DeviceSpec, plan_fleet, run_fleet
from probe.lab.personas import PERSONAS
from probe.model import Device, Finding, Status

BASE = "127.160.100.1"
COAP_PLAN: Plan = {"coap.cleartext": {"max_resources": 1}}
"""Fewer resources than the persona lists: a survey with the default (32) would read more."""
HTTP_PLAN: Plan = {"http.authentication": {"protected_paths": ["/admin", "/cgi-bin/"]},
                   "http.default-credentials": {"pairs": [], "pace_seconds": 0}}
"""Paths other than the defaults, and no pair to try: default-credentials only reads visits."""
UDP_ONLY = ScanOptions(timeout=2.0, tcp_ports=(), exclude_ports=(2024,))
WEB = ScanOptions(timeout=2.0, tcp_ports=(80,), exclude_ports=(2024,), udp=False)


@pytest.fixture
async def lab() -> AsyncIterator[dict[str, DeviceSpec]]:
    specs = plan_fleet([PERSONAS["coap-sensor"], PERSONAS["weak-webui"]], 2, BASE)
    running = await run_fleet(specs)
    try:
        yield {spec.persona.name: spec for spec in specs}
    finally:
        await running.stop()


async def judge(ctx: DeviceContext, check_id: str, plan: Plan) -> list[Finding]:
    """One check as the engine runs it on a device whose profile plans `plan`."""
    view = plan_view(plan)
    check = catalogue()[check_id]
    return await check.run(ctx, view.params(check), view)


async def test_the_coap_checks_share_one_survey(lab: dict[str, DeviceSpec]) -> None:
    spec = lab["coap-sensor"]
    device = Device(id=spec.id, address=spec.address)
    with device_context(device, UDP_ONLY) as ctx:
        (cleartext,) = await judge(ctx, "coap.cleartext", COAP_PLAN)
        surveyed = ctx.datagrams
        (amplification,) = await judge(ctx, "coap.amplification", COAP_PLAN)
        again = ctx.datagrams
    assert cleartext.status is Status.FAIL, cleartext.summary
    assert cleartext.evidence["listed"] == 2 and cleartext.evidence["read"] == 1
    assert amplification.status is Status.PASS, amplification.summary
    assert amplification.evidence["measured"] == 2  # /.well-known/core and the one resource
    assert surveyed > 0 and again == surveyed


async def test_a_survey_with_other_arguments_is_another_run(lab: dict[str, DeviceSpec]) -> None:
    """The counter-proof: the same check under the default `max_resources` surveys again."""
    spec = lab["coap-sensor"]
    device = Device(id=spec.id, address=spec.address)
    with device_context(device, UDP_ONLY) as ctx:
        await judge(ctx, "coap.cleartext", COAP_PLAN)
        surveyed = ctx.datagrams
        (amplification,) = await judge(ctx, "coap.amplification", {})
    assert amplification.evidence["measured"] == 3
    assert ctx.datagrams > surveyed


async def test_default_credentials_reads_the_visits_of_http_authentication(
        lab: dict[str, DeviceSpec]) -> None:
    spec = lab["weak-webui"]
    device = Device(id=spec.id, address=spec.address)
    with device_context(device, WEB) as ctx:
        (authentication,) = await judge(ctx, "http.authentication", HTTP_PLAN)
        (cleartext,) = await judge(ctx, "http.cleartext", HTTP_PLAN)
        visited = ctx.connections
        (credentials,) = await judge(ctx, "http.default-credentials", HTTP_PLAN)
        again = ctx.connections
        await judge(ctx, "http.default-credentials", {**HTTP_PLAN, "http.authentication": {}})
        defaults = ctx.connections
    assert authentication.status is Status.FAIL, authentication.summary
    assert [p["path"] for p in authentication.evidence["paths"]] == ["/admin", "/cgi-bin/"]
    assert cleartext.status is Status.FAIL, cleartext.summary
    assert credentials.status is Status.SKIPPED and credentials.evidence["path"] == "/cgi-bin/"
    assert again == visited
    assert defaults > again  # the default protected paths are other visits
