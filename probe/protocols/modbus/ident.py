"""Modbus/TCP's port and how identification recognises it (`probe.observe.identify` calls this).

On port 502, or a port the inventory names `modbus`, identification asks Read Device
Identification first; a reply that parses (`codec.parse`) makes the port `modbus`, with the
identification objects or the exception code as evidence.
"""

from __future__ import annotations

from typing import Any

from probe.protocols.modbus import codec

PORTS = frozenset({502})
SERVICE = "modbus"
READ_CAP = codec.MAX_FRAME
request = codec.read_device_id
complete = codec.complete


def classify(data: bytes) -> tuple[str, str, dict[str, Any]] | None:
    """(protocol, detail, evidence) when `data` is a Modbus answer, else None."""
    answer = codec.parse(data)
    if answer is None:
        return None
    evidence: dict[str, Any] = {"unit": answer.unit, "objects": dict(answer.objects)}
    if answer.exception is not None:
        evidence["exception"] = answer.exception
    return SERVICE, answer.detail, evidence
