"""The documentation under docs/: generated parts current, every link inside the repository.

A clone or a wheel is all a user has, so nothing may point outside the repository; and the
tables generated from the code (command line, checks, crosswalk) must say what the code does now.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
OUTSIDE = ("../" + "shared", "/work/" + "shared")
"""Where the team's contract lived, outside any clone (spelled in pieces, so that this file
does not match itself)."""
LINK = re.compile(r"\]\((?P<target>[^)\s#]+)(?:#[^)\s]*)?\)")


def _script(name: str) -> ModuleType:
    """A generator of scripts/, loaded from its file (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stale(name: str) -> tuple[str, str]:
    """(the committed file, what the generator makes of it)."""
    script = _script(name)
    committed = script.DOC.read_text(encoding="utf-8")
    return committed, _script("docgen").fill(committed, script.render())


def test_cli_docs_are_current() -> None:
    committed, wanted = _stale("cli_docs")
    assert committed == wanted, "docs/cli.md is stale: run scripts/cli_docs.py"


def test_crosswalk_docs_are_current() -> None:
    committed, wanted = _stale("crosswalk_docs")
    assert committed == wanted, "docs/crosswalk.md is stale: run scripts/crosswalk_docs.py"


def test_checks_docs_are_current() -> None:
    committed, wanted = _stale("checks_docs")
    assert committed == wanted, "docs/checks.md is stale: run scripts/checks_docs.py"


def test_lab_docs_are_current() -> None:
    committed, wanted = _stale("lab_docs")
    assert committed == wanted, "docs/lab.md is stale: run scripts/lab_docs.py"


def test_a_changed_rule_makes_the_checks_docs_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    """The page follows the docstring: a check whose rule changes makes the committed page
    stale."""
    from probe.checks.catalogue import catalogue

    script = _script("checks_docs")
    committed = script.DOC.read_text(encoding="utf-8")
    evaluate = catalogue()["http.hsts"].evaluate
    monkeypatch.setattr(evaluate, "__doc__", "Pass: always.\nFail: never.")
    assert _script("docgen").fill(committed, script.render()) != committed
    assert "- **Pass:** always.\n- **Fail:** never." in script.render()["checks"]


def test_a_changed_option_makes_the_cli_docs_stale() -> None:
    """The stale test can fail: an option table that differs from the code is caught, and a
    command without its markers is refused."""
    script, docgen = _script("cli_docs"), _script("docgen")
    committed = script.DOC.read_text(encoding="utf-8")
    edited = committed.replace("| Devices scanned at once. |", "| Devices at once. |", 1)
    assert edited != committed
    assert docgen.fill(edited, script.render()) == committed
    without = re.sub(r"<!-- (BEGIN|END) generated: iotprobe diff -->\n?", "", committed)
    with pytest.raises(docgen.StaleBlocks, match="iotprobe diff"):
        docgen.fill(without, script.render())


def _tracked() -> list[Path]:
    """The repository's files: tracked, and new ones not ignored."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True).stdout.decode()
    return [REPO / name for name in sorted(set(listing.split("\0"))) if name]


def _text(path: Path) -> str | None:
    if not path.is_file():
        return None
    data = path.read_bytes()
    if b"\0" in data:
        return None
    return data.decode("utf-8", errors="replace")


def test_nothing_links_outside_the_repository() -> None:
    found = []
    for path in _tracked():
        text = _text(path)
        for number, line in enumerate((text or "").splitlines(), 1):
            if any(place in line for place in OUTSIDE):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, "links outside the repository:\n" + "\n".join(found)


def test_relative_links_in_the_docs_resolve() -> None:
    """Every relative link of README.md and docs/*.md names a file of the repository."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for match in LINK.finditer(page.read_text(encoding="utf-8")):
            target = match.group("target")
            if re.match(r"[a-z]+:", target):
                continue
            resolved = (page.parent / target).resolve()
            if not resolved.is_relative_to(REPO) or not resolved.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_check_states_its_rule() -> None:
    """Each catalogue check's evaluation function says when it passes and when it fails (the
    rule docs/checks.md and `profiles checks --json` publish), the wrapper that turns undecided
    ports into errors included."""
    from probe.catalogue_doc import RULE_LABELS, rule
    from probe.checks.catalogue import catalogue

    sections = {cid: rule(check).splitlines() for cid, check in sorted(catalogue().items())}
    missing = [cid for cid, lines in sections.items()
               if [line.partition(":")[0] for line in lines][:2] != ["Pass", "Fail"]]
    assert not missing, "checks whose rule does not start `Pass:`, `Fail:`: " + ", ".join(missing)
    stray = [f"{cid}: {line}" for cid, lines in sections.items() for line in lines
             if not line.startswith(RULE_LABELS)]
    assert not stray, "rule sections without a label:\n" + "\n".join(stray)


README_LINES = 130
"""The README is a front page; the manual lives in docs/, one page per topic."""
TWO_COMMANDS = (
    "make demo    # install, start the emulated lab fleet, scan it, write records, print the "
    "summary\n"
    "make test    # install (Debian daemons included), ruff, mypy, then the whole test suite\n")
"""The README's two commands, word for word: `.ci/run` runs exactly its test command."""


def test_the_readme_is_a_front_page() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_LINES, (
        f"README.md has {len(text.splitlines())} lines (at most {README_LINES}): move the "
        "detail into a page of docs/")
    assert TWO_COMMANDS in text


def test_every_docs_page_is_in_the_index() -> None:
    """docs/README.md links every page of docs/, so none is reachable only by chance."""
    index = REPO / "docs" / "README.md"
    linked = {(index.parent / match.group("target")).resolve()
              for match in LINK.finditer(index.read_text(encoding="utf-8"))}
    pages = sorted((REPO / "docs").glob("*.md"))
    missing = [page.name for page in pages if page != index and page.resolve() not in linked]
    assert not missing, "pages missing from docs/README.md: " + ", ".join(missing)


EXAMPLE_LAB = "127.169.0."
"""Where the API example's lab runs in this test: docs/api.md's 127.42.0.x moved here, so that
it never meets a lab someone started by hand."""
LAB_READY_SECONDS = 180.0


def _api_page() -> tuple[str, str, str]:
    """docs/api.md's example: (the personas its lab runs, the program, what it prints)."""
    page = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    personas = re.search(r"iotprobe lab up --personas (\S+)", page)
    program = re.search(r"```python\n(.*?)```", page, re.DOTALL)
    printed = re.search(r"It prints:\n\n```\n(.*?)```", page, re.DOTALL)
    assert personas and program and printed, "docs/api.md lost its lab command, example or output"
    return personas.group(1), program.group(1), printed.group(1)


@contextlib.contextmanager
def _lab(personas: str, tmp: Path) -> Iterator[None]:
    """The emulated lab of those personas in the foreground, from EXAMPLE_LAB + 1, stopped by
    its PID."""
    from probe.lab.lifecycle import READY

    log = tmp / "lab.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        lab = subprocess.Popen(
            [sys.executable, "-m", "probe", "lab", "up", "--foreground", "--personas", personas,
             "--base", f"{EXAMPLE_LAB}1", "--state-dir", str(tmp / "state")],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + LAB_READY_SECONDS
        while READY not in log.read_text(errors="replace"):
            assert lab.poll() is None and time.monotonic() < deadline, (
                "the lab did not start: " + log.read_text(errors="replace")[-2000:])
            time.sleep(0.1)
        yield
    finally:
        lab.terminate()
        try:
            lab.wait(30)
        except subprocess.TimeoutExpired:
            lab.kill()
            lab.wait(30)


def test_the_api_example_prints_what_the_page_says(tmp_path: Path) -> None:
    """docs/api.md's program, run against the lab the page starts, prints the page's output."""
    personas, program, printed = _api_page()
    moved = program.replace("127.42.0.", EXAMPLE_LAB)
    assert moved != program, "the example no longer names the lab's addresses"
    with _lab(personas, tmp_path):
        ran = subprocess.run([sys.executable, "-c", moved], cwd=REPO, capture_output=True,
                             text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.replace(EXAMPLE_LAB, "127.42.0.") == printed
