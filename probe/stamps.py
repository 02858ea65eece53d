"""The one timestamp format of records, stores, evidence and messages: UTC, to the second."""

from __future__ import annotations

import datetime as dt

STAMP = "%Y-%m-%dT%H:%M:%SZ"
"""RFC 3339 in UTC without fractions, e.g. 2025-01-31T23:59:59Z (strftime/strptime format)."""


def stamp(moment: dt.datetime) -> str:
    """`moment`, already in UTC (or naive UTC), written in the STAMP format."""
    return moment.strftime(STAMP)


def parse_stamp(text: str) -> dt.datetime:
    """A STAMP string back to an aware UTC datetime; ValueError when it is not one."""
    return dt.datetime.strptime(text, STAMP).replace(tzinfo=dt.UTC)
