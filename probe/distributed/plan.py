"""Shards and the messages that carry them: plain JSON, no secret in them.

A shard is at most `size` devices of one site, in inventory order; its queue is `site.<NAME>`,
or `iotprobe` for devices without a site. A message names the sweep (number and the token the
store holds for it), where the inventory is, the profile (references as given to `-p`, and the
digest the worker must arrive at) and the scan options.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.context import ScanOptions
from probe.model import Device
from probe.profile_loader import builtin_profile_ids

DEFAULT_QUEUE = "iotprobe"
SITE_PREFIX = "site."
DEFAULT_SHARD_SIZE = 50
"""Devices per shard: enough to keep a worker's engine busy (its concurrency applies within a
shard), few enough that a shard lost with its worker costs little to scan again."""
FORMAT = 1


class MessageError(ValueError):
    """A broker message this iotprobe cannot read."""


def queue_of(site: str | None) -> str:
    return f"{SITE_PREFIX}{site}" if site else DEFAULT_QUEUE


@dataclass(frozen=True)
class Shard:
    number: int
    site: str | None
    devices: tuple[tuple[str, str], ...]
    """(id, address) of each device."""

    @property
    def queue(self) -> str:
        return queue_of(self.site)


def plan_shards(devices: Iterable[Device], size: int) -> Iterator[Shard]:
    """Shards of at most `size` devices, each of one site, numbered from 1. Streams: holds at
    most one unfinished shard per site."""
    pending: dict[str | None, list[tuple[str, str]]] = {}
    number = 0
    for device in devices:
        batch = pending.setdefault(device.site, [])
        batch.append((device.id, device.address))
        if len(batch) >= size:
            number += 1
            yield Shard(number, device.site, tuple(batch))
            batch.clear()
    for site, batch in pending.items():
        if batch:
            number += 1
            yield Shard(number, site, tuple(batch))


def profile_refs(refs: Iterable[str]) -> tuple[str, ...]:
    """The `-p` references as a worker can follow them: built-in ids as they are, files as
    absolute paths."""
    builtin = set(builtin_profile_ids())
    return tuple(ref if ref in builtin else str(Path(ref).expanduser().absolute())
                 for ref in refs)


_TUPLES = ("tcp_ports", "exclude_ports")
_FIELDS = {f.name: f for f in dataclasses.fields(ScanOptions)}


def options_message(options: ScanOptions) -> dict[str, Any]:
    out = dataclasses.asdict(options)
    for name in _TUPLES:
        if out[name] is not None:
            out[name] = list(out[name])
    if options.trust_anchor is not None:
        out["trust_anchor"] = str(Path(options.trust_anchor).absolute())
    return out


def options_of(data: Any) -> ScanOptions:
    if not isinstance(data, Mapping) or not set(data) <= set(_FIELDS):
        raise MessageError("scan options: unknown fields")
    values = dict(data)
    for name in _TUPLES:
        if values.get(name) is not None:
            values[name] = tuple(_int(port, name) for port in _list(values[name], name))
    try:
        return ScanOptions(**values)
    except TypeError as exc:
        raise MessageError(f"scan options: {exc}") from None


@dataclass(frozen=True)
class SweepPlan:
    """What every task of one distributed sweep shares."""

    sweep: int
    token: str
    inventory: str
    profiles: tuple[str, ...]
    digest: str
    options: ScanOptions

    def message(self) -> dict[str, Any]:
        return {"format": FORMAT, "sweep": self.sweep, "token": self.token,
                "inventory": self.inventory, "profiles": list(self.profiles),
                "digest": self.digest, "options": options_message(self.options)}

    @classmethod
    def of(cls, data: Any) -> SweepPlan:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise MessageError("not a sweep plan of this iotprobe version")
        return cls(sweep=_int(data.get("sweep"), "sweep"), token=_str(data.get("token"), "token"),
                   inventory=_str(data.get("inventory"), "inventory"),
                   profiles=tuple(_str(p, "profiles") for p in _list(data.get("profiles"),
                                                                     "profiles")),
                   digest=_str(data.get("digest"), "digest"),
                   options=options_of(data.get("options")))


@dataclass(frozen=True)
class ShardTask:
    plan: SweepPlan
    shard: Shard

    def message(self) -> dict[str, Any]:
        return {"plan": self.plan.message(), "shard": self.shard.number,
                "site": self.shard.site, "devices": [list(d) for d in self.shard.devices]}

    @classmethod
    def of(cls, data: Any) -> ShardTask:
        if not isinstance(data, Mapping):
            raise MessageError("a shard message is a mapping")
        site = data.get("site")
        if site is not None:
            site = _str(site, "site")
        devices = []
        for pair in _list(data.get("devices"), "devices"):
            entry = _list(pair, "devices")
            if len(entry) != 2:
                raise MessageError("devices: [id, address] pairs")
            devices.append((_str(entry[0], "devices"), _str(entry[1], "devices")))
        return cls(SweepPlan.of(data.get("plan")),
                   Shard(_int(data.get("shard"), "shard"), site, tuple(devices)))


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MessageError(f"{name}: an integer")
    return value


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise MessageError(f"{name}: a non-empty string")
    return value


def _list(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise MessageError(f"{name}: a list")
    return value
