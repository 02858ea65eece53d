"""Waivers that would fail silently, said out loud before a scan or sweep starts.

A waiver stops applying the day after it expires; a class waiver cannot cover a device without
a class (command-line targets, target lists, nmap XML); a waiver of a check the profile does
not run, or of a device or class the scan does not hold, covers nothing. Each is legal, and
each leaves a user believing a failure is accepted, or still accepted, when it is not: the
scan warns on standard error and goes on (the verdicts follow the waivers in force only).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from rich.console import Console
from rich.text import Text

from probe.display import shown_text
from probe.inventory import Inventory
from probe.model import Waiver
from probe.profile import Profile


def scope(waiver: Waiver) -> str:
    """Whom `waiver` covers, in words."""
    if waiver.device is not None:
        return f"device {waiver.device}"
    if waiver.device_class is not None:
        return f"class {waiver.device_class}"
    return "the whole fleet"


def expired(waiver: Waiver, today: dt.date) -> bool:
    """Whether `waiver` no longer applies on `today` (it does up to its expiry date)."""
    return dt.date.fromisoformat(waiver.expires) < today


def waiver_warnings(profile: Profile, sources: Iterable[Inventory], today: dt.date, *,
                    classless: bool) -> list[str]:
    """What a user of `profile` on the devices of `sources` should know about its waivers:
    expired ones, ones whose check does not run, class waivers beside devices without a class
    (`classless`: command-line targets, lists or nmap XML are scanned), and ones that cover no
    device of the scan."""
    warnings: list[str] = []
    running = {config.id for config in profile.checks}
    deselected = profile.selection.deselected if profile.selection is not None else {}
    pending: list[Waiver] = []
    for waiver in profile.waivers:
        name = f"the waiver of {waiver.check} for {scope(waiver)}"
        if expired(waiver, today):
            warnings.append(f"{name} expired on {waiver.expires}: its failures count again "
                            "(renew it with a new date, or remove it)")
        elif waiver.check in deselected:
            warnings.append(f"{name} waives a check this scan does not run "
                            f"({deselected[waiver.check]})")
        elif waiver.check not in running:
            warnings.append(f"{name} waives a check profile {profile.id} does not run")
        else:
            if classless and waiver.device_class is not None:
                warnings.append(f"{name} cannot cover command-line targets, target lists or "
                                f"nmap XML: their devices have no class (give them `class: "
                                f"{waiver.device_class}` in an inventory)")
            pending.append(waiver)
    covered = _covering(pending, sources)
    warnings.extend(f"the waiver of {waiver.check} for {scope(waiver)} matches no device of "
                    "this scan" for waiver in pending if waiver not in covered)
    return warnings


def _covering(waivers: list[Waiver], sources: Iterable[Inventory]) -> list[Waiver]:
    """The waivers of `waivers` that cover at least one device of `sources`."""
    left = list(waivers)
    found: list[Waiver] = []
    for source in sources:
        for device in source.devices():
            if not left:
                return found
            for waiver in [w for w in left if w.covers(w.check, device)]:
                left.remove(waiver)
                found.append(waiver)
    return found


def print_warnings(warnings: Iterable[str]) -> None:
    """Each warning on standard error after a yellow `warning:`, as data (probe.display)."""
    err = Console(stderr=True, highlight=False)
    for message in warnings:
        err.print(Text.assemble(("warning:", "bold yellow"), " ", shown_text(message)),
                  soft_wrap=True)


CLASSLESS_SUFFIXES = (".xml", ".txt", ".lst")
"""Inventories whose devices have no class: nmap XML and target lists."""


def warn_about_waivers(profile: Profile, sources: Iterable[Inventory], *,
                       classless: bool) -> None:
    """Print `waiver_warnings` for a scan or sweep starting now (UTC)."""
    print_warnings(waiver_warnings(profile, sources, dt.datetime.now(dt.UTC).date(),
                                   classless=classless))
