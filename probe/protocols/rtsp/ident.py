"""Identification of RTSP: OPTIONS on the conventional ports, in clear on 554 and 8554 and
first inside TLS on 322 (RTSPS) or a port named `rtsps`; its status line is read by the HTTP
classifier. The judged service `rtsp` is what the RTSP checks apply to."""

from __future__ import annotations

from probe.protocols.base import TcpIdent, TcpProbe
from probe.protocols.http.ident import headers_end, host

PORTS = frozenset({554, 8554})
TLS_PORTS = frozenset({322})
SERVICE = "rtsp"


def _options(address: str, port: int, tls: bool) -> bytes:
    return (f"OPTIONS rtsp://{host(address, port, 554)}/ RTSP/1.0\r\nCSeq: 1\r\n"
            "User-Agent: iotprobe\r\n\r\n").encode()


TCP = TcpIdent(
    SERVICE, PORTS, frozenset({"rtsp"}),
    plan=("rtsp", "tls", "http"),
    probe=TcpProbe("rtsp", 4096, _options, headers_end),
    judged={SERVICE: "RTSP"},
    serves_by_name={"rtsp": frozenset({SERVICE}), "rtsps": frozenset({"tls", SERVICE})},
    serves_by_port=((10, TLS_PORTS, frozenset({"tls", SERVICE})),
                    (50, PORTS, frozenset({SERVICE}))),
    inside_tls=TLS_PORTS,
    names_inside_tls=frozenset({"rtsps"}),
    anywhere=False,
)
"""RTSP is judged where the inventory names it, on its conventional ports, or where an RTSP
status line answers: an unidentified port elsewhere leaves the RTSP checks alone (`anywhere`),
or every device with an odd open port would make them `error`."""
