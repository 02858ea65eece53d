"""How a TCP protocol tells identification about itself (`probe.observe.identify` reads every
package's `TcpIdent` through `probe.protocols.registry.TCP`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Hit = tuple[str, str, dict[str, Any]]
"""What a reply proves: (protocol, detail, evidence)."""


@dataclass(frozen=True)
class Classifier:
    """A rule that reads the first bytes of a reply. Identification tries every registered
    classifier by `priority` (lowest first) and keeps the first hit; `kinds` limits a rule to
    the replies of those probe kinds (None: any reply)."""

    priority: int
    classify: Callable[[int, bytes], Hit | None]
    """(port, first bytes) -> what they prove, or None."""
    kinds: frozenset[str] | None = None


@dataclass(frozen=True)
class TcpProbe:
    """The request identification sends for one probe kind, and when its answer is whole."""

    kind: str
    read_cap: int
    """At most this many bytes of the answer are read."""
    request: Callable[[str, int, bool], bytes]
    """(the device's address, port, over TLS) -> the bytes sent first (b"": just listen)."""
    complete: Callable[[bytes], bool]


@dataclass(frozen=True)
class TcpIdent:
    """One TCP protocol as identification sees it."""

    name: str
    """Its hint: the attempt that goes first on the ports it names."""
    ports: frozenset[int]
    """Conventional ports: a port here hints this protocol."""
    names: frozenset[str]
    """Inventory service names that hint this protocol."""
    plan: tuple[str, ...]
    """The probe kinds tried, in order, on a port this protocol hints."""
    probe: TcpProbe | None = None
    classifiers: tuple[Classifier, ...] = ()
    judged: Mapping[str, str] = field(default_factory=dict)
    """The services the checks judge (`applies_to`) that this protocol defines, with their
    names in messages, in the order messages list them."""
    serves_by_name: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Inventory service name -> the judged services a port so named may carry."""
    serves_by_port: tuple[tuple[int, frozenset[int], frozenset[str]], ...] = ()
    """(precedence, ports, judged services) for ports no inventory name covers: the entry of
    lowest precedence holding the port decides (an empty set: none of them)."""
    inside_tls: frozenset[int] = frozenset()
    """Ports (beside those named in `names_inside_tls`) where it is tried first inside TLS."""
    names_inside_tls: frozenset[str] = frozenset()
    by_convention: Mapping[int, str] = field(default_factory=dict)
    """Ports whose protocol is this name when nothing answered otherwise."""
    anywhere: bool = True
    """Whether a port that neither the inventory nor convention names may carry its judged
    services (False: they are judged only where named, conventional or identified)."""
