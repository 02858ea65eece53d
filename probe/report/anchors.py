"""Anchors and page names from device, check and control ids: the same id gives the same
anchor in every report, two ids never share one, and no id can put anything but
[A-Za-z0-9._~-] into an attribute, a fragment or a file name.

An id made of [A-Za-z0-9._-] only, and short, is kept as it is; any other id is cut to its
first safe characters (the rest as -) and followed by ~ and 16 hex digits of its SHA-256.
A kept id holds no ~, so it never meets a hashed one.
"""

from __future__ import annotations

import hashlib
import re

_SAFE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_KEPT = 40


def slug(text: str) -> str:
    """`text` as a fragment and file name that only `text` gives."""
    if _SAFE.fullmatch(text):
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{_UNSAFE.sub('-', text[:_KEPT])}~{digest}"


def device_anchor(device_id: str) -> str:
    return "d-" + slug(device_id)


def check_anchor(check_id: str) -> str:
    return "check-" + slug(check_id)


def control_anchor(control_id: str) -> str:
    return "control-" + slug(control_id)
