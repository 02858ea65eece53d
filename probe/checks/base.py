"""How a check is declared: its catalogue metadata beside one pure evaluation function.

A check names the collectors it needs; the engine gathers those once per device (shared with
every other check that needs them) and calls `evaluate` with what they returned and the profile's
parameters for this device. `evaluate` does no I/O: it reads observations and returns findings,
one per target (endpoint) it judged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from probe.context import Params
from probe.model import Device, Finding, Severity
from probe.observe.base import Collector

T = TypeVar("T")

CONTROL_COMMUNICATION = "27400-6.2"
CONTROL_MONITORING = "27400-6.5"


class Observations:
    """The facts a check asked for, by collector, plus the device they are about."""

    def __init__(self, device: Device, values: Mapping[Collector[Any], Any]) -> None:
        self.device = device
        self._values = values

    def __getitem__(self, collector: Collector[T]) -> T:
        return cast(T, self._values[collector])


Evaluate = Callable[[Observations, Params], Iterable[Finding]]


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    control: str
    severity: Severity
    needs: tuple[Collector[Any], ...]
    evaluate: Evaluate
    remediation: str
    intrusive: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, Check] = {}


def check(
    id: str,
    *,
    title: str,
    control: str,
    severity: Severity,
    needs: tuple[Collector[Any], ...],
    remediation: str,
    intrusive: bool = False,
    defaults: Mapping[str, Any] | None = None,
) -> Callable[[Evaluate], Evaluate]:
    """Register the decorated function as the evaluation of check `id`."""

    def register(evaluate: Evaluate) -> Evaluate:
        if id in _REGISTRY:
            raise RuntimeError(f"check {id} is declared twice")
        _REGISTRY[id] = Check(
            id=id, title=title, control=control, severity=severity, needs=needs,
            evaluate=evaluate, remediation=remediation, intrusive=intrusive,
            defaults=dict(defaults or {}),
        )
        return evaluate

    return register


def registry() -> Mapping[str, Check]:
    return _REGISTRY
