"""The check catalogue is an explicit list of modules' CHECKS, validated once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from probe.checks import net
from probe.checks.catalogue import CATALOGUE, catalogue, validate
from probe.protocols.coap import checks as coap


def test_catalogue_is_the_modules_checks_in_order_and_cached() -> None:
    assert catalogue() is catalogue()
    assert list(catalogue().values()) == list(CATALOGUE)
    assert list(catalogue())[:4] == [c.id for c in coap.CHECKS]
    assert len(catalogue()) == 35  # 28, RTSP (2) and plant (1), SSH (3) and Telnet (1)


def test_no_package_scan_finds_checks() -> None:
    package = Path(__file__).resolve().parent.parent / "probe" / "checks"
    for path in package.glob("*.py"):
        text = path.read_text()
        assert "pkgutil" not in text and "importlib" not in text, path.name


@pytest.mark.parametrize(("change", "words"), [
    ({"id": "net.Open_Ports"}, "is not <family>.<name>"),
    ({"id": "open-ports"}, "is not <family>.<name>"),
    ({}, "declared twice"),
])
def test_validate_refuses_a_bad_or_repeated_id(change: dict[str, str], words: str) -> None:
    twin = dataclasses.replace(net.CHECKS[0], **change)
    with pytest.raises(RuntimeError, match=words):
        validate((*net.CHECKS, twin))
