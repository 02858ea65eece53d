"""What the documentation generators share: generated blocks between markers in a Markdown file.

A generated block sits between `<!-- BEGIN generated: NAME -->` and `<!-- END generated: NAME
-->` lines; everything outside the markers is written by hand and left alone. A generator
renders every block of its file, then either writes the file or, with `--check`, only says
whether it is current.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_BLOCK = re.compile(r"(<!-- BEGIN generated: (?P<name>[^>]+?) -->\n)(?P<body>.*?)"
                    r"(<!-- END generated: (?P=name) -->)", re.DOTALL)


class StaleBlocks(Exception):
    """The file's markers do not match the blocks the generator renders."""


def fill(text: str, blocks: Mapping[str, str]) -> str:
    """`text` with the body of every generated block replaced by `blocks[name]`.

    Every block in `blocks` must have its markers in `text`, and every marker pair a block.
    """
    found: list[str] = []

    def body(match: re.Match[str]) -> str:
        name = match.group("name")
        found.append(name)
        if name not in blocks:
            raise StaleBlocks(f"no generator output for the block {name!r}: remove its markers")
        return match.group(1) + blocks[name].rstrip("\n") + "\n" + match.group(4)

    filled = _BLOCK.sub(body, text)
    missing = [name for name in blocks if name not in found]
    if missing:
        raise StaleBlocks("no markers for the generated block(s) " + ", ".join(missing)
                          + ": add `<!-- BEGIN generated: NAME -->` and `<!-- END generated: "
                          "NAME -->` lines where each belongs")
    return filled


def main(path: Path, render: Callable[[], Mapping[str, str]], description: str) -> int:
    """The command line of a generator: write `path`, or with --check exit 1 when stale."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
    args = parser.parse_args()
    current = path.read_text(encoding="utf-8")
    try:
        wanted = fill(current, render())
    except StaleBlocks as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    if args.check:
        stale = wanted != current
        print(f"{path}: {'stale' if stale else 'current'}")
        return 1 if stale else 0
    path.write_text(wanted, encoding="utf-8")
    print(f"wrote {path}")
    return 0
