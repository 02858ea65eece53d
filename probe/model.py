"""The vocabulary shared by every part of the probe: devices, services, results, records."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from probe.secrets import Secret

Transport = Literal["tcp", "udp"]


class Status(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    NOT_APPLICABLE = "not_applicable"
    SKIPPED = "skipped"


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


class Verdict(enum.StrEnum):
    CONFORMANT = "conformant"
    NONCONFORMANT = "nonconformant"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Device:
    """One target, as the inventory (or the command line) describes it.

    `address` is an IP literal or, when the user gave a name, that name; the engine resolves a
    name once, before the first packet. `credentials` hold Secret values, never plain strings.
    """

    id: str
    address: str
    hostname: str | None = None
    device_class: str | None = None
    site: str | None = None
    services: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    credentials: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    monitor: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    trust_anchor: str | None = None
    ports: tuple[int, ...] | None = None
    exclude_ports: tuple[int, ...] = ()
    source: str = "<command line>"

    def public(self) -> dict[str, Any]:
        """The device as it appears in a record: identity only, no credentials."""
        out: dict[str, Any] = {"id": self.id, "address": self.address}
        if self.hostname:
            out["hostname"] = self.hostname
        if self.device_class:
            out["class"] = self.device_class
        if self.site:
            out["site"] = self.site
        return out

    def secret(self, credential: str, key: str) -> Secret | None:
        value = self.credentials.get(credential, {}).get(key)
        return value if isinstance(value, Secret) else None


@dataclass(frozen=True)
class Service:
    """An endpoint found on a device: a port and what answers there."""

    transport: Transport
    port: int
    protocol: str
    tls: bool = False
    detail: str = ""

    @property
    def target(self) -> str:
        return f"{self.transport}/{self.port}"


@dataclass(frozen=True)
class Finding:
    """What a check concludes about one target of a device."""

    status: Status
    summary: str
    target: str = "device"
    evidence: Mapping[str, Any] = field(default_factory=dict)


def passed(summary: str, target: str = "device", **evidence: Any) -> Finding:
    return Finding(Status.PASS, summary, target, evidence)


def failed(summary: str, target: str = "device", **evidence: Any) -> Finding:
    return Finding(Status.FAIL, summary, target, evidence)


def errored(summary: str, target: str = "device", **evidence: Any) -> Finding:
    return Finding(Status.ERROR, summary, target, evidence)


def not_applicable(summary: str, target: str = "device", **evidence: Any) -> Finding:
    return Finding(Status.NOT_APPLICABLE, summary, target, evidence)


def skipped(summary: str, target: str = "device", **evidence: Any) -> Finding:
    return Finding(Status.SKIPPED, summary, target, evidence)


@dataclass(frozen=True)
class Waiver:
    check: str
    justification: str
    expires: str
    device: str | None = None
    device_class: str | None = None

    def covers(self, check: str, device: Device) -> bool:
        if self.check != check:
            return False
        if self.device is not None and self.device != device.id:
            return False
        return self.device_class is None or self.device_class == device.device_class


@dataclass(frozen=True)
class Result:
    """A finding placed in its profile: the row of a record."""

    check: str
    control: str
    severity: Severity
    finding: Finding
    remediation: str
    references: Mapping[str, tuple[str, ...]]
    duration_ms: int
    waived: Waiver | None = None

    @property
    def status(self) -> Status:
        return self.finding.status

    @property
    def counts_as_failure(self) -> bool:
        return self.finding.status is Status.FAIL and self.waived is None


def verdict_of(results: list[Result]) -> Verdict:
    if any(r.counts_as_failure for r in results):
        return Verdict.NONCONFORMANT
    if any(r.status is Status.ERROR for r in results):
        return Verdict.INCONCLUSIVE
    return Verdict.CONFORMANT


def worst_failure(results: list[Result]) -> Severity | None:
    failing = [r.severity for r in results if r.counts_as_failure]
    return max(failing, key=lambda s: s.rank) if failing else None
