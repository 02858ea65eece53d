"""probe.yamldoc: YAML read through libyaml's events keeps the meaning and the lines it had
under ruamel's round-trip parser (YAML 1.2 scalars, merge keys, duplicate keys refused, the
line of every key), and stays bounded on hostile input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from probe.errors import InputError
from probe.yamldoc import MAX_DEPTH, load_yaml_mapping


def load(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "doc.yaml"
    path.write_text(text)
    return load_yaml_mapping(path, str(path), "something")


def fails(tmp_path: Path, text: str) -> InputError:
    with pytest.raises(InputError) as caught:
        load(tmp_path, text)
    return caught.value


@pytest.mark.parametrize(("written", "value"), [
    ("yes", "yes"), ("no", "no"), ("on", "on"), ("off", "off"), ("y", "y"), ("Yes", "Yes"),
    ("true", True), ("False", False), ("TRUE", True), ("tRue", "tRue"),
    ("~", None), ("null", None), ("", None), ("Null", None),
    ("0o17", 15), ("017", 17), ("0x1F", 31), ("0b101", 5), ("1_000", 1000), ("-5", -5),
    ("+5", 5), ("_", "_"), ("_1", "_1"), ("1:30", "1:30"), ("0.5", 0.5), (".5", 0.5),
    ("1e3", 1000.0), ("2027-01-31", "2027-01-31"), ("2027-1-31", "2027-1-31"),
    ("2027-01-31T10:00:00+02:00", "2027-01-31T10:00:00+02:00"),
    ("2027-01-31 10:00:00", "2027-01-31T10:00:00"),
    ("127.0.0.9", "127.0.0.9"), ("'0o17'", "0o17"), ('"yes"', "yes"), ("!!int 5", 5),
    ("!!str 5", "5"), ("! 5", 5), ("!!bool yes", True),
])
def test_scalars_resolve_as_yaml_1_2(tmp_path: Path, written: str, value: Any) -> None:
    data = load(tmp_path, f"k: {written}\n").data
    assert data == {"k": value}
    assert type(data["k"]) is type(value)


def test_yaml_1_2_syntax_that_libyaml_refuses_is_read(tmp_path: Path) -> None:
    """An IPv6 address that starts with a colon in a flow mapping is YAML 1.2, not 1.1."""
    doc = load(tmp_path, "devices:\n  - {id: lo, address: ::1}\n  - [::ffff:127.0.0.9]\n")
    assert doc.data == {"devices": [{"id": "lo", "address": "::1"}, ["::ffff:127.0.0.9"]]}
    assert doc.line(("devices", 1, 0)) == 3


def test_every_key_keeps_its_line(tmp_path: Path) -> None:
    doc = load(tmp_path, "a: 1\n\nb:\n  c:\n    - x\n\n    - {d: 2,\n       e: 3}\n"
                         "f: &x {g: 4}\nh:\n  <<: *x\n  i: 5\n")
    assert doc.data == {"a": 1, "b": {"c": ["x", {"d": 2, "e": 3}]}, "f": {"g": 4},
                        "h": {"i": 5, "g": 4}}
    assert [doc.line(p) for p in [(), ("a",), ("b",), ("b", "c"), ("b", "c", 0),
                                  ("b", "c", 1), ("b", "c", 1, "e"), ("b", "c", 9),
                                  ("h", "i"), ("h", "g"), ("nowhere", 1)]] == \
        [1, 1, 3, 4, 5, 7, 8, 4, 12, 11, 1]


def test_merged_keys_never_override_the_mapping_own(tmp_path: Path) -> None:
    data = load(tmp_path, "p: &p {a: 1, b: 1}\nq: &q {b: 2, c: 2}\n"
                          "r: {<<: [*p, *q], a: 0}\n").data
    assert data["r"] == {"a": 0, "b": 1, "c": 2}


@pytest.mark.parametrize(("text", "line", "field", "words"), [
    ("a: 1\nb:\n  c: 1\n  c: 2\n", 4, "c", "YAML syntax error: duplicate key 'c'"),
    ("a: {<<: {b: 1}, <<: {c: 1}}\n", 1, "<<", "duplicate key '<<'"),
    ("a: 1\n---\nb: 2\n", 2, None, "expected a single document"),
    ("%YAML 1.1\n---\na: yes\n", 1, None, "only YAML 1.2 is read"),
    ("a: &x [1, *x]\n", 1, "a", "a YAML alias refers to a value that contains it"),
    ("a: *nowhere\n", 1, None, "found undefined alias"),
    ("a:\n  b: !!int twelve\n", 2, "b", "not a valid int value; quote it"),
    ("a:\n  b: 2027-02-30\n", 2, "b", "not a valid timestamp value"),
    ("a:\n  - !custom x\n", 2, "a", "unsupported YAML value"),
    ("a:\n  b: =\n", 2, "b", "unsupported YAML value"),
    ("a: {2027-01-01: 1}\n", 1, "a", "a mapping key must be a name, not a date"),
    ("a:\n  - {[x]: 1}\n", 2, "a", "a mapping key must be a name, not a list"),
    ("a:\n  b: 1e999\n", 2, "b", "infinite"),
    ("a:\n  b: 9223372036854775808\n", 2, "b", "integers outside"),
    ("a: {<<: 5}\n", 1, None, "expected a mapping or list of mappings for merging"),
    ("a: [\n", 2, None, "YAML syntax error"),
    ("a: 'x\n", 2, None, "YAML syntax error"),
])
def test_errors_name_line_and_field(tmp_path: Path, text: str, line: int, field: str | None,
                                    words: str) -> None:
    error = fails(tmp_path, text)
    assert (error.line, error.field) == (line, field)
    assert words in error.message


def test_nesting_is_bounded(tmp_path: Path) -> None:
    error = fails(tmp_path, "a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n")
    assert "nested too deeply" in error.message
    assert load(tmp_path, "a: " + "[" * 50 + "]" * 50 + "\n").data["a"] == _nested(49)


def _nested(depth: int) -> list[Any]:
    return [] if depth == 0 else [_nested(depth - 1)]


def test_aliases_are_copies(tmp_path: Path) -> None:
    data = load(tmp_path, "a: &x {b: [1]}\nc: *x\n").data
    data["c"]["b"].append(2)
    assert data["a"] == {"b": [1]}
