"""Device strings as data: one escaping convention and one set of bounds for every output.

Records hold device strings (banners, headers, topics, certificate fields, payloads) with the
characters no output can carry safely written as visible text: NUL and the other C0 controls
but tab and line feed, DEL, the C1 controls, the bidirectional controls, the line and paragraph
separators, the byte-order mark, the non-characters U+FFFE/U+FFFF and lone surrogates (bytes
that were not UTF-8) become `\\xNN` (up to U+00FF) or `\\uNNNN`, and a backslash becomes `\\\\`,
so the escaping is reversible (`unescape`). The result is text that JSON, PostgreSQL (which
refuses NUL), XML, HTML and a terminal all take as it is.

What a device sends is also bounded: a string keeps at most MAX_TEXT characters (its escaped
form), then `…[+N chars]` with N the characters left out; a list or object keeps MAX_ITEMS
entries, then `…[+N items]` (an object: the key `…` with `+N keys`); nesting stops at
MAX_DEPTH; and the evidence of one result spends at most EVIDENCE_BUDGET characters of text,
after which what remains is only counted. A record therefore stays small whatever a device
sends.

Shown text (terminal, HTML, JUnit, OSCAL) additionally has tab, line feed and carriage return
escaped where one line is wanted (`shown`), and never unescapes anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

MAX_TEXT = 1024
"""Characters of one string (escaped), beyond which it is cut."""
MAX_ITEMS = 50
"""Entries of one list or object, beyond which the rest is counted."""
MAX_DEPTH = 8
"""Levels of nesting of one evidence value."""
EVIDENCE_BUDGET = 16384
"""Characters of text (strings and keys, escaped) in the evidence of one result."""
MORE = "…"

_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE = f"\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff"
_RECORD = re.compile(f"[\\\\{_UNSAFE}]")
_SHOWN_LINES = re.compile(f"[{_UNSAFE}]")
_SHOWN_LINE = re.compile(f"[\t\n{_UNSAFE}]")
_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4})")


def _code(char: str) -> str:
    point = ord(char)
    return f"\\x{point:02x}" if point <= 0xFF else f"\\u{point:04x}"


def _record_code(match: re.Match[str]) -> str:
    char = match.group()
    return "\\\\" if char == "\\" else _code(char)


def escape(text: str) -> str:
    """`text` in the records' convention: unsafe characters as `\\xNN`/`\\uNNNN`, `\\` as
    `\\\\`."""
    return _RECORD.sub(_record_code, text)


def unescape(text: str) -> str:
    """The device's own string back from its escaped form (`escape` reversed)."""
    def raw(match: re.Match[str]) -> str:
        code = match.group(1)
        return "\\" if code == "\\" else chr(int(code[1:], 16))
    return _ESCAPE.sub(raw, text)


def shown(text: str, *, lines: bool = False) -> str:
    """`text` safe to show: every control, bidi or unpaired character as `\\xNN`/`\\uNNNN`;
    tab and line feed kept only when `lines`. Backslashes are left alone (not reversible)."""
    pattern = _SHOWN_LINES if lines else _SHOWN_LINE
    return pattern.sub(lambda m: _code(m.group()), text)


def _cut(escaped: str, raw_length: int, limit: int) -> str:
    """The first characters of `escaped` that fit in `limit` with the marker, never splitting
    an escape; the marker counts the raw characters left out (of `raw_length`)."""
    kept, width, raw = [], 0, 0
    for token in re.finditer(r"\\(?:\\|x[0-9a-f]{2}|u[0-9a-f]{4})|.", escaped, re.DOTALL):
        piece = token.group()
        if width + len(piece) > limit:
            break
        kept.append(piece)
        width += len(piece)
        raw += 1
    return "".join(kept) + f"{MORE}[+{raw_length - raw} chars]"


def bounded_text(text: str, limit: int = MAX_TEXT) -> str:
    """`text` escaped, and cut to `limit` characters plus a marker when longer."""
    if len(text) <= limit and _RECORD.search(text) is None:
        return text
    head = escape(text[:limit + 1])
    if len(text) <= limit and len(head) <= limit:
        return head
    return _cut(head, len(text), limit)


class Bounder:
    """Escapes and bounds one evidence value, spending a budget of characters of text."""

    def __init__(self, budget: int = EVIDENCE_BUDGET,
                 redact: Callable[[str], str] = lambda text: text) -> None:
        self.budget = budget
        self.redact = redact

    def text(self, value: str) -> str:
        if self.budget <= 0:
            out = f"{MORE}[+{len(value)} chars]"
        else:
            out = bounded_text(self.redact(value), min(MAX_TEXT, self.budget))
        self.budget -= len(out)
        return out

    def value(self, value: Any, depth: int = 0) -> Any:
        """`value` with every string escaped and cut, every list and object bounded."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, int | float | None):
            return value
        if isinstance(value, Mapping):
            return self._mapping(value, depth)
        if isinstance(value, list | tuple):
            return self._list(list(value), depth)
        return value

    def _room(self, depth: int, taken: int) -> bool:
        """Whether one more entry fits at this depth after `taken` ones."""
        return depth < MAX_DEPTH and taken < MAX_ITEMS and self.budget > 0

    def _list(self, items: list[Any], depth: int) -> list[Any]:
        out: list[Any] = []
        for item in items:
            if not self._room(depth, len(out)):
                break
            out.append(self.value(item, depth + 1))
        if len(items) > len(out):
            out.append(f"{MORE}[+{len(items) - len(out)} items]")
            self.budget -= len(out[-1])
        return out

    def _mapping(self, mapping: Mapping[Any, Any], depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        taken = 0
        for key, item in mapping.items():
            if not self._room(depth, taken):
                break
            taken += 1
            out[self.text(key) if isinstance(key, str) else key] = self.value(item, depth + 1)
        if len(mapping) > taken:
            out[MORE] = f"+{len(mapping) - taken} keys"
            self.budget -= len(out[MORE]) + 1
        return out
