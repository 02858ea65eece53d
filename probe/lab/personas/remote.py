"""Remote-login personas: a router whose Telnet takes a Mirai factory password, and a gateway
whose SSH offers legacy algorithms and password logins with a factory account, and one whose
SSH is hardened.

The lab's SSH and Telnet servers offer `ssh` and `telnet`, so personas without them get
`not_applicable` for these checks by rule; the credential checks are intrusive (`skipped`
without --intrusive, by rule), and what they find with it is written in `expect_intrusive`.
"""

from __future__ import annotations

from probe.lab.personas.base import CLEARTEXT_MANAGEMENT, FAIL, OPEN_PORTS, PASS, Persona
from probe.lab.servers import TcpListener
from probe.lab.servers_remote import SshDaemon, TelnetDefaultLogin
from probe.model import Verdict

TELNET_DEFAULT = "telnet.default-credentials"
SSH_ALGORITHMS = "ssh.algorithms"
SSH_PASSWORD = "ssh.password-auth"
SSH_DEFAULT = "ssh.default-credentials"
FACTORY_ACCOUNT = ("admin", "admin")
"""The personas' account: in both default lists (lab data, not a secret)."""

TELNET_DEFAULT_LOGIN = Persona(
    name="telnet-default-login",
    description="a router whose Telnet on 23 takes the factory account admin/admin and gives "
                "a shell prompt",
    device_class="gateway",
    listeners=(TcpListener(23, TelnetDefaultLogin(FACTORY_ACCOUNT)),),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: FAIL},
    expect_intrusive={TELNET_DEFAULT: FAIL},
    expect_verdict=Verdict.NONCONFORMANT,
)

SSH_LEGACY_GATEWAY = Persona(
    name="ssh-legacy-gateway",
    description="SSH on 22 with CBC and 3DES ciphers, MD5 and SHA-1 MACs, a 1024-bit RSA host "
                "key, and password logins that take admin/admin",
    device_class="gateway",
    listeners=(TcpListener(22, SshDaemon(FACTORY_ACCOUNT)),),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: PASS, SSH_ALGORITHMS: FAIL,
            SSH_PASSWORD: FAIL},
    expect_intrusive={SSH_DEFAULT: FAIL},
    expect_verdict=Verdict.NONCONFORMANT,
)

SSH_HARDENED_GATEWAY = Persona(
    name="ssh-hardened-gateway",
    description="SSH on 22 with curve25519, AEAD ciphers, SHA-2 ETM MACs, an Ed25519 host key "
                "and public-key logins only",
    device_class="gateway",
    listeners=(TcpListener(22, SshDaemon()),),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: PASS, SSH_ALGORITHMS: PASS,
            SSH_PASSWORD: PASS},
    expect_intrusive={SSH_DEFAULT: PASS},
    expect_verdict=Verdict.NONCONFORMANT,
)

PERSONAS = (TELNET_DEFAULT_LOGIN, SSH_LEGACY_GATEWAY, SSH_HARDENED_GATEWAY)
"""This module's personas, in lab order (`probe.lab.personas.ALL`)."""
