"""What changed between two sweeps: verdicts, checks newly failing or passing, devices that
appeared or vanished.

Both sweeps' result rows are read in the same order (device, check, target) and merged one
device at a time, so memory holds one device's results, not a sweep's.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from probe.store.db import ResultKey, Store, SweepInfo

_RANK = {"fail": 5, "error": 4, "waived": 3, "pass": 2, "not_applicable": 1, "skipped": 0}
PASSING = frozenset({"pass", "not_applicable", None})
"""States a failure can turn into to count as newly passing (None: the check is gone)."""


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
    regressions: list[CheckChange] = field(default_factory=list)
    fixed: list[CheckChange] = field(default_factory=list)
    appeared: list[DeviceVerdict] = field(default_factory=list)
    vanished: list[DeviceVerdict] = field(default_factory=list)

    @property
    def profile_changed(self) -> bool:
        return self.a.profile["digest"] != self.b.profile["digest"]

    def as_json(self) -> dict[str, Any]:
        return {
            "a": self.a.as_json(), "b": self.b.as_json(),
            "profile_changed": self.profile_changed,
            "verdict_changes": [vars(v) for v in self.verdicts],
            "regressions": [vars(c) for c in self.regressions],
            "newly_passing": [vars(c) for c in self.fixed],
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
        if state == "fail" and (old is None or old[0] != "fail"):
            out.regressions.append(CheckChange(after.id, key[0], key[1], severity,
                                               old[0] if old else None, state, summary))
    for key, (state, severity, _) in sorted(before.results.items()):
        new = after.state(key)
        if state == "fail" and (new[0] if new else None) in PASSING:
            out.fixed.append(CheckChange(
                after.id, key[0], key[1], new[1] if new else severity, state,
                new[0] if new else None, new[2] if new else "the check no longer runs"))


def diff(store: Store, a: SweepInfo, b: SweepInfo) -> Diff:
    """What changed from sweep `a` to sweep `b`."""
    out = Diff(a, b)
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
