"""The sweep store: numbered, timestamped sweeps and their records in SQLite or PostgreSQL."""

from probe.store.db import (
    DEFAULT_SUFFIX,
    FINISHED,
    INTERRUPTED,
    RUNNING,
    RecordRefused,
    Store,
    StoreError,
    SweepInfo,
    default_store,
    mask,
    open_store,
    parse_store_url,
)

__all__ = [
    "DEFAULT_SUFFIX",
    "FINISHED",
    "INTERRUPTED",
    "RUNNING",
    "RecordRefused",
    "Store",
    "StoreError",
    "SweepInfo",
    "default_store",
    "mask",
    "open_store",
    "parse_store_url",
]
