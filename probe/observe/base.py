"""What every collector shares: its type and the errors that turn into `error` results."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from probe.context import DeviceContext

T = TypeVar("T")

Collector = Callable[["DeviceContext"], Awaitable[T]]
"""An async function that gathers one kind of fact about a device, once per device.

Collectors do the network I/O; checks only read what collectors return. A collector calls other
collectors through `ctx.observe(...)`, which caches the result per device, so two checks that
need the same fact share one round trip.
"""


@dataclass(frozen=True)
class Need(Generic[T]):
    """A collector with the keyword arguments it runs with (sorted by name): what a check
    needs gathered. Two checks that need the same collector with the same arguments share
    one run per device (the observation cache keys on both)."""

    collector: Callable[..., Awaitable[T]]
    args: tuple[tuple[str, Hashable], ...] = ()

    @property
    def kwargs(self) -> dict[str, Hashable]:
        return dict(self.args)


def need(collector: Callable[..., Awaitable[T]], **kwargs: Hashable) -> Need[T]:
    """`collector` to be run with `kwargs` (each hashable: tuples, not lists)."""
    return Need(collector, tuple(sorted(kwargs.items())))


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
