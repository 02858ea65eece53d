"""Identification of MQTT: a 3.1.1 CONNECT on 1883 (and first inside TLS on 8883/8884 or a port
named `mqtts`), its CONNACK read in the level it is written in, and the judged services `mqtt`
and `mqtts`."""

from __future__ import annotations

import secrets

from probe.observe.tcp import head_hex
from probe.protocols.base import Classifier, Hit, TcpIdent, TcpProbe
from probe.protocols.mqtt.codec import connack_level, meaning

PORTS = frozenset({1883})
TLS_PORTS = frozenset({8883, 8884})


def _connect(address: str, port: int, tls: bool) -> bytes:
    client_id = f"iotprobe-{secrets.token_hex(4)}".encode()
    body = (b"\x00\x04MQTT\x04\x02\x00\x3c"  # MQTT 3.1.1, clean session, keep-alive 60 s
            + len(client_id).to_bytes(2, "big") + client_id)
    return b"\x10" + bytes([len(body)]) + body


def _complete(data: bytes) -> bool:
    """A CONNACK's four bytes, or five when its length takes more than one."""
    return len(data) >= 4 and (data[1] < 0x80 or len(data) >= 5)


def _connack(port: int, data: bytes) -> Hit | None:
    if len(data) < 4 or data[0] != 0x20:
        return None
    if not 2 <= data[1] < 0x80:
        problem = _malformed_connack(data)
        return "mqtt", f"malformed MQTT CONNACK: {problem}", {
            "first_bytes": head_hex(data), "malformed": problem}
    code = data[3]
    level = connack_level(4, data[2:2 + data[1]])
    if level == 5:
        return "mqtt", (f"MQTT 5 CONNACK {code} ({meaning(5, code)}) to an MQTT 3.1.1 "
                        "CONNECT"), {"connack_code": code, "protocol_level": 5,
                                     "session_present": bool(data[2] & 1)}
    return "mqtt", f"MQTT 3.1.1 CONNACK {code} ({meaning(4, code)})", {
        "connack_code": code, "protocol_level": 4, "session_present": bool(data[2] & 1)}


def _malformed_connack(data: bytes) -> str:
    """What is wrong with the remaining length of a CONNACK that is not 2 to 127 bytes long
    (the answer to a 3.1.1 CONNECT has 2; more than 127 takes a multi-byte length)."""
    length = 0
    for index, byte in enumerate(data[1:5]):
        length |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return f"it claims {length} bytes"
    return "its remaining length runs past the four bytes MQTT allows"


TCP = TcpIdent(
    "mqtt", PORTS, frozenset({"mqtt"}),
    plan=("mqtt", "tls", "http"),
    probe=TcpProbe("mqtt", 64, _connect, _complete),
    classifiers=(Classifier(50, _connack, frozenset({"mqtt"})),),
    judged={"mqtt": "cleartext MQTT", "mqtts": "MQTT over TLS"},
    serves_by_name={"mqtt": frozenset({"mqtt"}), "mqtts": frozenset({"tls", "mqtts"})},
    serves_by_port=((10, TLS_PORTS, frozenset({"tls", "mqtts"})),
                    (40, PORTS, frozenset({"mqtt"}))),
    inside_tls=TLS_PORTS,
    names_inside_tls=frozenset({"mqtts"}),
)
