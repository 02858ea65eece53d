"""Write the tables of docs/crosswalk.md from the references the built-in profiles carry.

    python scripts/crosswalk_docs.py            # rewrites the generated blocks
    python scripts/crosswalk_docs.py --check    # exit 1 if they are stale

The mapping is profile data (profiles/*.yaml, `references:` under each control and check); the
default profile `iso27400` holds every check of the built-in profiles. Nothing here is typed by
hand: change a profile and run this script.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

# docgen beside this file, and this checkout's probe before any installed one
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from docgen import REPO, main

DOC = REPO / "docs" / "crosswalk.md"
PROFILE = "iso27400"
COLUMNS = (("iso-27400-2022", "ISO/IEC 27400:2022"), ("etsi-en-303-645", "ETSI EN 303 645"),
           ("owasp-isvs", "OWASP ISVS"), ("iec-62443-4-2", "IEC 62443-4-2"),
           ("nistir-8259a", "NISTIR 8259A"))


def _refs(references: Mapping[str, tuple[str, ...]], framework: str) -> str:
    return ", ".join(references.get(framework, ())).replace("|", "\\|") or "—"


def controls_table() -> str:
    """Each control of the default profile with the published clauses it stands for."""
    from probe.profile_loader import load_profile

    rows = ["| control | title | ISO/IEC 27400:2022 clauses |", "|---|---|---|"]
    for control in load_profile(PROFILE).controls:
        rows.append(f"| `{control.id}` | {control.title} | "
                    f"{_refs(control.references, 'iso-27400-2022')} |")
    return "\n".join(rows)


def checks_table() -> str:
    """Each check of the default profile with its references, framework by framework, then
    the catalogue's checks that no built-in profile runs."""
    from probe.checks.catalogue import catalogue
    from probe.profile_loader import load_profile

    known = catalogue()
    profile = load_profile(PROFILE)
    rows = ["| check | control | severity | " + " | ".join(name for _, name in COLUMNS) + " |",
            "|---|---|---|" + "---|" * len(COLUMNS)]
    for config in profile.checks:
        intrusive = " (intrusive)" if known[config.id].intrusive else ""
        cells = [f"`{config.id}`{intrusive}", f"`{config.control}`", config.severity.value,
                 *(_refs(config.references, key) for key, _ in COLUMNS)]
        rows.append("| " + " | ".join(cells) + " |")
    planned = {config.id for config in profile.checks}
    for check_id in sorted(set(known) - planned):
        rows.append(f"| `{check_id}` | `{known[check_id].control}` | "
                    f"{known[check_id].severity.value} | in no built-in profile |"
                    + " |" * (len(COLUMNS) - 1))
    return "\n".join(rows)


def render() -> dict[str, str]:
    return {"controls": controls_table(), "checks": checks_table()}


if __name__ == "__main__":
    sys.exit(main(DOC, render, "Write the tables of docs/crosswalk.md."))
