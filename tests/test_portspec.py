"""Port specifications: the grammar shared by the inventory, profiles and the command line."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.portspec import parse_port_spec


@pytest.mark.parametrize(
    ("spec", "ports"),
    [
        ("80", (80,)),
        (443, (443,)),
        ("1-3,2,80", (1, 2, 3, 80)),
        (" 22 , 23 ,8883", (22, 23, 8883)),
        ("8000 - 8002", (8000, 8001, 8002)),
        ("0080", (80,)),
        ("443,80,443", (80, 443)),
        ("65535", (65535,)),
        ("1", (1,)),
        ([80, "8000-8002", "22,23"], (22, 23, 80, 8000, 8001, 8002)),
        ((443, 80), (80, 443)),
        ([], ()),
        ("5-5", (5,)),
    ],
)
def test_good_specs(spec: Any, ports: tuple[int, ...]) -> None:
    assert parse_port_spec(spec) == ports


def test_full_range() -> None:
    ports = parse_port_spec("1-65535")
    assert len(ports) == 65535 and ports[0] == 1 and ports[-1] == 65535


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("0", "out of range"),
        ("65536", "out of range"),
        (0, "out of range"),
        (70000, "out of range"),
        ("99999999999999999999999999999999", "out of range"),
        ("abc", "not a port number"),
        ("1-", "not a port number"),
        ("-5", "not a port number"),
        ("1-2-3", "not a port number"),
        ("+80", "not a port number"),
        ("\u0661\u0662", "not a port number"),
        ("5-1", "backwards"),
        ("80,,81", "empty item"),
        ("80,", "empty item"),
        (True, "got True"),
        ([True], "got bool"),
        ([[80]], "got a list"),
        ([None], "nothing"),
        (None, "nothing"),
        (1.5, "float"),
        ({"a": 1}, "a mapping"),
        (["70000"], "out of range"),
    ],
)
def test_bad_specs(spec: Any, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_port_spec(spec)


def _as_text(ports: list[int]) -> str:
    """The ports written compactly, consecutive runs as ranges."""
    runs: list[list[int]] = []
    for port in sorted(set(ports)):
        if runs and runs[-1][1] == port - 1:
            runs[-1][1] = port
        else:
            runs.append([port, port])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


@given(st.lists(st.integers(1, 65535), min_size=1, max_size=50))
def test_round_trip(ports: list[int]) -> None:
    assert parse_port_spec(_as_text(ports)) == tuple(sorted(set(ports)))
    assert parse_port_spec(ports) == tuple(sorted(set(ports)))


@given(st.one_of(st.text(max_size=40), st.integers(), st.lists(st.one_of(st.integers(),
                                                                          st.text(max_size=12)))))
def test_anything_is_ports_or_value_error(spec: Any) -> None:
    try:
        ports = parse_port_spec(spec)
    except ValueError:
        return
    assert list(ports) == sorted(set(ports))
    assert all(1 <= port <= 65535 for port in ports)
