"""The one typed record of a scanned device, and its JSON layout (`iotprobe.record/v1`).

A `Record` holds what its file holds: every string from the device or the inventory already
redacted of the device's secrets, escaped and bounded (probe.escaping) by `record_of`, so that
`to_json` only lays it out and `from_json(to_json(r)) == r`. This module is the only place that
reads or writes the record's keys; everything else uses the attributes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from probe.escaping import EVIDENCE_BUDGET, MAX_TEXT, Bounder, bounded_text, escape
from probe.model import Device, Finding, Result, Service, Severity, Status, Verdict, Waiver
from probe.model import verdict_of as _verdict_of
from probe.secrets import device_redactor
from probe.selection import Selection
from probe.stamps import parse_stamp, stamp

SCHEMA_ID = "iotprobe.record/v1"
WORST_FIRST = (Status.FAIL, Status.ERROR, Status.SKIPPED, Status.PASS, Status.NOT_APPLICABLE)
"""The order in which one check's statuses over several endpoints hide each other."""
_RANK = {status: rank for rank, status in enumerate(WORST_FIRST)}

Redact = Callable[[str], str]


def _kept(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class ProfileRef:
    """The profile a record was judged against."""

    id: str
    version: str
    digest: str


@dataclass(frozen=True, slots=True)
class Pacing:
    """How fast the probe went at one device (probe.ratelimit, docs/rate.md)."""

    mode: str
    """`adaptive` or `fixed` (`--rate-mode`)."""
    final: float
    """New connections and datagrams a second the device was at when its scan ended: its own
    adaptive rate, or the scan's fixed rate."""
    backoffs: int
    """How many times the device's rate was halved for congestion (0 in fixed mode)."""

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "final": round(self.final, 2), "backoffs": self.backoffs}


@dataclass(frozen=True, slots=True)
class ProbeInfo:
    """The probe that wrote a record."""

    version: str
    intrusive: bool
    rate: Pacing | None = None
    """None only in records written before the probe recorded its rate."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "intrusive": self.intrusive}
        if self.rate is not None:
            out["rate"] = self.rate.to_json()
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One device's conformance record; its strings as stored (see the module docstring)."""

    device: Device
    """Identity only: id, address, hostname, class and site."""
    resolved_address: str | None
    """The address a device given by name resolved to; None when it was given as one."""
    profile: ProfileRef
    probe: ProbeInfo
    started_at: dt.datetime
    finished_at: dt.datetime
    services: tuple[Service, ...]
    results: tuple[Result, ...]
    selection: Selection | None = None
    """The command line's check selection, when one narrowed the profile."""

    @property
    def address(self) -> str:
        """The address scanned: the resolved one for a device given by name."""
        return self.device.address if self.resolved_address is None else self.resolved_address

    @property
    def verdict(self) -> Verdict:
        """The verdict of the results (probe.model.verdict_of, the only verdict rule)."""
        return _verdict_of(list(self.results))

    def statuses(self) -> dict[str, Status]:
        """Each check's status; with several results, the worst of them (WORST_FIRST)."""
        worst: dict[str, Status] = {}
        for result in self.results:
            known = worst.get(result.check)
            if known is None or _RANK[result.status] < _RANK[known]:
                worst[result.check] = result.status
        return worst

    def of_check(self, check_id: str) -> tuple[Result, ...]:
        return tuple(r for r in self.results if r.check == check_id)

    def with_results(self, check_id: str, results: Iterable[Result],
                     order: Sequence[str] = ()) -> Record:
        """This record with the rows of `check_id` replaced by `results`, at the place of the
        first of them; when it has none, before the first row of a check that `order` (the
        plan's check ids) lists after `check_id`, else at the end (`results` as stored: see
        `stored`)."""
        fresh = list(results)
        if not any(r.check == check_id for r in self.results):
            later = set(order[order.index(check_id) + 1:]) if check_id in order else set()
            at = next((i for i, r in enumerate(self.results) if r.check in later),
                      len(self.results))
            return replace(self, results=(*self.results[:at], *fresh, *self.results[at:]))
        kept: list[Result] = []
        for result in self.results:
            if result.check != check_id:
                kept.append(result)
            elif fresh:
                kept.extend(fresh)
                fresh = []
        return replace(self, results=tuple(kept))

    def to_json(self) -> dict[str, Any]:
        """The record as its file holds it (before serialization), in the schema's key order."""
        return {
            "schema": SCHEMA_ID,
            "device": self.device_json(),
            "profile": {"id": self.profile.id, "version": self.profile.version,
                        "digest": self.profile.digest},
            "probe": self.probe.to_json(),
            **({} if self.selection is None else {"selection": _selection_json(self.selection)}),
            "started_at": stamp(self.started_at),
            "finished_at": stamp(self.finished_at),
            "verdict": self.verdict.value,
            "services": [_service_json(s) for s in self.services],
            "results": [_result_json(r) for r in self.results],
        }

    def device_json(self) -> dict[str, Any]:
        """The record's `device` object: identity, and the address a name resolved to."""
        out = self.device.public()
        if self.resolved_address is not None:
            out["resolved_address"] = self.resolved_address
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Record:
        """The record of a stored JSON object (validated when it was written; not again)."""
        device = data["device"]
        profile = data["profile"]
        probe = data["probe"]
        return cls(
            device=Device(id=device["id"], address=device["address"],
                          hostname=device.get("hostname"), device_class=device.get("class"),
                          site=device.get("site")),
            resolved_address=device.get("resolved_address"),
            profile=ProfileRef(profile["id"], profile["version"], profile["digest"]),
            probe=ProbeInfo(probe["version"], probe["intrusive"], _pacing_of(probe.get("rate"))),
            started_at=parse_stamp(data["started_at"]),
            finished_at=parse_stamp(data["finished_at"]),
            services=tuple(Service(s["transport"], s["port"], s["protocol"], s["tls"],
                                   s.get("detail", "")) for s in data["services"]),
            results=tuple(_result_of(r) for r in data["results"]),
            selection=_selection_of(data["selection"]) if "selection" in data else None,
        )


def _selection_json(selection: Selection) -> dict[str, Any]:
    return {
        "checks": list(selection.checks),
        "skip_checks": list(selection.skip_checks),
        "severity": selection.severity.value if selection.severity else None,
        "controls": list(selection.controls),
        "deselected": [{"check": check_id, "reason": reason}
                       for check_id, reason in selection.deselected.items()],
    }


def _selection_of(data: Mapping[str, Any]) -> Selection:
    severity = data["severity"]
    return Selection(
        checks=tuple(data["checks"]), skip_checks=tuple(data["skip_checks"]),
        severity=Severity(severity) if severity else None, controls=tuple(data["controls"]),
        deselected={row["check"]: row["reason"] for row in data["deselected"]})


def _pacing_of(data: Mapping[str, Any] | None) -> Pacing | None:
    if data is None:
        return None
    return Pacing(data["mode"], float(data["final"]), data["backoffs"])


def _service_json(service: Service) -> dict[str, Any]:
    out: dict[str, Any] = {"transport": service.transport, "port": service.port,
                           "protocol": service.protocol, "tls": service.tls}
    if service.detail:
        out["detail"] = service.detail
    return out


def _result_json(result: Result) -> dict[str, Any]:
    finding = result.finding
    out: dict[str, Any] = {
        "check": result.check,
        "control": result.control,
        "target": finding.target,
        "status": finding.status.value,
        "severity": result.severity.value,
        "summary": finding.summary,
        "evidence": finding.evidence,
        "remediation": result.remediation,
        "references": {k: list(v) for k, v in result.references.items()},
        "duration_ms": result.duration_ms,
    }
    if result.waived is not None:
        out["waived"] = {"justification": result.waived.justification,
                         "expires": result.waived.expires}
    return out


def _result_of(row: Mapping[str, Any]) -> Result:
    waived = row.get("waived")
    return Result(
        check=row["check"], control=row["control"], severity=Severity(row["severity"]),
        finding=Finding(Status(row["status"]), row["summary"], row["target"], row["evidence"]),
        remediation=row["remediation"],
        references={k: tuple(v) for k, v in row["references"].items()},
        duration_ms=row["duration_ms"],
        waived=Waiver(row["check"], waived["justification"], waived["expires"])
        if waived else None,
    )


def _text(value: str, redact: Redact) -> str:
    """One device string as a record holds it: redacted, then escaped and cut to MAX_TEXT (what
    a fresh `Bounder(MAX_TEXT, redact).text` does, without building one per string)."""
    return bounded_text(redact(value), MAX_TEXT)


def stored(result: Result, redact: Redact = _kept) -> Result:
    """`result` as a record holds it: target, summary and evidence (device strings) redacted of
    `redact`'s secrets, then escaped and bounded; the waiver reduced to what a record keeps.
    The status is the finding's, whatever the text."""
    finding = result.finding
    waived = result.waived
    return Result(
        result.check, result.control, result.severity,
        Finding(finding.status, _text(finding.summary, redact), _text(finding.target, redact),
                Bounder(EVIDENCE_BUDGET, redact).value(finding.evidence)),
        result.remediation, result.references, result.duration_ms,
        None if waived is None else Waiver(waived.check, escape(waived.justification),
                                           waived.expires))


def _stored_service(service: Service, redact: Redact) -> Service:
    if not service.detail:
        return service
    return Service(service.transport, service.port, service.protocol, service.tls,
                   _text(service.detail, redact))


def record_of(*, device: Device, address: str, profile: ProfileRef, probe: ProbeInfo,
              started_at: dt.datetime, finished_at: dt.datetime,
              services: Iterable[Service], results: Iterable[Result],
              selection: Selection | None = None) -> Record:
    """The record of a device the engine finished: every string from the device or the
    inventory redacted of the device's secrets, escaped and bounded (probe.escaping)."""
    redact = device_redactor(device.credentials, device.monitor)
    public = Device(
        id=device.id, address=_text(device.address, redact),
        hostname=_text(device.hostname, redact) if device.hostname else None,
        device_class=_text(device.device_class, redact) if device.device_class else None,
        site=_text(device.site, redact) if device.site else None)
    return Record(
        device=public,
        resolved_address=address if address != device.address else None,
        profile=profile, probe=probe, started_at=started_at, finished_at=finished_at,
        services=tuple(_stored_service(s, redact) for s in services),
        results=tuple(stored(r, redact) for r in results), selection=selection,
    )
