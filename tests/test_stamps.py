"""The one timestamp format (probe.stamps): records, stores and evidence write and read it."""

from __future__ import annotations

import datetime as dt

import pytest

from probe.stamps import STAMP, parse_stamp, stamp


def test_a_stamp_is_utc_to_the_second_and_reads_back_aware() -> None:
    moment = dt.datetime(2025, 1, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC)
    assert stamp(moment) == "2025-01-31T23:59:59Z"
    assert parse_stamp(stamp(moment)) == moment.replace(microsecond=0)
    assert parse_stamp("2025-01-31T23:59:59Z").tzinfo is dt.UTC


@pytest.mark.parametrize("text", ["2025-01-31T23:59:59", "2025-01-31 23:59:59Z",
                                  "2025-01-31T23:59:59.5Z", "2025-01-31T23:59:59+00:00"])
def test_anything_else_is_not_a_stamp(text: str) -> None:
    with pytest.raises(ValueError):
        parse_stamp(text)
    assert STAMP.endswith("Z")
