"""Identification of TLS: the conventional TLS ports and inventory names, and the judged
service `tls`. The handshake itself, and the protocols tried inside it, are identification's
own (`probe.observe.identify`)."""

from __future__ import annotations

from probe.protocols.base import TcpIdent

PORTS = frozenset({322, 443, 4443, 5443, 8443, 8883, 8884, 9001, 9443})

TCP = TcpIdent(
    "tls", PORTS, frozenset({"https", "mqtts", "rtsps"}),
    plan=("tls", "http", "mqtt"),
    judged={"tls": "TLS"},
    serves_by_name={"https": frozenset({"tls", "https"}), "wss": frozenset({"tls", "https"}),
                    "tls": frozenset({"tls"}), "ssl": frozenset({"tls"}),
                    "amqps": frozenset({"tls"}), "ftps": frozenset({"tls"})},
    serves_by_port=((20, PORTS, frozenset({"tls", "https"})),),
)
