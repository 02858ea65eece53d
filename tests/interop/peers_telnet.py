"""The Telnet peers of the interoperability matrix (see `interop`): busybox telnetd on port 23
with a login program that checks a credential file of the peer's own (a factory account, an
account of its own) or that gives a shell prompt without asking. `telnet.default-credentials`
is intrusive, so every Telnet peer is scanned with `--intrusive`; no system account is tried.

The reference tool is nmap's `telnet-brute`, given the pairs the probe tries (the first
`max_attempts` of its default list, in order), without its auto-sizing, which gives up pairs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from peers.ssh_telnet import telnetd

from interop import Peer, Protocol, Reading, Setup, debian_version, nmap
from probe.model import Status
from probe.protocols.telnet.checks import DefaultCredentialsParams

PORT = 23
DEFAULT = "telnet.default-credentials"
FACTORY = {"admin": "admin"}
"""A factory account: the fourth pair of the probe's (Mirai's) list."""
OWN = {"operator": "Vq7-unlisted-0x41"}
"""An account of the device's own, on no list."""
OPEN_SHELL_NOTE = ("telnet-brute answers login prompts; a server that shows a shell prompt "
                   "before asking for anything gives it none, so it makes no guess and reports "
                   "no account, while anybody who connects gets the shell")

FAIL, PASS, ERROR = Status.FAIL, Status.PASS, Status.ERROR


def _started(accounts: dict[str, str] | None
             ) -> Callable[[Path, str], contextlib.AbstractContextManager[Setup]]:
    @contextlib.contextmanager
    def start(tmp: Path, address: str) -> Iterator[Setup]:
        with telnetd(tmp, "telnetd", address, accounts):
            yield Setup({"ports": str(PORT)})

    return start


def brute(address: str, setup: Setup) -> Mapping[str, Reading]:
    """telnet.default-credentials from nmap's telnet-brute with the probe's pairs."""
    # autosize (on by default) drops worker threads whose guesses it reads as incomplete, and
    # their pairs with them, when the login program closes after a refusal as busybox's does
    guesses = nmap.brute(address, PORT, "telnet-brute", DefaultCredentialsParams().attempts,
                         ("telnet-brute.timeout=5s", "telnet-brute.autosize=false"))
    if guesses.user is not None:
        return {DEFAULT: Reading(FAIL, f"valid credentials for user {guesses.user!r}")}
    if guesses.statistics is None or not guesses.no_valid_account:
        return {DEFAULT: Reading(ERROR, " ".join(guesses.said) or "no output")}
    if "Performed 0 guesses" in guesses.statistics:
        return {DEFAULT: Reading(ERROR, f"no guess made ({guesses.statistics})")}
    return {DEFAULT: Reading(PASS, f"no valid account ({guesses.statistics})")}


def _peer(configuration: str, accounts: dict[str, str] | None, expect: Status,
          notes: Mapping[str, str] | None = None) -> Peer:
    return Peer(Protocol.TELNET, "busybox telnetd", debian_version("busybox-static"),
                configuration + "; scanned with --intrusive", _started(accounts),
                {DEFAULT: expect}, "nmap telnet-brute", brute, notes or {}, intrusive=True)


PEERS: list[Peer] = [
    _peer("login with a factory account (admin/admin)", FACTORY, FAIL),
    _peer("login with an account of its own", OWN, PASS),
    _peer("shell prompt without a login", None, FAIL, notes={DEFAULT: OPEN_SHELL_NOTE}),
]
