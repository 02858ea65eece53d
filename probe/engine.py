"""The scheduler: devices in parallel under a global limit, checks in parallel on each device.

For each device the engine resolves the address once, gathers discovery (the reachability gate),
then runs every planned check concurrently: each awaits the collectors it needs through the
device's observation cache and evaluates them. The whole device runs under its budget; whatever
has not finished when the budget runs out becomes an `error` result. Each device's record
(probe.record) is handed to the caller as it finishes, so nothing of a finished device stays in
memory.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import socket
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from typing import Any

from probe import __version__
from probe.checks.base import Check, Observations
from probe.checks.catalogue import catalogue
from probe.context import DeviceContext, Network, ScanOptions
from probe.model import Device, Finding, Result, Service, Severity, Status, errored, skipped
from probe.observe.base import ObservationError
from probe.observe.discovery import services as discover
from probe.profile import PlannedCheck, Profile
from probe.record.model import ProbeInfo, ProfileRef, Record, record_of

log = logging.getLogger(__name__)


OnRecord = Callable[[Record], Awaitable[None] | None]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class Engine:
    """Scans devices against one profile with the given options."""

    def __init__(self, profile: Profile, options: ScanOptions,
                 checks: Mapping[str, Check] | None = None) -> None:
        self.profile = profile
        self.checks = catalogue() if checks is None else checks
        self.intrusive = options.intrusive or profile.intrusive
        self.options = options
        self.defaults = {cid: c.defaults for cid, c in self.checks.items()}
        self._profile_ref = ProfileRef(**profile.meta())

    async def run(self, devices: Iterable[Device] | AsyncIterable[Device],
                  on_record: OnRecord) -> None:
        """Scan every device, at most `concurrency` at once, streaming their records."""
        network = Network(self.options)
        queue: asyncio.Queue[Device | None] = asyncio.Queue(maxsize=self.options.concurrency)
        workers = max(1, self.options.concurrency)

        async def worker() -> None:
            while (device := await queue.get()) is not None:
                record = await self.scan_device(device, network)
                delivered = on_record(record)
                if delivered is not None:
                    await delivered

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(worker())
                async for device in _each(devices):
                    await queue.put(device)
                for _ in range(workers):
                    await queue.put(None)
        finally:
            network.close()

    async def scan_device(self, device: Device, network: Network) -> Record:
        started = _now()
        plan = self.profile.plan(device, self.defaults, started.date())
        address, problem = await _resolve(device.address, self.options.timeout)
        if problem is not None:
            return self.failed(device, problem, reason="resolution", started=started)
        ctx = DeviceContext(device, address, self.options, network,
                            params=lambda cid: _params_of(plan, cid),
                            scan_tcp_ports=self.profile.tcp_ports)
        done: dict[int, list[Result]] = {}
        found: tuple[Service, ...] = ()
        try:
            async with asyncio.timeout(self.options.budget):
                try:
                    inventory = await ctx.observe(discover)
                    found = tuple(inventory.as_services())
                except Exception as exc:
                    finding = self._failure(exc, ctx.device.id, "discovery")
                    return self._finished(device, address, started, found, plan,
                                         {i: [self._result(p, finding, 0)]
                                          for i, p in enumerate(plan)})
                async with asyncio.TaskGroup() as group:
                    for index, planned in enumerate(plan):
                        group.create_task(self._run_check(ctx, index, planned, done))
        except TimeoutError:
            pass
        finally:
            ctx.cancel_pending()
        return self._finished(device, address, started, found, plan, done)

    def failed(self, device: Device, message: str, *, reason: str,
               started: dt.datetime | None = None) -> Record:
        """The record of a device that could not be scanned: every planned check `error`."""
        begun = _now() if started is None else started
        finding = errored(message, reason=reason)
        plan = self.profile.plan(device, self.defaults, begun.date())
        return self._record(device, device.address, begun, (),
                            [self._result(p, finding, 0) for p in plan])

    def _finished(self, device: Device, address: str, started: dt.datetime,
                 found: tuple[Service, ...], plan: list[PlannedCheck],
                 done: dict[int, list[Result]]) -> Record:
        late = errored(f"the device budget of {self.options.budget:g} s ran out before this "
                       "check finished", reason="budget")
        results: list[Result] = []
        for index, planned in enumerate(plan):
            results.extend(done.get(index) or [self._result(planned, late, 0)])
        return self._record(device, address, started, found, results)

    def _record(self, device: Device, address: str, started: dt.datetime,
                found: tuple[Service, ...], results: list[Result]) -> Record:
        return record_of(device=device, address=address, profile=self._profile_ref,
                         probe=ProbeInfo(__version__, self.intrusive), started_at=started,
                         finished_at=_now(), services=found, results=results)

    async def _run_check(self, ctx: DeviceContext, index: int, planned: PlannedCheck,
                         done: dict[int, list[Result]]) -> None:
        begin = time.monotonic()
        findings = await self._evaluate(ctx, planned)
        elapsed = int((time.monotonic() - begin) * 1000)
        done[index] = [self._result(planned, f, elapsed) for f in findings]

    async def _evaluate(self, ctx: DeviceContext, planned: PlannedCheck) -> list[Finding]:
        check = self.checks[planned.id]
        if check.intrusive and not self.intrusive:
            return [skipped("intrusive check: run with --intrusive (or an intrusive profile) "
                            "to enable it", reason="intrusive")]
        try:
            values = await ctx.observe_all(check.needs)
            findings = list(check.evaluate(Observations(ctx.device, dict(zip(
                check.needs, values, strict=True))), planned.params))
        except Exception as exc:
            return [self._failure(exc, ctx.device.id, planned.id)]
        if not findings:
            return [errored("the check produced no result", reason="internal")]
        return findings

    def _failure(self, exc: Exception, device_id: str, what: str) -> Finding:
        """The `error` finding for an exception: the cause, never a crashed scan."""
        if isinstance(exc, ObservationError):
            return errored(exc.message, reason=exc.reason)
        if isinstance(exc, TimeoutError):
            return errored(f"no answer within {self.options.timeout:g} s", reason="timeout")
        if isinstance(exc, OSError):
            return errored(f"network error: {exc.strerror or type(exc).__name__}",
                           reason="network")
        log.error("%s failed on %s: %s", what, device_id, type(exc).__name__, exc_info=exc)
        return errored(f"internal error in the probe: {type(exc).__name__}", reason="internal")

    def _result(self, planned: PlannedCheck, finding: Finding, duration_ms: int) -> Result:
        check = self.checks[planned.id]
        waiver = planned.waiver if finding.status is Status.FAIL else None
        return Result(check=planned.id, control=planned.control, severity=planned.severity,
                      finding=finding, remediation=check.remediation,
                      references=planned.references, duration_ms=duration_ms, waived=waiver)


async def _each(devices: Iterable[Device] | AsyncIterable[Device]) -> AsyncIterator[Device]:
    if isinstance(devices, AsyncIterable):
        async for device in devices:
            yield device
    else:
        for device in devices:
            yield device


def _params_of(plan: list[PlannedCheck], check_id: str) -> Mapping[str, Any]:
    return next((p.params for p in plan if p.id == check_id), {})


async def _resolve(address: str, timeout: float) -> tuple[str, str | None]:
    """The IP to use for `address`: itself if a literal, else one lookup of the given name."""
    try:
        return str(ipaddress.ip_address(address)), None
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(address, None, type=socket.SOCK_STREAM), timeout)
    except (OSError, TimeoutError) as exc:
        return address, f"the name {address} did not resolve: {exc}"
    return str(infos[0][4][0]), None


def fails_at(results: Iterable[Result], threshold: Severity) -> bool:
    """Whether any unwaived failure is at or above `threshold` (the `--fail-on` rule)."""
    return any(r.counts_as_failure and r.severity.rank >= threshold.rank for r in results)
