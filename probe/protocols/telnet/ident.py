"""Identification of Telnet: option negotiation, or a login prompt on a banner port, is read by
the banner classifiers (`probe.protocols.banner`, which also hints ports 23 and 2323 and the
inventory name `telnet`); this declares the judged service `telnet` the Telnet check applies
to, and which ports may carry it."""

from __future__ import annotations

from probe.protocols.base import TcpIdent

PORTS = frozenset({23, 2323})
SERVICE = "telnet"

TCP = TcpIdent(
    SERVICE, frozenset(), frozenset(),
    plan=(),
    judged={SERVICE: "Telnet"},
    serves_by_name={"telnet": frozenset({SERVICE})},
    serves_by_port=((60, PORTS, frozenset({SERVICE})),),
)
"""No ports or names of its own: the banner attempt goes first where Telnet is expected."""
