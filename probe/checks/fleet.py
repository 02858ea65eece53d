"""Fleet checks: judged across the devices of one scan or sweep rather than on one device.

`fleet.unique-keys` passes on a TLS endpoint when no other device of the same scan serves a
certificate with the same public key. It reads what the TLS checks recorded: the SHA-256 of the
leaf's SubjectPublicKeyInfo, evidence key `public_key_sha256`, at the top of the evidence of a
`tls.certificate-*` result or in each item of its `certificates` list.

How the judge works: records are written as each device finishes, so `UniqueKeys` decides
each device against the devices finished before it (a key seen before is a failure at once) and
remembers only fingerprint -> device ids. After the last device, `final` names the devices that
share a key with any other; the fleet stage (probe.run) decides them again with the final list
of sharers and rewrites those records whose result changed. Devices with a unique key are never
rewritten.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from probe.checks.base import CONTROL_COMMUNICATION, FleetJudge, fleet_check
from probe.checks.params import NoParams
from probe.escaping import unescape
from probe.model import Finding, Severity, Status, errored, failed, not_applicable, passed
from probe.record.model import Record

UNIQUE_KEYS = "fleet.unique-keys"
KEY_EVIDENCE = "public_key_sha256"
CERTIFICATE_CHECKS = "tls.certificate-"
MAX_LISTED = 20
"""At most this many device ids in the evidence of one result (the count is always there)."""


@fleet_check(
    UNIQUE_KEYS,
    title="No two devices serve a TLS certificate with the same public key",
    control=CONTROL_COMMUNICATION,
    severity=Severity.HIGH,
    remediation="Give every device its own key pair, generated on the device or provisioned "
                "per device at manufacture, and never ship a key shared across a product "
                "line: whoever extracts it from one device can impersonate or decrypt all of "
                "them. Revoke the shared certificate and re-key the devices listed.",
    params=NoParams,
)
def unique_keys(params: NoParams) -> FleetJudge:
    """Pass: no other device of the same scan or sweep serves a TLS certificate with the same
    public key (SHA-256 of the SubjectPublicKeyInfo the TLS checks recorded).
    Fail: another device does; the finding names them.
    Not applicable: no TLS certificate was observed on this device.
    Error: a certificate could not be obtained to compare.
    Skipped: the device was judged on its own (`run_check`), with no other device to compare."""
    return UniqueKeys()


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


def _observed(record: Record) -> Iterator[Observed]:
    """The certificate results of `record`, their summaries as the device sent them: the
    fleet result that quotes one is escaped once, when its record is built."""
    for r in record.results:
        if r.check.startswith(CERTIFICATE_CHECKS):
            yield (r.check, r.finding.target, r.status.value, r.finding.evidence,
                   unescape(r.finding.summary))


class UniqueKeys:
    """The `fleet.unique-keys` judge of one scan: fingerprint -> ids of the devices serving it."""

    def __init__(self) -> None:
        self._holders: dict[str, list[str]] = {}
        self._shared: set[str] = set()

    def observe(self, record: Record) -> None:
        keys, _ = served_keys(_observed(record))
        for fingerprint in set[str]().union(*keys.values()):
            holders = self._holders.setdefault(fingerprint, [])
            if record.device.id not in holders:
                holders.append(record.device.id)
                if len(holders) > 1:
                    self._shared.add(fingerprint)

    def decide(self, record: Record) -> list[Finding]:
        device_id = record.device.id
        keys, errors = served_keys(_observed(record))
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

    def final(self) -> list[str]:
        """The devices sharing a key: their first decision may have missed later sharers."""
        ids: set[str] = set()
        for fingerprint in self._shared:
            ids.update(self._holders[fingerprint])
        return sorted(ids)


CHECKS = (unique_keys,)
