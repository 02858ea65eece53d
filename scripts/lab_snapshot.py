"""Compare the records of two lab self-tests: did a change alter what iotprobe says?

    python scripts/lab_snapshot.py snapshot STATE/selftest -o base1.json
    python scripts/lab_snapshot.py noise base1.json base2.json base3.json -o noise.json
    python scripts/lab_snapshot.py diff base1.json after.json --noise noise.json [--allow F]

`snapshot` reads the `default/` and `intrusive/` record directories `iotprobe lab selftest
--state-dir STATE` leaves in STATE/selftest (STATE itself is accepted too), or any directory of
`*.record.json`. It keys every record by scan, device id and `check|target`, so the order of
devices and results does not matter, and drops what changes on every run by construction
(`started_at`, `finished_at`, `duration_ms`, `probe.version`).

`noise` lists the paths where snapshots of the same commit differ (nonces, measured timings,
...); give it three runs or more, as a value two runs happen to share still varies. It refuses
a result's `status`, a device's `verdict` or a result or device present in one run only: a
verdict that changes between two runs of one commit is a bug to fix, never noise. A noisy path
covers what lies below it and the same field in any item of its lists (`attempts[*].rtt_ms`),
within its own scan, device and result. `diff` prints every other difference, one line each,
`device scan check|target path: before -> after` (`-` for the device's own fields, `*` for a
whole result or device), and exits 1 when there is one. `--allow` is a YAML or JSON list of
the intended changes: `{device?, scan?, check?, target?, path, reason}`, where `path` and the
optional fields are globs (`*` any run of characters, `?` one character).

Standalone on purpose: it imports nothing from `probe`, so one copy reads the records of any
commit.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

SCANS = ("default", "intrusive")
"""The record directories `iotprobe lab selftest` writes under STATE/selftest."""
PLAIN_SCAN = "records"
"""The scan name of a plain record directory."""
DEVICE_KEY = "-"
"""The result key under which a device's own fields (verdict, services, ...) are compared."""
WHOLE = "*"
"""The path shown for a result or device present on one side only."""
DROPPED = ("started_at", "finished_at")
VALUE_WIDTH = 160
EXIT_DIFFERENT = 1
EXIT_INPUT = 2


class SnapshotError(Exception):
    """An input the script cannot use: a missing directory, a broken record or list."""


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Any = _Absent()

Entry = tuple[str, str, str]
"""(scan, device id, `check|target` or DEVICE_KEY): one comparable unit of a snapshot."""


@dataclass(frozen=True)
class Difference:
    scan: str
    device: str
    key: str
    path: str
    before: Any
    after: Any

    @property
    def decisive(self) -> bool:
        """A status, a verdict, or a result or device present on one side only."""
        return self.path == "" or self.path == ("verdict" if self.key == DEVICE_KEY
                                                else "status")

    def line(self) -> str:
        return (f"{_text(self.device)} {_text(self.scan)} {_text(self.key)} "
                f"{self.path or WHOLE}: {_shown(self.before, self.key)} -> "
                f"{_shown(self.after, self.key)}")


@dataclass(frozen=True)
class Allowed:
    """One intended change of an allow list; every field a compiled glob."""
    path: re.Pattern[str]
    reason: str
    device: re.Pattern[str] | None
    scan: re.Pattern[str] | None
    check: re.Pattern[str] | None
    target: re.Pattern[str] | None
    source: str

    def covers(self, diff: Difference) -> bool:
        check, _, target = diff.key.partition("|")
        wanted = ((self.path, diff.path), (self.device, diff.device), (self.scan, diff.scan),
                  (self.check, check), (self.target, target))
        return all(glob is None or glob.fullmatch(value) for glob, value in wanted)


# -- snapshot ------------------------------------------------------------------------------

def record_dirs(directory: Path) -> dict[str, Path]:
    """The scans under DIR: the self-test's default/ and intrusive/ (also when DIR is the
    state directory holding selftest/), else DIR itself as one scan."""
    for base in (directory, directory / "selftest"):
        found = {name: base / name for name in SCANS if (base / name).is_dir()}
        if found:
            return found
    if not directory.is_dir():
        raise SnapshotError(f"{directory}: not a directory")
    return {PLAIN_SCAN: directory}


def result_key(result: Mapping[str, Any], seen: set[str]) -> str:
    """`check|target`, with `#2`, `#3` ... for a repeat of the same pair in one record."""
    base = f"{result['check']}|{result['target']}"
    key, n = base, 1
    while key in seen:
        n += 1
        key = f"{base}#{n}"
    seen.add(key)
    return key


def device_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record without its run-dependent fields, results keyed, services in port order."""
    view = {k: v for k, v in record.items() if k not in DROPPED and k != "results"}
    view["probe"] = {k: v for k, v in record["probe"].items() if k != "version"}
    view["services"] = sorted(record["services"], key=lambda s: json.dumps(
        [s.get("transport"), s.get("port"), s.get("protocol"), s.get("tls")]))
    seen: set[str] = set()
    view["results"] = {
        result_key(result, seen): {k: v for k, v in result.items()
                                   if k not in ("check", "target", "duration_ms")}
        for result in record["results"]}
    return view


def scan_view(directory: Path) -> dict[str, Any]:
    devices: dict[str, Any] = {}
    for path in sorted(directory.glob("*.record.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            device_id = record["device"]["id"]
            view = device_view(record)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SnapshotError(f"{path}: not an iotprobe record ({exc!r})") from exc
        if device_id in devices:
            raise SnapshotError(f"{path}: device {device_id!r} has a second record")
        devices[device_id] = view
    return devices


def snapshot(directory: Path) -> dict[str, Any]:
    """{scan: {device id: device view}} of a self-test or record directory."""
    scans = {name: scan_view(path) for name, path in record_dirs(directory).items()}
    if not any(scans.values()):
        raise SnapshotError(f"{directory}: no *.record.json found")
    return scans


# -- comparing -----------------------------------------------------------------------------

def entries(snap: Mapping[str, Any]) -> dict[Entry, Any]:
    """Every result, and every device's own fields, under its (scan, device, key)."""
    out: dict[Entry, Any] = {}
    for scan, devices in snap.items():
        for device_id, view in devices.items():
            out[(scan, device_id, DEVICE_KEY)] = {k: v for k, v in view.items()
                                                  if k != "results"}
            for key, result in view["results"].items():
                out[(scan, device_id, key)] = result
    return out


def _step(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if re.fullmatch(r"[A-Za-z0-9_-]+", key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def changes(before: Any, after: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, before, after) of every leaf that differs; a side's missing key or list item is
    ABSENT. `1` and `1.0`, `1` and `true` differ."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(before.keys() | after.keys()):
            yield from changes(before.get(key, ABSENT), after.get(key, ABSENT), _step(path, key))
    elif isinstance(before, list) and isinstance(after, list):
        for i in range(max(len(before), len(after))):
            yield from changes(before[i] if i < len(before) else ABSENT,
                               after[i] if i < len(after) else ABSENT, _step(path, i))
    elif type(before) is not type(after) or before != after:
        yield path, before, after


def differences(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Difference]:
    old, new = entries(before), entries(after)
    return [Difference(*entry, path, a, b)
            for entry in sorted(old.keys() | new.keys())
            for path, a, b in changes(old.get(entry, ABSENT), new.get(entry, ABSENT))]


def _text(text: str) -> str:
    """A device-supplied name as one printable token."""
    return text if re.fullmatch(r"[\x21-\x7e]+", text) else json.dumps(text)


def _shown(value: Any, key: str) -> str:
    """A value as bounded, escaped JSON; a whole result as its status, a device as its
    verdict."""
    if value is ABSENT:
        return repr(ABSENT)
    if isinstance(value, dict) and ("status" in value or "verdict" in value):
        value = value.get("status" if key != DEVICE_KEY else "verdict", value)
    text = json.dumps(value, sort_keys=True, ensure_ascii=True)
    return text if len(text) <= VALUE_WIDTH else text[:VALUE_WIDTH - 3] + "..."


# -- noise ---------------------------------------------------------------------------------

def noise(snapshots: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, str]],
                                                           list[Difference]]:
    """The paths where the first snapshot differs from any other, and the decisive
    differences among them (which must not be noise)."""
    found = [d for other in snapshots[1:] for d in differences(snapshots[0], other)]
    paths = sorted({(d.scan, d.device, d.key, d.path) for d in found if not d.decisive})
    return ([{"scan": s, "device": dev, "key": k, "path": p} for s, dev, k, p in paths],
            [d for d in found if d.decisive])


def any_item(path: str) -> str:
    """The path with every list index as `[*]`: the same field of any item of a list."""
    return re.sub(r"\[[0-9]+\]", "[*]", path)


def is_noise(diff: Difference, noisy: Mapping[Entry, Sequence[str]]) -> bool:
    """The difference is at, or below, a path listed as noise for its result, in any item of
    the lists on the way (a timing noisy in one login attempt is noisy in all of them)."""
    path = any_item(diff.path)
    return any(path == known or path.startswith((known + ".", known + "["))
               for known in map(any_item, noisy.get((diff.scan, diff.device, diff.key), ())))


def load_noise(path: Path) -> dict[Entry, list[str]]:
    data = _load_json(path)
    noisy: dict[Entry, list[str]] = {}
    try:
        for item in data["noise"]:
            noisy.setdefault((item["scan"], item["device"], item["key"]), []).append(
                item["path"])
    except (KeyError, TypeError) as exc:
        raise SnapshotError(f"{path}: not a noise file written by `noise` ({exc!r})") from exc
    return noisy


# -- allow lists ---------------------------------------------------------------------------

def glob(pattern: str) -> re.Pattern[str]:
    """`*` any run of characters (dots and brackets included), `?` one; the rest literal."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                              for c in pattern), re.DOTALL)


def load_allow(path: Path) -> list[Allowed]:
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (OSError, YAMLError) as exc:
        raise SnapshotError(f"{path}: cannot read the allow list ({exc})") from exc
    if not isinstance(data, list):
        raise SnapshotError(f"{path}: the allow list must be a list of entries")
    return [_allowed(item, f"{path} entry {n}") for n, item in enumerate(data, 1)]


def _allowed(item: Any, where: str) -> Allowed:
    fields = ("device", "scan", "check", "target", "path", "reason")
    if not isinstance(item, dict) or set(item) - set(fields):
        raise SnapshotError(f"{where}: an entry is a mapping of {', '.join(fields)}")
    if not all(isinstance(v, str) for v in item.values()):
        raise SnapshotError(f"{where}: every field is a string")
    if not item.get("path") or not item.get("reason", "").strip():
        raise SnapshotError(f"{where}: `path` and a `reason` are required")
    optional = {f: glob(item[f]) if f in item else None
                for f in ("device", "scan", "check", "target")}
    return Allowed(path=glob(item["path"]), reason=item["reason"], source=where, **optional)


# -- command line --------------------------------------------------------------------------

def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"{path}: cannot read ({exc})") from exc


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                    encoding="utf-8")


def cmd_snapshot(args: argparse.Namespace) -> int:
    snap = snapshot(args.dir)
    _write_json(args.out, snap)
    counts = ", ".join(f"{scan} {len(devices)}" for scan, devices in snap.items())
    print(f"wrote {args.out}: devices per scan: {counts}")
    return 0


def cmd_noise(args: argparse.Namespace) -> int:
    paths, flaky = noise([_load_json(p) for p in args.snapshots])
    if flaky:
        for diff in flaky:
            print(f"FLAKY, not noise: {diff.line()}")
        print(f"{len(flaky)} status/verdict difference(s) between runs of one commit: fix "
              f"them first; {args.out} not written", file=sys.stderr)
        return EXIT_DIFFERENT
    _write_json(args.out, {"snapshots": [str(p) for p in args.snapshots], "noise": paths})
    print(f"wrote {args.out}: {len(paths)} noisy path(s)")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    noisy = load_noise(args.noise)
    allowed = load_allow(args.allow) if args.allow else []
    found = differences(_load_json(args.before), _load_json(args.after))
    used: set[str] = set()
    shown = quiet = 0
    for diff in found:
        covering = [a for a in allowed if a.covers(diff)]
        used.update(a.source for a in covering)
        if covering or (not diff.decisive and is_noise(diff, noisy)):
            quiet += 1
            continue
        shown += 1
        print(diff.line())
    for entry in allowed:
        if entry.source not in used:
            print(f"unused allow entry: {entry.source} ({entry.reason})", file=sys.stderr)
    print(f"{shown} difference(s); {quiet} noise or allowed", file=sys.stderr)
    return EXIT_DIFFERENT if shown else 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="lab_snapshot.py",
                                  description=(__doc__ or "").split("\n\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    snap = sub.add_parser("snapshot", help="one JSON of a self-test's or a directory's records")
    snap.add_argument("dir", type=Path)
    snap.add_argument("-o", "--out", type=Path, required=True)
    snap.set_defaults(run=cmd_snapshot)
    noisy = sub.add_parser("noise", help="paths that differ between runs of one commit")
    noisy.add_argument("snapshots", type=Path, nargs="+")
    noisy.add_argument("-o", "--out", type=Path, required=True)
    noisy.set_defaults(run=cmd_noise)
    diff = sub.add_parser("diff", help="every difference that is neither noise nor allowed")
    diff.add_argument("before", type=Path)
    diff.add_argument("after", type=Path)
    diff.add_argument("--noise", type=Path, required=True)
    diff.add_argument("--allow", type=Path)
    diff.set_defaults(run=cmd_diff)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "noise" and len(args.snapshots) < 2:
        print("noise: give at least two snapshots of the same commit", file=sys.stderr)
        return EXIT_INPUT
    try:
        code: int = args.run(args)
    except SnapshotError as exc:
        print(f"lab_snapshot: {exc}", file=sys.stderr)
        return EXIT_INPUT
    return code


if __name__ == "__main__":
    sys.exit(main())
