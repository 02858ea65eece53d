"""Write docs/checks.md, the check catalogue, from the code.

    python scripts/checks_docs.py            # rewrites the generated blocks
    python scripts/checks_docs.py --check    # exit 1 if they are stale

Each check's entry is `probe.catalogue_doc.catalogue_data()`, the data `iotprobe profiles
checks --json` prints: its declaration, the rule in its evaluation function's docstring, and the
references of the built-in profiles. Change a check or a profile and run this script.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# docgen beside this file, and this checkout's probe before any installed one
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from crosswalk_docs import COLUMNS
from docgen import REPO, main

DOC = REPO / "docs" / "checks.md"


def _cell(text: str) -> str:
    """Text for a Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _references(references: Mapping[str, list[str]]) -> str:
    cited = [f"{name}: {', '.join(references[key])}" for key, name in COLUMNS if key in references]
    return "; ".join(cited) or "in no built-in profile"


def _parameters(parameters: list[dict[str, Any]]) -> str:
    return ", ".join(f"`{p['name']}` = `{json.dumps(p['default'])}`" for p in parameters) \
        or "none"


def _rule(text: str) -> list[str]:
    """The rule as a list, one item per section, its label in bold."""
    items = []
    for section in text.splitlines():
        label, _, said = section.partition(":")
        items.append(f"- **{label}:** {said.strip()}")
    return items


def _severity(entry: Mapping[str, Any]) -> str:
    """The default severity, and the built-in profiles that run the check at another one."""
    other = [f"{profile}: {severity}" for profile, severity in entry["profiles"].items()
             if severity != entry["severity"]]
    return str(entry["severity"]) + (f" ({', '.join(other)})" if other else "")


def index() -> str:
    """One line per check, linking its entry."""
    rows = ["| check | title | control | severity | intrusive |", "|---|---|---|---|---|"]
    for entry in _catalogue():
        rows.append(f"| [`{entry['id']}`](#{entry['id']}) | {_cell(entry['title'])} | "
                    f"`{entry['control']}` | {entry['severity']} | "
                    f"{'yes' if entry['intrusive'] else ''} |")
    return "\n".join(rows)


FLEET = "[design.md](design.md#fleet-checks)"
"""Where a fleet check's way of judging is explained."""


def entry_text(entry: Mapping[str, Any]) -> str:
    """The section of one check."""
    facts = [
        ("control", f"`{entry['control']}`"),
        ("severity", _severity(entry)),
        ("intrusive", "yes: runs only with `--intrusive`" if entry["intrusive"] else "no"),
        ("built-in profiles", ", ".join(f"`{p}`" for p in entry["profiles"]) or "none"),
        ("references", _references(entry["references"])),
        ("parameters (defaults)", _parameters(entry["parameters"])),
        ("collectors", ", ".join(f"`{c}`" for c in entry["needs"]) if not entry["fleet"]
         else f"none: a fleet check, judged across the devices of a scan or sweep ({FLEET})"),
    ]
    lines = [f'<a id="{entry["id"]}"></a>', "", f"### `{entry['id']}`: {entry['title']}", "",
             "| | |", "|---|---|", *(f"| {name} | {_cell(value)} |" for name, value in facts),
             "", "**Rule.**", "", *_rule(entry["rule"])]
    if entry["unidentified"]:
        lines += ["", f"**Unidentified ports.** {entry['unidentified']}"]
    lines += ["", f"**Remediation.** {entry['remediation']}"]
    return "\n".join(lines)


def entries() -> str:
    return "\n\n".join(entry_text(entry) for entry in _catalogue())


def _catalogue() -> list[dict[str, Any]]:
    from probe.catalogue_doc import catalogue_data

    return catalogue_data()


def render() -> dict[str, str]:
    return {"index": index(), "checks": entries()}


if __name__ == "__main__":
    sys.exit(main(DOC, render, "Write docs/checks.md from the check catalogue."))
