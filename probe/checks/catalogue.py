"""The check catalogue: every check module's `CHECKS`, in this order, validated once.

An explicit list rather than a package scan, so what a scan runs is what this file says: one
line per protocol package (`probe/protocols/<p>/checks.py`), per monitoring module and per
cross-protocol module of `probe/checks/`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from types import MappingProxyType

from probe.checks import fleet, net
from probe.checks.base import Check
from probe.monitoring import checks as monitor
from probe.monitoring import http_checks as monitor_http
from probe.protocols.coap import checks as coap
from probe.protocols.http import checks as http
from probe.protocols.mqtt import checks as mqtt
from probe.protocols.plant import checks as plant
from probe.protocols.rtsp import checks as rtsp
from probe.protocols.ssh import checks as ssh
from probe.protocols.telnet import checks as telnet
from probe.protocols.tls import checks as tls

CATALOGUE: tuple[Check, ...] = (
    *coap.CHECKS,
    *fleet.CHECKS,
    *http.CHECKS,
    *monitor.CHECKS,
    *monitor_http.CHECKS,
    *mqtt.CHECKS,
    *net.CHECKS,
    *tls.CHECKS,
    *rtsp.CHECKS,
    *plant.CHECKS,
    *ssh.CHECKS,
    *telnet.CHECKS,
)
CHECK_ID = re.compile(r"[a-z0-9]+\.[a-z0-9-]+")


def validate(checks: tuple[Check, ...]) -> None:
    """Every id well formed and declared once, every check judged either per device or across
    the fleet (RuntimeError otherwise)."""
    seen: set[str] = set()
    for check in checks:
        if not CHECK_ID.fullmatch(check.id):
            raise RuntimeError(f"check id {check.id!r} is not <family>.<name>")
        if (check.evaluate is None) == (check.judge is None):
            raise RuntimeError(f"check {check.id} needs either an evaluation or a fleet judge")
        if check.id in seen:
            raise RuntimeError(f"check {check.id} is declared twice")
        seen.add(check.id)


@functools.cache
def catalogue() -> Mapping[str, Check]:
    """The checks by id, in catalogue order; the same object on every call."""
    validate(CATALOGUE)
    return MappingProxyType({check.id: check for check in CATALOGUE})
