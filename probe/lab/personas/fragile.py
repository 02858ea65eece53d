"""The fragile persona: a device that breaks under load (probe.lab.servers_fragile).

Its results are those of a scan slow enough not to overload it; the probe's adaptive rate
(docs/rate.md) must reach them at its default settings, by backing off when the device starts
refusing connections it accepted a moment before.
"""

from __future__ import annotations

from probe.lab.personas.base import (
    CLEARTEXT_MANAGEMENT,
    CLOCK_SYNC,
    DISCLOSURE,
    FAIL,
    HTTP_AUTHENTICATION,
    HTTP_CLEARTEXT,
    NOT_APPLICABLE,
    OPEN_PORTS,
    Persona,
)
from probe.lab.servers import FtpLogin, HttpPage, StreamService, TelnetLogin
from probe.lab.servers_fragile import Fragile
from probe.model import Verdict

LIMIT, PAUSE = 4, 2.0
"""4 connections a second, then 2 s of refusals: the port scan's one connection to each of its
four ports never overloads it."""


def _fragile(port: int, service: StreamService) -> Fragile:
    return Fragile(port, service, limit=LIMIT, pause=PAUSE)


FRAGILE_CAMERA = Persona(
    name="fragile-camera",
    description="FTP (21), Telnet (23) and an HTTP page (80, 8080) on a stack that takes 4 "
                "connections a second: after a busier second it refuses every connection "
                "for 2 s",
    device_class="camera",
    listeners=(_fragile(21, FtpLogin(greeting="(camera) FTP server ready")),
               _fragile(23, TelnetLogin(banner="\r\nFragile camera\r\n")),
               _fragile(80, HttpPage(title="Fragile camera")),
               _fragile(8080, HttpPage(title="Fragile camera"))),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: FAIL, HTTP_CLEARTEXT: FAIL,
            HTTP_AUTHENTICATION: FAIL, CLOCK_SYNC: FAIL, DISCLOSURE: NOT_APPLICABLE},
    expect_verdict=Verdict.NONCONFORMANT,
    bursts_break_it=True,
)

PERSONAS = (FRAGILE_CAMERA,)
