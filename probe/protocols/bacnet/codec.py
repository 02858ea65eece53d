"""The BACnet/IP frames the probe sends and reads: a unicast Who-Is and the I-Am it draws.

A BACnet/IP datagram is a BVLC header (type 0x81, function, length), an NPDU (version 1,
control) and an APDU. Who-Is (unconfirmed service 8, no range) asks every device that receives
it to announce itself; it changes nothing. The I-Am answer (unconfirmed service 0) carries the
device's object identifier, its largest APDU, its segmentation support and its vendor id, each
an application-tagged value.
"""

from __future__ import annotations

from dataclasses import dataclass

BVLC, UNICAST, BROADCAST, FORWARDED = 0x81, 0x0A, 0x0B, 0x04
NPDU_VERSION = 0x01
UNCONFIRMED, WHO_IS, I_AM = 0x10, 0x08, 0x00
DEVICE_TYPE = 8
WHO_IS_FRAME = bytes([BVLC, UNICAST, 0x00, 0x08, NPDU_VERSION, 0x00, UNCONFIRMED, WHO_IS])
SEGMENTATION = {0: "both", 1: "transmit", 2: "receive", 3: "none"}


@dataclass(frozen=True)
class IAm:
    instance: int
    max_apdu: int
    segmentation: str
    vendor: int

    @property
    def detail(self) -> str:
        return f"BACnet/IP I-Am: device {self.instance}, vendor {self.vendor}"


def who_is() -> bytes:
    return WHO_IS_FRAME


def _apdu(data: bytes) -> bytes | None:
    """The APDU of a BACnet/IP datagram (the BVLC and NPDU headers skipped), or None."""
    if len(data) < 6 or data[0] != BVLC or int.from_bytes(data[2:4], "big") != len(data):
        return None
    at = 4
    if data[1] == FORWARDED:
        at += 6  # the original source's address and port
    elif data[1] not in (UNICAST, BROADCAST):
        return None
    if len(data) < at + 2 or data[at] != NPDU_VERSION:
        return None
    control = data[at + 1]
    at += 2
    if control & 0x80:  # a network layer message, not an APDU
        return None
    if control & 0x20:  # destination network, address, then the hop count
        if len(data) < at + 3:
            return None
        at += 3 + data[at + 2] + 1
    if control & 0x08:  # source network and address
        if len(data) < at + 3:
            return None
        at += 3 + data[at + 2]
    return data[at:]


def _unsigned(apdu: bytes, at: int, tag: int) -> tuple[int, int] | None:
    """An application-tagged unsigned or enumerated value at `at` (tag number `tag`, 1 to 4
    bytes) and where the next one starts."""
    if at >= len(apdu) or apdu[at] >> 4 != tag or apdu[at] & 0x08:
        return None
    size = apdu[at] & 0x07
    if not 1 <= size <= 4 or at + 1 + size > len(apdu):
        return None
    return int.from_bytes(apdu[at + 1:at + 1 + size], "big"), at + 1 + size


def parse_i_am(data: bytes) -> IAm | None:
    """The I-Am in `data`, or None when it is not one."""
    apdu = _apdu(data)
    if apdu is None or len(apdu) < 7 or apdu[0] != UNCONFIRMED or apdu[1] != I_AM \
            or apdu[2] != 0xC4:  # tag 12 (object identifier), 4 bytes
        return None
    object_id = int.from_bytes(apdu[3:7], "big")
    if object_id >> 22 != DEVICE_TYPE:
        return None
    fields: list[int] = []
    at = 7
    for tag in (2, 9, 2):  # unsigned max APDU, enumerated segmentation, unsigned vendor id
        value = _unsigned(apdu, at, tag)
        if value is None:
            return None
        fields.append(value[0])
        at = value[1]
    max_apdu, segmentation, vendor = fields
    return IAm(object_id & 0x3FFFFF, max_apdu, SEGMENTATION.get(segmentation, "unknown"), vendor)
