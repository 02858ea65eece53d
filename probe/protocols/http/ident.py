"""Identification of HTTP (and of the RTSP status line, which reads alike): a GET / on the
conventional web ports, the status line of the answer, and the judged services `http` and
`https`."""

from __future__ import annotations

import re
from typing import Any

from probe.observe.tcp import excerpt
from probe.protocols.base import Classifier, Hit, TcpIdent, TcpProbe

PORTS = frozenset({80, 81, 8000, 8008, 8080, 8081, 8088, 8888})
_STATUS = re.compile(rb"(HTTP|RTSP)/\d(\.\d)? (\d{3})[^\r\n]*")


def host(address: str, port: int, default: int) -> str:
    """The Host (or URL authority) for `address`: bracketed when IPv6, with the port unless it
    is the scheme's `default`."""
    name = f"[{address}]" if ":" in address else address
    return name if port == default else f"{name}:{port}"


def headers_end(data: bytes) -> bool:
    return b"\r\n\r\n" in data or b"\n\n" in data


def _get(address: str, port: int, tls: bool) -> bytes:
    return (f"GET / HTTP/1.1\r\nHost: {host(address, port, 443 if tls else 80)}\r\n"
            "User-Agent: iotprobe\r\nAccept: */*\r\nConnection: close\r\n\r\n").encode()


def _headers(data: bytes) -> dict[str, str]:
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").splitlines()[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}


def _status(port: int, data: bytes) -> Hit | None:
    """An HTTP or RTSP status line: the protocol it names, the line, the status and Server."""
    status = _STATUS.match(data)
    if not status:
        return None
    protocol = status.group(1).decode().lower()
    status_line = excerpt(status.group(0))
    evidence: dict[str, Any] = {"status_line": status_line, "status": int(status.group(3))}
    if "server" in (headers := _headers(data)):
        evidence["server"] = excerpt(headers["server"].encode("latin-1"))
    return protocol, status_line, evidence


TCP = TcpIdent(
    "http", PORTS, frozenset({"http"}),
    plan=("http", "tls", "mqtt"),
    probe=TcpProbe("http", 8192, _get, headers_end),
    classifiers=(Classifier(40, _status),),
    judged={"http": "cleartext HTTP", "https": "HTTPS"},
    serves_by_name={"http": frozenset({"http"})},
    serves_by_port=((30, PORTS, frozenset({"http"})),),
)
