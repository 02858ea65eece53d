"""The interoperability matrix in the test suite (see tests/interop): every peer scanned five
times through the command line, held to its expected statuses, to its reference tool, to
itself, and to the committed table in docs/interop.md."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from interop import REPO, Peer, Status
from interop.run import Outcome, filtered, matrix, selected
from interop.table import rows

SCANS = int(os.environ.get("INTEROP_SCANS", "5"))
PEERS = selected()


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    if not PEERS:
        pytest.skip("no peers selected")
    with matrix(PEERS, SCANS, tmp_path_factory.mktemp("matrix")) as done:
        yield done


@pytest.mark.parametrize("peer", PEERS, ids=lambda peer: peer.key)
def test_the_probe_reports_what_the_configuration_implies(outcome: Outcome, peer: Peer) -> None:
    found = outcome.scans[0].cells.get(peer.key)
    assert found is not None, f"no record for {peer.key}"
    got = {check: found.get(check) for check in peer.expect}
    wrong = {check: (str(got[check]), str(want)) for check, want in peer.expect.items()
             if got[check] != want}
    evidence = {r["check"]: (r["status"], r["summary"])
                for r in outcome.scans[0].records[peer.key]["results"] if r["check"] in wrong}
    assert not wrong, f"(got, expected): {wrong}; results: {evidence}"


@pytest.mark.parametrize("peer", [p for p in PEERS if p.reference is not None],
                         ids=lambda peer: peer.key)
def test_the_reference_tool_agrees_or_the_docs_say_why(outcome: Outcome, peer: Peer) -> None:
    said = outcome.readings[peer.key]
    found = outcome.scans[0].cells[peer.key]
    assert said, f"{peer.reference_tool} said nothing about {peer.key}"
    for check, reading in said.items():
        if reading.status != found.get(check):
            assert peer.notes.get(check), (
                f"{peer.reference_tool} says {reading.status} ({reading.said}) for {check}, "
                f"the probe {found.get(check)}, and no note says why")


def test_five_scans_give_identical_statuses(outcome: Outcome) -> None:
    first = outcome.scans[0].cells
    for n, again in enumerate(outcome.scans[1:], start=2):
        differ = {key: {c: (first[key].get(c), s) for c, s in cells.items()
                        if first[key].get(c) != s}
                  for key, cells in again.cells.items() if cells != first.get(key)}
        assert not differ, f"scan {n} differs from scan 1: {differ}"


def _stable(line: str) -> str:
    """A table row without what may change from run to run and is not a verdict: the
    installed version, and the free text of the reference tool's answer and of the note (a
    Date header, a day count); the statuses and the agreement stay."""
    cells = line.split(" | ")
    return " | ".join(cells[:2] + cells[3:7] + [cells[7].split(":")[0],
                                                cells[8].split(":")[0]])


def test_the_table_in_the_docs_is_what_the_probe_says(outcome: Outcome) -> None:
    if filtered():
        pytest.skip("the table covers every protocol; $INTEROP_PROTOCOLS selects some")
    table = (REPO / "docs" / "interop.md").read_text().splitlines()
    committed = [_stable(line) for line in table
                 if line.startswith("| ") and not line.startswith("| protocol |")]
    now = [_stable(line) for line in rows(outcome.peers, outcome.scans[0],
                                                   outcome.readings, outcome.versions)]
    assert committed == now, "docs/interop.md is stale: run scripts/interop_matrix.py"


def test_every_peer_expects_something() -> None:
    for peer in PEERS:
        assert peer.expect, peer.key
        assert all(isinstance(s, Status) for s in peer.expect.values())
