"""The MQTT 3.1.1/5 packet codec of the probe: CONNECT, CONNACK, SUBSCRIBE, SUBACK, PUBLISH.

Small and exact on purpose (see `probe.protocols.mqtt.collectors` for why not paho or aiomqtt):
every length is checked against `MAX_PACKET` before anything is buffered, and an identity's
secrets are revealed only while its CONNECT is built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from probe.secrets import Secret

MAX_PACKET = 256 * 1024
KEEP_ALIVE = 30
PROTOCOL = {4: "MQTT 3.1.1", 5: "MQTT 5"}

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9
DISCONNECT_PACKET = b"\xe0\x00"

# What a code means in the packet it came from: one table per packet and protocol level
# (MQTT 3.1.1 3.2.2.3 and 3.9.3; MQTT 5.0 3.2.2.2, 3.4.2.1 and 3.9.3).
CONNACK_V4 = {0: "connection accepted", 1: "unacceptable protocol version",
              2: "identifier rejected", 3: "server unavailable",
              4: "bad user name or password", 5: "not authorized"}
CONNACK_V5 = {
    0x00: "success", 0x80: "unspecified error", 0x81: "malformed packet",
    0x82: "protocol error", 0x83: "implementation specific error",
    0x84: "unsupported protocol version", 0x85: "client identifier not valid",
    0x86: "bad user name or password", 0x87: "not authorized", 0x88: "server unavailable",
    0x89: "server busy", 0x8A: "banned", 0x8C: "bad authentication method",
    0x90: "topic name invalid", 0x95: "packet too large", 0x97: "quota exceeded",
    0x99: "payload format invalid", 0x9A: "retain not supported", 0x9B: "QoS not supported",
    0x9C: "use another server", 0x9D: "server moved", 0x9F: "connection rate exceeded",
}
SUBACK_V4 = {0: "granted QoS 0", 1: "granted QoS 1", 2: "granted QoS 2", 0x80: "failure"}
SUBACK_V5 = {
    0x00: "granted QoS 0", 0x01: "granted QoS 1", 0x02: "granted QoS 2",
    0x80: "unspecified error", 0x83: "implementation specific error", 0x87: "not authorized",
    0x8F: "topic filter invalid", 0x91: "packet identifier in use", 0x97: "quota exceeded",
    0x9E: "shared subscriptions not supported",
    0xA1: "subscription identifiers not supported",
    0xA2: "wildcard subscriptions not supported",
}
PUBACK_V5 = {
    0x00: "success", 0x10: "no matching subscribers", 0x80: "unspecified error",
    0x83: "implementation specific error", 0x87: "not authorized", 0x90: "topic name invalid",
    0x91: "packet identifier in use", 0x97: "quota exceeded", 0x99: "payload format invalid",
}
_TABLES: dict[tuple[int, int], Mapping[int, str]] = {
    (CONNACK, 4): CONNACK_V4, (CONNACK, 5): CONNACK_V5, (SUBACK, 4): SUBACK_V4,
    (SUBACK, 5): SUBACK_V5, (PUBACK, 5): PUBACK_V5,
}
PACKET_NAMES = {CONNACK: "CONNACK", SUBACK: "SUBACK", PUBACK: "PUBACK"}

# MQTT 5 property identifiers by how their value is encoded (MQTT 5.0, 2.2.2.2).
_PROPERTY_SIZE = {**dict.fromkeys((0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A), 1),
                  **dict.fromkeys((0x13, 0x21, 0x22, 0x23), 2),
                  **dict.fromkeys((0x02, 0x11, 0x18, 0x27), 4)}
_PROPERTY_STRING = frozenset({0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F})
_PROPERTY_VARINT, _PROPERTY_PAIR, _REASON_STRING, _MAXIMUM_QOS = 0x0B, 0x26, 0x1F, 0x24


def meaning(level: int, code: int, packet: int = CONNACK) -> str:
    """What `code` says in a `packet` (CONNACK, SUBACK, PUBACK) read at protocol `level`."""
    return _TABLES.get((packet, level), {}).get(code, "unknown code")


def connack_level(level: int, body: bytes) -> int:
    """The protocol level a CONNACK answering a level-`level` CONNECT is written in.

    An MQTT 5 CONNACK always carries a property length after its two bytes, a 3.1.1 CONNACK
    never: brokers that do not speak MQTT 5 (aedes, amqtt) answer its CONNECT with the 3.1.1
    CONNACK "unacceptable protocol version", whose code 1 means nothing in MQTT 5.
    """
    if level == 5 and len(body) == 2:
        return 4
    if level == 4 and len(body) > 2 and body[1] >= 0x80:
        return 5
    return level


# ---------------------------------------------------------------------------------------------
# The packet codec
# ---------------------------------------------------------------------------------------------


class MalformedPacket(Exception):
    """The peer sent bytes that are no well-formed MQTT packet."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, offset: int) -> tuple[int, int] | None:
    """(value, offset after it), None when incomplete; MalformedPacket past four bytes."""
    value = 0
    for index in range(4):
        if offset + index >= len(data):
            return None
        byte = data[offset + index]
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value, offset + index + 1
    raise MalformedPacket("remaining length longer than four bytes")


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


@dataclass(frozen=True)
class Packet:
    kind: int
    flags: int
    body: bytes


def frame(data: bytes) -> tuple[Packet, int] | None:
    """The first packet in `data` and its size, None when `data` holds no whole packet yet."""
    if not data:
        return None
    length = _read_varint(data, 1)
    if length is None:
        return None
    size, start = length
    if size > MAX_PACKET:
        raise MalformedPacket(f"a packet of {size} bytes (more than {MAX_PACKET})")
    if len(data) < start + size:
        return None
    return Packet(data[0] >> 4, data[0] & 0x0F, data[start:start + size]), start + size


def connect_packet(level: int, client_id: str, identity: Identity | None) -> bytes:
    """A CONNECT with a clean session; the identity's secrets are revealed here and only here."""
    flags = 0x02
    payload = _string(client_id.encode())
    if identity is not None and identity.username is not None:
        flags |= 0x80
        payload += _string(_reveal(identity.username))
        if identity.password is not None:
            flags |= 0x40
            payload += _string(_reveal(identity.password))
    variable = _string(b"MQTT") + bytes([level, flags]) + KEEP_ALIVE.to_bytes(2, "big")
    if level == 5:
        variable += b"\x00"
    return _packet(CONNECT << 4, variable + payload)


def subscribe_packet(level: int, packet_id: int, filters: Sequence[str]) -> bytes:
    """SUBSCRIBE at QoS 0 to every filter."""
    body = packet_id.to_bytes(2, "big") + (b"\x00" if level == 5 else b"")
    body += b"".join(_string(f.encode()) + b"\x00" for f in filters)
    return _packet((SUBSCRIBE << 4) | 0x02, body)


def publish_packet(level: int, packet_id: int, topic: str, payload: bytes, qos: int = 1
                   ) -> bytes:
    """PUBLISH at QoS 1 (or 0: no packet identifier, no PUBACK), not retained."""
    body = _string(topic.encode()) + (packet_id.to_bytes(2, "big") if qos else b"")
    body += (b"\x00" if level == 5 else b"") + payload
    return _packet((PUBLISH << 4) | (qos << 1), body)


def read_properties(level: int, body: bytes, offset: int) -> tuple[dict[int, Any], int]:
    """MQTT 5 properties at `offset` (none before level 5): the values by id, and the end."""
    if level != 5 or offset >= len(body):
        return {}, offset
    read = _read_varint(body, offset)
    if read is None:
        raise MalformedPacket("truncated properties")
    length, at = read
    end = at + length
    if end > len(body):
        raise MalformedPacket("properties run past the packet")
    found: dict[int, Any] = {}
    while at < end:
        ident = body[at]
        at += 1
        if ident in _PROPERTY_SIZE:
            size = _PROPERTY_SIZE[ident]
            found[ident] = int.from_bytes(body[at:at + size], "big")
            at += size
        elif ident == _PROPERTY_VARINT:
            value = _read_varint(body, at)
            if value is None:
                raise MalformedPacket("truncated property")
            found[ident], at = value
        elif ident in _PROPERTY_STRING or ident == _PROPERTY_PAIR:
            for _ in range(2 if ident == _PROPERTY_PAIR else 1):
                size = int.from_bytes(body[at:at + 2], "big")
                found[ident] = body[at + 2:at + 2 + size]
                at += 2 + size
        else:
            raise MalformedPacket(f"unknown property 0x{ident:02x}")
    if at != end:
        raise MalformedPacket("properties overrun their length")
    return found, end


def maximum_qos(properties: Mapping[int, Any]) -> int:
    """The highest QoS an MQTT 5 CONNACK lets the client publish at (2 when it says nothing)."""
    value = properties.get(_MAXIMUM_QOS, 2)
    return value if isinstance(value, int) and value in (0, 1) else 2


def reason_string(properties: Mapping[int, Any]) -> str | None:
    value = properties.get(_REASON_STRING)
    return value.decode("utf-8", "replace")[:200] if isinstance(value, bytes) else None


def parse_suback(level: int, body: bytes) -> tuple[int, tuple[int, ...]]:
    if len(body) < 3:
        raise MalformedPacket("SUBACK too short")
    _, end = read_properties(level, body, 2)
    return int.from_bytes(body[:2], "big"), tuple(body[end:])


def parse_puback(level: int, body: bytes) -> tuple[int, int]:
    if len(body) < 2:
        raise MalformedPacket("PUBACK too short")
    return int.from_bytes(body[:2], "big"), body[2] if len(body) > 2 else 0


def parse_publish(level: int, packet: Packet) -> tuple[str, bytes]:
    body = packet.body
    if len(body) < 2:
        raise MalformedPacket("PUBLISH too short")
    size = int.from_bytes(body[:2], "big")
    topic = body[2:2 + size].decode("utf-8", "replace")
    at = 2 + size + (2 if (packet.flags >> 1) & 0x03 else 0)
    _, at = read_properties(level, body, at)
    return topic, body[at:]


def _reveal(value: str | Secret) -> bytes:
    return (value.reveal() if isinstance(value, Secret) else value).encode()


@dataclass(frozen=True)
class Identity:
    """Who a CONNECT claims to be. `label` is what evidence may show: never the password."""

    label: str
    username: str | Secret | None = None
    password: str | Secret | None = field(default=None, repr=False)


ANONYMOUS = Identity("anonymous")
