"""`iotprobe sweeps`: the sweeps a store holds, one line each, for choosing what to `diff` or
`report`: number, start, state, mode, profile, and how many devices got each verdict."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from probe.display import shown_text
from probe.model import Verdict
from probe.store import Store, SweepInfo
from probe.store.models import Record


@dataclass(frozen=True)
class SweepLine:
    sweep: SweepInfo
    verdicts: Counter[str]
    """verdict -> devices of the sweep with that verdict."""

    @property
    def mode(self) -> str:
        return "intrusive" if self.sweep.intrusive else "non-intrusive"

    def as_json(self) -> dict[str, Any]:
        return {**self.sweep.as_json(), "mode": self.mode,
                "verdicts": {v.value: self.verdicts[v.value] for v in Verdict}}


def sweep_lines(store: Store) -> list[SweepLine]:
    """Every sweep of `store`, oldest first, with its verdict counts (one grouped query)."""
    query = (select(Record.sweep_id, Record.verdict, func.count())
             .group_by(Record.sweep_id, Record.verdict))
    counts: dict[int, Counter[str]] = {}
    with Session(store.engine) as session:
        for number, verdict, count in session.execute(query):
            counts.setdefault(number, Counter())[verdict] = count
    return [SweepLine(s, counts.get(s.number, Counter())) for s in store.sweeps()]


def sweeps_table(lines: list[SweepLine], location: str) -> Table:
    """The sweeps as a table that fits 80 columns: only the profile wraps (its digest is in
    --json); the start is given to the minute."""
    table = Table(title=shown_text(f"sweeps in {location}"), title_justify="left",
                  box=box.SIMPLE_HEAD, padding=0)
    for name in ("#", "started (UTC)", "state", "mode"):
        table.add_column(name, no_wrap=True, justify="right" if name == "#" else "left")
    table.add_column("profile", overflow="fold", min_width=9)
    table.add_column("devices", no_wrap=True, justify="right")
    table.add_column("verdicts", no_wrap=True)
    for line in lines:
        s = line.sweep
        verdicts = "\n".join(f"{line.verdicts[v.value]} {v.value}" for v in Verdict
                             if line.verdicts[v.value]) or "-"
        table.add_row(str(s.number), s.started_at.strftime("%Y-%m-%d %H:%M"), s.state,
                      line.mode, shown_text(f"{s.profile['id']} {s.profile['version']}"),
                      f"{s.records}/{s.devices}", verdicts)
    return table
