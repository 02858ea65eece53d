"""Real SSH and Telnet peers for the tests, each a child process on its own loopback address:
OpenSSH's sshd and dropbear (Debian), a paramiko server with one account (tests/ssh_server.py)
and busybox telnetd with a login program that checks a credential file of the test's own.

No system account is created or tried: OpenSSH admits only a user that does not exist, and the
logins that succeed are those of the paramiko server and of the Telnet login program, whose
accounts live in the test's directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from daemons import Daemon, start

HERE = Path(__file__).parent
WEAK_SSHD = """KexAlgorithms diffie-hellman-group1-sha1,diffie-hellman-group14-sha1,\
curve25519-sha256@libssh.org
HostKeyAlgorithms ssh-rsa,rsa-sha2-256,ssh-ed25519
Ciphers aes128-cbc,3des-cbc,aes128-ctr
MACs hmac-md5,hmac-sha1,hmac-sha2-256
PasswordAuthentication yes
"""
STRONG_SSHD = """KexAlgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256
HostKeyAlgorithms ssh-ed25519
Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com
MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com
PasswordAuthentication no
"""


def keygen(path: Path, *args: str) -> Path:
    """An unencrypted OpenSSH private key at `path` (made once), `ssh-keygen` `args`."""
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-N", "", "-f", str(path), *args], check=True,
                       capture_output=True, timeout=60)
    return path


def sshd(tmp: Path, name: str, address: str, settings: str) -> Daemon:
    """OpenSSH in the foreground on `address`:22 with private host keys (Ed25519, RSA 1024
    where the settings name ssh-rsa, ECDSA P-256 where they name ecdsa); the only user it admits
    does not exist, so no login succeeds."""
    keys = [keygen(tmp / f"{name}_ed25519", "-t", "ed25519")]
    if "ssh-rsa" in settings:
        keys.append(keygen(tmp / f"{name}_rsa", "-t", "rsa", "-b", "1024"))
    if "ecdsa" in settings:
        keys.append(keygen(tmp / f"{name}_ecdsa", "-t", "ecdsa", "-b", "256"))
    conf = tmp / f"{name}.conf"
    conf.write_text(f"ListenAddress {address}:22\n" + "".join(f"HostKey {k}\n" for k in keys)
                    + "UsePAM no\nPidFile none\nStrictModes no\nKbdInteractiveAuthentication no\n"
                    "AllowUsers iotprobe-nobody\n" + settings)
    return start(name, ["/usr/sbin/sshd", "-D", "-e", "-f", str(conf)], tmp, address,
                 [(22, "tcp")])


def dropbear(tmp: Path, name: str, address: str, *, weak: bool) -> Daemon:
    """dropbear with an RSA 1024 host key and password logins (weak), or an Ed25519 key and
    password logins off (`-s`)."""
    key = tmp / f"{name}_key"
    kind = ["-t", "rsa", "-s", "1024"] if weak else ["-t", "ed25519"]
    subprocess.run(["dropbearkey", *kind, "-f", str(key)], check=True, capture_output=True,
                   timeout=60)
    argv = ["dropbear", "-F", "-E", "-p", f"{address}:22", "-r", str(key), "-P",
            str(tmp / f"{name}.pid"), *([] if weak else ["-s"])]
    return start(name, argv, tmp, address, [(22, "tcp")])


def paramiko_server(tmp: Path, address: str, method: str, account: tuple[str, str]) -> Daemon:
    """tests/ssh_server.py: the one `account` (user, password), taken by `method` only."""
    key = keygen(tmp / "paramiko_ed25519", "-t", "ed25519")
    script = HERE.parent / "ssh_server.py"
    return start(f"paramiko-{method}", [sys.executable, str(script), address, "22", str(key),
                                        *account, method], tmp, address, [(22, "tcp")])


def telnetd(tmp: Path, name: str, address: str, accounts: dict[str, str] | None) -> Daemon:
    """busybox telnetd on `address`:23 whose login program checks `accounts` (a file in
    `tmp`) and answers a login with a prompt that reads one line and ends (no shell runs);
    without accounts the program shows that prompt at once."""
    fake_shell = "printf 'Welcome\\r\\n# '; IFS= read -r _"
    program = tmp / f"{name}-login"
    if accounts is None:
        program.write_text(f"#!/bin/sh\n{fake_shell}\n")
    else:
        creds = tmp / f"{name}-accounts"
        creds.write_text("".join(f"{user}:{password}\n" for user, password in accounts.items()))
        program.write_text(
            "#!/bin/sh\n"
            "printf 'login: '; IFS= read -r user; user=$(printf %s \"$user\" | tr -d '\\r')\n"
            "stty -echo; printf 'Password: '; IFS= read -r pass; stty echo\n"
            "pass=$(printf %s \"$pass\" | tr -d '\\r')\n"
            f"if grep -qxF \"$user:$pass\" {creds}; then {fake_shell}; "
            "else printf '\\r\\nLogin incorrect\\r\\n'; fi\n")
    program.chmod(0o755)
    argv = ["busybox", "telnetd", "-F", "-K", "-p", "23", "-b", address, "-l", str(program)]
    return start(name, argv, tmp, address, [(23, "tcp")])
