"""The check catalogue as data for people and tools: what `iotprobe profiles checks --json`
prints and `scripts/checks_docs.py` renders into docs/checks.md.

Everything comes from the code: the `@check` declaration (title, control, default severity,
intrusive, parameters with their defaults, remediation, collectors, services), the evaluation
function's docstring (the pass/fail rule), and the references and profiles of the built-in
profiles as they resolve. Nothing is typed twice.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from probe.checks.base import MAX_PORT_FINDINGS, Check
from probe.checks.catalogue import catalogue
from probe.observe.identify import SERVICE_NAMES, SERVICES
from probe.profile import CheckConfig
from probe.profile_loader import builtin_profile_ids, load_profile

REFERENCE_PROFILE = "iso27400"
"""The default profile, whose references are a check's references (docs/crosswalk.md reads the
same); a check it does not run takes them from the first built-in profile that does."""


RULE_LABELS = ("Pass", "Fail", "Not applicable", "Error", "Skipped")
"""What a section of a rule starts with (an `Error` may name its reason: `Error (reason ...)`)."""


def rule(check: Check) -> str:
    """The check's pass/fail rule: its evaluation function's docstring, one line per section
    (`Pass: ...`, `Fail: ...`, then `Not applicable:`, `Error:`, `Skipped:` where they occur)."""
    sections: list[str] = []
    for line in (inspect.getdoc(check.evaluate) or "").splitlines():
        text = line.strip()
        if text.startswith(RULE_LABELS) or not sections:
            sections.append(text)
        elif text:
            sections[-1] += " " + text
    return "\n".join(sections)


def unidentified(check: Check) -> str:
    """What an open port that could not be identified does to the check (probe.checks.base),
    empty for a check that judges no TCP service."""
    if not check.applies_to:
        return ""
    names = " or ".join(SERVICE_NAMES[s] for s in SERVICES if s in check.applies_to)
    return (f"Error (reason `unidentified`): an open TCP port that could not be identified and "
            f"may serve {names}, one finding per port (one for the device beyond "
            f"{MAX_PORT_FINDINGS}); the check's not applicable then goes.")


def _configs() -> dict[str, list[tuple[str, CheckConfig]]]:
    """Per check id, (profile id, its resolved configuration) in every built-in profile that
    runs it, the reference profile first."""
    ids = builtin_profile_ids()
    ordered = [REFERENCE_PROFILE, *(p for p in ids if p != REFERENCE_PROFILE)]
    found: dict[str, list[tuple[str, CheckConfig]]] = {}
    for profile_id in ordered:
        for config in load_profile(profile_id).checks:
            found.setdefault(config.id, []).append((profile_id, config))
    return found


def _collector(collector: Any) -> str:
    """A collector by its module and function (`tls.tls_handshakes`)."""
    return f"{collector.__module__.rsplit('.', 1)[-1]}.{collector.__name__}"


def describe(check: Check, configs: list[tuple[str, CheckConfig]]) -> dict[str, Any]:
    """One check as JSON-ready data."""
    references: Mapping[str, tuple[str, ...]] = configs[0][1].references if configs else {}
    return {
        "id": check.id,
        "title": check.title,
        "control": check.control,
        "severity": check.severity.value,  # the catalogue's default; `profiles` may differ
        "intrusive": check.intrusive,
        "applies_to": sorted(check.applies_to),
        "profiles": {profile_id: config.severity.value
                     for profile_id, config in sorted(configs, key=lambda item: item[0])},
        "references": {framework: list(refs) for framework, refs in references.items()},
        "parameters": [{"name": name, "default": value}
                       for name, value in check.defaults.items()],
        "needs": [_collector(c) for c in check.needs],
        "rule": rule(check),
        "unidentified": unidentified(check),
        "remediation": check.remediation,
    }


def catalogue_data() -> list[dict[str, Any]]:
    """Every check of the catalogue, by id."""
    configs = _configs()
    return [describe(check, configs.get(cid, [])) for cid, check in sorted(catalogue().items())]
