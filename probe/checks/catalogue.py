"""The check catalogue: every check module's `CHECKS`, in this order, validated once.

An explicit list rather than a package scan, so what a scan runs is what this file says.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from types import MappingProxyType

from probe.checks import coap, fleet, http, monitor, monitor_http, mqtt, net, tls
from probe.checks.base import Check
from probe.protocols.ssh import checks as ssh
from probe.protocols.telnet import checks as telnet

CATALOGUE: tuple[Check, ...] = (*coap.CHECKS, *fleet.CHECKS, *http.CHECKS, *monitor.CHECKS,
                                *monitor_http.CHECKS, *mqtt.CHECKS, *net.CHECKS, *tls.CHECKS,
                                *ssh.CHECKS, *telnet.CHECKS)
CHECK_ID = re.compile(r"[a-z0-9]+\.[a-z0-9-]+")


def validate(checks: tuple[Check, ...]) -> None:
    """Every id well formed and declared once (RuntimeError otherwise)."""
    seen: set[str] = set()
    for check in checks:
        if not CHECK_ID.fullmatch(check.id):
            raise RuntimeError(f"check id {check.id!r} is not <family>.<name>")
        if check.id in seen:
            raise RuntimeError(f"check {check.id} is declared twice")
        seen.add(check.id)


@functools.cache
def catalogue() -> Mapping[str, Check]:
    """The checks by id, in catalogue order; the same object on every call."""
    validate(CATALOGUE)
    return MappingProxyType({check.id: check for check in CATALOGUE})
