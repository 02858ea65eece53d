"""Secret values: they can be used, never shown.

A Secret prints as `***` in every form (str, repr, format, f-strings), refuses JSON encoding and
pickling, and yields its value only through `reveal()`, which the network layer calls at the
last moment. Records, logs, reports and exceptions therefore cannot carry one by accident.

A device can still echo a value it was sent (a topic named after the login, a page repeating
the Authorization header): every value is therefore also remembered, and `Redactor` removes it,
URL-encoded and base64 forms included, from every record, log line and error message.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NoReturn
from urllib.parse import quote, quote_plus, unquote

MASK = "***"


class Secret:
    __slots__ = ("_origin", "_value")

    def __init__(self, value: str, origin: str) -> None:
        self._value = value
        self._origin = origin
        remember(value)

    def reveal(self) -> str:
        return self._value

    @property
    def origin(self) -> str:
        """Where the value came from (`env:NAME` or `file:PATH`): safe to show."""
        return self._origin

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK}, from {self._origin})"

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    def __getstate__(self) -> Any:
        raise TypeError("a Secret cannot be serialised")


_KNOWN: dict[str, None] = {}
"""Every secret value this process holds, in the order first seen: for log lines and errors."""
_SHARED: dict[str, None] = {}
"""The secrets of the process rather than of one device (store and broker passwords):
redacted from every record too."""
_REDACTORS: dict[str, Redactor] = {}
"""Cache: the redactors of _KNOWN and _SHARED, dropped when either grows."""


def remember(value: str, *, shared: bool = False) -> None:
    """Keep `value` among the secrets redacted from logs and errors (and, when `shared`, from
    every record)."""
    if not value:
        return
    for table in (_KNOWN, _SHARED) if shared else (_KNOWN,):
        if value not in table:
            table[value] = None
            _REDACTORS.clear()


def forms(value: str, users: Iterable[str] = ()) -> set[str]:
    """The ways a device or a library may echo `value`: as it is, URL-encoded, in hex, in
    base64, as the base64 of `user:value` (an HTTP Basic header) for each user it goes with,
    and as the text of a distinguished name (RFC 4514: a certificate subject), of JSON and of a
    Python repr."""
    raw = value.encode("utf-8", "surrogatepass")
    out = {value, quote(value, safe=""), quote_plus(value), _b64(value), raw.hex(),
           raw.hex().upper(), _RFC4514.sub(r"\\\g<0>", value),
           json.dumps(value)[1:-1], repr(value)[1:-1]}
    out.update(_b64(f"{user}:{value}") for user in users)
    return {form for form in out if form}


_RFC4514 = re.compile(r'[\\"+,;<>]')
"""What RFC 4514 escapes with a backslash inside a distinguished name's value."""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode("ascii")


class Redactor:
    """Replaces the forms of a set of secret values with *** in a string."""

    def __init__(self, values: Iterable[str]) -> None:
        self.forms = tuple(sorted(set(values), key=lambda form: (-len(form), form)))
        """Longest first, so that no shorter form leaves a piece of a longer one."""

    def __call__(self, text: str) -> str:
        """`text` with every form replaced; a text that holds a secret only once its
        percent-escapes are decoded (a URL a device encoded its own way) is given decoded."""
        text = self._replaced(text)
        if "%" in text:
            decoded = unquote(text)
            if decoded != text and any(form in decoded for form in self.forms):
                return self._replaced(decoded)
        return text

    def _replaced(self, text: str) -> str:
        for form in self.forms:
            if form in text:
                text = text.replace(form, MASK)
        return text


def _redactor_of(name: str, table: dict[str, None]) -> Redactor:
    """The redactor of every value in `table`, built once until `table` grows."""
    if name not in _REDACTORS:
        found: set[str] = set()
        for value in table:
            found |= forms(value)
        _REDACTORS[name] = Redactor(found)
    return _REDACTORS[name]


def redact(text: str) -> str:
    """`text` without any secret this process holds: for log lines and error messages."""
    return _redactor_of("known", _KNOWN)(text)


def device_redactor(*entries: Mapping[str, Any]) -> Redactor:
    """The redactor of one device's record: the secrets in its credentials and monitor
    `entries` (with the Basic forms of their users) and the process's shared ones."""
    found = set(_redactor_of("shared", _SHARED).forms)
    for entry in entries:
        for secret, users in secret_pairs(entry):
            found |= forms(secret.reveal(), users)
    return Redactor(found)


def secret_pairs(entries: Mapping[str, Any]) -> Iterator[tuple[Secret, tuple[str, ...]]]:
    """Each Secret in credentials or monitor `entries` (nested mappings and lists), with the
    user names of the mapping it sits in."""
    users = tuple(str(entries[k]) for k in ("username", "user", "identity")
                  if isinstance(entries.get(k), str))
    for value in entries.values():
        if isinstance(value, Secret):
            yield value, users
        elif isinstance(value, Mapping):
            yield from secret_pairs(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Mapping):
                    yield from secret_pairs(item)
