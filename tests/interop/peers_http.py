"""The HTTP peers of the interoperability matrix (see `interop`)."""

from __future__ import annotations

from interop import Peer

PEERS: list[Peer] = []
