"""Start the matrix, scan it, ask the reference tools: shared by the test and the script."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from interop import Peer, Protocol, Reading, Scan, addresses, registry, scan, started


def selected() -> tuple[Peer, ...]:
    """Every peer, or those of the protocols named in $INTEROP_PROTOCOLS (e.g. "TLS,HTTP"):
    a developer working on one protocol runs its part alone."""
    wanted = os.environ.get("INTEROP_PROTOCOLS", "")
    if not wanted:
        return registry.ALL
    names = {name.strip().upper() for name in wanted.split(",") if name.strip()}
    return tuple(peer for peer in registry.ALL if peer.protocol.name in names)


def filtered() -> bool:
    return bool(os.environ.get("INTEROP_PROTOCOLS"))


@dataclass(frozen=True)
class Outcome:
    peers: tuple[Peer, ...]
    scans: tuple[Scan, ...]
    readings: Mapping[str, Mapping[str, Reading]]
    versions: Mapping[str, str]


@contextmanager
def matrix(peers: Sequence[Peer], scans: int, tmp: Path | None = None) -> Iterator[Outcome]:
    """Start `peers`, scan them `scans` times, read every reference tool, version and status;
    the peers run until the block ends."""
    with tempfile.TemporaryDirectory(prefix="iotprobe-matrix-") as scratch:
        root = tmp or Path(scratch)
        where = addresses(peers)
        with started(peers, root / "peers") as setups:
            done = tuple(scan(peers, setups, root / f"scan-{n}") for n in range(scans))
            readings = {peer.key: dict(peer.reference(where[peer.key], setups[peer.key]))
                        for peer in peers if peer.reference is not None}
            versions = {peer.key: peer.version() for peer in peers}
            yield Outcome(tuple(peers), done, readings, versions)


__all__ = ["Outcome", "Protocol", "filtered", "matrix", "selected"]
