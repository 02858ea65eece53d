"""What a lab device must get for each check of the catalogue: what it writes, and what the
catalogue implies for the rest.

A device (a persona of the emulated lab, or a device of the real lab) writes, keyed by check
id, the `Status` a correct probe reports:

- `expect`: the default scan of the lab's inventory (built-in profile, without --intrusive,
  no monitoring sink declared unless the real lab's inventory declares it);
- `expect_monitored`: the statuses that differ when its inventory entry declares its
  monitoring sinks (the emulated monitoring personas, as `iotprobe lab selftest` scans them);
- `expect_intrusive`: the intrusive checks' statuses with --intrusive.

It writes only what the catalogue cannot tell. Every other check of the catalogue resolves by
these rules, in order:

1. an intrusive check in a scan without --intrusive is `skipped`;
2. a check whose services (its `applies_to`) no listener of the device offers is
   `not_applicable` (listeners declare what they offer, in the same service names). Where
   the catalogue says otherwise the device writes it: `mqtt.cleartext-listener` applies to
   cleartext MQTT yet passes on a device that offers MQTT over TLS only, and a port that
   might carry a service but could not be identified makes the check an `error`;
3. with --intrusive, an intrusive check the device writes nothing for is `not_applicable`
   where every non-intrusive check of its family (`mqtt.*` for `mqtt.default-credentials`)
   resolves to `not_applicable`: the device has no endpoint of that kind (a port that might
   be one but could not be identified makes those checks `error`, which the device writes);
4. otherwise the check is not compared, and the resolution says why.

A written id that is not in the catalogue, an intrusive status for a check that is not
intrusive, or one for a check whose default status is not `skipped` (it would never be used)
is an error naming the device and the check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from probe.checks.base import Check
from probe.checks.catalogue import catalogue
from probe.model import Status

Checks = Mapping[str, Check]


class Declares(Protocol):
    """A lab device as the resolution reads it (a Persona, a RealDevice)."""

    @property
    def name(self) -> str: ...

    @property
    def expect(self) -> Mapping[str, Status]: ...

    @property
    def expect_intrusive(self) -> Mapping[str, Status]: ...

    @property
    def expect_monitored(self) -> Mapping[str, Status]: ...

    @property
    def offers(self) -> frozenset[str]: ...

    @property
    def bursts_break_it(self) -> bool:
        """Whether the device stops answering under the bursts an intrusive scan sends on
        purpose (rapid failed logins): then, with --intrusive, only its intrusive checks are
        compared, since what else answers depends on when the burst came."""
        ...


@dataclass(frozen=True)
class Scan:
    """Which scan the expectations are for."""

    intrusive: bool = False
    monitored: bool = False
    """The inventory declares the device's monitoring sinks (`expect_monitored` applies)."""


DEFAULT = Scan()
INTRUSIVE = Scan(intrusive=True)


@dataclass(frozen=True)
class Resolved:
    """Every catalogue check, in catalogue order, either with the status it must get or with
    the reason it is not compared."""

    statuses: Mapping[str, Status]
    unjudged: Mapping[str, str]


def _family_of(check_id: str) -> str:
    """`mqtt` for `mqtt.default-credentials`: ids are <family>.<name>."""
    return check_id.split(".", 1)[0]


def statuses(value: Mapping[str, Status]) -> Mapping[str, Status]:
    """A written expectation, frozen; every value must be a `Status` (not its string)."""
    wrong = {c: s for c, s in value.items() if not isinstance(s, Status)}
    if wrong:
        raise TypeError(f"expectations must be Status values, not {wrong}")
    return MappingProxyType(dict(value))


def validate(device: Declares, checks: Checks) -> None:
    """ValueError naming the device and the check for a written id that is not in `checks`,
    an intrusive status for a check that is not intrusive, or a service nothing applies to."""
    written = (*device.expect, *device.expect_monitored, *device.expect_intrusive)
    for check_id in written:
        if check_id not in checks:
            raise ValueError(f"{device.name}: {check_id} is not a check of the catalogue")
    for check_id in device.expect_intrusive:
        if not checks[check_id].intrusive:
            raise ValueError(f"{device.name}: {check_id} is not intrusive; its status goes in "
                             "`expect`")
    known = frozenset[str]().union(*(check.applies_to for check in checks.values()))
    if unknown := device.offers - known:
        raise ValueError(f"{device.name}: offers {sorted(unknown)}, which no check of the "
                         "catalogue applies to")


def _absent(check: Check, device: Declares) -> bool:
    """Rule 2: the check names services and the device offers none of them."""
    return bool(check.applies_to) and check.applies_to.isdisjoint(device.offers)


def _default(device: Declares, checks: Checks, monitored: bool) -> Resolved:
    """The scan without --intrusive: written statuses, then rules 1 and 2."""
    found: dict[str, Status] = {}
    unjudged: dict[str, str] = {}
    for check_id, check in checks.items():
        if monitored and check_id in device.expect_monitored:
            found[check_id] = device.expect_monitored[check_id]
        elif check_id in device.expect:
            found[check_id] = device.expect[check_id]
        elif check.intrusive:
            found[check_id] = Status.SKIPPED
        elif _absent(check, device):
            found[check_id] = Status.NOT_APPLICABLE
        elif check.applies_to:
            unjudged[check_id] = (f"no status written, and the device offers "
                                  f"{', '.join(sorted(check.applies_to & device.offers))}")
        else:
            unjudged[check_id] = "no status written, and the check names no service to derive one"
    return Resolved(MappingProxyType(found), MappingProxyType(unjudged))


def _siblings_absent(check_id: str, checks: Checks, default: Mapping[str, Status]) -> bool:
    """Rule 3: every non-intrusive check of the family resolves to not_applicable."""
    siblings = [c for c, check in checks.items()
                if _family_of(c) == _family_of(check_id) and not check.intrusive]
    return bool(siblings) and all(default.get(c) is Status.NOT_APPLICABLE for c in siblings)


def _intrusive(device: Declares, checks: Checks, default: Resolved) -> Resolved:
    """The scan with --intrusive: the default scan's statuses, the intrusive checks' from
    `expect_intrusive` or rule 3, or not compared."""
    found = dict(default.statuses)
    unjudged = dict(default.unjudged)
    for check_id, written in device.expect_intrusive.items():
        if found[check_id] is not Status.SKIPPED:
            raise ValueError(f"{device.name}: {check_id} is {found[check_id]} without "
                             "--intrusive, so its intrusive status would never be used")
        found[check_id] = written
    for check_id, check in checks.items():
        if not check.intrusive or check_id in device.expect_intrusive \
                or found[check_id] is not Status.SKIPPED:
            continue
        if _siblings_absent(check_id, checks, default.statuses):
            found[check_id] = Status.NOT_APPLICABLE
        else:
            del found[check_id]
            unjudged[check_id] = "no status written for a scan with --intrusive"
    if device.bursts_break_it:
        for check_id, check in checks.items():
            if not check.intrusive and check_id in found:
                del found[check_id]
                unjudged[check_id] = ("the device breaks under the intrusive scan's "
                                      "deliberate bursts")
    ordered = {c: found[c] for c in checks if c in found}
    return Resolved(MappingProxyType(ordered), MappingProxyType(unjudged))


def resolve(device: Declares, scan: Scan = DEFAULT, checks: Checks | None = None) -> Resolved:
    """The expectations of `device` in `scan` for every check of `checks` (default: the
    catalogue), by the rules of this module."""
    known = catalogue() if checks is None else checks
    validate(device, known)
    default = _default(device, known, scan.monitored)
    return _intrusive(device, known, default) if scan.intrusive else default


def expected(device: Declares, scan: Scan = DEFAULT, checks: Checks | None = None
             ) -> Mapping[str, Status]:
    """The statuses `device` must get in `scan` (the checks it is compared on)."""
    return resolve(device, scan, checks).statuses


def as_text(device: Declares, scan: Scan = DEFAULT) -> dict[str, str]:
    """`expected` as JSON text (the lab's state file): check id -> status value."""
    return {check_id: status.value for check_id, status in expected(device, scan).items()}
