"""Emulated remote-login servers for the lab: a Telnet daemon with a factory account."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from probe.lab.servers import (
    DO,
    IAC,
    OPT_ECHO,
    OPT_NAWS,
    OPT_SUPPRESS_GO_AHEAD,
    WILL,
    _read_line,
    _strip_telnet_commands,
)


@dataclass(frozen=True)
class TelnetDefaultLogin:
    """A Telnet daemon that asks for a login and a password, takes only `account`, and answers
    it with a BusyBox-like shell prompt that ends the session at the next line (no command
    runs). Any other pair gets "Login incorrect"."""

    account: tuple[str, str]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(bytes([IAC, DO, OPT_NAWS, IAC, WILL, OPT_ECHO, IAC, WILL,
                            OPT_SUPPRESS_GO_AHEAD]) + b"\r\nrouter login: ")
        await writer.drain()
        user = _strip_telnet_commands(await _read_line(reader)).decode("latin-1")
        writer.write(b"\r\nPassword: ")
        await writer.drain()
        password = _strip_telnet_commands(await _read_line(reader)).decode("latin-1")
        if (user, password) != self.account:
            writer.write(b"\r\nLogin incorrect\r\n")
            await writer.drain()
            return
        writer.write(b"\r\n\r\nBusyBox v1.36.1 built-in shell (ash)\r\n\r\n~ # ")
        await writer.drain()
        await _read_line(reader)
