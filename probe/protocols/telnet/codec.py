"""Telnet's option negotiation (RFC 854, RFC 855), reduced to what a login needs: every option
the server proposes is refused, and the commands are taken out of the text.

The server's bytes are attacker-controlled: an unfinished command stays pending until its
remaining bytes come, and subnegotiation is dropped whole, however long (the caller bounds how
much it reads).
"""

from __future__ import annotations

from dataclasses import dataclass, field

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
REFUSAL = {DO: WONT, WILL: DONT}
"""The answer to a proposal: the probe neither does nor lets the server do any option."""


@dataclass
class Stream:
    """The server's side of a Telnet connection: `feed` its bytes, get the text and the
    refusals to send back (each option refused once)."""

    pending: bytes = b""
    in_subnegotiation: bool = False
    answered: set[tuple[int, int]] = field(default_factory=set)

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """(text, reply) for the next bytes of the server."""
        data = self.pending + data
        self.pending = b""
        text, reply = bytearray(), bytearray()
        at = 0
        while at < len(data):
            byte = data[at]
            if byte != IAC:
                if not self.in_subnegotiation:
                    text.append(byte)
                at += 1
                continue
            if at + 1 >= len(data):
                self.pending = data[at:]
                break
            command = data[at + 1]
            if command in (DO, DONT, WILL, WONT):
                if at + 2 >= len(data):
                    self.pending = data[at:]
                    break
                option = data[at + 2]
                if command in REFUSAL and (command, option) not in self.answered:
                    self.answered.add((command, option))
                    reply += bytes([IAC, REFUSAL[command], option])
                at += 3
                continue
            if command == IAC and not self.in_subnegotiation:
                text.append(IAC)
            self.in_subnegotiation = (command == SB) or (self.in_subnegotiation
                                                         and command != SE)
            at += 2
        return bytes(text), bytes(reply)


def line(text: str) -> bytes:
    """`text` as one line the client types: CR LF, with IAC doubled (RFC 854)."""
    return text.encode("utf-8").replace(bytes([IAC]), bytes([IAC, IAC])) + b"\r\n"
