"""One check, one device: the public helper for scripts and tests.

    findings = await run_check("mqtt.anonymous-access", "127.0.0.1", ports=(1883,))

`run_check` runs a check as the engine does (the same collectors through the device's
observation cache, the same undecided-port rule, the same evaluation) without a profile, an
inventory or a record. `judge_check` is its pure half: observations a test built itself, judged
with the check's parameters. Both validate `**params` with the check's typed parameters, so a
bad value is an InputError as it is when a profile loads; parameters left out take the check's
defaults.

A fleet check judges a device against the other devices of a scan or sweep; alone, a device
has nothing to be compared with, and both give the one answer of `alone()`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from probe.checks.base import Check, Observations, PlanView
from probe.checks.catalogue import catalogue
from probe.checks.params import CheckParams
from probe.context import DeviceContext, Network, ScanOptions
from probe.errors import InputError
from probe.model import Device, Finding, skipped
from probe.observe.base import Need

Plan = Mapping[str, Mapping[str, Any]]
"""Parameters by check id, as a profile's checks give them."""


def alone() -> Finding:
    """A fleet check's answer on one device judged on its own."""
    return skipped("decided across the devices of a scan or sweep once they finish; a device "
                   "scanned on its own has nothing to compare with", reason="fleet")


def _check(check_id: str) -> Check:
    known = catalogue().get(check_id)
    if known is None:
        raise InputError(f"unknown check {check_id!r}", field="check")
    return known


def check_params(check_id: str, **params: Any) -> CheckParams:
    """The check's typed parameters: its defaults overlaid with `params`, once its model
    accepts them (InputError otherwise)."""
    check = _check(check_id)
    for name in params:
        if name not in check.params.model_fields:
            raise InputError(f"{check_id} has no parameter {name!r} (parameters: "
                             f"{', '.join(check.params.model_fields) or 'none'})", field=name)
    model: type[CheckParams] = check.params
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(step) for step in error["loc"])
        raise InputError(f"{check_id}: {error['msg']}", field=where or None) from None


def plan_view(plan: Plan | None = None) -> PlanView:
    """The device's plan as the engine shows it to checks: `plan`'s checks with their
    validated parameters, every other check with its defaults."""
    return PlanView({check_id: check_params(check_id, **values)
                     for check_id, values in (plan or {}).items()})


def _device(device: Device | str) -> Device:
    return device if isinstance(device, Device) else Device(id=device, address=device)


@contextlib.contextmanager
def device_context(device: Device | str, options: ScanOptions | None = None
                   ) -> Iterator[DeviceContext]:
    """A DeviceContext for one device as the engine builds it (`device` is a Device or an IP
    literal)."""
    target = _device(device)
    network = Network(options or ScanOptions())
    try:
        yield DeviceContext(target, target.address, network.options, network,
                            scan_tcp_ports=network.options.tcp_ports or ())
    finally:
        network.close()


def _own(check_id: str, plan: Plan | None, params: Mapping[str, Any]) -> Plan:
    """`plan` with `params` overlaid on the check's own entry."""
    return {**(plan or {}), check_id: {**(plan or {}).get(check_id, {}), **params}}


def judge_check(check_id: str,
                observations: Observations
                | Mapping[Callable[..., Awaitable[Any]] | Need[Any], Any],
                device: Device | str | None = None, **params: Any) -> list[Finding]:
    """The findings of `check_id` on `observations` (its collectors' values, by collector or
    Need, of `device`; or an Observations that names its device), with the check's defaults
    overlaid with `params`. Pure: no I/O."""
    check = _check(check_id)
    values = check_params(check_id, **params)
    if check.evaluate is None:
        return [alone()]
    if not isinstance(observations, Observations):
        if device is None:
            raise TypeError("judge_check needs the device the observations are about")
        observations = Observations(_device(device), observations)
    return list(check.evaluate(observations, values))


async def run_check(check_id: str, device: Device | str, *,
                    ports: tuple[int, ...] | None = None, options: ScanOptions | None = None,
                    context: DeviceContext | None = None, plan: Plan | None = None,
                    **params: Any) -> list[Finding]:
    """Run one check against one device as the engine does.

    `params` are the check's parameters, `plan` those of the other checks a profile would
    plan on the device (a check that shares a collector reads its owner's: the CoAP checks
    `coap.cleartext`'s `max_resources`, the HTTP and monitoring checks `http.authentication`'s
    `protected_paths`); all are validated by the checks' typed parameters (InputError on a bad
    one) and overlay their defaults. The collectors run through the device's observation
    cache: pass `context` (from `device_context`) to share that cache between calls, else one
    is made from `options` (default ScanOptions) with `ports` as its TCP ports. The
    undecided-port rule applies as in a scan; an intrusive check runs (the caller asked for
    this one); a fleet check gives its single-device result.
    """
    check = _check(check_id)
    view = plan_view(_own(check_id, plan, params))
    if check.evaluate is None:
        return [alone()]
    if context is not None:
        return await check.run(context, view.params(check), view)
    scan = options or ScanOptions()
    if ports is not None:
        scan = dataclasses.replace(scan, tcp_ports=ports)
    with device_context(device, scan) as ctx:
        return await check.run(ctx, view.params(check), view)
