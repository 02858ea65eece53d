"""Identification of the services that speak first: Telnet (option negotiation, or a login
prompt), SSH, FTP and SMTP (a 220 greeting), and rlogin/rsh by port convention."""

from __future__ import annotations

import re

from probe.observe.tcp import excerpt, head_hex
from probe.protocols.base import Classifier, Hit, TcpIdent, TcpProbe

PORTS = frozenset({21, 22, 23, 25, 513, 514, 2323})
CONVENTION = {513: "rlogin", 514: "rsh"}
_PROMPT = re.compile(rb"(login|username|user name|password)\s*:\s*$", re.IGNORECASE)


def telnet(data: bytes) -> bool:
    """Whether `data` starts with a Telnet option negotiation (IAC WILL/WONT/DO/DONT)."""
    return len(data) >= 3 and data[0] == 0xFF and 250 <= data[1] <= 254


def first_line(data: bytes) -> str:
    return excerpt(data.split(b"\n", 1)[0].rstrip(b"\r"))


def _negotiation(port: int, data: bytes) -> Hit | None:
    if telnet(data):
        return "telnet", "Telnet option negotiation", {"first_bytes": head_hex(data)}
    return None


def _ssh(port: int, data: bytes) -> Hit | None:
    if data.startswith(b"SSH-"):
        line = first_line(data)
        return "ssh", line, {"banner": line}
    return None


def _greeting(port: int, data: bytes) -> Hit | None:
    if re.match(rb"220[ -]", data):
        line = first_line(data)
        text = data.upper()
        smtp = b"SMTP" in text or (b"FTP" not in text and port in (25, 587))
        how = "" if b"SMTP" in text or b"FTP" in text else f" (220 greeting: port {port} decides)"
        return ("smtp" if smtp else "ftp"), line + how, {"banner": line}
    return None


def _prompt(port: int, data: bytes) -> Hit | None:
    if _PROMPT.search(data):
        return "telnet", "login prompt without Telnet negotiation", {"banner": excerpt(data)}
    return None


TCP = TcpIdent(
    "banner", PORTS, frozenset({"telnet", "ftp", "ssh", "smtp"}),
    plan=("banner", "tls", "http", "mqtt"),
    probe=TcpProbe("banner", 1024, lambda address, port, tls: b"",
                   lambda d: b"\n" in d or telnet(d) or bool(_PROMPT.search(d))),
    classifiers=(Classifier(10, _negotiation), Classifier(20, _ssh), Classifier(30, _greeting),
                 Classifier(90, _prompt, frozenset({"banner"}))),
    serves_by_port=((90, PORTS, frozenset()),),
    by_convention=CONVENTION,
)
