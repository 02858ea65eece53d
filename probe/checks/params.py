"""Check parameters as typed models, validated when a profile loads.

Each check that takes parameters declares a `CheckParams` model: its fields are the parameter
names, their types what a profile may write (strict: no `"10"` for 10, no `true` for 1; a whole
number where a number is wanted), their defaults the check's defaults and their ranges the
limits the collectors used to enforce at scan time. A bad value is therefore a load error naming
the file, the line and the field (exit 2), never a scan-time `error`.

List-valued parameters are tuples (hashable); a profile writes them as YAML lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, Field, PlainValidator
from pydantic_core import to_jsonable_python

from probe.yamldoc import StrictModel, describe, fail

MAX_SECONDS = 86400.0
"""The longest wait a time parameter may ask for (one day)."""


class CheckParams(StrictModel):
    """The parameters of one check: every field has a default."""

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The defaults as a profile would write them (tuples as lists)."""
        return {name: to_jsonable_python(info.get_default(call_default_factory=True))
                for name, info in cls.model_fields.items()}


class NoParams(CheckParams):
    """A check without parameters."""


def _path(value: str) -> str:
    if not value.startswith("/"):
        fail("must start with /")
    return value


def _pair(value: Any) -> tuple[str, str]:
    """A credential pair: `[username, password]` or `{username, password}` (password may be
    left out: empty)."""
    if isinstance(value, Mapping):
        value = [value.get("username"), value.get("password", "")]
    if (not isinstance(value, list | tuple) or len(value) != 2
            or not all(isinstance(item, str) for item in value)):
        fail(f"expected a [username, password] pair of strings, got {describe(value)}")
    return value[0], value[1]


LIST = Field(strict=False)
"""On a tuple field: a profile writes it as a YAML list (its items stay strict)."""
Port = Annotated[int, Field(ge=1, le=65535)]
Ports = Annotated[tuple[Port, ...], LIST]
Seconds = Annotated[float, Field(ge=0.0, le=MAX_SECONDS)]
"""A duration that may be zero."""
Wait = Annotated[float, Field(gt=0.0, le=MAX_SECONDS)]
"""A duration that must be positive."""
Paths = Annotated[tuple[Annotated[str, AfterValidator(_path)], ...], LIST]
Pairs = Annotated[tuple[Annotated[tuple[str, str], PlainValidator(_pair)], ...], LIST]


class CredentialTrialParams(CheckParams):
    """The parameters of a default-credential trial; each protocol's check gives its own
    `pairs` (and, where it differs, `max_attempts`)."""

    pairs: Pairs = ()
    """The [username, password] (or {username, password}) pairs tried, in order."""
    pace_seconds: Seconds = 1.0
    """The least time between two attempts on the device."""
    max_attempts: Annotated[int, Field(ge=0)] = 10
    """At most this many pairs are tried per endpoint."""

    @property
    def attempts(self) -> tuple[tuple[str, str], ...]:
        """The pairs tried: the first `max_attempts`."""
        return self.pairs[:self.max_attempts]

