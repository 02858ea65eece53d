"""A profile control with `catalogue: true` takes every catalogue check of its control, also one
added after the profile was written: the built-in profiles need no line for a new check."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

import pytest

from probe.checks.base import CONTROL_COMMUNICATION, CONTROL_MONITORING, Check, Observations, check
from probe.checks.catalogue import catalogue
from probe.errors import InputError
from probe.model import Finding, Severity, passed
from probe.profile_loader import load_profile


def _extra(check_id: str, control: str,
           references: Mapping[str, tuple[str, ...]]) -> Check:
    @check(check_id, title="A check written after the profiles", control=control,
           severity=Severity.LOW, needs=(), remediation="Nothing to do.", references=references)
    def evaluate(obs: Observations, params: object) -> Iterable[Finding]:
        """Pass: always.
        Fail: never."""
        return [passed("fine")]
    return evaluate


NEW = _extra("http.server-banner", CONTROL_COMMUNICATION,
             {"owasp-isvs": ("3.1.1",), "etsi-en-303-645": ("5.6-8",)})
OTHER = _extra("monitor.new-thing", CONTROL_MONITORING, {})
WITH_NEW = MappingProxyType({**catalogue(), NEW.id: NEW, OTHER.id: OTHER})


def test_a_builtin_profile_takes_a_new_check_of_its_control_with_its_references() -> None:
    before = load_profile("iso27400-6.2")
    after = load_profile("iso27400-6.2", catalogue=WITH_NEW)
    assert [c.id for c in after.checks] == [*(c.id for c in before.checks), NEW.id]
    added = after.checks[-1]
    assert added.control == CONTROL_COMMUNICATION
    assert added.references == {"owasp-isvs": ("3.1.1",), "etsi-en-303-645": ("5.6-8",)}
    assert OTHER.id not in {c.id for c in after.checks}
    assert after.digest != before.digest, "a new check changes what the profile checks"


def test_the_default_profile_takes_both_controls_new_checks() -> None:
    ids = [c.id for c in load_profile("iso27400", catalogue=WITH_NEW).checks]
    assert NEW.id in ids and OTHER.id in ids


def test_the_builtin_profiles_hold_every_catalogue_check_of_their_control() -> None:
    for profile_id, control in (("iso27400-6.2", CONTROL_COMMUNICATION),
                                ("iso27400-6.5", CONTROL_MONITORING)):
        planned = {c.id for c in load_profile(profile_id).checks}
        declared = {c.id for c in catalogue().values() if c.control == control}
        assert declared <= planned, profile_id


def test_a_named_check_keeps_the_profiles_settings_and_disabled_removes_a_taken_one(
        tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("id: mine\nextends: [iso27400-6.2]\ndisabled: [http.server-banner]\n")
    ids = [c.id for c in load_profile(str(path), catalogue=WITH_NEW).checks]
    assert NEW.id not in ids
    assert ids == [c.id for c in load_profile("iso27400-6.2").checks]


def test_a_declared_reference_to_an_unknown_framework_is_an_input_error(tmp_path: Path) -> None:
    odd = _extra("http.odd-references", CONTROL_COMMUNICATION, {"made-up": ("1",)})
    path = tmp_path / "odd.yaml"
    path.write_text("id: odd\ncontrols:\n  27400-6.2:\n    catalogue: true\n")
    with pytest.raises(InputError) as caught:
        load_profile(str(path), catalogue=MappingProxyType({odd.id: odd}))
    assert caught.value.file == str(path) or caught.value.file.endswith("odd.yaml")
    assert caught.value.line == 4
    assert "made-up" in str(caught.value)
