"""The cleartext start of SSH (RFC 4253): version exchange, binary packets before NEWKEYS,
KEXINIT, the first key-exchange messages and host key blobs.

Everything here is read from attacker-controlled bytes: every length is checked against what is
left and against a cap, and a malformed message raises `MalformedMessage`, never an index error.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

CLIENT_VERSION = b"SSH-2.0-iotprobe\r\n"
MAX_VERSION_BYTES = 8192
"""What the server may send before and with its version line (RFC 4253 4.2 lets it send other
lines first)."""
MAX_PACKET = 64 * 1024
"""The largest binary packet read (RFC 4253 6.1 asks implementations to take 35000 bytes)."""
MAX_NAMES = 64
"""The most algorithm names kept from one name-list."""
MAX_NAME = 64

KEXINIT, KEXDH_INIT, KEXDH_REPLY = 20, 30, 31
GEX_REQUEST, GEX_GROUP, GEX_INIT, GEX_REPLY = 34, 31, 32, 33
LISTS = ("kex", "host_key", "ciphers_c2s", "ciphers_s2c", "macs_c2s", "macs_s2c",
         "compression_c2s", "compression_s2c", "languages_c2s", "languages_s2c")


class MalformedMessage(Exception):
    """Bytes that are not the SSH message they should be."""


class Reader:
    """A bounds-checked reader of SSH data types (RFC 4251 5)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, count: int) -> bytes:
        if count < 0 or self.at + count > len(self.data):
            raise MalformedMessage(f"needs {count} bytes at offset {self.at}, "
                                   f"{len(self.data) - self.at} left")
        out = self.data[self.at:self.at + count]
        self.at += count
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def uint32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def string(self) -> bytes:
        return self.take(self.uint32())

    def mpint(self) -> int:
        return int.from_bytes(self.string(), "big", signed=True)

    def names(self) -> tuple[str, ...]:
        raw = self.string().decode("ascii", "replace")
        return tuple(name[:MAX_NAME] for name in raw.split(",") if name)[:MAX_NAMES]


def string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def mpint(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big") if value else b""
    return string(raw)


def name_list(names: tuple[str, ...]) -> bytes:
    return string(",".join(names).encode("ascii"))


def packet(payload: bytes) -> bytes:
    """`payload` as an unencrypted binary packet: padded to a multiple of 8 with 4 to 11 bytes
    (zeros: nothing to hide before keys exist)."""
    padding = 8 - (5 + len(payload)) % 8
    padding += 8 if padding < 4 else 0
    return struct.pack(">IB", 1 + len(payload) + padding, padding) + payload + bytes(padding)


def packet_size(data: bytes) -> int | None:
    """The size of the first whole packet in `data`, None while it is incomplete. Raises
    MalformedMessage for a length beyond MAX_PACKET or a padding that does not fit."""
    if len(data) < 5:
        return None
    length, padding = struct.unpack(">IB", data[:5])
    if not 5 <= length + 4 <= MAX_PACKET or padding >= length:
        raise MalformedMessage(f"packet length {length} with padding {padding}")
    return length + 4 if len(data) >= length + 4 else None


def payload(data: bytes) -> bytes:
    """The payload of the whole packet `data` (see `packet_size`)."""
    length, padding = struct.unpack(">IB", data[:5])
    return data[5:4 + length - padding]


def version_line(data: bytes) -> tuple[str, int] | None:
    """The server's version line and the offset just after it, None while no whole line
    starting with "SSH-" has arrived."""
    at = 0
    while (end := data.find(b"\n", at)) >= 0:
        line = data[at:end].rstrip(b"\r")
        if line.startswith(b"SSH-"):
            return line[:255].decode("latin-1"), end + 1
        at = end + 1
    return None


@dataclass(frozen=True)
class KexInit:
    """The algorithm lists of a KEXINIT message, in the sender's order of preference."""

    kex: tuple[str, ...]
    host_key: tuple[str, ...]
    ciphers_c2s: tuple[str, ...]
    ciphers_s2c: tuple[str, ...]
    macs_c2s: tuple[str, ...]
    macs_s2c: tuple[str, ...]
    compression_c2s: tuple[str, ...]
    compression_s2c: tuple[str, ...]

    @property
    def ciphers(self) -> tuple[str, ...]:
        return _union(self.ciphers_c2s, self.ciphers_s2c)

    @property
    def macs(self) -> tuple[str, ...]:
        return _union(self.macs_c2s, self.macs_s2c)


def _union(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    return first + tuple(name for name in second if name not in first)


def parse_kexinit(message: bytes) -> KexInit:
    reader = Reader(message)
    if reader.byte() != KEXINIT:
        raise MalformedMessage(f"message {message[:1].hex()} where KEXINIT (20) was due")
    reader.take(16)  # cookie
    lists = [reader.names() for _ in LISTS]
    return KexInit(*lists[:8])


def kexinit(kex: tuple[str, ...], host_key: tuple[str, ...], server: KexInit) -> bytes:
    """A client KEXINIT that offers `kex` and `host_key` and takes the server's own ciphers,
    MACs and compressions, so that negotiation can only fail on the two lists chosen."""
    lists = (kex, host_key, server.ciphers_c2s, server.ciphers_s2c, server.macs_c2s,
             server.macs_s2c, server.compression_c2s, server.compression_s2c, (), ())
    body = b"".join(name_list(names) for names in lists)
    return bytes([KEXINIT]) + secrets.token_bytes(16) + body + b"\x00" + bytes(4)


@dataclass(frozen=True)
class HostKey:
    """A server host key: its type (the blob's own name) and size in bits."""

    type: str
    bits: int


CURVE_BITS = {"nistp256": 256, "nistp384": 384, "nistp521": 521}


def parse_host_key(blob: bytes) -> HostKey:
    """The type and size of a public host key blob (RFC 4253 6.6, RFC 5656, RFC 8709)."""
    reader = Reader(blob)
    kind = reader.string().decode("ascii", "replace")[:MAX_NAME]
    if kind == "ssh-rsa":
        reader.mpint()  # e
        return HostKey(kind, reader.mpint().bit_length())
    if kind == "ssh-dss":
        return HostKey(kind, reader.mpint().bit_length())
    if kind.startswith("ecdsa-sha2-"):
        curve = reader.string().decode("ascii", "replace")
        return HostKey(kind, CURVE_BITS.get(curve, 0))
    if kind == "ssh-ed25519":
        return HostKey(kind, 256)
    if kind == "ssh-ed448":
        return HostKey(kind, 456)
    return HostKey(kind, 0)


def reply_host_key(message: bytes, expected: int) -> HostKey:
    """The host key K_S that opens a KEXDH_REPLY, KEX_ECDH_REPLY or GEX_REPLY (`expected`)."""
    reader = Reader(message)
    kind = reader.byte()
    if kind != expected:
        raise MalformedMessage(f"message {kind} where {expected} was due")
    return parse_host_key(reader.string())


def gex_group(message: bytes) -> tuple[int, int]:
    """The (prime, generator) of a KEX_DH_GEX_GROUP message."""
    reader = Reader(message)
    if reader.byte() != GEX_GROUP:
        raise MalformedMessage(f"message {message[:1].hex()} where GEX_GROUP (31) was due")
    prime, generator = reader.mpint(), reader.mpint()
    if prime.bit_length() > 8192 or not 1 < generator < prime:
        raise MalformedMessage(f"a {prime.bit_length()}-bit group with generator {generator}")
    return prime, generator
