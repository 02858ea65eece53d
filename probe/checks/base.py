"""How a check is declared: its catalogue metadata beside one pure evaluation function.

A check names the collectors it needs, each with the arguments it runs with (a `Need`); those
arguments come from the check's typed parameters on the device, or, for a collector several
checks share, from the parameters of the check that owns them (`PlanView`), so that all of them
ask for the same run. The engine gathers the needs once per device (shared with every other
check that needs them) and calls `evaluate` with what they returned and the check's parameters
for this device. `evaluate` does no I/O: it reads observations and returns findings, one per
target (endpoint) it judged.

A check that judges TCP services names them in `applies_to` ("tls", "http" for cleartext HTTP,
"https", "mqtt"). Then every open port that may carry one of them (`could_serve`) but whose
identification left it open (`undecided`: silent, unrecognised, TLS with nothing identified
inside) gets an `error` finding from that check, unless the check judged that port itself; and
the check's "not applicable" goes, since the probe does not know there is no such service. This
is the one place that rule lives; a check that was skipped stays skipped.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, cast

from typing_extensions import TypeVar

from probe.checks.params import CheckParams, NoParams
from probe.context import DeviceContext
from probe.model import Device, Finding, Severity, Status, errored
from probe.observe.base import Collector, Need
from probe.observe.discovery import Identification, services
from probe.observe.identify import SERVICE_NAMES, SERVICES

if TYPE_CHECKING:
    from probe.record.model import Record

T = TypeVar("T")
P = TypeVar("P", bound=CheckParams, default=Any)

CONTROL_COMMUNICATION = "27400-6.2"
CONTROL_MONITORING = "27400-6.5"
MAX_PORT_FINDINGS = 16
"""More undecided ports than this make one device-level `error` instead of one per port."""
MAX_LISTED_PORTS = 256

Wanted = Collector[Any] | Need[Any]
"""What a check needs gathered: a collector without arguments, or one with its arguments."""


class Observations:
    """The facts a check asked for, by collector (or by Need), plus the device they are
    about. A collector the check needs with one argument set is also found by the collector
    alone, so an evaluation reads `obs[coap_survey]` whatever the survey's arguments."""

    def __init__(self, device: Device,
                 values: Mapping[Callable[..., Awaitable[Any]] | Need[Any], Any]) -> None:
        self.device = device
        self._values: dict[Callable[..., Awaitable[Any]] | Need[Any], Any] = dict(values)
        for key, value in values.items():
            if isinstance(key, Need):
                self._values.setdefault(key.collector, value)

    def __getitem__(self, wanted: Callable[..., Awaitable[T]] | Need[T]) -> T:
        return cast(T, self._values[wanted])


class PlanView:
    """The typed parameters of every check planned for one device: what a check's needs
    read when it shares a collector with another check (the owner of the collector's
    arguments), so that both ask for the same run."""

    def __init__(self, planned: Mapping[str, CheckParams]) -> None:
        self._planned = planned

    def params(self, check: Check[P]) -> P:
        """`check`'s parameters on this device, or its defaults when it is not planned."""
        found = self._planned.get(check.id)
        return found if isinstance(found, check.params) else check.params()


DEFAULTS = PlanView({})
"""The plan view in which every check has its default parameters."""

Evaluate = Callable[[Observations, P], Iterable[Finding]]
Needs = tuple[Wanted, ...] | Callable[[P, PlanView], tuple[Wanted, ...]]
"""A check's needs: fixed, or computed from its parameters and the device's plan."""


class FleetJudge(Protocol):
    """One fleet check across one scan or sweep: it takes in each device as it finishes and
    decides it against the devices taken in so far; after the last device, `final` names the
    devices whose decision may have changed since, and those are decided again."""

    def observe(self, record: Record) -> None:
        """Take in one finished device (also a resumed sweep's device stored earlier)."""
        ...

    def decide(self, record: Record) -> list[Finding]:
        """The findings of this device against the devices observed so far. Its record holds
        device text as stored (escaped); findings hold device text as the device sent it."""
        ...

    def final(self) -> Iterable[str]:
        """The ids of the devices whose findings may differ from those decided first."""
        ...


Judge = Callable[[Any], FleetJudge]
"""A fleet check's factory: its typed parameters (a `CheckParams`) -> a fresh judge."""


@dataclass(frozen=True)
class Check(Generic[P]):
    id: str
    title: str
    control: str
    severity: Severity
    needs: Needs[P]
    evaluate: Evaluate[P] | None
    """The per-device evaluation; None for a fleet check."""
    remediation: str
    params: type[P]
    """The typed parameters: a profile's values are validated by it when the profile loads."""
    intrusive: bool = False
    applies_to: frozenset[str] = frozenset()
    judge: Judge | None = None
    """A fleet check's judge factory (see FleetJudge); None for a per-device check."""
    references: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Clauses of other frameworks the check tests (framework -> clauses): what a profile
    control with `catalogue: true` gives the check when the profile does not name it."""

    @property
    def defaults(self) -> dict[str, Any]:
        """The parameter defaults, as a profile would write them."""
        return self.params.defaults()

    @property
    def fleet(self) -> bool:
        """Whether the check judges across devices (a fleet check) rather than on one."""
        return self.judge is not None

    def needed(self, params: P, plan: PlanView) -> tuple[Need[Any], ...]:
        """What this check needs gathered on a device with these parameters and plan (the
        discovered services too when it `applies_to` some)."""
        wanted = self.needs(params, plan) if callable(self.needs) else self.needs
        found = tuple(w if isinstance(w, Need) else Need(w) for w in wanted)
        if self.applies_to and Need(services) not in found:
            found = (*found, Need(services))
        return found

    async def run(self, ctx: DeviceContext, params: P, plan: PlanView) -> list[Finding]:
        """Gather what the check needs through the device's observation cache, then judge it
        (the undecided-port rule applied). Not for a fleet check, which judges no device
        alone."""
        if self.evaluate is None:
            raise TypeError(f"{self.id} is a fleet check: it has no per-device evaluation")
        needs = self.needed(params, plan)
        values = await ctx.observe_all((n.collector, n.kwargs) for n in needs)
        observations = Observations(ctx.device, dict(zip(needs, values, strict=True)))
        return list(self.evaluate(observations, params))


def check(
    id: str,
    *,
    title: str,
    control: str,
    severity: Severity,
    needs: Needs[P],
    remediation: str,
    intrusive: bool = False,
    params: type[P] = NoParams,  # type: ignore[assignment]  # NoParams is a P
    applies_to: tuple[str, ...] = (),
    references: Mapping[str, tuple[str, ...]] | None = None,
) -> Callable[[Evaluate[P]], Check[P]]:
    """The check `id` whose evaluation is the decorated function (with the undecided ports of
    the services it `applies_to` made errors, as the module says). Registers nothing: the
    module lists it in its `CHECKS`, and `probe.checks.catalogue` lists the modules."""
    unknown = set(applies_to) - set(SERVICES)
    if unknown:
        raise RuntimeError(f"check {id} applies to unknown services {sorted(unknown)}")
    wanted = frozenset(applies_to)

    def declare(evaluate: Evaluate[P]) -> Check[P]:
        return Check(
            id=id, title=title, control=control, severity=severity, needs=needs,
            evaluate=_undecided_ports(evaluate, wanted) if wanted else evaluate,
            remediation=remediation, intrusive=intrusive, params=params, applies_to=wanted,
            references=dict(references or {}),
        )

    return declare


def fleet_check(
    id: str,
    *,
    title: str,
    control: str,
    severity: Severity,
    remediation: str,
    params: type[P],
) -> Callable[[Callable[[P], FleetJudge]], Check[P]]:
    """The fleet check `id` whose judges the decorated function makes from the check's typed
    parameters (the profile's values for it, validated). Its docstring is the pass/fail rule.
    Registers nothing: the module lists it in its `CHECKS`, as for `check`."""
    def declare(judge: Callable[[P], FleetJudge]) -> Check[P]:
        return Check(id=id, title=title, control=control, severity=severity, needs=(),
                     evaluate=None, remediation=remediation, params=params, judge=judge)

    return declare


def _undecided_ports(evaluate: Evaluate[P], wanted: frozenset[str]) -> Evaluate[P]:
    @functools.wraps(evaluate)  # keeps the docstring: the check's pass/fail rule
    def judged(obs: Observations, params: P) -> Iterable[Finding]:
        findings = list(evaluate(obs, params))
        if findings and all(f.status is Status.SKIPPED for f in findings):
            return findings
        judged_targets = {f.target for f in findings}
        open_ = [(i, s) for i, s in obs[services].unresolved(wanted)
                 if f"tcp/{i.port}" not in judged_targets]
        if not open_:
            return findings
        kept = [f for f in findings if f.status is not Status.NOT_APPLICABLE]
        return kept + undecided_findings(open_)
    return judged


def _names(served: Iterable[str]) -> str:
    return " or ".join(SERVICE_NAMES[s] for s in SERVICES if s in set(served))


def undecided_findings(ports: list[tuple[Identification, frozenset[str]]]) -> list[Finding]:
    """The `error` findings for open ports whose identification left a judged service open:
    one per port, or one for the device when there are more than MAX_PORT_FINDINGS."""
    if len(ports) <= MAX_PORT_FINDINGS:
        return [errored(f"tcp/{i.port} is open but could not be identified: {i.detail}; it may "
                        f"serve {_names(served)}, so this check could not be decided there",
                        f"tcp/{i.port}", reason="unidentified", port=i.port,
                        protocol=i.protocol, tls=i.tls, silent=i.silent,
                        may_serve=sorted(served), identified_by=dict(i.evidence))
                for i, served in ports]
    listed = ", ".join(f"tcp/{i.port}" for i, _ in ports[:MAX_PORT_FINDINGS])
    every: set[str] = set().union(*(served for _, served in ports))
    return [errored(f"{len(ports)} open TCP ports could not be identified ({listed}, ...); each "
                    f"may serve {_names(every)}, so this check could not be decided there",
                    reason="unidentified", count=len(ports), may_serve=sorted(every),
                    ports=[{"port": i.port, "detail": i.detail, "silent": i.silent}
                           for i, _ in ports[:MAX_LISTED_PORTS]])]
