"""What changed between two sweeps: the settings they ran with, verdicts, checks newly failing
or passing, newly assessed or no longer assessed, devices that appeared or vanished.

A diff compares like with like. When the sweeps ran with different settings (intrusive mode,
profile digest, the checks they ran, the probe's version) it says so first, and a check that
was not assessed in the first sweep (skipped, or absent) but fails in the second is "newly
assessed", not a regression: a regression is a check assessed in both that newly fails, so a
change of settings alone never makes `diff` exit 1. The reverse, a failure that is skipped or
absent in the second sweep, is "no longer assessed", never "newly passing".

Both sweeps' result rows are read in the same order (device, check, target) and merged one
device at a time, so memory holds one device's results, not a sweep's.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from probe.store.db import ResultKey, Store, SweepInfo
from probe.store.models import ResultRow

_RANK = {"fail": 5, "error": 4, "waived": 3, "pass": 2, "not_applicable": 1, "skipped": 0}
PASSING = frozenset({"pass", "not_applicable"})
"""States a failure can turn into to count as newly passing."""
UNASSESSED = frozenset({"skipped", None})
"""States of a check that was not assessed: skipped, or absent from the device (None)."""


@dataclass(frozen=True)
class SettingChange:
    """One setting the two sweeps ran with differently."""

    setting: str
    """mode, profile, probe or checks."""
    before: str
    after: str


@dataclass(frozen=True)
class VerdictChange:
    device: str
    before: str
    after: str


@dataclass(frozen=True)
class CheckChange:
    device: str
    check: str
    target: str
    severity: str
    before: str | None
    after: str | None
    summary: str


@dataclass(frozen=True)
class DeviceVerdict:
    device: str
    verdict: str


@dataclass
class Diff:
    a: SweepInfo
    b: SweepInfo
    verdicts: list[VerdictChange] = field(default_factory=list)
    settings: list[SettingChange] = field(default_factory=list)
    regressions: list[CheckChange] = field(default_factory=list)
    fixed: list[CheckChange] = field(default_factory=list)
    newly_assessed: list[CheckChange] = field(default_factory=list)
    no_longer_assessed: list[CheckChange] = field(default_factory=list)
    appeared: list[DeviceVerdict] = field(default_factory=list)
    vanished: list[DeviceVerdict] = field(default_factory=list)

    @property
    def profile_changed(self) -> bool:
        return self.a.profile["digest"] != self.b.profile["digest"]

    def as_json(self) -> dict[str, Any]:
        return {
            "a": self.a.as_json(), "b": self.b.as_json(),
            "profile_changed": self.profile_changed,
            "settings_changed": [vars(s) for s in self.settings],
            "verdict_changes": [vars(v) for v in self.verdicts],
            "regressions": [vars(c) for c in self.regressions],
            "newly_passing": [vars(c) for c in self.fixed],
            "newly_assessed": [vars(c) for c in self.newly_assessed],
            "no_longer_assessed": [vars(c) for c in self.no_longer_assessed],
            "appeared": [vars(d) for d in self.appeared],
            "vanished": [vars(d) for d in self.vanished],
        }


State = tuple[str, str, str]
"""(state, severity, summary) of a result."""


@dataclass(frozen=True)
class _Device:
    id: str
    verdict: str
    results: dict[tuple[str, str], State]
    """(check, target) -> the worst state of that check on that target."""
    checks: dict[str, State]
    """check -> its worst state on any target of the device."""

    def state(self, key: tuple[str, str]) -> State | None:
        """The state at `key`, else the check's state on the device's other targets (an
        endpoint that appeared or went away is compared with the check as a whole)."""
        return self.results.get(key) or self.checks.get(key[0])


def state_of(key: ResultKey) -> str:
    """A result's state for comparison: a waived failure is not a failure."""
    if key.status == "fail" and key.waived:
        return "waived"
    return key.status


def _worse(known: State | None, state: State) -> bool:
    return known is None or _RANK[state[0]] > _RANK[known[0]]


def _devices(keys: Iterator[ResultKey]) -> Iterator[_Device]:
    for device_id, rows in itertools.groupby(keys, key=lambda k: k.device_id):
        results: dict[tuple[str, str], State] = {}
        checks: dict[str, State] = {}
        verdict = ""
        for row in rows:
            verdict = row.verdict
            state = (state_of(row), row.severity, row.summary)
            if _worse(results.get((row.check_id, row.target)), state):
                results[(row.check_id, row.target)] = state
            if _worse(checks.get(row.check_id), state):
                checks[row.check_id] = state
        yield _Device(device_id, verdict, results, checks)


def _compare(before: _Device, after: _Device, out: Diff) -> None:
    if before.verdict != after.verdict:
        out.verdicts.append(VerdictChange(after.id, before.verdict, after.verdict))
    for key, (state, severity, summary) in sorted(after.results.items()):
        old = before.state(key)
        was = old[0] if old else None
        if state == "fail" and was != "fail":
            into = out.newly_assessed if was in UNASSESSED else out.regressions
            into.append(CheckChange(after.id, key[0], key[1], severity, was, state, summary))
    for key, (state, severity, _) in sorted(before.results.items()):
        new = after.state(key)
        now = new[0] if new else None
        if state != "fail" or (now not in PASSING and now not in UNASSESSED):
            continue
        into = out.fixed if now in PASSING else out.no_longer_assessed
        into.append(CheckChange(after.id, key[0], key[1], new[1] if new else severity, state,
                                now, new[2] if new else "the check did not run"))


def checks_run(store: Store, number: int) -> frozenset[str]:
    """The checks sweep `number` ran: every check with a result, skipped ones included."""
    query = select(ResultRow.check_id).where(ResultRow.sweep_id == number).distinct()
    with Session(store.engine) as session:
        return frozenset(session.scalars(query))


def _listed(checks: frozenset[str], limit: int = 8) -> str:
    shown = sorted(checks)
    more = f" and {len(shown) - limit} more" if len(shown) > limit else ""
    return ", ".join(shown[:limit]) + more


def setting_changes(store: Store, a: SweepInfo, b: SweepInfo) -> list[SettingChange]:
    """The settings sweeps `a` and `b` ran with differently."""
    changes = []
    if a.intrusive != b.intrusive:
        changes.append(SettingChange("mode", _mode(a), _mode(b)))
    if a.profile["digest"] != b.profile["digest"]:
        changes.append(SettingChange("profile", _profile(a), _profile(b)))
    if a.probe_version != b.probe_version:
        changes.append(SettingChange("probe", a.probe_version, b.probe_version))
    before, after = checks_run(store, a.number), checks_run(store, b.number)
    if before != after:
        changes.append(SettingChange(
            "checks", f"{len(before)} checks" + (f", without {_listed(after - before)}"
                                                 if after - before else ""),
            f"{len(after)} checks" + (f", without {_listed(before - after)}"
                                      if before - after else "")))
    return changes


def _mode(sweep: SweepInfo) -> str:
    return "intrusive" if sweep.intrusive else "non-intrusive"


def _profile(sweep: SweepInfo) -> str:
    return f"{sweep.profile['id']} {sweep.profile['version']} ({sweep.profile['digest'][:19]})"


def diff(store: Store, a: SweepInfo, b: SweepInfo) -> Diff:
    """What changed from sweep `a` to sweep `b`."""
    out = Diff(a, b, settings=setting_changes(store, a, b))
    left, right = _devices(store.result_keys(a.number)), _devices(store.result_keys(b.number))
    old, new = next(left, None), next(right, None)
    while old is not None or new is not None:
        if old is not None and (new is None or old.id < new.id):
            out.vanished.append(DeviceVerdict(old.id, old.verdict))
            old = next(left, None)
        elif new is not None and (old is None or new.id < old.id):
            out.appeared.append(DeviceVerdict(new.id, new.verdict))
            new = next(right, None)
        elif old is not None and new is not None:
            _compare(old, new, out)
            old, new = next(left, None), next(right, None)
    return out
