"""Emulated remote-login servers for the lab: a Telnet daemon with a factory account, and an
SSH daemon, either legacy (CBC, 3DES, MD5 and SHA-1, a 1024-bit RSA host key, a factory
password) or hardened (AEAD and CTR ciphers, SHA-2 ETM MACs, an Ed25519 host key, public keys
only).

The SSH daemon is paramiko's server (the lab emulates the device, not the protocol): each
connection is bridged from the lab's event loop to a paramiko transport in a thread through a
socket pair, and ends within IDLE_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import socket
from dataclasses import dataclass

import paramiko
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from probe.lab.servers import (
    DO,
    IAC,
    IDLE_TIMEOUT,
    MAX_READ,
    OPT_ECHO,
    OPT_NAWS,
    OPT_SUPPRESS_GO_AHEAD,
    WILL,
    _read_line,
    _strip_telnet_commands,
)

logging.getLogger("paramiko").addHandler(logging.NullHandler())

LEGACY_CIPHERS = ("aes128-cbc", "3des-cbc", "aes128-ctr")
LEGACY_MACS = ("hmac-md5", "hmac-sha1", "hmac-sha2-256")
HARDENED_KEX = ("curve25519-sha256@libssh.org", "diffie-hellman-group16-sha512")
HARDENED_CIPHERS = ("aes256-gcm@openssh.com", "aes128-gcm@openssh.com", "aes256-ctr")
HARDENED_MACS = ("hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com")


@dataclass(frozen=True)
class TelnetDefaultLogin:
    """A Telnet daemon that asks for a login and a password, takes only `account`, and answers
    it with a BusyBox-like shell prompt that ends the session at the next line (no command
    runs). Any other pair gets "Login incorrect"."""

    account: tuple[str, str]

    def offers(self, tls: bool) -> frozenset[str]:
        """Telnet (the catalogue's `telnet`), in clear: the lab never wraps it in TLS."""
        return frozenset({"telnet"})

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


@functools.cache
def _host_key(legacy: bool) -> paramiko.PKey:
    """One host key per kind for the whole lab (its devices share it, as cloned firmware
    images do): RSA 1024 for legacy daemons, Ed25519 else."""
    if legacy:
        return paramiko.RSAKey.generate(1024)
    pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.OpenSSH,
                                                     NoEncryption())
    return paramiko.Ed25519Key(file_obj=io.StringIO(pem.decode()))


class _Account(paramiko.ServerInterface):  # type: ignore[misc]  # paramiko has no types
    def __init__(self, account: tuple[str, str] | None) -> None:
        self.account = account

    def get_allowed_auths(self, username: str) -> str:
        return "publickey,password" if self.account is not None else "publickey"

    def check_auth_password(self, username: str, password: str) -> int:
        return int(paramiko.AUTH_SUCCESSFUL if (username, password) == self.account
                   else paramiko.AUTH_FAILED)

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return int(paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED)


def _ssh_session(sock: socket.socket, account: tuple[str, str] | None) -> None:
    """One paramiko server session on `sock`, blocking, at most IDLE_TIMEOUT: legacy with a
    password `account`, hardened without one."""
    transport = paramiko.Transport(sock)
    options = transport.get_security_options()
    if account is not None:
        options.ciphers, options.digests = LEGACY_CIPHERS, LEGACY_MACS
    else:
        options.kex = HARDENED_KEX
        options.ciphers, options.digests = HARDENED_CIPHERS, HARDENED_MACS
    transport.add_server_key(_host_key(account is not None))
    try:
        transport.start_server(server=_Account(account))
        transport.join(IDLE_TIMEOUT)
    except (paramiko.SSHException, OSError, EOFError):
        pass
    finally:
        transport.close()


@dataclass(frozen=True)
class SshDaemon:
    """An SSH daemon whose sessions have no channel (nothing runs). With a password `account`
    it is legacy: CBC and 3DES ciphers, MD5 and SHA-1 MACs, a 1024-bit RSA host key, password
    logins of which only `account` succeeds. Without one it is hardened: curve25519 or a
    4096-bit group, AEAD and CTR ciphers, SHA-2 ETM MACs, an Ed25519 key, public keys only."""

    account: tuple[str, str] | None = None

    def offers(self, tls: bool) -> frozenset[str]:
        """SSH (the catalogue's `ssh`)."""
        return frozenset({"ssh"})

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        session = loop.run_in_executor(None, _ssh_session, theirs, self.account)
        try:
            async with asyncio.timeout(IDLE_TIMEOUT):
                await _bridge(loop, reader, writer, ours)
        except (TimeoutError, OSError):
            pass
        finally:
            ours.close()
            with contextlib.suppress(OSError):
                theirs.shutdown(socket.SHUT_RDWR)
            await session
            theirs.close()


async def _bridge(loop: asyncio.AbstractEventLoop, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter, sock: socket.socket) -> None:
    """Copy bytes both ways between the client and `sock` until either side closes."""
    async def inbound() -> None:
        while data := await reader.read(MAX_READ):
            await loop.sock_sendall(sock, data)

    async def outbound() -> None:
        while data := await loop.sock_recv(sock, MAX_READ):
            writer.write(data)
            await writer.drain()

    tasks = [asyncio.ensure_future(inbound()), asyncio.ensure_future(outbound())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
