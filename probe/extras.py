"""The optional parts of iotprobe and the extras that install them.

The base install scans, writes records and reports and keeps sweeps in SQLite. A PostgreSQL
store needs `iotprobe[postgres]` (the psycopg driver); distributed sweeps and workers need
`iotprobe[distributed]` (Celery with Redis, and psycopg: their store is PostgreSQL). A command
that needs a missing extra stops before doing anything, with one line naming it (exit 2).
"""

from __future__ import annotations

import importlib.util

from probe.errors import InputError

EXTRAS: dict[str, tuple[str, ...]] = {
    "postgres": ("psycopg",),
    "distributed": ("celery", "kombu", "redis", "psycopg"),
}
"""extra -> the modules it brings (pyproject.toml's optional-dependencies)."""

_NEEDS = {"postgres": "a PostgreSQL store", "distributed": "a distributed sweep or worker"}


def missing(extra: str) -> list[str]:
    """The modules of `extra` that are not installed."""
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def require_extra(extra: str, field: str) -> None:
    """InputError naming `extra` unless every module it brings is installed."""
    absent = missing(extra)
    if absent:
        raise InputError(f"{_NEEDS[extra]} needs the {extra} extra (missing: "
                         f"{', '.join(absent)}): pip install 'iotprobe[{extra}]'", field=field)
