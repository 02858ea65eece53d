"""Check selection on the command line: `--checks`, `--skip-checks`, `--severity`, `--control`.

The selection narrows the resolved profile before the engine sees it (`select`): the checks it
leaves out are not planned, so they are neither scanned nor in the results; the profile keeps
its id and digest, and each record carries a `selection` block that says what was asked and,
for every check of the profile left out, why. Every pattern must match a check of the profile
and every control must be one of its controls: a typo is an input error (exit 2) naming the
option, with a suggestion, before any packet.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from probe.errors import InputError
from probe.model import Severity
from probe.yamldoc import show

if TYPE_CHECKING:
    from probe.profile import CheckConfig, Profile

PATTERN = re.compile(r"[a-z0-9*?\[\]][a-z0-9.*?\[\]-]{0,63}")
"""A check id or a shell-style glob over ids (`tls.*`, `mqtt.?*-access`), lower case."""
CONTROL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
MAX_ITEMS = 256
"""Patterns or controls one option takes, all repetitions together."""


@dataclass(frozen=True)
class Selection:
    """What the command line selected and, once applied to a profile, what it left out."""

    checks: tuple[str, ...] = ()
    """--checks: run only the checks matching one of these (none: every check)."""
    skip_checks: tuple[str, ...] = ()
    """--skip-checks: never run the checks matching one of these."""
    severity: Severity | None = None
    """--severity: run only checks of this severity or higher."""
    controls: tuple[str, ...] = ()
    """--control: run only the checks under these controls (none: every control)."""
    deselected: Mapping[str, str] = field(default_factory=dict)
    """Each check of the profile left out, and why."""

    @property
    def active(self) -> bool:
        return bool(self.checks or self.skip_checks or self.severity or self.controls)

    def why_not(self, config: CheckConfig) -> str | None:
        """Why the selection leaves out the check `config`; None when it runs."""
        if self.checks and not _matches(config.id, self.checks):
            return "not selected by --checks " + ",".join(self.checks)
        skipped_by = next((p for p in self.skip_checks if fnmatch.fnmatchcase(config.id, p)),
                          None)
        if skipped_by is not None:
            return f"left out by --skip-checks {skipped_by}"
        if self.controls and config.control not in self.controls:
            return f"its control {config.control} is not selected by --control " \
                   + ",".join(self.controls)
        if self.severity is not None and config.severity.rank < self.severity.rank:
            return f"its severity {config.severity.value} is below --severity " \
                   f"{self.severity.value}"
        return None


def selection_note(profile: Profile) -> str | None:
    """One line saying how much of `profile` a narrowed scan runs; None when it runs all."""
    selection = profile.selection
    if selection is None:
        return None
    total = len(profile.checks) + len(selection.deselected)
    return (f"note: {len(profile.checks)} of the {total} checks of profile {profile.id} run "
            f"({options_text(selection)}); each record names the others under "
            "selection.deselected")


def options_text(selection: Selection | None) -> str:
    """The selection's options as a command line would give them; `no selection` for none."""
    if selection is None or not selection.active:
        return "no selection"
    parts = [f"{option} {','.join(values)}" for option, values in (
        ("--checks", selection.checks), ("--skip-checks", selection.skip_checks),
        ("--control", selection.controls)) if values]
    if selection.severity is not None:
        parts.append(f"--severity {selection.severity.value}")
    return " ".join(parts)


def _matches(check_id: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(check_id, pattern) for pattern in patterns)


def split_items(values: Sequence[str], option: str, syntax: re.Pattern[str],
                what: str) -> tuple[str, ...]:
    """The items of a repeatable, comma-separated option, each checked against `syntax`."""
    items: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            if not syntax.fullmatch(item):
                raise InputError(f"{show(item)} is not {what}", field=option)
            if item not in items:
                items.append(item)
    if len(items) > MAX_ITEMS:
        raise InputError(f"at most {MAX_ITEMS} items", field=option)
    if values and not items:
        raise InputError(f"expected {what}, comma-separated", field=option)
    return tuple(items)


def selection_of(checks: Sequence[str], skip_checks: Sequence[str], severity: str | None,
                 controls: Sequence[str]) -> Selection:
    """The selection the options ask for (not yet applied to a profile)."""
    pattern = "a check id or glob (e.g. tls.certificate-trust, tls.*)"
    return Selection(
        checks=split_items(checks, "--checks", PATTERN, pattern),
        skip_checks=split_items(skip_checks, "--skip-checks", PATTERN, pattern),
        severity=Severity(severity) if severity is not None else None,
        controls=split_items(controls, "--control", CONTROL, "a control id (e.g. 27400-6.2)"))


def select(profile: Profile, selection: Selection, catalogue: Iterable[str]) -> Profile:
    """`profile` with only the checks `selection` keeps, and the selection (with what it left
    out) attached for the records; `profile` itself when nothing is selected.

    Raises InputError, naming the option, for a pattern that matches no check of the profile
    (with the nearest id of the profile, or the note that the check exists but is not in it),
    an unknown control, or a selection that leaves no check."""
    if not selection.active:
        return profile
    ids = [config.id for config in profile.checks]
    known = list(catalogue)
    for option, patterns in (("--checks", selection.checks),
                             ("--skip-checks", selection.skip_checks)):
        for pattern in patterns:
            if not _matches_any(pattern, ids):
                raise InputError(_no_match(pattern, ids, known, profile.id), field=option)
    control_ids = [control.id for control in profile.controls]
    for control in selection.controls:
        if control not in control_ids:
            close = difflib.get_close_matches(control, control_ids, n=1)
            hint = f"did you mean {close[0]!r}?" if close else \
                "its controls: " + ", ".join(control_ids)
            raise InputError(f"{show(control)} is not a control of profile {profile.id} "
                             f"({hint})", field="--control")
    reasons = {config.id: why for config in profile.checks
               if (why := selection.why_not(config)) is not None}
    kept = tuple(config for config in profile.checks if config.id not in reasons)
    if not kept:
        raise InputError(f"the selection leaves no check of profile {profile.id} to run",
                         field=_first_option(selection))
    return dataclasses.replace(profile, checks=kept, selection=dataclasses.replace(
        selection, deselected=reasons))


def _no_match(pattern: str, ids: list[str], known: list[str], profile_id: str) -> str:
    in_catalogue = [check_id for check_id in known if fnmatch.fnmatchcase(check_id, pattern)]
    if in_catalogue:
        return (f"{show(pattern)} matches no check of profile {profile_id} "
                f"({', '.join(in_catalogue[:3])} {'is' if len(in_catalogue) == 1 else 'are'} "
                "in the catalogue but not in the profile)")
    close = difflib.get_close_matches(pattern, ids, n=1)
    family, dot, rest = pattern.partition(".")
    families = difflib.get_close_matches(family, sorted({i.partition(".")[0] for i in ids}),
                                         n=1)
    guess = f"{families[0]}.{rest}" if dot and families else ""
    if not close and guess != pattern and _matches_any(guess, ids):
        close = [guess]
    hint = f"did you mean {close[0]!r}?" if close else "see `iotprobe profiles checks`"
    return f"{show(pattern)} matches no check ({hint})"


def _matches_any(pattern: str, ids: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(check_id, pattern) for check_id in ids)


def _first_option(selection: Selection) -> str:
    if selection.checks:
        return "--checks"
    if selection.skip_checks:
        return "--skip-checks"
    return "--control" if selection.controls else "--severity"
