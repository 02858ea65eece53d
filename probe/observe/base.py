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


def default_pairs(params: Mapping[str, Any], check: str) -> list[tuple[str, str]]:
    """The profile's default credential `pairs` ([user, password] or {username, password}) for
    `check`, at most `max_attempts` of them; a malformed parameter is an `error` naming it."""
    pairs = []
    for index, item in enumerate(params.get("pairs", [])):
        if isinstance(item, Mapping):
            item = [item.get("username"), item.get("password", "")]
        if (not isinstance(item, list | tuple) or len(item) != 2
                or not all(isinstance(v, str) for v in item)):
            raise ObservationError("profile", f"{check}: pairs[{index}] is not a [username, "
                                   "password] pair of strings")
        pairs.append((item[0], item[1]))
    limit = params.get("max_attempts", len(pairs))
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise ObservationError("profile", f"{check}: max_attempts must be a whole number")
    return pairs[:limit]
