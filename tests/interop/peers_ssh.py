"""The SSH peers of the interoperability matrix (see `interop`): OpenSSH's sshd (strong, weak,
Debian's default algorithms, NIST curves only), dropbear (weak, and with passwords off) and a
paramiko server whose one account has a factory password, all on port 22.

The peers whose credential trial is safe are scanned with `--intrusive`: OpenSSH admits only a
user that does not exist, and the paramiko server's account lives only in that process.
dropbear would check passwords against this machine's own accounts, so its peers are never
scanned intrusively.

The reference tools: ssh-audit (`-j`, JSON) for `ssh.algorithms`, a server failing when
ssh-audit marks any key exchange, host key, cipher or MAC `fail`; nmap's `ssh-auth-methods`
for `ssh.password-auth` (the methods the server lists to a `none` request); nmap's
`ssh-brute` with the probe's default pairs for `ssh.default-credentials`.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from daemons import Daemon
from peers.ssh_telnet import STRONG_SSHD, WEAK_SSHD, dropbear, paramiko_server, sshd

from interop import Peer, Protocol, Reading, Setup, debian_version, nmap, pypi_version
from probe.model import Status
from probe.protocols.ssh.checks import PASSWORD_METHODS, DefaultCredentialsParams

PORT = 22
ALGORITHMS = "ssh.algorithms"
PASSWORD = "ssh.password-auth"
DEFAULT = "ssh.default-credentials"
SSH_AUDIT = Path(sys.executable).with_name("ssh-audit")
AUDIT_TIMEOUT = 120.0
ALGORITHM_LISTS = ("kex", "key", "enc", "mac")
DEBIAN_DEFAULTS = "PasswordAuthentication yes\n"
NIST_ONLY = """KexAlgorithms ecdh-sha2-nistp256
HostKeyAlgorithms ecdsa-sha2-nistp256
Ciphers aes256-gcm@openssh.com,aes128-ctr
MACs hmac-sha2-256-etm@openssh.com,hmac-sha2-256
PasswordAuthentication no
"""
"""Only NIST curves (P-256 key exchange and ECDSA host key), and what nmap's libssh2 speaks."""
FACTORY = ("admin", "admin")
"""The paramiko server's account by password: the second of the probe's default pairs."""
FACTORY_KBD = ("ubnt", "ubnt")
"""Its account by keyboard-interactive: the ninth pair, near the end of the trial."""

FAIL, PASS, ERROR = Status.FAIL, Status.PASS, Status.ERROR
NIST_NOTE = ("ssh-audit fails the NIST curves (ecdh-sha2-nistp256, ecdsa-sha2-nistp256) as "
             "'suspected as being backdoored'; the probe's documented policy accepts them, as "
             "NIST SP 800-186 and BSI TR-02102-4 do (docs/ssh-telnet.md)")
PASSWORD_ONLY_NOTE = ("nmap's ssh-brute tries the `password` method alone; this server takes the "
                      "password by keyboard-interactive only, which the probe's trial uses where "
                      "a server offers nothing else")
LIBSSH2_NOTE = ("nmap's scripts speak SSH through libssh2 1.10, which shares no cipher with "
                "this server (ChaCha20-Poly1305 and AES-GCM only), so they cannot reach the "
                "authentication step; the probe does")

Run = Callable[[Path, str], Daemon]


def _started(run: Run) -> Callable[[Path, str], contextlib.AbstractContextManager[Setup]]:
    @contextlib.contextmanager
    def start(tmp: Path, address: str) -> Iterator[Setup]:
        with run(tmp, address):
            yield Setup({"ports": str(PORT)})

    return start


# --- the references ------------------------------------------------------------------------

def audit(address: str) -> Reading:
    """ssh.algorithms as ssh-audit judges the server: fail when it marks any algorithm
    `fail`."""
    argv = [str(SSH_AUDIT), "-j", "-n", "--skip-rate-test", "-t", "5", "-p", str(PORT), address]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=AUDIT_TIMEOUT,
                          check=False)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        return Reading(ERROR, f"no report: {done.stdout[-200:]}")
    failed = sorted({entry["algorithm"] for part in ALGORITHM_LISTS
                     for entry in report.get(part, []) if entry.get("notes", {}).get("fail")})
    if failed:
        return Reading(FAIL, "marks fail: " + ", ".join(failed))
    return Reading(PASS, "marks no algorithm fail")


def auth_methods(address: str) -> Reading:
    """ssh.password-auth from the methods nmap's ssh-auth-methods lists."""
    said = nmap.script(address, PORT, "ssh-auth-methods")
    if not said or "ERROR" in said[0]:
        return Reading(ERROR, " ".join(said) or "no output")
    methods = [line.strip() for line in said[1:] if not line.strip().endswith(":")]
    offered = [m for m in methods if m in PASSWORD_METHODS]
    return Reading(FAIL if offered else PASS, "methods: " + ", ".join(methods))


def brute(address: str) -> Reading:
    """ssh.default-credentials from nmap's ssh-brute, given the probe's own default pairs."""
    guesses = nmap.brute(address, PORT, "ssh-brute", DefaultCredentialsParams().attempts)
    if guesses.user is not None:
        return Reading(FAIL, f"valid credentials for user {guesses.user!r}")
    if guesses.statistics is None or not guesses.no_valid_account:
        return Reading(ERROR, " ".join(guesses.said) or "no output")
    return Reading(PASS, f"no valid account ({guesses.statistics})")


def reference(*, trial: bool) -> Callable[[str, Setup], Mapping[str, Reading]]:
    """ssh-audit and ssh-auth-methods; ssh-brute too where the probe's trial runs."""
    def read(address: str, setup: Setup) -> Mapping[str, Reading]:
        out = {ALGORITHMS: audit(address), PASSWORD: auth_methods(address)}
        if trial:
            out[DEFAULT] = brute(address)
        return out

    return read


# --- the peers -----------------------------------------------------------------------------

def _peer(implementation: str, version: Callable[[], str], configuration: str, run: Run,
          expect: Mapping[str, Status], *, trial: bool = False,
          notes: Mapping[str, str] | None = None) -> Peer:
    """A peer on port 22; with `trial`, scanned with --intrusive and its trial compared."""
    tool = "ssh-audit, nmap ssh-auth-methods" + (", nmap ssh-brute" if trial else "")
    return Peer(Protocol.SSH, implementation, version,
                configuration + ("; scanned with --intrusive" if trial else ""),
                _started(run), expect, tool, reference(trial=trial), notes or {},
                intrusive=trial)


OPENSSH = ("OpenSSH", debian_version("openssh-server"))
DROPBEAR = ("dropbear", debian_version("dropbear-bin"))
PARAMIKO = ("paramiko", pypi_version("paramiko"))

PEERS: list[Peer] = [
    _peer(*OPENSSH, "sntrup761/Curve25519, Ed25519, AEAD ciphers, ETM MACs, keys only",
          lambda tmp, address: sshd(tmp, "sshd-strong", address, STRONG_SSHD),
          {ALGORITHMS: PASS, PASSWORD: PASS, DEFAULT: PASS}, trial=True,
          notes={PASSWORD: LIBSSH2_NOTE, DEFAULT: LIBSSH2_NOTE}),
    _peer(*OPENSSH, "SHA-1 and group1 KEX, RSA-1024, CBC/3DES, MD5/SHA-1 MACs, passwords",
          lambda tmp, address: sshd(tmp, "sshd-weak", address, WEAK_SSHD),
          {ALGORITHMS: FAIL, PASSWORD: FAIL, DEFAULT: PASS}, trial=True),
    _peer(*OPENSSH, "Debian's default algorithms, passwords",
          lambda tmp, address: sshd(tmp, "sshd-default", address, DEBIAN_DEFAULTS),
          {ALGORITHMS: FAIL, PASSWORD: FAIL}),
    _peer(*OPENSSH, "NIST P-256 KEX and ECDSA host key only, AES, SHA-2 MACs, keys only",
          lambda tmp, address: sshd(tmp, "sshd-nist", address, NIST_ONLY),
          {ALGORITHMS: PASS, PASSWORD: PASS}, notes={ALGORITHMS: NIST_NOTE}),
    _peer(*DROPBEAR, "RSA-1024 host key, default algorithms, passwords",
          lambda tmp, address: dropbear(tmp, "dropbear-weak", address, weak=True),
          {ALGORITHMS: FAIL, PASSWORD: FAIL}),
    _peer(*DROPBEAR, "Ed25519 host key, default algorithms, passwords off (-s)",
          lambda tmp, address: dropbear(tmp, "dropbear-keys", address, weak=False),
          {ALGORITHMS: FAIL, PASSWORD: PASS}),
    _peer(*PARAMIKO, "default algorithms, factory password by password",
          lambda tmp, address: paramiko_server(tmp, address, "password", FACTORY),
          {ALGORITHMS: FAIL, PASSWORD: FAIL, DEFAULT: FAIL}, trial=True),
    _peer(*PARAMIKO, "default algorithms, factory password by keyboard-interactive",
          lambda tmp, address: paramiko_server(tmp, address, "keyboard-interactive",
                                               FACTORY_KBD),
          {ALGORITHMS: FAIL, PASSWORD: FAIL, DEFAULT: FAIL}, trial=True,
          notes={DEFAULT: PASSWORD_ONLY_NOTE}),
]
