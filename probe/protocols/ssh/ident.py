"""Identification of SSH: the version line a server sends first is read by the banner
classifier (`probe.protocols.banner`, which also hints port 22 and the inventory name `ssh`);
this declares the judged service `ssh` the SSH checks apply to, and which ports may carry it."""

from __future__ import annotations

from probe.protocols.base import TcpIdent

PORTS = frozenset({22})
SERVICE = "ssh"

TCP = TcpIdent(
    SERVICE, frozenset(), frozenset(),
    plan=(),
    judged={SERVICE: "SSH"},
    serves_by_name={"ssh": frozenset({SERVICE})},
    serves_by_port=((60, PORTS, frozenset({SERVICE})),),
)
"""No ports or names of its own: the banner attempt goes first where SSH is expected."""
