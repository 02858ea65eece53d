"""The one place a check's `Finding` becomes a record's `Result`.

The engine (a device's checks, and the `error` results of a device that could not be scanned or
whose budget ran out) and the fleet stage (probe.run) both build results here, so a result reads
the same whoever judged it: control, severity and references as the profile plans them for the
device, the remediation the check declares, and the profile's waiver only on a failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from probe.checks.base import Check
from probe.model import Finding, Result, Status
from probe.profile import PlannedCheck


class ResultBuilder:
    """Results of the checks in `checks` (each planned check's id must be one of them)."""

    def __init__(self, checks: Mapping[str, Check]) -> None:
        self.checks = checks

    def result(self, planned: PlannedCheck, finding: Finding, duration_ms: int = 0) -> Result:
        """`finding` of `planned` as a result that took `duration_ms` to judge."""
        waiver = planned.waiver if finding.status is Status.FAIL else None
        return Result(check=planned.id, control=planned.control, severity=planned.severity,
                      finding=finding, remediation=self.checks[planned.id].remediation,
                      references=planned.references, duration_ms=duration_ms, waived=waiver)

    def results(self, planned: PlannedCheck, findings: Iterable[Finding],
                duration_ms: int = 0) -> list[Result]:
        """One result per finding, in their order."""
        return [self.result(planned, finding, duration_ms) for finding in findings]
