"""Fleet checks: judged across the devices of one scan or sweep rather than on one device.

`fleet.unique-keys` passes on a TLS endpoint when no other device of the same scan serves a
certificate with the same public key. It reads what the TLS checks recorded: the SHA-256 of the
leaf's SubjectPublicKeyInfo, evidence key `public_key_sha256`, at the top of the evidence of a
`tls.certificate-*` result or in each item of its `certificates` list.

How the result reaches the records: records are written as each device finishes, so
`UniqueKeys` decides each device against the devices finished before it (a key seen before is a
failure at once) and remembers only fingerprint -> device ids. After the last device, the
devices that share a key with any other are settled again: their records are re-read, their
`fleet.unique-keys` results replaced with the final list of sharers, the verdict recomputed,
and the records rewritten (files in place, store rows in one transaction each). Devices with a
unique key are never rewritten.

The engine runs the catalogue entry below for each device like any check; on its own a device
cannot answer, so it returns `skipped` (which leaves the verdict alone) and the fleet stage of
`scan` and `sweep` always replaces it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from probe.checks.base import CONTROL_COMMUNICATION, Check, Observations, check
from probe.checks.params import NoParams
from probe.escaping import unescape
from probe.model import (
    Device,
    Finding,
    Result,
    Severity,
    Status,
    errored,
    failed,
    not_applicable,
    passed,
    skipped,
)
from probe.profile import PlannedCheck, Profile
from probe.record.model import Record, stored

UNIQUE_KEYS = "fleet.unique-keys"
KEY_EVIDENCE = "public_key_sha256"
CERTIFICATE_CHECKS = "tls.certificate-"
MAX_LISTED = 20
"""At most this many device ids in the evidence of one result (the count is always there)."""


@check(
    UNIQUE_KEYS,
    title="No two devices serve a TLS certificate with the same public key",
    control=CONTROL_COMMUNICATION,
    severity=Severity.HIGH,
    needs=(),
    remediation="Give every device its own key pair, generated on the device or provisioned "
                "per device at manufacture, and never ship a key shared across a product "
                "line: whoever extracts it from one device can impersonate or decrypt all of "
                "them. Revoke the shared certificate and re-key the devices listed.",
)
def unique_keys(obs: Observations, params: NoParams) -> Iterable[Finding]:
    """Pass: no other device of the same scan or sweep serves a TLS certificate with the same
    public key (SHA-256 of the SubjectPublicKeyInfo the TLS checks recorded).
    Fail: another device does; the finding names them.
    Not applicable: no TLS certificate was observed on this device.
    Error: a certificate could not be obtained to compare.
    Skipped: only until the fleet stage replaces it, which `scan` and `sweep` always run."""
    return [skipped("decided across the devices of a scan or sweep once they finish; a "
                    "device scanned on its own has nothing to compare with", reason="fleet")]


Observed = tuple[str, str, str, Mapping[str, Any], str]
"""(check, target, status, evidence, summary) of one result."""


def _key_of(item: Any) -> str | None:
    if isinstance(item, Mapping):
        value = item.get(KEY_EVIDENCE)
        if isinstance(value, str) and value:
            return value.lower()
    return None


def served_keys(results: Iterable[Observed]) -> tuple[dict[str, set[str]], dict[str, str]]:
    """The public-key fingerprints per TLS target, and the targets whose certificate results
    all errored (target -> the first error's summary), from (check, target, status, evidence,
    summary)."""
    keys: dict[str, set[str]] = {}
    errors: dict[str, str] = {}
    for check_id, target, status, evidence, summary in results:
        if not check_id.startswith(CERTIFICATE_CHECKS):
            continue
        found = {k for k in [_key_of(evidence)] if k}
        certificates = evidence.get("certificates")
        if isinstance(certificates, list):
            found.update(k for k in map(_key_of, certificates) if k)
        if found:
            keys.setdefault(target, set()).update(found)
        elif status == Status.ERROR.value:
            errors.setdefault(target, f"{check_id}: {summary}")
    return keys, {t: c for t, c in errors.items() if t not in keys}


def _observed(record: Record, text: Callable[[str], str]) -> Iterator[Observed]:
    """The results of `record`, their summaries through `text`."""
    for r in record.results:
        yield (r.check, r.finding.target, r.status.value, r.finding.evidence,
               text(r.finding.summary))


class UniqueKeys:
    """`fleet.unique-keys` across one scan: fingerprint -> ids of the devices serving it."""

    def __init__(self, profile: Profile, checks: Mapping[str, Check]) -> None:
        self.profile = profile
        self.enabled = any(c.id == UNIQUE_KEYS for c in profile.checks)
        self.check = checks.get(UNIQUE_KEYS)
        self.models = {cid: c.params for cid, c in checks.items()}
        self._holders: dict[str, list[str]] = {}
        self._shared: set[str] = set()

    def _note(self, device_id: str, keys: dict[str, set[str]]) -> None:
        for fingerprint in set[str]().union(*keys.values()):
            holders = self._holders.setdefault(fingerprint, [])
            if device_id not in holders:
                holders.append(device_id)
                if len(holders) > 1:
                    self._shared.add(fingerprint)

    def _findings(self, device_id: str, keys: dict[str, set[str]],
                  errors: dict[str, str]) -> list[Finding]:
        findings: list[Finding] = []
        for target in sorted(keys):
            sharers: set[str] = set()
            for fingerprint in keys[target]:
                sharers.update(self._holders.get(fingerprint, ()))
            others = sorted(sharers - {device_id})
            fingerprints = sorted(keys[target])
            evidence: dict[str, Any] = {KEY_EVIDENCE: fingerprints[0] if len(fingerprints) == 1
                                        else fingerprints}
            if others:
                listed = others[:MAX_LISTED]
                more = f" and {len(others) - len(listed)} more" if len(others) > len(listed) else ""
                findings.append(failed(
                    f"{target}: the certificate's public key is also served by {len(others)} "
                    f"other device(s): {', '.join(listed)}{more}", target,
                    **evidence, devices=sorted([device_id, *listed]),
                    device_count=len(others) + 1))
            else:
                findings.append(passed(f"{target}: no other device in this scan serves the "
                                       "certificate's public key", target, **evidence,
                                       device_count=1))
        for target in sorted(errors):
            findings.append(errored(f"no certificate to compare: {errors[target]}", target,
                                    reason="no-certificate"))
        if not findings:
            findings.append(not_applicable("no TLS certificate was observed on this device"))
        return findings

    def _results(self, device: Device, started: dt.date,
                 findings: list[Finding]) -> list[Result]:
        planned = self._planned(device, started)
        remediation = self.check.remediation if self.check else ""
        return [Result(check=UNIQUE_KEYS, control=planned.control, severity=planned.severity,
                       finding=f, remediation=remediation, references=planned.references,
                       duration_ms=0,
                       waived=planned.waiver if f.status is Status.FAIL else None)
                for f in findings]

    def _planned(self, device: Device, day: dt.date) -> PlannedCheck:
        plan = self.profile.plan(device, self.models, day)
        return next(p for p in plan if p.id == UNIQUE_KEYS)

    def settle(self, record: Record) -> Record:
        """`record` with its fleet results decided against every device finished so far.

        The record has just been built: the error summaries quoted are taken back to the
        device's text (`unescape`), so the fleet result escapes them once, as the record did.
        """
        if not self.enabled:
            return record
        keys, errors = served_keys(_observed(record, unescape))
        self._note(record.device.id, keys)
        return record.with_results(UNIQUE_KEYS, self._stored(
            record, self._findings(record.device.id, keys, errors)))

    def remember(self, record: Record) -> None:
        """Take in a device finished earlier (a resumed sweep's stored record)."""
        if self.enabled:
            keys, _ = served_keys(_observed(record, str))
            self._note(record.device.id, keys)

    def to_amend(self) -> list[str]:
        """The devices whose records may need their final fleet results: those sharing a key."""
        ids: set[str] = set()
        for fingerprint in self._shared:
            ids.update(self._holders[fingerprint])
        return sorted(ids)

    def amend(self, record: Record) -> Record | None:
        """`record` with its final fleet results, or None when they are already final."""
        keys, errors = served_keys(_observed(record, str))
        fleet = self._stored(record, self._findings(record.device.id, keys, errors))
        if _comparable(record.of_check(UNIQUE_KEYS)) == _comparable(fleet):
            return None
        return record.with_results(UNIQUE_KEYS, fleet)

    def _stored(self, record: Record, findings: list[Finding]) -> list[Result]:
        """The fleet results of `record`'s device, as its record holds them."""
        return [stored(r) for r in self._results(record.device, record.started_at.date(),
                                                 findings)]


def _comparable(results: Iterable[Result]) -> list[tuple[str, str, str, str]]:
    return [(r.finding.target, r.status.value, r.finding.summary,
             repr(sorted(r.finding.evidence.items()))) for r in results]


CHECKS = (unique_keys,)
