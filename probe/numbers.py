"""Numbers from the command line: finite, within bounds, refused with exit 2 otherwise.

click's FloatRange lets `nan` through every bound (a comparison with NaN is false) and `inf`
through a missing upper bound; a timeout or budget of either never ends. Every float option
of the CLI is a `Finite` with both bounds.
"""

from __future__ import annotations

import math
from typing import Any

import click

MAX_TIMEOUT = 3600.0
"""The longest --timeout: an hour for one network operation."""
MAX_BUDGET = 86400.0
"""The longest --budget: a day for one device."""
MAX_RATE = 1_000_000.0
"""The highest --rate: new connections and datagrams per second."""


class Finite(click.FloatRange):
    """A float between `low` and `high`, never NaN or infinite."""

    def __init__(self, low: float, high: float) -> None:
        super().__init__(min=low, max=high)

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def require_finite(**values: float) -> None:
    """ValueError naming the first of `values` that is not a finite number above zero."""
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number above zero, not {value!r}")
