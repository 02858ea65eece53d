"""The record path: the typed record and its JSON (byte goldens, round trip), validation
(jsonschema-rs deciding, the pure-Python validator as the reference), serialization and files;
and that nothing but probe/record/model.py reads a record's JSON keys."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probe import __version__
from probe.checks.catalogue import catalogue
from probe.checks.fleet import UniqueKeys
from probe.model import Device, Finding, Result, Service, Severity, Status, Waiver
from probe.profile import Profile
from probe.profile_loader import load_profile
from probe.record.files import read_record, record_text, write_record
from probe.record.model import ProbeInfo, ProfileRef, Record, record_of
from probe.record.schema import schema, validate_record
from tests.record_cases import SINGLE, Case, fleet_error, fleet_pair

REFERENCE = jsonschema.Draft202012Validator(
    schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
PROFILE = Profile(id="iso27400", title="t", version="1", digest="sha256:" + "ab" * 32,
                  source="<test>", controls=(), checks=())
REFS = {"iso-27400-2022": ("6.2",), "etsi-en-303-645": ("5.1-1", "5.1-2")}


def outcome() -> Record:
    """A device with services, a failure under waiver, nested evidence and non-ASCII text."""
    moment = dt.datetime(2026, 11, 29, 3, 25, 42, tzinfo=dt.UTC)
    results = (
        Result("net.open-ports", "27400-6.2", Severity.HIGH,
               Finding(Status.FAIL, "tcp/23 is open", "tcp/23",
                       {"open": [23, 80], "banner": {"23": "Login: café"}}),
               "Close it.", REFS, 12, Waiver("net.open-ports", "vendor fix due", "2099-01-01")),
        Result("tls.protocol-versions", "27400-6.5", Severity.MEDIUM,
               Finding(Status.PASS, "TLS 1.2 and 1.3 only", "tcp/443",
                       {"offered": ("TLSv1.2", "TLSv1.3"), "ratio": 0.5}),
               "-", REFS, 3),
        Result("http.hsts", "27400-6.5", Severity.LOW,
               Finding(Status.ERROR, "no answer", "http:https://127.0.0.1/", {}), "-", {}, 0),
    )
    return record_of(
        device=Device("cam-1", "cam-1.lab", hostname="cam", device_class="camera", site="é"),
        address="127.0.0.9", profile=ProfileRef(**PROFILE.meta()),
        probe=ProbeInfo(__version__, False), started_at=moment,
        finished_at=moment + dt.timedelta(seconds=2),
        services=(Service("tcp", 23, "telnet"), Service("tcp", 443, "https", True, "nginx")),
        results=results)


def record() -> dict[str, Any]:
    return outcome().to_json()


DELETE = object()
"""A change that removes the key or item instead of replacing it."""


def _changed(changes: list[tuple[tuple[str | int, ...], Any]]) -> dict[str, Any]:
    candidate = record()
    for where, value in changes:
        parent: Any = candidate
        try:
            for step in where[:-1]:
                parent = parent[step]
            if value is DELETE:
                del parent[where[-1]]
            else:
                parent[where[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    return candidate


def _paths(node: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if prefix:
        yield prefix
    items = node.items() if isinstance(node, dict) else (
        enumerate(node) if isinstance(node, list) else ())
    for key, child in items:
        yield from _paths(child, (*prefix, key))


def refused(candidate: dict[str, Any]) -> jsonschema.ValidationError:
    with pytest.raises(jsonschema.ValidationError) as caught:
        validate_record(candidate)
    return caught.value


def test_a_built_record_validates() -> None:
    built = record()
    validate_record(built)
    assert REFERENCE.is_valid(built)
    assert built["device"]["resolved_address"] == "127.0.0.9"
    assert built["results"][0]["waived"] == {"justification": "vendor fix due",
                                             "expires": "2099-01-01"}


def test_a_refused_record_gets_the_reference_validators_error() -> None:
    bad = record()
    bad["results"][1]["status"] = "passed"
    error = refused(bad)
    assert list(error.path) == ["results", 1, "status"]
    assert error.message == jsonschema.exceptions.best_match(REFERENCE.iter_errors(bad)).message


@pytest.mark.parametrize(("expires", "valid"), [
    ("2099-01-01", True), ("2024-02-29", True), ("2023-02-29", False), ("0000-01-01", False),
    ("2099-1-01", False), ("2099-01-01T00:00:00Z", False),
])
def test_formats_are_the_reference_validators(expires: str, valid: bool) -> None:
    candidate = record()
    candidate["results"][0]["waived"]["expires"] = expires
    assert REFERENCE.is_valid(candidate) is valid
    if valid:
        validate_record(candidate)
    else:
        assert list(refused(candidate).path) == ["results", 0, "waived", "expires"]


@pytest.mark.parametrize(("where", "value"), [
    (("results", 0, "target"), "tcp/23\n"),
    (("results", 2, "target"), "http:\r"),
    (("profile", "digest"), "sha256:" + "ab" * 32 + "\n"),
    (("started_at",), "2026-11-29T03:25:42Z\n"),
])
def test_patterns_are_read_as_the_schemas_dialect(where: tuple[str | int, ...],
                                                  value: str) -> None:
    """ECMA 262, the dialect of JSON Schema's patterns: `$` is the end of the string and `.`
    matches no line terminator. Python's `re` would let these through; they are refused."""
    candidate = _changed([(where, value)])
    assert REFERENCE.is_valid(candidate)
    error = refused(candidate)
    assert tuple(error.path) == where
    assert error.validator == "pattern"
    assert "does not match" in error.message


def test_a_value_that_is_not_json_is_judged_by_the_reference() -> None:
    candidate = record()
    candidate["services"][0]["port"] = object()
    assert list(refused(candidate).path) == ["services", 0, "port"]
    candidate = record()
    candidate["device"] = MappingProxyType(candidate["device"])
    assert list(refused(candidate).path) == ["device"]


PATHS = [p for p in _paths(record()) if "evidence" not in p[:-1]]
"""Every place in a record the schema can constrain (evidence is any object)."""
NEAR = [
    "", "pass", "fail", "waived", "tcp", "udp", "tcp/80", "udp/123456", "device", "x:y", "X:y",
    "net.open-ports", "Net.open-ports", "iso-27400-2022", "nist", "critical", "conformant",
    "iotprobe.record/v1", "sha256:" + "0" * 64, "sha256:" + "0" * 63, "2026-01-01",
    "2026-01-01T00:00:00Z", "2026-1-01T00:00:00Z", "0000-01-01", "2026-02-30", "\U0001f600",
    None, True, False, 0, 1, -1, 1.0, 1.5, 65535, 65536, 2**64, -2**64, [], {}, ["a"], [1],
    {"a": 1}, {"justification": "j", "expires": "2099-01-01"}, DELETE,
]
"""Values near the schema's constraints, the wrong types, and deletion."""


def _agrees(candidate: dict[str, Any]) -> bool:
    try:
        validate_record(candidate)
    except jsonschema.ValidationError:
        return not REFERENCE.is_valid(candidate)
    return REFERENCE.is_valid(candidate)


def test_validate_record_refuses_what_the_reference_refuses_one_change_at_a_time() -> None:
    """Every constrained place, every value near a constraint: jsonschema-rs and the reference
    agree (away from line terminators, see above)."""
    disagree = [(where, value) for where in PATHS for value in NEAR
                if not _agrees(_changed([(where, value)]))]
    assert disagree == []


_TEXT = st.text(st.characters(exclude_characters="\n\r\u2028\u2029",
                              exclude_categories=["Cs"]), max_size=12)
_SCALARS = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
            | st.floats(allow_nan=False, allow_infinity=False) | _TEXT | st.sampled_from(NEAR))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(_TEXT, inner, max_size=3), max_leaves=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS), _VALUES), min_size=1, max_size=3))
def test_validate_record_refuses_what_the_reference_refuses_any_changes(
        changes: list[tuple[tuple[str | int, ...], Any]]) -> None:
    assert _agrees(_changed(changes))


def test_the_file_is_json_indented_by_two_in_the_records_order(tmp_path: Path) -> None:
    built = record()
    text = record_text(built)
    assert text == json.dumps(built, indent=2, ensure_ascii=False) + "\n"
    path = write_record(tmp_path, outcome())
    assert path.name == "cam-1.record.json"
    assert path.read_text(encoding="utf-8") == text
    assert "café" in text


@pytest.mark.parametrize("evidence", [{"serial": 2**70}, {"raw": "\udcff"}, {1: 2, "big": -2**64}])
def test_what_orjson_refuses_is_written_as_json_dumps_writes_it(
        tmp_path: Path, evidence: dict[Any, Any]) -> None:
    built = record()
    built["results"][2]["evidence"] = evidence
    validate_record(built)
    assert record_text(built) == json.dumps(built, indent=2) + "\n"
    loaded = json.loads(write_record(tmp_path, outcome(), built).read_text(encoding="utf-8"))
    assert loaded["results"][2]["evidence"] == json.loads(json.dumps(evidence))
    assert REFERENCE.is_valid(loaded)


def test_a_value_json_cannot_write_is_still_refused(tmp_path: Path) -> None:
    built = record()
    built["results"][2]["evidence"] = {"serial": 2**70, "odd": {1, 2}}
    with pytest.raises(TypeError):
        write_record(tmp_path, outcome(), built)
    assert list(tmp_path.iterdir()) == []


GOLDEN = Path(__file__).parent / "golden" / "records"
GOLDEN_PROFILE = ProfileRef("golden", "1", "sha256:" + "cd" * 32)


def _record_of(case: Case, profile: ProfileRef) -> Record:
    return record_of(device=case.device, address=case.address, profile=profile,
                     probe=ProbeInfo(__version__, case.intrusive), started_at=case.started_at,
                     finished_at=case.finished_at, services=case.services,
                     results=case.results)


def _golden(name: str) -> str:
    return (GOLDEN / f"{name}.record.json").read_text(encoding="utf-8")


def _same_but_version(text: str, golden: str) -> None:
    """`text` is the golden byte for byte, the probe's version aside (it changes by release)."""
    assert text.replace(f'"version": "{__version__}"', '"version": "0.1.0"') == golden


@pytest.mark.parametrize("name", sorted(SINGLE))
def test_a_record_is_byte_for_byte_what_build_record_wrote(name: str, tmp_path: Path) -> None:
    """The goldens were written by the dict-building code the typed record replaced."""
    built = _record_of(SINGLE[name](), GOLDEN_PROFILE)
    validate_record(built.to_json())
    _same_but_version(record_text(built.to_json()), _golden(name))
    _same_but_version(write_record(tmp_path, built).read_text(encoding="utf-8"), _golden(name))


def test_the_fleet_stage_rewrites_records_byte_for_byte_as_before() -> None:
    """Settled as each device finishes, then amended after the last: the same bytes as the
    dict-based fleet stage, and a settled record is not amended twice."""
    profile = load_profile("iso27400")
    fleet = UniqueKeys(profile, catalogue())
    ref = ProfileRef(**profile.meta())
    first, second = (fleet.settle(_record_of(c, ref)) for c in fleet_pair())
    assert fleet.to_amend() == ["twin-a", "twin-b"]
    rewritten = fleet.amend(Record.from_json(json.loads(record_text(first.to_json()))))
    assert rewritten is not None and fleet.amend(second) is None
    for name, built in (("fleet-first", first), ("fleet-second", second),
                        ("fleet-rewrite", rewritten)):
        validate_record(built.to_json())
        _same_but_version(record_text(built.to_json()), _golden(name))


def test_the_fleet_stage_quotes_a_devices_text_escaped_once() -> None:
    """The record escapes the certificate check's error summary; the fleet result that quotes
    it escapes the device's text once too, as when it was settled before the record was built
    (a double escape here would fail the golden)."""
    profile = load_profile("iso27400")
    settled = UniqueKeys(profile, catalogue()).settle(
        _record_of(fleet_error(), ProfileRef(**profile.meta())))
    validate_record(settled.to_json())
    _same_but_version(record_text(settled.to_json()), _golden("fleet-error"))


@pytest.mark.parametrize("name", sorted(GOLDEN.glob("*.record.json")), ids=lambda p: p.stem)
def test_a_stored_record_reads_back_as_the_same_record(name: Path, tmp_path: Path) -> None:
    """from_json(to_json(r)) == r, and the file of a read record is the file it was read from."""
    stored = read_record(name)
    assert Record.from_json(stored.to_json()) == stored
    assert record_text(stored.to_json()) == name.read_text(encoding="utf-8")
    assert stored.verdict.value == json.loads(name.read_text(encoding="utf-8"))["verdict"]


def test_a_built_record_reads_back_equal() -> None:
    for make in SINGLE.values():
        built = _record_of(make(), GOLDEN_PROFILE)
        assert Record.from_json(json.loads(record_text(built.to_json()))) == built


def test_statuses_are_the_worst_per_check_in_first_seen_order() -> None:
    moment = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def row(check: str, status: Status) -> Result:
        return Result(check, "c", Severity.LOW, Finding(status, "s"), "-", {}, 0)

    built = record_of(
        device=Device("d", "127.0.0.1"), address="127.0.0.1", profile=GOLDEN_PROFILE,
        probe=ProbeInfo("0", False), started_at=moment, finished_at=moment, services=(),
        results=[row("b", Status.PASS), row("a", Status.NOT_APPLICABLE), row("b", Status.SKIPPED),
                 row("a", Status.ERROR), row("b", Status.FAIL), row("a", Status.PASS)])
    assert list(built.statuses().items()) == [("b", Status.FAIL), ("a", Status.ERROR)]
    assert [r.status for r in built.of_check("a")] == [
        Status.NOT_APPLICABLE, Status.ERROR, Status.PASS]


RECORD_KEYS = re.compile(r"""\[\s*["'](results|verdict|device|status)["']\s*\](?!\s*=[^=])""")
"""Reading a subscript by one of a record's JSON keys (writing one is building some other
dict, e.g. evidence)."""


def test_only_the_record_model_reads_a_records_json_keys() -> None:
    root = Path(__file__).resolve().parent.parent / "probe"
    found = [f"{path.relative_to(root)}:{n}: {line.strip()}"
             for path in sorted(root.rglob("*.py")) if path != root / "record" / "model.py"
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if RECORD_KEYS.search(line)]
    assert found == []
