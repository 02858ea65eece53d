"""Write the device table of docs/lab.md from the lab's declarations.

    python scripts/lab_docs.py            # rewrites the generated block
    python scripts/lab_docs.py --check    # exit 1 if it is stale

The table is `probe.lab.selftest.markdown_table()`, what `iotprobe lab personas --markdown`
prints: every device of the emulated and the real lab with the checks it is declared to fail
and to pass. Add or change a persona or a real device and run this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

# docgen beside this file, and this checkout's probe before any installed one
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from docgen import REPO, main

DOC = REPO / "docs" / "lab.md"


def render() -> dict[str, str]:
    from probe.lab.selftest import markdown_table

    return {"devices": markdown_table()}


if __name__ == "__main__":
    sys.exit(main(DOC, render, "Write the device table of docs/lab.md."))
