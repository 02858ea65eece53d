"""What every collector shares: its type and the errors that turn into `error` results."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from probe.context import DeviceContext

T = TypeVar("T")

Collector = Callable[["DeviceContext"], Awaitable[T]]
"""An async function that gathers one kind of fact about a device, once per device.

Collectors do the network I/O; checks only read what collectors return. A collector calls other
collectors through `ctx.observe(...)`, which caches the result per device, so two checks that
need the same fact share one round trip.
"""


class ObservationError(Exception):
    """A fact could not be gathered; `reason` is a short machine-readable cause."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Unreachable(ObservationError):
    """Nothing on the device answered at all."""

    def __init__(self, message: str) -> None:
        super().__init__("unreachable", message)


def default_pairs(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The profile's default credential `pairs` ([user, password] or {username, password}), at
    most `max_attempts` of them (the profile loader validated both)."""
    pairs = [(item["username"], item.get("password", "")) if isinstance(item, Mapping)
             else (item[0], item[1]) for item in params.get("pairs", [])]
    return pairs[:params.get("max_attempts", len(pairs))]
