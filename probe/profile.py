"""A resolved profile: what to check, how strictly, for which device class, with which waivers.

`probe.profile_loader` builds one from YAML (following `extends`); the engine asks it for the
plan of one device: each enabled check with its severity, typed parameters for the device's
class, references and any waiver in force.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from probe.model import Device, Severity, Waiver
from probe.selection import Selection

if TYPE_CHECKING:
    from probe.checks.params import CheckParams

References = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Control:
    id: str
    title: str
    references: References = field(default_factory=dict)


@dataclass(frozen=True)
class CheckConfig:
    id: str
    control: str
    severity: Severity
    params: Mapping[str, Any] = field(default_factory=dict)
    class_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    references: References = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedCheck:
    id: str
    control: str
    severity: Severity
    params: CheckParams
    """The check's defaults, overlaid with the profile's values and its class's values."""
    references: References
    waiver: Waiver | None


@dataclass(frozen=True)
class Profile:
    id: str
    title: str
    version: str
    digest: str
    source: str
    controls: tuple[Control, ...]
    checks: tuple[CheckConfig, ...]
    waivers: tuple[Waiver, ...] = ()
    tcp_ports: tuple[int, ...] = ()
    intrusive: bool = False
    description: str = ""
    extends: tuple[str, ...] = ()
    selection: Selection | None = None
    """The command line's check selection that left out some of the profile's checks
    (probe.selection); its checks are those it kept."""
    _params: dict[tuple[str, type[CheckParams], str | None], CheckParams] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def meta(self) -> dict[str, str]:
        return {"id": self.id, "version": self.version, "digest": self.digest}

    def plan(
        self, device: Device, models: Mapping[str, type[CheckParams]], today: dt.date
    ) -> list[PlannedCheck]:
        """The checks to run on `device`; `models` are each check's typed parameters (the
        profile's values were validated with them when it loaded, so this does not fail)."""
        plan = []
        for cfg in self.checks:
            params = self._typed(cfg, models[cfg.id], device.device_class)
            waiver = next(
                (w for w in self.waivers
                 if w.covers(cfg.id, device) and dt.date.fromisoformat(w.expires) >= today),
                None,
            )
            plan.append(PlannedCheck(cfg.id, cfg.control, cfg.severity, params,
                                     cfg.references, waiver))
        return plan

    def _typed(self, cfg: CheckConfig, model: type[CheckParams],
               device_class: str | None) -> CheckParams:
        """`cfg`'s parameters for a device of `device_class`, built once per class."""
        key = (cfg.id, model, device_class)
        typed = self._params.get(key)
        if typed is None:
            values = dict(cfg.params)
            if device_class is not None:
                values.update(cfg.class_params.get(device_class, {}))
            typed = self._params[key] = model.model_validate(values)
        return typed
