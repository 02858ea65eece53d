"""Remote-login personas: a router whose Telnet takes a Mirai factory password.

The Telnet credential check is intrusive: without --intrusive it is `skipped` (the self-test's
intrusive scan expects `fail`, `probe.lab.selftest.PERSONA_INTRUSIVE`).
"""

from __future__ import annotations

from probe.lab.personas.base import CLEARTEXT_MANAGEMENT, OPEN_PORTS, Persona
from probe.lab.servers import TcpListener
from probe.lab.servers_remote import TelnetDefaultLogin

TELNET_DEFAULT = "telnet.default-credentials"
FACTORY_ACCOUNT = ("admin", "admin")
"""The persona's account: the fourth pair of the Mirai table (lab data, not a secret)."""

TELNET_DEFAULT_LOGIN = Persona(
    name="telnet-default-login",
    description="a router whose Telnet on 23 takes the factory account admin/admin and gives "
                "a shell prompt",
    device_class="gateway",
    listeners=(TcpListener(23, TelnetDefaultLogin(FACTORY_ACCOUNT)),),
    expect={OPEN_PORTS: "fail", CLEARTEXT_MANAGEMENT: "fail", TELNET_DEFAULT: "skipped"},
    expect_verdict="nonconformant",
)

PERSONAS = (TELNET_DEFAULT_LOGIN,)
"""This module's personas, in lab order (`probe.lab.personas.ALL`)."""
