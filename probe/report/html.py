"""The HTML report: readable without a network, a script or a server.

The overview page holds the fleet at a glance (verdict counts; for a stored sweep, the history
of the sweeps before it as inline SVG charts), the worst checks, slices by class, site,
severity and control, an index of every device with filters, and the checks. Each device's
detail (every result, its evidence as a key/value table with the raw JSON behind a toggle, its
remediation rendered from Markdown, its verdict in each sweep) follows on the same page, or,
past INLINE_DEVICES devices written to a file, on a page of its own beside the overview, so
that a fleet of thousands opens in seconds.

Every anchor and page name derives from a device or check id (probe.report.anchors), so links
survive from one report to the next. The only script is the filter's, allowed by the
Content-Security-Policy through its hash; the policy forbids every fetch. Rendered with Jinja2
(autoescaping on, and every printed string's control and bidi characters shown as
\\xNN/\\uNNNN first) in two passes over the records: the first keeps only counters and one
short row per device, the second streams the device sections or pages.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from probe import __version__
from probe.escaping import shown
from probe.model import Result, Status
from probe.record.model import Record
from probe.report import markdown, svg
from probe.report.anchors import check_anchor, control_anchor, device_anchor
from probe.report.source import History, RecordSource, stamp
from probe.stamps import STAMP

SEVERITIES = ("critical", "high", "medium", "low")
_SEVERITY_RANK = {s: len(SEVERITIES) - i for i, s in enumerate(SEVERITIES)}
STATUSES = ("fail", "error", "pass", "not_applicable", "skipped")
VERDICTS = ("nonconformant", "inconclusive", "conformant")
_STATUS_ORDER = {"fail": 0, "waived": 1, "error": 2, "skipped": 3, "not_applicable": 4,
                 "pass": 5}
_VERDICT_ORDER = {"nonconformant": 0, "inconclusive": 1, "conformant": 2}
_SETTLED = frozenset({"pass", "not_applicable", "skipped"})
"""States with nothing to act on: collapsed under the results that need attention."""
WORST_CHECKS = 10
DEVICES_PER_CHECK = 8
"""Failing devices named in the worst checks table; the filter finds them all."""
CHARTED_CHECKS = 8
"""Checks drawn in the failures-over-time chart (the most failing ones)."""
INLINE_DEVICES = 50
"""Up to this many devices, their detail is on the overview page; past it (a report written
to a file), each device gets a page of its own (see bench/README.md for the measurements)."""
NONE = "(none)"
"""A device's class or site when its inventory gives none."""



@dataclass(frozen=True)
class Pages:
    """Where a report written to a file puts its device pages."""

    folder: str
    """The folder's name, beside the overview (e.g. report-devices)."""
    overview: str
    """The overview's file name (e.g. report.html), for the pages' links back."""
    write: Callable[[str, str], None]
    """Writes one page in the folder: (file name, HTML)."""


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


@dataclass
class SeverityStat:
    severity: str
    checks: set[str] = field(default_factory=set)
    devices: int = 0
    results: int = 0


@dataclass(frozen=True)
class DeviceRow:
    id: str
    anchor: str
    address: str
    device_class: str
    site: str
    verdict: str
    failed: str
    errors: int
    weight: int
    checks: str
    """The checks failing on the device, space-separated (the filter's data)."""
    severities: str
    """The severities the device fails at, space-separated."""


@dataclass
class Fleet:
    verdicts: Counter[str] = field(default_factory=Counter)
    devices: list[DeviceRow] = field(default_factory=list)
    checks: dict[str, CheckStat] = field(default_factory=dict)
    controls: dict[str, ControlStat] = field(default_factory=dict)
    severities: dict[str, SeverityStat] = field(
        default_factory=lambda: {s: SeverityStat(s) for s in SEVERITIES})
    classes: dict[str, Counter[str]] = field(default_factory=dict)
    sites: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, record: Record) -> None:
        device = record.device
        anchor = device_anchor(device.id)
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
                self.severities[severity].checks.add(result.check)
                self.severities[severity].results += 1
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
        for severity in failing:
            self.severities[severity].devices += 1
        self._add_controls(per_control)
        device_class, site = device.device_class or NONE, device.site or NONE
        self.classes.setdefault(device_class, Counter())[verdict] += 1
        self.sites.setdefault(site, Counter())[verdict] += 1
        self.devices.append(DeviceRow(
            id=device.id, anchor=anchor, address=device.address, device_class=device_class,
            site=site, verdict=verdict,
            failed=" ".join(f"{failing[s]} {s}" for s in SEVERITIES if failing[s]) or "-",
            errors=errors,
            weight=sum(_SEVERITY_RANK[s] * n for s, n in failing.items()),
            checks=" ".join(sorted(failing_checks)),
            severities=" ".join(s for s in SEVERITIES if failing[s])))

    def _add_controls(self, per_control: dict[str, set[str]]) -> None:
        for control_id, states in per_control.items():
            control = self.controls[control_id]
            control.devices += 1
            if "fail" in states:
                control.not_satisfied += 1
            elif "error" in states:
                control.inconclusive += 1

    def worst_checks(self) -> list[CheckStat]:
        return sorted((c for c in self.checks.values() if c.failing), key=lambda c: c.rank
                      )[:WORST_CHECKS]

    def device_index(self) -> list[DeviceRow]:
        return sorted(self.devices, key=lambda d: (_VERDICT_ORDER.get(d.verdict, 3), -d.weight,
                                                   d.id))


def _evidence_rows(evidence: Any) -> list[tuple[str, str]]:
    """The evidence as (key, value) rows: a scalar as itself, a list of scalars joined, a list
    of objects one compact JSON object a line, any other value as compact JSON."""
    if not isinstance(evidence, dict):
        return [("value", json.dumps(evidence, sort_keys=True, ensure_ascii=False))]
    rows = []
    for key, value in sorted(evidence.items()):
        if isinstance(value, str):
            text = value
        elif isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            text = ", ".join(str(v) for v in value)
        elif isinstance(value, list):
            text = "\n".join(json.dumps(v, sort_keys=True, ensure_ascii=False) for v in value)
        else:
            text = json.dumps(value, sort_keys=True, ensure_ascii=False)
        rows.append((str(key), text))
    return rows


def _result_view(result: Result) -> dict[str, Any]:
    view: dict[str, Any] = {
        "check": result.check, "target": result.finding.target,
        "severity": result.severity.value, "summary": result.finding.summary,
        "remediation": markdown.render(result.remediation) if result.remediation else "",
        "state": _state(result),
        "evidence": _evidence_rows(result.finding.evidence),
        "evidence_text": json.dumps(result.finding.evidence, indent=2, sort_keys=True),
        "references_text": "; ".join(f"{k} {', '.join(v)}"
                                     for k, v in result.references.items())}
    if result.waived is not None:
        view["waived"] = {"justification": result.waived.justification,
                          "expires": result.waived.expires}
    return view


def _timeline(device_id: str, history: History | None) -> dict[str, Any] | None:
    """The device's verdict in each sweep of the history, and the sweeps where it changed."""
    if history is None or device_id not in history.timelines:
        return None
    cells = history.timelines[device_id]
    changes = [(number, before, after) for (_, before), (number, after)
               in itertools.pairwise(cells) if before != after]
    strip = svg.strip("timeline", f"verdicts of {shown(device_id)} per sweep",
                      [(f"#{number}", verdict) for number, verdict in cells])
    return {"strip": strip, "first": cells[0], "changes": changes}


def _view(record: Record, history: History | None) -> dict[str, Any]:
    results = sorted(record.results, key=lambda r: (
        _STATUS_ORDER.get(_state(r), 9), -_SEVERITY_RANK.get(r.severity.value, 0), r.check,
        r.finding.target))
    views = [_result_view(r) for r in results]
    return {
        "anchor": device_anchor(record.device.id),
        "device": record.device_json(),
        "verdict": record.verdict.value,
        "probe": record.probe,
        "started_at": record.started_at.strftime(STAMP),
        "finished_at": record.finished_at.strftime(STAMP),
        "services": record.services,
        "counts": Counter(_state(r) for r in record.results),
        "open": [v for v in views if v["state"] not in _SETTLED],
        "settled": [v for v in views if v["state"] in _SETTLED],
        "timeline": _timeline(record.device.id, history),
    }


def _charts(history: History | None) -> list[dict[str, Any]]:
    """The history's charts, each with the series it draws (for its table of numbers)."""
    if history is None:
        return []
    xs = [f"#{p.number}" for p in history.sweeps]
    posture = [svg.Series(v, v, [p.verdicts.get(v, 0) for p in history.sweeps])
               for v in VERDICTS]
    latest = history.sweeps[-1].failing
    charted = sorted({c for p in history.sweeps for c in p.failing},
                     key=lambda c: (-latest.get(c, 0),
                                    -max(p.failing.get(c, 0) for p in history.sweeps), c)
                     )[:CHARTED_CHECKS]
    failing = [svg.Series(c, c, [p.failing.get(c, 0) for p in history.sweeps])
               for c in charted]
    changes = [svg.Series("regressions", "regressions",
                          [p.regressions or 0 for p in history.sweeps]),
               svg.Series("fixed", "fixed", [p.fixed or 0 for p in history.sweeps])]
    return [
        {"id": "posture", "title": "Devices per verdict, per sweep",
         "svg": svg.stacked("posture", "devices per verdict per sweep", xs, posture),
         "table": svg.table("posture", xs, posture), "legend": posture},
        {"id": "failing", "title": f"Devices failing each check, per sweep (the "
                                   f"{len(charted)} most failing)",
         "svg": svg.lines("failing", "devices failing each check per sweep", xs, failing),
         "table": svg.table("failing", xs, failing), "legend": failing},
        {"id": "changes", "title": "Regressions (up) and fixes (down) since the sweep before",
         "svg": svg.diverging("changes", "regressions and fixes per sweep", xs, *changes),
         "table": svg.table("changes", xs, changes), "legend": changes},
    ]


def _shown(value: Any) -> Any:
    """Every value the template prints: a string with its controls and bidi characters shown
    escaped (probe.escaping.shown; line breaks kept for <pre>), before HTML escaping. Markup
    (a chart, rendered remediation) was made safe where it was built."""
    if isinstance(value, Markup):
        return value
    return shown(value, lines=True) if isinstance(value, str) else value


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("probe.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      finalize=_shown)
    env.filters["check_anchor"] = check_anchor
    env.filters["control_anchor"] = control_anchor
    return env


def _script() -> tuple[str, str]:
    """The filter's script and its CSP source ('sha256-...')."""
    text = (Path(__file__).parent / "templates" / "filter.js").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return text, f"'sha256-{digest}'"


def write_html(source: RecordSource, out: TextIO, pages: Pages | None = None) -> None:
    """The HTML report of `source`'s records. With `pages`, a fleet of more than
    INLINE_DEVICES devices gets a page per device there."""
    fleet = Fleet()
    for record in source.records():
        fleet.add(record)
    history = source.history() if source.history is not None else None
    paged = pages is not None and len(fleet.devices) > INLINE_DEVICES
    env = _environment()
    script, script_hash = _script()
    common = {"source": source, "generated": stamp(source.generated), "version": __version__,
              "statuses": STATUSES, "history": history}

    def href(anchor: str) -> str:
        return f"{pages.folder}/{anchor}.html" if pages is not None and paged else f"#{anchor}"

    def sections() -> Iterator[dict[str, Any]]:
        for record in source.records():
            view = _view(record, history)
            if not paged:
                yield view
            elif pages is not None:
                pages.write(f"{view['anchor']}.html", env.get_template("device.html.j2").render(
                    title=f"{record.device.id}: iotprobe report: {source.title}", d=view,
                    overview=f"../{pages.overview}", **common))

    template = env.get_template("report.html.j2")
    for chunk in template.generate(
            title=f"iotprobe report: {source.title}", fleet=fleet,
            total=len(fleet.devices), verdicts=VERDICTS, severities=SEVERITIES,
            worst=fleet.worst_checks(), index=fleet.device_index(), href=href, paged=paged,
            controls=sorted(fleet.controls.values(), key=lambda c: c.id),
            checks=sorted(fleet.checks.values(), key=lambda c: c.id),
            charts=_charts(history), script=Markup(script), script_hash=Markup(script_hash),
            sections=sections(), **common):
        out.write(chunk)
