"""Profiles: validation, `extends` merging, waivers, the digest, and the built-in profiles."""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field
from ruamel.yaml import YAML

from probe.checks.base import Check, Observations
from probe.checks.catalogue import catalogue as real_catalogue
from probe.checks.net import OpenPortsParams
from probe.checks.params import CheckParams, NoParams, Ports
from probe.errors import InputError
from probe.model import Device, Finding, Severity, Waiver
from probe.profile import Profile
from probe.profile_loader import (
    FRAMEWORKS,
    builtin_dir,
    builtin_profile_ids,
    load_profile,
    load_profiles,
)


def _nothing(obs: Observations, params: CheckParams) -> Iterable[Finding]:
    return []


class PortsParams(CheckParams):
    allowed_tcp: Ports = (443,)
    allowed_udp: Ports = ()
    strict: bool = False
    limits: dict[str, int] = Field(default_factory=lambda: {"a": 1})
    name: str = "x"
    anything: Any = None


class MonitorParams(CheckParams):
    timeout: Annotated[float, Field(gt=0)] = 30


def _check(check_id: str, control: str, severity: Severity,
           params: type[CheckParams] = NoParams) -> Check:
    return Check(id=check_id, title=check_id, control=control, severity=severity, needs=(),
                 evaluate=_nothing, remediation="fix it", params=params)


CATALOGUE = {
    check.id: check for check in [
        _check("t.ports", "c-1", Severity.MEDIUM, PortsParams),
        _check("t.plain", "c-1", Severity.HIGH),
        _check("t.monitor", "c-2", Severity.LOW, MonitorParams),
    ]
}


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(path: Path | str) -> Profile:
    return load_profile(str(path), catalogue=CATALOGUE)


def fails(path: Path) -> InputError:
    with pytest.raises(InputError) as info:
        load(path)
    return info.value


BASE = """
    id: base
    title: Base profile
    version: "1.0"
    description: the base
    scan:
      tcp_ports: "22,80,443-445"
    controls:
      c-1:
        title: Control one
        references: {iso-27400-2022: ["7.1.2.14"], owasp-isvs: ["3.2.2"]}
        checks:
          t.ports:
            params: {allowed_tcp: [443, 8883], limits: {a: 2, b: 3}}
            classes:
              camera: {allowed_tcp: [443, 554], limits: {a: 5}}
              sensor: {allowed_tcp: [8883]}
            references: {etsi-en-303-645: ["5.6-1", "5.6-5"], owasp-isvs: ["3.2.2"]}
          t.plain:
    waivers:
      - {check: t.plain, device: cam-7, justification: legacy firmware, expires: 2099-01-31}
    """


def test_minimal_profile(tmp_path: Path) -> None:
    path = write(tmp_path, "base.yaml", BASE)
    profile = load(path)
    assert (profile.id, profile.title, profile.version, profile.description) == (
        "base", "Base profile", "1.0", "the base")
    assert profile.source == str(path)
    assert profile.tcp_ports == (22, 80, 443, 444, 445)
    assert profile.intrusive is False
    assert profile.extends == ()
    assert profile.digest.startswith("sha256:") and len(profile.digest) == 7 + 64
    (control,) = profile.controls
    assert (control.id, control.title) == ("c-1", "Control one")
    assert control.references == {"iso-27400-2022": ("7.1.2.14",), "owasp-isvs": ("3.2.2",)}
    ports, plain = profile.checks
    assert (ports.id, ports.control, ports.severity) == ("t.ports", "c-1", Severity.MEDIUM)
    assert ports.params == {"allowed_tcp": [443, 8883], "limits": {"a": 2, "b": 3}}
    assert ports.class_params == {"camera": {"allowed_tcp": [443, 554], "limits": {"a": 5}},
                                  "sensor": {"allowed_tcp": [8883]}}
    assert ports.references == {"etsi-en-303-645": ("5.6-1", "5.6-5"), "owasp-isvs": ("3.2.2",)}
    assert (plain.id, plain.severity, plain.params, plain.references) == (
        "t.plain", Severity.HIGH, {}, {})
    assert profile.waivers == (Waiver(check="t.plain", justification="legacy firmware",
                                      expires="2099-01-31", device="cam-7"),)


def test_extends_chain_merges_deeply(tmp_path: Path) -> None:
    write(tmp_path, "lib/base.yaml", BASE)
    write(tmp_path, "lib/middle.yaml", """
        id: middle
        title: Middle
        extends: base.yaml
        controls:
          c-1:
            references: {owasp-isvs: ["3.2.3"]}
            checks:
              t.ports:
                severity: high
                params: {limits: {b: 4}}
                classes: {camera: {limits: {c: 6}}, gateway: {allowed_tcp: [8443]}}
                references: {owasp-isvs: ["9.9.9"]}
        waivers:
          - {check: t.ports, class: camera, justification: "RTSP needed", expires: "2001-01-01"}
        """)
    child = write(tmp_path, "child.yaml", """
        id: child
        version: "2.0"
        extends: lib/middle.yaml
        intrusive: true
        scan: {tcp_ports: [8883]}
        controls:
          c-1:
            title: Control one, strict
            checks:
              t.ports:
                params: {allowed_tcp: [443]}
          c-2:
            title: Monitoring
            checks:
              t.monitor: {params: {timeout: 5}}
        """)
    profile = load(child)
    assert (profile.id, profile.title, profile.version, profile.intrusive) == (
        "child", "Middle", "2.0", True)
    assert profile.extends == ("lib/middle.yaml",)
    assert profile.tcp_ports == (8883,)
    assert profile.description == "the base"
    assert [(c.id, c.title) for c in profile.controls] == [
        ("c-1", "Control one, strict"), ("c-2", "Monitoring")]
    assert profile.controls[0].references == {"iso-27400-2022": ("7.1.2.14",),
                                              "owasp-isvs": ("3.2.3",)}
    assert [c.id for c in profile.checks] == ["t.ports", "t.plain", "t.monitor"]
    ports = profile.checks[0]
    assert ports.severity is Severity.HIGH
    assert ports.params == {"allowed_tcp": [443], "limits": {"a": 2, "b": 4}}
    assert ports.class_params == {
        "camera": {"allowed_tcp": [443, 554], "limits": {"a": 5, "c": 6}},
        "sensor": {"allowed_tcp": [8883]},
        "gateway": {"allowed_tcp": [8443]},
    }
    assert ports.references == {"etsi-en-303-645": ("5.6-1", "5.6-5"),
                                "owasp-isvs": ("9.9.9",)}
    assert profile.checks[2].params == {"timeout": 5}
    assert profile.checks[2].control == "c-2"
    assert [w.check for w in profile.waivers] == ["t.plain", "t.ports"]
    assert profile.waivers[1].device_class == "camera"


def test_multiple_extends_left_to_right(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", """
        id: a
        title: A
        version: "1"
        scan: {tcp_ports: "1"}
        controls:
          c-1:
            title: One
            checks:
              t.ports: {params: {allowed_tcp: [1], name: from-a}}
        """)
    write(tmp_path, "b.yaml", """
        id: b
        title: B
        version: "2"
        scan: {tcp_ports: "2"}
        controls:
          c-2:
            title: Two
            checks:
              t.monitor:
          c-1:
            checks:
              t.plain:
              t.ports: {params: {allowed_tcp: [2]}}
        """)
    child = write(tmp_path, "child.yaml", """
        id: child
        extends: [a.yaml, b.yaml]
        controls:
          c-1:
            checks:
              t.ports: {params: {name: from-child}}
        """)
    profile = load(child)
    assert (profile.title, profile.version, profile.tcp_ports) == ("B", "2", (2,))
    assert profile.extends == ("a.yaml", "b.yaml")
    assert [c.id for c in profile.controls] == ["c-1", "c-2"]
    assert [c.id for c in profile.checks] == ["t.ports", "t.plain", "t.monitor"]
    assert profile.checks[0].params == {"allowed_tcp": [2], "name": "from-child"}


def test_diamond_does_not_duplicate_waivers(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    write(tmp_path, "left.yaml", "id: left\nextends: base.yaml\n")
    write(tmp_path, "right.yaml", "id: right\nextends: base.yaml\n")
    child = write(tmp_path, "child.yaml", "id: child\nextends: [left.yaml, right.yaml]\n")
    assert len(load(child).waivers) == 1


def test_disabled(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", """
        id: child
        extends: base.yaml
        disabled: [t.ports]
        """)
    profile = load(child)
    assert [c.id for c in profile.checks] == ["t.plain"]
    assert [c.id for c in profile.controls] == ["c-1"]
    grandchild = write(tmp_path, "grandchild.yaml", """
        id: grandchild
        extends: child.yaml
        controls:
          c-1:
            checks:
              t.ports:
        """)
    assert [c.id for c in load(grandchild).checks] == ["t.plain", "t.ports"]
    assert load(grandchild).checks[1].params == {}


def test_waivers_and_plan(tmp_path: Path) -> None:
    path = write(tmp_path, "w.yaml", """
        id: w
        title: W
        version: "1"
        controls:
          c-1:
            checks:
              t.ports:
                params: {allowed_tcp: [443]}
                classes: {camera: {allowed_tcp: [443, 554]}}
              t.plain:
        waivers:
          - {check: t.ports, class: camera, justification: expired, expires: 2020-01-31}
          - {check: t.plain, device: cam-7, justification: "vendor fix due", expires: 2030-06-30}
        """)
    profile = load(path)
    assert [w.expires for w in profile.waivers] == ["2020-01-31", "2030-06-30"]
    camera = Device(id="cam-7", address="127.0.0.1", device_class="camera")
    models = {cid: check.params for cid, check in CATALOGUE.items()}
    ports, plain = profile.plan(camera, models, dt.date(2026, 11, 28))
    assert isinstance(ports.params, PortsParams)
    assert ports.params.allowed_tcp == (443, 554)
    assert ports.params.strict is False
    assert ports.waiver is None
    assert plain.waiver is not None and plain.waiver.justification == "vendor fix due"
    sensor = Device(id="s-1", address="127.0.0.2", device_class="sensor")
    ports, plain = profile.plan(sensor, models, dt.date(2026, 11, 28))
    assert isinstance(ports.params, PortsParams)
    assert ports.params.allowed_tcp == (443,)
    assert plain.waiver is None


def test_digest(tmp_path: Path) -> None:
    first = write(tmp_path, "one/base.yaml", BASE)
    second = write(tmp_path, "two/base.yaml", "# the same profile, written differently\n"
                   + textwrap.dedent(BASE).replace("\n\n", "\n"))
    digest = load(first).digest
    assert load(first).digest == digest
    assert load(second).digest == digest
    write(tmp_path, "two/base.yaml", textwrap.dedent(BASE).replace("[443, 554]", "[443]"))
    assert load(second).digest != digest
    write(tmp_path, "two/base.yaml", textwrap.dedent(BASE).replace("2099-01-31", "2099-02-01"))
    assert load(second).digest != digest
    write(tmp_path, "two/base.yaml", textwrap.dedent(BASE).replace("t.plain:\n",
                                                                   "t.plain: {severity: low}\n"))
    assert load(second).digest != digest
    write(tmp_path, "two/base.yaml", textwrap.dedent(BASE).replace("t.plain:\n",
                                                                   "t.plain: {severity: high}\n"))
    assert load(second).digest == digest


def test_load_profiles_combines(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", """
        id: a
        title: A
        version: "1"
        controls: {c-1: {checks: {t.plain: }}}
        """)
    b = write(tmp_path, "b.yaml", """
        id: b
        title: B
        version: "1"
        controls: {c-2: {checks: {t.monitor: }}}
        """)
    combined = load_profiles([str(a), str(b)], catalogue=CATALOGUE)
    assert (combined.id, combined.title, combined.version) == ("a+b", "A + B", "1")
    assert [c.id for c in combined.checks] == ["t.plain", "t.monitor"]
    assert combined.source == f"{a}, {b}"
    single = load_profiles([str(a)], catalogue=CATALOGUE)
    assert single == load(a)
    with pytest.raises(InputError) as info:
        load_profiles([], catalogue=CATALOGUE)
    assert info.value.field == "PROFILE"


# ---------------------------------------------------------------------------------------------
# Bad profiles: every message names the file, the line and the field
# ---------------------------------------------------------------------------------------------

HEAD = 'id: p\ntitle: P\nversion: "1"\n'


@pytest.mark.parametrize(
    ("body", "line", "field", "words"),
    [
        ("controls:\n  c-1:\n    checks:\n      t.port:\n", 7,
         "controls.c-1.checks['t.port']", "unknown check 't.port' (did you mean 't.ports'?)"),
        ("controls:\n  c-1:\n    checks:\n      t.ports:\n        severty: high\n", 8,
         "controls.c-1.checks['t.ports'].severty", "did you mean 'severity'?"),
        ("controls:\n  c-1:\n    checks:\n      t.ports:\n        severity: hgh\n", 8,
         "controls.c-1.checks['t.ports'].severity", "got 'hgh'"),
        ("controls:\n  c-1:\n    checks:\n      t.ports:\n        params: {alowed_tcp: []}\n",
         8, "controls.c-1.checks['t.ports'].params.alowed_tcp",
         "t.ports has no parameter 'alowed_tcp'"),
        ("controls:\n  c-1:\n    checks:\n      t.plain:\n        params: {x: 1}\n", 8,
         "controls.c-1.checks['t.plain'].params.x", "(parameters: none)"),
        ("controls:\n  c-1:\n    checks:\n      t.ports:\n        params: {allowed_tcp: 443}\n",
         8, "controls.c-1.checks['t.ports'].params.allowed_tcp",
         "expected a list, got a number"),
        ("controls:\n  c-1:\n    checks:\n      t.ports:\n        classes:\n"
         "          cam:\n            strict: 'yes'\n", 10,
         "controls.c-1.checks['t.ports'].classes.cam.strict",
         "expected true or false, got a string"),
        ("controls:\n  c-1:\n    checks:\n      t.ports:\n        classes: {cam: [1]}\n", 8,
         "controls.c-1.checks['t.ports'].classes.cam", "expected a mapping, got a list"),
        ("controls:\n  c-1:\n    checks:\n      t.ports:\n        references:\n"
         "          etsi: [\"5.6-1\"]\n", 9,
         "controls.c-1.checks['t.ports'].references.etsi", "'etsi' is not allowed here"),
        ("controls:\n  c-1:\n    references:\n      owasp-isvs: 3.2\n", 7,
         "controls.c-1.references.owasp-isvs", "expected a list, got a number"),
        ("controls:\n  c-1:\n    references:\n      owasp-isvs: []\n", 7,
         "controls.c-1.references.owasp-isvs", "must not be empty"),
        ("controls:\n  c-1:\n    title: ''\n", 6, "controls.c-1.title", "must not be empty"),
        ("controls:\n  'c 1': {}\n", 5, "controls['c 1']", "not a valid control id"),
        ("controls: [c-1]\n", 4, "controls", "expected a mapping, got a list"),
        ("controls:\n  c-1:\n    checks: [t.ports]\n", 6, "controls.c-1.checks",
         "expected a mapping, got a list"),
        ("scan:\n  tcp_ports: 80-\n", 5, "scan.tcp_ports", "not a port number"),
        ("scan:\n  udp_ports: 80\n", 5, "scan.udp_ports", "unknown field"),
        ("intrusive: yes\n", 4, "intrusive", "expected true or false, got a string"),
        ("extends: 5\n", 4, "extends", "expected a profile id or path"),
        ("extends: []\n", 4, "extends", "empty list"),
        ("extends: nonexistent-profile\n", 4, "extends", "unknown profile 'nonexistent-profile'"),
        ("extends:\n  - base.yaml\n  - missing.yaml\n", 6, "extends[1]",
         "unknown profile 'missing.yaml'"),
        ("disabled: [t.nope]\n", 4, "disabled[0]", "unknown check 't.nope'"),
        ("disabled:\n  - t.plain\n", 5, "disabled[0]", "not in this profile"),
        ("disabled: t.plain\n", 4, "disabled", "expected a list, got a string"),
        ("waivers:\n  - {check: t.plain, justification: x, expires: 2027-01-31}\n", 5,
         "waivers[0]", "exactly one of `device`, `class` and `fleet: true`"),
        ("waivers:\n  - {check: t.plain, device: d, class: c, justification: x,"
         " expires: 2027-01-31}\n", 5, "waivers[0]",
         "exactly one of `device`, `class` and `fleet: true`"),
        ("waivers:\n  - {check: t.plain, device: d, fleet: true, justification: x,"
         " expires: 2027-01-31}\n", 5, "waivers[0]",
         "exactly one of `device`, `class` and `fleet: true`"),
        ("waivers:\n  - {check: t.plain, device: d, justification: ' ', expires: 2027-01-31}\n",
         5, "waivers[0].justification", "must not be empty"),
        ("waivers:\n  - {check: t.plain, device: d, expires: 2027-01-31}\n", 5,
         "waivers[0].justification", "required field is missing"),
        ("waivers:\n  - {check: t.plain, device: d, justification: x, expires: '2027-02-30'}\n",
         5, "waivers[0].expires", "'2027-02-30' is not a valid date"),
        ("waivers:\n  - {check: t.plain, device: d, justification: x, expires: soon}\n",
         5, "waivers[0].expires", "expected a date as YYYY-MM-DD, got 'soon'"),
        ("waivers:\n  - {check: t.plain, device: d, justification: x, expires: 20270131}\n",
         5, "waivers[0].expires", "expected a date as YYYY-MM-DD, got a number"),
        ("waivers:\n  - {check: t.plain, device: d, justification: x,"
         " expires: 2027-01-31 10:00:00}\n", 5, "waivers[0].expires", "expected a date"),
        ("waivers:\n  - {check: t.nope, device: d, justification: x, expires: 2027-01-31}\n",
         5, "waivers[0].check", "unknown check 't.nope'"),
        ("waivers:\n  - {check: t.plain, device: 'a b', justification: x,"
         " expires: 2027-01-31}\n", 5, "waivers[0].device", "not a valid device id"),
        ("waiver: []\n", 4, "waiver", "did you mean 'waivers'?"),
    ],
)
def test_bad_profile(tmp_path: Path, body: str, line: int, field: str, words: str) -> None:
    write(tmp_path, "base.yaml", BASE)
    path = write(tmp_path, "p.yaml", HEAD + body)
    error = fails(path)
    assert (error.file, error.line, error.field) == (str(path), line, field)
    assert words in error.message
    assert str(error).startswith(f"{path}:{line}: {field}: ")


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        ("title: T\nversion: '1'\n", 1, "id", "required field is missing"),
        ("id: p\nversion: '1'\n", 1, "title", "the profile has no title"),
        ("id: p\ntitle: T\n", 1, "version", "the profile has no version"),
        ("id: p\ntitle: T\nversion: 2026.11\n", 3, "version",
         "expected a string, got a number (put it in quotes)"),
        ("id: 'p q'\n", 1, "id", "not a valid profile id"),
        ("id: p\ntitle: T\nversion: '1'\nextends: p.yaml\n", 4, "extends",
         "extends forms a cycle"),
    ],
)
def test_bad_profile_top(tmp_path: Path, text: str, line: int, field: str, words: str) -> None:
    path = write(tmp_path, "p.yaml", text)
    error = fails(path)
    assert (error.file, error.line, error.field) == (str(path), line, field)
    assert words in error.message


def test_cycle_names_the_chain(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "id: a\ntitle: A\nversion: '1'\nextends: b.yaml\n")
    b = write(tmp_path, "b.yaml", "id: b\nextends: [c.yaml]\n")
    c = write(tmp_path, "c.yaml", "id: c\n\nextends:\n  - a.yaml\n")
    error = fails(a)
    assert (error.file, error.line, error.field) == (str(c), 4, "extends[0]")
    assert f"{a} -> {b} -> {c} -> {c.parent / 'a.yaml'}" in error.message


def test_check_cannot_move_to_another_control(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    path = write(tmp_path, "p.yaml", """
        id: p
        extends: base.yaml
        controls:
          c-2:
            checks:
              t.ports:
        """)
    error = fails(path)
    assert (error.file, error.line, error.field) == (str(path), 6, "controls.c-2.checks['t.ports']")
    assert "under control c-1" in error.message


def test_error_in_a_parent_names_the_parent(tmp_path: Path) -> None:
    parent = write(tmp_path, "parent.yaml", "id: parent\ntitle: P\nversion: '1'\nbogus: 1\n")
    child = write(tmp_path, "child.yaml", "id: child\nextends: parent.yaml\n")
    error = fails(child)
    assert (error.file, error.line, error.field) == (str(parent), 4, "bogus")


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        ("id: [\n", 2, "YAML syntax error"),
        ("", 1, "the file is empty"),
        ("- id: p\n", 1, "the top level must be a mapping"),
        ("id: p\nid: q\n", 2, "YAML syntax error"),
        ("\x00", 1, "YAML syntax error"),
    ],
)
def test_unparseable_profile(tmp_path: Path, content: str, line: int, words: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(content)
    error = fails(path)
    assert (error.file, error.line) == (str(path), line)
    assert words in error.message


def test_profile_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load(tmp_path / "missing.yaml")
    assert info.value.field == "PROFILE"
    assert f"unknown profile '{tmp_path / 'missing.yaml'}'" in info.value.message
    with pytest.raises(InputError, match="neither a built-in profile"):
        load("no-such-profile")
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        load(tmp_path / "dir.yaml")
    (tmp_path / "latin1.yaml").write_bytes(b"id: p\ntitle: caf\xe9\n")
    error = fails(tmp_path / "latin1.yaml")
    assert (error.line, error.message) == (2, "is not UTF-8 text")


# ---------------------------------------------------------------------------------------------
# Built-in profiles, with the real catalogue
# ---------------------------------------------------------------------------------------------

DEFAULT_TCP_PORTS = (21, 22, 23, 25, 53, 80, 81, 102, 322, 443, 445, 502, 513, 514, 554, 1883, 1911,
                     2323, 4840, 5000, 5001, 5900, 7547, 8000, 8008, 8080, 8081, 8088, 8443,
                     8554, 8883, 8888, 9000, 9001, 9100, 20000, 44818)
OPEN_PORTS_REFERENCES = {
    "iso-27400-2022": ("7.1.2.14",),
    "etsi-en-303-645": ("5.6-1", "5.6-5"),
    "owasp-isvs": ("3.2.2",),
    "iec-62443-4-2": ("CR 7.7",),
    "nistir-8259a": ("Logical access to interfaces (IFC)",),
}
CLEARTEXT_REFERENCES = {
    "iso-27400-2022": ("7.1.2.14",),
    "etsi-en-303-645": ("5.5-1", "5.6-1", "5.6-4"),
    "owasp-isvs": ("3.2.3",),
    "iec-62443-4-2": ("CR 4.1", "CR 7.7"),
    "nistir-8259a": ("Logical access to interfaces", "Data protection (STX)"),
}


def test_builtin_ids_and_dir() -> None:
    assert builtin_dir() == Path(__file__).resolve().parent.parent / "profiles"
    assert builtin_profile_ids() == ["acceptance", "iso27400", "iso27400-6.1", "iso27400-6.2",
                                     "iso27400-6.4", "iso27400-6.5"]


def test_every_builtin_profile_loads_with_the_real_catalogue() -> None:
    catalogue = real_catalogue()
    for profile_id in builtin_profile_ids():
        profile = load_profile(profile_id)
        assert profile.id == profile_id
        assert profile.source == f"builtin:{profile_id}"
        assert profile.version == "2026.11.0"
        assert 2024 not in profile.tcp_ports
        for check in profile.checks:
            assert check.id in catalogue
            assert set(check.references) <= set(FRAMEWORKS)
        assert load_profile(profile_id).digest == profile.digest


def test_iso27400_6_2() -> None:
    profile = load_profile("iso27400-6.2")
    assert profile.tcp_ports == DEFAULT_TCP_PORTS
    assert [(c.id, c.title) for c in profile.controls] == [("27400-6.2", "Secure communication")]
    assert profile.controls[0].references == {"iso-27400-2022": ("7.1.2.14",)}
    by_id = {c.id: c for c in profile.checks}
    ports, cleartext = by_id["net.open-ports"], by_id["net.cleartext-management"]
    assert profile.checks[:2] == (ports, cleartext)
    implemented = {cid for cid, c in real_catalogue().items() if c.control == "27400-6.2"}
    assert set(by_id) == implemented, "every implemented 6.2 check belongs in iso27400-6.2"
    assert (ports.id, ports.severity) == ("net.open-ports", Severity.MEDIUM)
    assert ports.params == {"allowed_tcp": [443, 8443, 8883], "allowed_udp": [5684]}
    assert ports.class_params == {
        "sensor": {"allowed_tcp": [8883], "allowed_udp": [5684]},
        "camera": {"allowed_tcp": [443, 554, 8883], "allowed_udp": [5684]},
        "gateway": {"allowed_tcp": [443, 8443, 8883], "allowed_udp": [5683, 5684]},
        "broker": {"allowed_tcp": [8883], "allowed_udp": []},
        "plc": {"allowed_tcp": [443, 502], "allowed_udp": []},
        "building-controller": {"allowed_tcp": [443], "allowed_udp": [47808]},
    }
    plant = by_id["plant.exposure"]
    assert plant.params == {"allowed": []}
    assert plant.class_params == {"plc": {"allowed": ["modbus"]},
                                  "building-controller": {"allowed": ["bacnet"]}}
    assert ports.references == OPEN_PORTS_REFERENCES
    assert (cleartext.id, cleartext.severity, cleartext.params) == (
        "net.cleartext-management", Severity.HIGH, {})
    assert cleartext.references == CLEARTEXT_REFERENCES
    assert profile.intrusive is False


def test_iso27400_6_5() -> None:
    profile = load_profile("iso27400-6.5")
    assert [(c.id, c.title) for c in profile.controls] == [
        ("27400-6.5", "Security monitoring and incident response")]
    assert profile.controls[0].references == {"iso-27400-2022": ("7.1.2.12", "7.1.2.13")}


def test_iso27400_6_1_and_6_4_group_checks_iso27400_runs() -> None:
    """6.1 and 6.4 group checks under their own control, with the parameters and references
    iso27400 gives them; they share no check, so they combine with each other (and, a check
    sitting under one control, not with iso27400)."""
    full = {c.id: c for c in load_profile("iso27400").checks}
    one, four = load_profile("iso27400-6.1"), load_profile("iso27400-6.4")
    assert [(c.id, c.title) for c in one.controls] == [
        ("27400-6.1", "Device identity and authentication")]
    assert [(c.id, c.title) for c in four.controls] == [
        ("27400-6.4", "Secure configuration and hardening")]
    for profile in (one, four):
        assert profile.tcp_ports == DEFAULT_TCP_PORTS
        for check in profile.checks:
            same = full[check.id]
            assert (check.severity, check.params, check.class_params, check.references) == (
                same.severity, same.params, same.class_params, same.references), check.id
    assert {"rtsp.authentication", "mqtt.anonymous-access", "http.default-credentials",
            "fleet.unique-keys"} <= {c.id for c in one.checks}
    assert {"ssh.password-auth", "ssh.default-credentials",
            "telnet.default-credentials"} <= {c.id for c in one.checks}
    assert {"net.open-ports", "plant.exposure", "tls.protocol-versions", "ssh.algorithms"} <= {
        c.id for c in four.checks}
    assert not {c.id for c in one.checks} & {c.id for c in four.checks}
    both = load_profiles(["iso27400-6.1", "iso27400-6.4"])
    assert [c.id for c in both.controls] == ["27400-6.1", "27400-6.4"]
    with pytest.raises(InputError, match=r"a profile cannot move it to 27400-6\.2"):
        load_profiles(["iso27400-6.1", "iso27400-6.2"])


def test_iso27400_and_acceptance() -> None:
    both = load_profile("iso27400")
    assert both.extends == ("iso27400-6.2", "iso27400-6.5")
    assert [c.id for c in both.controls] == ["27400-6.2", "27400-6.5"]
    assert {c.id for c in both.checks} == set(real_catalogue())
    assert both.tcp_ports == DEFAULT_TCP_PORTS
    assert both.intrusive is False
    acceptance = load_profile("acceptance")
    assert acceptance.intrusive is True
    assert acceptance.extends == ("iso27400",)
    severities = {c.id: c.severity for c in acceptance.checks}
    assert [c.id for c in acceptance.checks] == [c.id for c in both.checks]
    assert severities["net.open-ports"] is Severity.HIGH
    assert severities["net.cleartext-management"] is Severity.HIGH
    assert severities["mqtt.client-certificate"] is Severity.HIGH
    assert acceptance.checks[0].class_params == both.checks[0].class_params
    assert acceptance.digest != both.digest


def test_builtin_camera_plan() -> None:
    profile = load_profile("iso27400")
    models = {cid: check.params for cid, check in real_catalogue().items()}
    camera = Device(id="cam-1", address="127.0.0.1", device_class="camera")
    plan = profile.plan(camera, models, dt.date(2026, 11, 28))
    assert plan[0].params == OpenPortsParams(allowed_tcp=(443, 554, 8883))
    unknown = Device(id="x", address="127.0.0.2", device_class="toaster")
    assert profile.plan(unknown, models, dt.date(2026, 11, 28))[0].params == OpenPortsParams()


def test_a_user_profile_extends_a_builtin(tmp_path: Path) -> None:
    path = write(tmp_path, "site.yaml", """
        id: plant-a
        extends: acceptance
        controls:
          27400-6.2:
            checks:
              net.open-ports:
                classes: {sensor: {allowed_tcp: [8883, 443]}}
        disabled: [net.cleartext-management]
        waivers:
          - {check: net.open-ports, device: cam-7, justification: "RTSP", expires: 2027-01-31}
        """)
    profile = load_profile(str(path))
    assert profile.title == "Pre-deployment acceptance (strict)"
    ids = [c.id for c in profile.checks]
    assert ids[0] == "net.open-ports" and "net.cleartext-management" not in ids
    assert set(ids) == set(real_catalogue()) - {"net.cleartext-management"}
    assert profile.checks[0].class_params["sensor"] == {"allowed_tcp": [8883, 443],
                                                        "allowed_udp": [5684]}
    assert profile.intrusive is True


# ---------------------------------------------------------------------------------------------
# Whatever the input, a profile or an InputError
# ---------------------------------------------------------------------------------------------

_KEYS = ["id", "title", "version", "description", "extends", "intrusive", "scan", "tcp_ports",
         "controls", "c-1", "checks", "t.ports", "t.plain", "severity", "params", "classes",
         "camera", "references", "owasp-isvs", "disabled", "waivers", "check", "device",
         "class", "justification", "expires", "allowed_tcp", "strict"]
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 70000),
    st.sampled_from(["t.ports", "t.plain", "high", "2027-01-31", "p.yaml", "base.yaml", "1-3",
                     "x", "", "acceptance", "iso27400"]),
    st.text(max_size=6),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(_KEYS), inner, max_size=5)),
    max_leaves=30,
)


def _outcome(path: Path) -> None:
    try:
        profile = load(path)
    except InputError as error:
        assert error.file is None or error.file.endswith(".yaml")
        return
    assert isinstance(profile, Profile)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_arbitrary_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    _outcome(path)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=st.one_of(_VALUES, st.dictionaries(st.sampled_from(_KEYS), _VALUES,
                                                   max_size=8)))
def test_arbitrary_yaml(tmp_path: Path, document: Any) -> None:
    write(tmp_path, "base.yaml", BASE)
    path = tmp_path / "p.yaml"
    if isinstance(document, dict):
        document = {"id": "p", "title": "P", "version": "1", **document}
    with path.open("w") as handle:
        YAML(typ="safe", pure=True).dump(document, handle)
    _outcome(path)


def test_unbuildable_yaml_value_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", HEAD + "waivers:\n  - {check: t.plain, device: d,\n"
                 "     justification: x, expires: 2027-02-30}\n")
    error = fails(path)
    assert (error.file, error.line) == (str(path), 6)
    assert "not a valid timestamp value; quote it" in error.message


BUILTIN_DIGESTS = {
    "acceptance": "sha256:9c1813e434db52c1a55bc01fcbcdef6868d99310702ba87d46d3d5b624d8ce92",
    "iso27400": "sha256:342bf6eb7a980f1e2a2c93d473d8396b1e2c556517ea7112bf0369861410f64d",
    "iso27400-6.1": "sha256:66282bb16113b96c3b7211a0b344a2eaf464142e67efa2568794329c5dca1c78",
    "iso27400-6.2": "sha256:57b9c78e27d73e7acfc5fc10b1723c5cb31725491b5d8a1d8875bff964e8cfe6",
    "iso27400-6.4": "sha256:c0433629a5001b111c2f29cc981921517606c8e6de9b8f7d749362edd3c2efcc",
    "iso27400-6.5": "sha256:cc1cdf42f250aad084f3163c4a6350f2dabd3daff9d6ccb9130471e55a3a50b4",
}
"""The built-in profiles' digests: records carry them, so a refactoring must not move them."""


@pytest.mark.parametrize("profile_id", sorted(BUILTIN_DIGESTS))
def test_builtin_profile_digests_are_stable(profile_id: str) -> None:
    assert load_profile(profile_id).digest == BUILTIN_DIGESTS[profile_id]


@pytest.mark.parametrize(
    ("check_id", "params", "field", "words"),
    [
        ("net.open-ports", "{allowed_tcp: [443, 70000]}", "allowed_tcp[1]",
         "less than or equal to 65535"),
        ("net.open-ports", "{allowed_udp: ['5684']}", "allowed_udp[0]",
         "expected a whole number, got a string"),
        ("coap.amplification", "{max_amplification: '10'}", "max_amplification",
         "expected a number, got a string"),
        ("coap.amplification", "{max_amplification: 0}", "max_amplification", "greater than 0"),
        ("monitor.bruteforce-throttling", "{attempts: 1}", "attempts",
         "greater than or equal to 2"),
        ("monitor.bruteforce-throttling", "{attempts: 2.5}", "attempts",
         "expected a whole number, got a number"),
        ("monitor.bruteforce-throttling", "{max_rate: 51}", "max_rate",
         "less than or equal to 50"),
        ("monitor.auth-failure-event", "{event_timeout: 0}", "event_timeout", "greater than 0"),
        ("monitor.heartbeat", "{grace_seconds: -1}", "grace_seconds",
         "greater than or equal to 0"),
        ("mqtt.default-credentials", "{pace_seconds: true}", "pace_seconds",
         "expected a number, got true or false"),
        ("mqtt.default-credentials", "{max_attempts: -1}", "max_attempts",
         "greater than or equal to 0"),
        ("http.default-credentials", "{pairs: [[admin]]}", "pairs[0]",
         "expected a [username, password] pair of strings, got a list"),
        ("http.default-credentials", "{pairs: [{password: x}]}", "pairs[0]",
         "expected a [username, password] pair of strings"),
        ("http.authentication", "{protected_paths: [admin]}", "protected_paths[0]",
         "must start with /"),
        ("tls.cipher-suites", "{require_forward_secrecy: 1}", "require_forward_secrecy",
         "expected true or false, got a number"),
        ("mqtt.topic-authorization", "{canary_prefix: 5}", "canary_prefix",
         "expected a string, got a number"),
        ("plant.exposure", "{allowed: [dnp3]}", "allowed[0]", "'modbus' or 'bacnet'"),
        ("rtsp.authentication", "{paths: [live]}", "paths[0]", "must start with /"),
        ("rtsp.authentication", "{paths: []}", "paths", "must not be empty"),
    ],
)
def test_bad_parameter_is_a_load_error(tmp_path: Path, check_id: str, params: str, field: str,
                                       words: str) -> None:
    """A parameter the check cannot take stops the load with file, line and field (exit 2),
    in `params` and in a class's values merged over them; it never reaches a scan."""
    control = real_catalogue()[check_id].control
    for where, body in (("params", f"params: {params}"),
                        ("classes.cam", f"classes: {{cam: {params}}}")):
        path = write(tmp_path, "bad.yaml", HEAD + f"controls:\n  {control}:\n    checks:\n"
                     f"      {check_id}:\n        {body}\n")
        with pytest.raises(InputError) as info:
            load_profile(str(path))
        assert (info.value.file, info.value.line) == (str(path), 8)
        assert info.value.field == f"controls['{control}'].checks['{check_id}'].{where}.{field}"
        assert words in str(info.value)


def test_good_parameters_load(tmp_path: Path) -> None:
    """The values the tests and profiles use stay valid: ints where numbers are wanted, both
    spellings of a credential pair, an empty list."""
    path = write(tmp_path, "good.yaml", HEAD + """controls:
  27400-6.5:
    checks:
      monitor.auth-failure-event: {params: {event_timeout: 2}}
      monitor.heartbeat: {params: {grace_seconds: 0.5}}
      monitor.bruteforce-throttling: {params: {attempts: 2, max_rate: 50}}
  27400-6.2:
    checks:
      mqtt.default-credentials:
        params: {pace_seconds: 0, pairs: [[a, b], {username: c}], max_attempts: 0}
      net.open-ports: {params: {allowed_udp: []}, classes: {cam: {allowed_tcp: [554]}}}
      coap.cleartext: {params: {max_resources: 2}}
""")
    planned = {c.id: c for c in load_profile(str(path)).checks}
    assert planned["mqtt.default-credentials"].params["pairs"] == [["a", "b"], {"username": "c"}]
    assert planned["net.open-ports"].class_params == {"cam": {"allowed_tcp": [554]}}
