"""Terminal tables (rich): the scan summary, the profiles and the check catalogue.

Every cell and title that holds data (device ids and addresses, profile and waiver texts from
an input file) is a `shown_text`: never markup, controls escaped (probe.display).
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from probe.checks.base import Check
from probe.display import shown_text
from probe.model import Severity, Status, Verdict
from probe.profile import Profile
from probe.record.model import Record
from probe.waivers import expired, scope


def console(*, stderr: bool = False) -> Console:
    """A console that does not squeeze tables to 80 columns when writing to a pipe or file."""
    out = Console(stderr=stderr)
    if not out.is_terminal:
        out.width = max(out.width, 160)
    return out


_VERDICT_STYLE = {Verdict.CONFORMANT: "green", Verdict.NONCONFORMANT: "bold red",
                  Verdict.INCONCLUSIVE: "yellow"}
_ORDER = {Verdict.NONCONFORMANT: 0, Verdict.INCONCLUSIVE: 1, Verdict.CONFORMANT: 2}


@dataclass(frozen=True, order=True)
class DeviceRow:
    """One line of the summary; small on purpose (the summary keeps a bounded number)."""

    rank: tuple[int, int, str]
    device: str = field(compare=False)
    address: str = field(compare=False)
    verdict: Verdict = field(compare=False)
    failed: str = field(compare=False)
    errors: int = field(compare=False)
    passed: int = field(compare=False)
    worst: str = field(compare=False)

    @classmethod
    def of(cls, record: Record) -> DeviceRow:
        verdict = record.verdict
        failing = [r for r in record.results if r.counts_as_failure]
        by_severity = Counter(r.severity for r in failing)
        failed = " ".join(f"{by_severity[s]}{s.value[0].upper()}" for s in Severity
                          if by_severity[s])
        worst = max(failing, key=lambda r: r.severity.rank, default=None)
        weight = sum(r.severity.rank for r in failing)
        return cls(
            rank=(_ORDER[verdict], -weight, record.device.id),
            device=record.device.id, address=record.address, verdict=verdict,
            failed=failed or "-",
            errors=sum(r.status is Status.ERROR for r in record.results),
            passed=sum(r.status is Status.PASS for r in record.results),
            worst=worst.check if worst else "-",
        )


class Summary:
    """Counts for the whole scan and the `limit` worst devices, in bounded memory."""

    def __init__(self, limit: int = 40) -> None:
        self.limit = limit
        self.verdicts: Counter[Verdict] = Counter()
        self.failing_checks: Counter[str] = Counter()
        self._worst: list[tuple[tuple[int, int], int, DeviceRow]] = []
        self._seq = 0

    def add(self, record: Record) -> None:
        self.verdicts[record.verdict] += 1
        self.failing_checks.update({r.check for r in record.results if r.counts_as_failure})
        row = DeviceRow.of(record)
        self._seq += 1
        entry = ((-row.rank[0], -row.rank[1]), self._seq, row)
        if len(self._worst) < self.limit:
            heapq.heappush(self._worst, entry)
        else:
            heapq.heappushpop(self._worst, entry)

    def retract(self, record: Record) -> None:
        """Take back what `add` counted for `record`, which is being replaced."""
        self.verdicts[record.verdict] -= 1
        self.failing_checks -= Counter({r.check for r in record.results if r.counts_as_failure})
        kept = [e for e in self._worst if e[2].device != record.device.id]
        if len(kept) != len(self._worst):
            self._worst = kept
            heapq.heapify(self._worst)

    @property
    def devices(self) -> int:
        return sum(self.verdicts.values())

    def render(self, profile: Profile, location: str) -> Group:
        """The summary, readable at 80 columns: verdicts and counts are never cut; a device
        (its id, and its address below when that differs, as it does for every inventory
        device and never for an IP given on the command line) and its worst failure wrap
        instead of being cut."""
        rows = sorted((e[2] for e in self._worst), key=lambda r: r.rank)
        table = Table(title=shown_text(f"iotprobe: {self.devices} device(s), profile "
                                       f"{profile.id}"), title_justify="left",
                      box=box.SIMPLE_HEAD, padding=0)
        table.add_column("device", overflow="fold", min_width=12)
        table.add_column("verdict", no_wrap=True)
        table.add_column("failed", min_width=5)
        for name in ("err", "pass"):
            table.add_column(name, no_wrap=True, justify="right")
        table.add_column("worst failure", no_wrap=True)
        for row in rows:
            device = shown_text(row.device)
            if row.address != row.device:
                device.append("\n").append_text(shown_text(row.address, style="dim"))
            table.add_row(device, Text(row.verdict.value, style=_VERDICT_STYLE[row.verdict]),
                          row.failed, str(row.errors), str(row.passed), shown_text(row.worst))
        lines: list[Table | Text] = [table]
        if self.devices > len(rows):
            lines.append(Text(f"... {self.devices - len(rows)} more device(s): see the records"))
        totals = ", ".join(f"{self.verdicts[v]} {v.value}" for v in Verdict)
        lines.append(shown_text(f"{totals}; records in {location}"))
        if self.failing_checks:
            top = ", ".join(f"{c} ({n})" for c, n in self.failing_checks.most_common(5))
            lines.append(Text(f"most failed checks: {top}"))
        return Group(*lines)


def profiles_table(profiles: list[Profile]) -> Table:
    table = Table(title="built-in profiles", title_justify="left")
    for name in ("id", "version", "checks", "extends", "title"):
        table.add_column(name)
    for p in profiles:
        table.add_row(*(shown_text(cell) for cell in (
            p.id, p.version, str(len(p.checks)), ", ".join(p.extends) or "-", p.title)))
    return table


def profile_detail(profile: Profile) -> Group:
    head = Text.assemble(shown_text(profile.id, "bold"), shown_text(f"  {profile.title}"), "\n",
                         shown_text(f"version {profile.version}, {profile.digest}"), "\n",
                         shown_text(f"source {profile.source}"))
    if profile.intrusive:
        head.append("\nintrusive checks: on")
    parts: list[Text | Table] = [head]
    for control in profile.controls:
        table = Table(title=shown_text(f"{control.id}: {control.title}"), title_justify="left")
        for name in ("check", "severity", "parameters", "references"):
            table.add_column(name, overflow="fold")
        for cfg in (c for c in profile.checks if c.control == control.id):
            params = json.dumps(dict(cfg.params), sort_keys=True) if cfg.params else "-"
            if cfg.class_params:
                params += "\nby class: " + json.dumps(
                    {k: dict(v) for k, v in cfg.class_params.items()}, sort_keys=True)
            refs = "\n".join(f"{k}: {', '.join(v)}" for k, v in cfg.references.items())
            table.add_row(shown_text(cfg.id), cfg.severity.value,
                          *(Text("\n").join(shown_text(line) for line in cell.split("\n"))
                            for cell in (params, refs or "-")))
        parts.append(table)
    if profile.waivers:
        waivers = Table(title="waivers", title_justify="left")
        for name in ("check", "scope", "expires", "justification"):
            waivers.add_column(name)
        today = dt.datetime.now(dt.UTC).date()
        for w in profile.waivers:
            until = f"{w.expires} (expired)" if expired(w, today) else w.expires
            waivers.add_row(*(shown_text(cell) for cell in (w.check, scope(w), until,
                                                            w.justification)))
        parts.append(waivers)
    return Group(*parts)


def catalogue_table(checks: Mapping[str, Check]) -> Table:
    table = Table(title="check catalogue", title_justify="left")
    for name in ("id", "control", "severity", "intrusive", "title"):
        table.add_column(name, no_wrap=name == "id")
    for cid in sorted(checks):
        c = checks[cid]
        table.add_row(*(shown_text(cell) for cell in (
            cid, c.control, c.severity.value, "yes" if c.intrusive else "", c.title)))
    return table
