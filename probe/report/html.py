"""The HTML report: one self-contained page, readable without a network.

The fleet at a glance (verdict counts, the worst checks with the devices failing them, the
controls), an index of devices, then a section per device with every result, its evidence and
its remediation. Inline CSS, no script, a Content-Security-Policy that forbids every fetch.
Rendered with Jinja2 (autoescaping on, and every printed string's control and bidi characters
shown as \\xNN/\\uNNNN first) in two passes over the records: the first keeps only
counters and one short row per device, the second streams the device sections.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from jinja2 import Environment, PackageLoader, StrictUndefined

from probe import __version__
from probe.escaping import shown
from probe.model import Result, Status
from probe.record.model import Record
from probe.report.source import RecordSource, stamp
from probe.stamps import STAMP

SEVERITIES = ("critical", "high", "medium", "low")
_SEVERITY_RANK = {s: len(SEVERITIES) - i for i, s in enumerate(SEVERITIES)}
STATUSES = ("fail", "error", "pass", "not_applicable", "skipped")
_STATUS_ORDER = {"fail": 0, "waived": 1, "error": 2, "skipped": 3, "not_applicable": 4,
                 "pass": 5}
_VERDICT_ORDER = {"nonconformant": 0, "inconclusive": 1, "conformant": 2}
WORST_CHECKS = 10
DEVICES_PER_CHECK = 8


def _state(result: Result) -> str:
    if result.status is Status.FAIL and result.waived is not None:
        return "waived"
    return result.status.value


@dataclass
class CheckStat:
    id: str
    control: str
    severity: str
    failing: int = 0
    errors: int = 0
    passing: int = 0
    devices: list[tuple[str, str]] = field(default_factory=list)
    """Up to DEVICES_PER_CHECK (device id, anchor) that fail it."""

    @property
    def rank(self) -> tuple[int, int, str]:
        return (-_SEVERITY_RANK.get(self.severity, 0), -self.failing, self.id)


@dataclass
class ControlStat:
    id: str
    statuses: Counter[str] = field(default_factory=Counter)
    not_satisfied: int = 0
    inconclusive: int = 0
    devices: int = 0


@dataclass(frozen=True)
class DeviceRow:
    id: str
    anchor: str
    address: str
    device_class: str
    verdict: str
    failed: str
    errors: int
    weight: int


@dataclass
class Fleet:
    verdicts: Counter[str] = field(default_factory=Counter)
    devices: list[DeviceRow] = field(default_factory=list)
    checks: dict[str, CheckStat] = field(default_factory=dict)
    controls: dict[str, ControlStat] = field(default_factory=dict)

    def add(self, index: int, record: Record) -> None:
        device = record.device
        anchor = f"d-{index}"
        verdict = record.verdict.value
        self.verdicts[verdict] += 1
        failing: Counter[str] = Counter()
        errors = 0
        failing_checks: set[str] = set()
        per_control: dict[str, set[str]] = {}
        for result in record.results:
            state = _state(result)
            severity = result.severity.value
            stat = self.checks.setdefault(result.check, CheckStat(
                result.check, result.control, severity))
            if _SEVERITY_RANK[severity] > _SEVERITY_RANK.get(stat.severity, 0):
                stat.severity = severity
            if state == "fail":
                failing[severity] += 1
                failing_checks.add(result.check)
            elif state == "error":
                errors += 1
                stat.errors += 1
            elif state == "pass":
                stat.passing += 1
            control = self.controls.setdefault(result.control, ControlStat(result.control))
            control.statuses[state] += 1
            per_control.setdefault(result.control, set()).add(state)
        for check_id in failing_checks:
            stat = self.checks[check_id]
            stat.failing += 1
            if len(stat.devices) < DEVICES_PER_CHECK:
                stat.devices.append((device.id, anchor))
        for control_id, states in per_control.items():
            control = self.controls[control_id]
            control.devices += 1
            if "fail" in states:
                control.not_satisfied += 1
            elif "error" in states:
                control.inconclusive += 1
        self.devices.append(DeviceRow(
            id=device.id, anchor=anchor, address=device.address,
            device_class=device.device_class or "", verdict=verdict,
            failed=" ".join(f"{failing[s]} {s}" for s in SEVERITIES if failing[s]) or "-",
            errors=errors,
            weight=sum(_SEVERITY_RANK[s] * n for s, n in failing.items())))

    def worst_checks(self) -> list[CheckStat]:
        return sorted((c for c in self.checks.values() if c.failing), key=lambda c: c.rank
                      )[:WORST_CHECKS]

    def device_index(self) -> list[DeviceRow]:
        return sorted(self.devices, key=lambda d: (_VERDICT_ORDER.get(d.verdict, 3), -d.weight,
                                                   d.id))


def check_anchor(check_id: str) -> str:
    return "check-" + check_id.replace(".", "-")


def control_anchor(control_id: str) -> str:
    return "control-" + "".join(c if c.isalnum() or c == "-" else "-" for c in control_id)


def _result_view(result: Result) -> dict[str, Any]:
    view: dict[str, Any] = {
        "check": result.check, "target": result.finding.target,
        "severity": result.severity.value, "summary": result.finding.summary,
        "remediation": result.remediation, "state": _state(result),
        "evidence_text": json.dumps(result.finding.evidence, indent=2, sort_keys=True),
        "references_text": "; ".join(f"{k} {', '.join(v)}"
                                     for k, v in result.references.items())}
    if result.waived is not None:
        view["waived"] = {"justification": result.waived.justification,
                          "expires": result.waived.expires}
    return view


def _view(index: int, record: Record) -> dict[str, Any]:
    results = sorted(record.results, key=lambda r: (
        _STATUS_ORDER.get(_state(r), 9), -_SEVERITY_RANK.get(r.severity.value, 0), r.check,
        r.finding.target))
    return {
        "anchor": f"d-{index}",
        "device": record.device_json(),
        "verdict": record.verdict.value,
        "probe": record.probe,
        "started_at": record.started_at.strftime(STAMP),
        "finished_at": record.finished_at.strftime(STAMP),
        "services": record.services,
        "counts": Counter(_state(r) for r in record.results),
        "results": [_result_view(r) for r in results],
    }


def _shown(value: Any) -> Any:
    """Every value the template prints: a string with its controls and bidi characters shown
    escaped (probe.escaping.shown; line breaks kept for <pre>), before HTML escaping."""
    return shown(value, lines=True) if isinstance(value, str) else value


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("probe.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      finalize=_shown)
    env.filters["check_anchor"] = check_anchor
    env.filters["control_anchor"] = control_anchor
    return env


def write_html(source: RecordSource, out: TextIO) -> None:
    """The HTML page of `source`'s records."""
    fleet = Fleet()
    for index, record in enumerate(source.records()):
        fleet.add(index, record)

    def sections() -> Iterator[dict[str, Any]]:
        for index, record in enumerate(source.records()):
            yield _view(index, record)

    template = _environment().get_template("report.html.j2")
    for chunk in template.generate(
            title=f"iotprobe report: {source.title}", source=source,
            generated=stamp(source.generated), version=__version__, fleet=fleet,
            total=len(fleet.devices), verdicts=("nonconformant", "inconclusive", "conformant"),
            worst=fleet.worst_checks(), index=fleet.device_index(),
            controls=sorted(fleet.controls.values(), key=lambda c: c.id),
            checks=sorted(fleet.checks.values(), key=lambda c: c.id),
            statuses=STATUSES, sections=sections()):
        out.write(chunk)
