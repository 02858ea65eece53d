"""Identification of Modbus/TCP: on port 502, or a port the inventory names `modbus`,
identification asks Read Device Identification first; a reply that parses (`codec.parse`)
makes the port `modbus`, with the identification objects or the exception code as evidence.
No judged service: `plant.exposure` reads the identified ports, and an unidentified 502 leaves
the TLS, HTTP and MQTT checks alone."""

from __future__ import annotations

from typing import Any

from probe.protocols.base import Classifier, Hit, TcpIdent, TcpProbe
from probe.protocols.modbus import codec

PORTS = frozenset({502})
SERVICE = "modbus"


def _request(address: str, port: int, tls: bool) -> bytes:
    return codec.read_device_id()


def _classify(port: int, data: bytes) -> Hit | None:
    """A Modbus answer to Read Device Identification (or its exception)."""
    answer = codec.parse(data)
    if answer is None:
        return None
    evidence: dict[str, Any] = {"unit": answer.unit, "objects": dict(answer.objects)}
    if answer.exception is not None:
        evidence["exception"] = answer.exception
    return SERVICE, answer.detail, evidence


TCP = TcpIdent(
    SERVICE, PORTS, frozenset({"modbus"}),
    plan=("modbus", "tls", "http"),
    probe=TcpProbe("modbus", codec.MAX_FRAME, _request, codec.complete),
    classifiers=(Classifier(5, _classify, frozenset({"modbus"})),),
    serves_by_port=((90, PORTS, frozenset()),),
)
