"""Identification of RTSP: OPTIONS on the conventional ports; its status line is read by the
HTTP classifier. No judged service: the checks do not look at RTSP ports."""

from __future__ import annotations

from probe.protocols.base import TcpIdent, TcpProbe
from probe.protocols.http.ident import headers_end, host

PORTS = frozenset({554, 8554})


def _options(address: str, port: int, tls: bool) -> bytes:
    return (f"OPTIONS rtsp://{host(address, port, 554)}/ RTSP/1.0\r\nCSeq: 1\r\n"
            "User-Agent: iotprobe\r\n\r\n").encode()


TCP = TcpIdent(
    "rtsp", PORTS, frozenset({"rtsp"}),
    plan=("rtsp", "tls", "http"),
    probe=TcpProbe("rtsp", 4096, _options, headers_end),
    serves_by_port=((90, PORTS, frozenset()),),
)
