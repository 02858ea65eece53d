"""One check, one device: the public helper for scripts and tests.

    findings = await run_check("mqtt.anonymous-access", "127.0.0.1", ports=(1883,))

`run_check` runs a check as the engine does (the same collectors through the device's
observation cache, the same undecided-port rule, the same evaluation) without a profile, an
inventory or a record. `judge_check` is its pure half: observations a test built itself, judged
with the check's parameters. Both validate `**params` with the check's typed parameters, so a
bad value is an InputError as it is when a profile loads; parameters left out take the check's
defaults.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from probe.checks.base import Check, Observations
from probe.checks.catalogue import catalogue
from probe.context import DeviceContext, Network, Params, ScanOptions
from probe.errors import InputError
from probe.model import Device, Finding
from probe.observe.base import Collector


def _check(check_id: str) -> Check:
    known = catalogue().get(check_id)
    if known is None:
        raise InputError(f"unknown check {check_id!r}", field="check")
    return known


def check_params(check_id: str, **params: Any) -> Params:
    """The check's defaults overlaid with `params`, once its typed parameters accept them."""
    check = _check(check_id)
    for name in params:
        if name not in check.params.model_fields:
            raise InputError(f"{check_id} has no parameter {name!r} (parameters: "
                             f"{', '.join(check.params.model_fields) or 'none'})", field=name)
    try:
        check.params.model_validate(params)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(step) for step in error["loc"])
        raise InputError(f"{check_id}: {error['msg']}", field=where or None) from None
    return {**check.defaults, **params}


def _device(device: Device | str) -> Device:
    return device if isinstance(device, Device) else Device(id=device, address=device)


@contextlib.contextmanager
def device_context(device: Device | str, options: ScanOptions | None = None,
                   params: Mapping[str, Mapping[str, Any]] | None = None
                   ) -> Iterator[DeviceContext]:
    """A DeviceContext for one device as the engine builds it (`device` is a Device or an IP
    literal): its collectors read each check's defaults overlaid with `params[check_id]`
    (validated as `run_check` validates its own)."""
    target = _device(device)
    chosen = {check_id: check_params(check_id, **values)
              for check_id, values in (params or {}).items()}
    network = Network(options or ScanOptions())

    def params_for(check_id: str) -> Params:
        known = catalogue().get(check_id)
        return chosen.get(check_id) or (dict(known.defaults) if known else {})

    try:
        yield DeviceContext(target, target.address, network.options, network, params=params_for,
                            scan_tcp_ports=network.options.tcp_ports or ())
    finally:
        network.close()


def judge_check(check_id: str, observations: Observations | Mapping[Collector[Any], Any],
                device: Device | str | None = None, **params: Any) -> list[Finding]:
    """The findings of `check_id` on `observations` (its collectors' values, by collector, of
    `device`; or an Observations that names its device), with the check's defaults overlaid
    with `params`. Pure: no I/O."""
    check = _check(check_id)
    values = check_params(check_id, **params)
    if not isinstance(observations, Observations):
        if device is None:
            raise TypeError("judge_check needs the device the observations are about")
        observations = Observations(_device(device), observations)
    return list(check.evaluate(observations, values))


async def run_check(check_id: str, device: Device | str, *,
                    ports: tuple[int, ...] | None = None, options: ScanOptions | None = None,
                    context: DeviceContext | None = None, **params: Any) -> list[Finding]:
    """Run one check against one device as the engine does.

    `params` are validated by the check's typed parameters (InputError on a bad one) and
    overlay its defaults. Its collectors run through the device's observation cache: pass
    `context` (from `device_context`) to share that cache between calls; the collectors then
    read the context's parameters, `params` reaching the evaluation only. Otherwise a context
    is made from `options` (default ScanOptions) with `ports` as its TCP ports, and the
    collectors read `params` too. The undecided-port rule applies as in a scan; an intrusive
    check runs (the caller asked for this one); a fleet check gives its single-device result.
    """
    if context is not None:
        return await _run(context, check_id, params)
    scan = options or ScanOptions()
    if ports is not None:
        scan = dataclasses.replace(scan, tcp_ports=ports)
    with device_context(device, scan, {check_id: params}) as ctx:
        return await _run(ctx, check_id, params)


async def _run(ctx: DeviceContext, check_id: str, params: Mapping[str, Any]) -> list[Finding]:
    check = _check(check_id)
    check_params(check_id, **params)
    values = await ctx.observe_all(check.needs)
    observations = Observations(ctx.device, dict(zip(check.needs, values, strict=True)))
    return list(check.evaluate(observations, {**check.defaults, **ctx.params_for(check_id),
                                              **params}))
