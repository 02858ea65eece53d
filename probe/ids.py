"""Device ids: the rule every id obeys, and the one-to-one file name of each id's record.

An id comes from an inventory (`id:`, else the address), from a command-line TARGET or from
an address of a CIDR block. Whatever its source, it names the device in records, reports and
the store, and it names the record's file: so it is short, printable ASCII, and two ids never
share a file name.
"""

from __future__ import annotations

from urllib.parse import quote

MAX_ID_LENGTH = 128
"""The longest device id, in characters (the store's key columns hold 255)."""

RECORD_SUFFIX = ".record.json"
MAX_STEM_BYTES = 255 - len(RECORD_SUFFIX) - len("..") - 8
"""The longest encoded id: its record's file name, and the temporary `.NAME.XXXXXXXX` it is
written as first, both fit the 255 bytes a file name may have."""


def file_stem(device_id: str) -> str:
    """`device_id` percent-encoded: every character but A-Z a-z 0-9 . _ - as %XX of its UTF-8
    bytes, so `cam:1` is `cam%3A1` and `cam_1` stays `cam_1`. Decoding gives the id back, so
    no two ids share a file name; a leading `.` is encoded too (no hidden file, no `..`)."""
    stem = quote(device_id, safe="")
    return "%2E" + stem[1:] if stem.startswith(".") else stem


def id_problem(device_id: str) -> str | None:
    """Why `device_id` cannot be a device id, or None when it can."""
    if not device_id:
        return "a device id must not be empty"
    if len(device_id) > MAX_ID_LENGTH:
        return (f"a device id is at most {MAX_ID_LENGTH} characters; this one has "
                f"{len(device_id)}")
    if not all("!" <= char <= "~" for char in device_id):
        return "a device id is printable ASCII without spaces"
    stem = len(file_stem(device_id))
    if stem > MAX_STEM_BYTES:
        return (f"the record file name of this id would be too long ({stem} bytes of at most "
                f"{MAX_STEM_BYTES}; every character but A-Z a-z 0-9 . _ - takes three)")
    return None
