"""Secret values: they can be used, never shown.

A Secret prints as `***` in every form (str, repr, format, f-strings), refuses JSON encoding and
pickling, and yields its value only through `reveal()`, which the network layer calls at the
last moment. Records, logs, reports and exceptions therefore cannot carry one by accident.
"""

from __future__ import annotations

from typing import Any, NoReturn

MASK = "***"


class Secret:
    __slots__ = ("_origin", "_value")

    def __init__(self, value: str, origin: str) -> None:
        self._value = value
        self._origin = origin

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
