"""The Modbus/TCP frames the probe sends and reads: one Read Device Identification request.

A Modbus/TCP frame is the MBAP header (transaction id, protocol id 0, length of what follows,
unit id) and a PDU. The probe asks function 43 with MEI type 14 (Read Device Identification,
basic objects: vendor, product code, revision), which reads no register and writes nothing.
A reply counts as Modbus when its header echoes the transaction id with protocol id 0 and a
length that matches, and its PDU is that function's answer or its exception (0xAB and a code):
an exception still proves a Modbus server answered.
"""

from __future__ import annotations

from dataclasses import dataclass

from probe.observe.tcp import excerpt

TRANSACTION = 0x1A7E
"""Fixed, so what a device answers never depends on chance."""
UNIT = 1
"""The unit id most Modbus/TCP servers answer as themselves (0 is a broadcast: no reply)."""
FUNCTION, MEI_DEVICE_ID, BASIC = 0x2B, 0x0E, 0x01
EXCEPTION = FUNCTION | 0x80
HEADER = 7
MAX_FRAME = 260
"""The longest Modbus/TCP frame (MBAP header and a 253-byte PDU)."""
OBJECT_NAMES = {0: "vendor", 1: "product_code", 2: "revision", 3: "vendor_url",
                4: "product_name", 5: "model_name", 6: "user_application_name"}
OBJECT_CHARS = 64
EXCEPTIONS = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
              4: "server device failure", 6: "server device busy", 10: "gateway path unavailable",
              11: "gateway target device failed to respond"}


@dataclass(frozen=True)
class DeviceId:
    """What a Modbus server answered to Read Device Identification."""

    unit: int
    objects: dict[str, str]
    exception: int | None = None  # the exception code, when it refused the function

    @property
    def detail(self) -> str:
        if self.exception is not None:
            meaning = EXCEPTIONS.get(self.exception, "unknown")
            return (f"Modbus/TCP exception {self.exception} ({meaning}) to Read Device "
                    "Identification")
        named = " ".join(self.objects[k] for k in ("vendor", "product_code", "revision")
                         if k in self.objects)
        return "Modbus/TCP device identification" + (f": {named}" if named else "")


def read_device_id() -> bytes:
    """Read Device Identification (43/14), basic objects from object 0."""
    pdu = bytes([FUNCTION, MEI_DEVICE_ID, BASIC, 0x00])
    return (TRANSACTION.to_bytes(2, "big") + b"\x00\x00" + (len(pdu) + 1).to_bytes(2, "big")
            + bytes([UNIT]) + pdu)


def complete(data: bytes) -> bool:
    """Whether `data` holds a whole frame (by the MBAP length), or cannot be one."""
    if len(data) < HEADER:
        return False
    return len(data) >= 6 + int.from_bytes(data[4:6], "big") or data[2:4] != b"\x00\x00"


def parse(data: bytes) -> DeviceId | None:
    """The answer in `data`, or None when it is not a Modbus reply to the request."""
    if len(data) < HEADER + 2 or int.from_bytes(data[:2], "big") != TRANSACTION \
            or data[2:4] != b"\x00\x00":
        return None
    length = int.from_bytes(data[4:6], "big")
    pdu = data[HEADER:6 + length]
    if length < 3 or len(data) < 6 + length:
        return None
    if pdu[0] == EXCEPTION and len(pdu) == 2:
        return DeviceId(data[6], {}, exception=pdu[1])
    if pdu[0] != FUNCTION or len(pdu) < 7 or pdu[1] != MEI_DEVICE_ID:
        return None
    return DeviceId(data[6], _objects(pdu[7:], pdu[6]))


def _objects(body: bytes, count: int) -> dict[str, str]:
    """The identification objects (id, length, value) that fit in `body`, at most `count`."""
    found: dict[str, str] = {}
    at = 0
    for _ in range(count):
        if at + 2 > len(body):
            break
        object_id, size = body[at], body[at + 1]
        value = body[at + 2:at + 2 + size]
        at += 2 + size
        found[OBJECT_NAMES.get(object_id, f"object_{object_id}")] = excerpt(value, OBJECT_CHARS)
    return found
