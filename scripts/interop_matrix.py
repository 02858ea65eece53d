"""Write docs/interop.md: start every peer of the interoperability matrix (tests/interop),
scan them once through the command line, ask each reference tool, and render the table.

    .venv/bin/python scripts/interop_matrix.py            # writes docs/interop.md
    .venv/bin/python scripts/interop_matrix.py --check    # exit 1 if the file is stale

The peers are real daemons on 127.121-130.0.x (never port 2024), started as children and
stopped by PID; `make test` installs them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from interop.run import matrix, selected  # noqa: E402
from interop.table import markdown  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "interop.md")
    args = parser.parse_args()
    peers = selected()
    with matrix(peers, 1) as done:
        text = markdown(done.peers, done.scans[0], done.readings, done.versions)
    if args.check:
        stale = not args.out.is_file() or args.out.read_text() != text
        print(f"{args.out}: {'stale' if stale else 'current'}")
        return 1 if stale else 0
    args.out.write_text(text)
    print(f"wrote {args.out} ({len(peers)} peers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
