"""Benchmark (not a test): the record path of one device, build + validate + atomic write.

Run from the repository: `.venv/bin/python bench/record.py` (options: `--records`, `--repeats`,
`--record`). The records are those of a real scan: `bench/data/bench-device.record.json` is the
record of one `bench-device` persona scanned with the built-in iso27400 profile (`iotprobe lab
up --devices 1 --personas bench-device`, then `iotprobe scan`), read back as a `Record` and given
a new device id per record, so every record is a file of its own, as in a fleet. Each step runs
over all the records; the best of `--repeats` rounds is kept, in CPU milliseconds per record
(process time: the file system's work in the kernel counts, other jobs on the machine do not).

- **before**: the pure-Python jsonschema Draft 2020-12 validator with format checking (built
  once), and `json.dumps(record, indent=2)` through the same atomic writer;
- **now**: `probe.record.schema.validate_record` and `probe.record.files.write_record`.

Both build the record as the engine does (`probe.record.model.record_of`: redaction, escaping
and bounds) and lay it out with `Record.to_json()`. Every record written in the "now" rounds is
read back and checked against the shipped schema by the pure-Python validator.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema

from probe.profile_loader import load_profile
from probe.record.files import read_record, record_filename, write_atomic, write_record
from probe.record.model import ProbeInfo, ProfileRef, Record, record_of
from probe.record.schema import schema, validate_record

REPO = Path(__file__).resolve().parent.parent
RECORD = REPO / "bench" / "data" / "bench-device.record.json"

Step = Callable[[list[Record], list[dict[str, Any]], Path], None]


def outcomes_of(record_path: Path, count: int) -> list[Record]:
    record = read_record(record_path)
    return [dataclasses.replace(record, device=dataclasses.replace(
        record.device, id=f"{record.device.id}-{n:05d}")) for n in range(count)]


def built(outcome: Record, profile: ProfileRef) -> Record:
    """`outcome` built again as the engine builds a record (redacted, escaped, bounded)."""
    return record_of(device=outcome.device, address=outcome.address, profile=profile,
                     probe=ProbeInfo(outcome.probe.version, outcome.probe.intrusive),
                     started_at=outcome.started_at, finished_at=outcome.finished_at,
                     services=outcome.services, results=outcome.results)


def best_ms(step: Step, outcomes: list[Record], records: list[dict[str, Any]],
            outdir: Path, repeats: int) -> float:
    """The fastest of `repeats` rounds of `step` over every record, in CPU ms per record. Each
    round writes into a directory of its own, `outdir/<round>`: new files, as in a fleet."""
    best = float("inf")
    for round_ in range(repeats):
        start = time.process_time()
        step(outcomes, records, outdir / str(round_))
        best = min(best, time.process_time() - start)
    return best * 1000 / len(outcomes)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--record", type=Path, default=RECORD,
                        help="a record whose outcome every benchmarked record repeats")
    args = parser.parse_args(argv)

    profile = ProfileRef(**load_profile("iso27400").meta())
    outcomes = outcomes_of(args.record, args.records)
    records = [built(o, profile).to_json() for o in outcomes]
    reference = jsonschema.Draft202012Validator(
        schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)

    def build(outcomes: list[Record], _: list[dict[str, Any]], __: Path) -> None:
        for outcome in outcomes:
            built(outcome, profile).to_json()

    def validate_before(_: list[Record], records: list[dict[str, Any]],
                        __: Path) -> None:
        for record in records:
            reference.validate(record)

    def validate_now(_: list[Record], records: list[dict[str, Any]], __: Path) -> None:
        for record in records:
            validate_record(record)

    def write_before(outcomes: list[Record], records: list[dict[str, Any]],
                     outdir: Path) -> None:
        for outcome, record in zip(outcomes, records, strict=True):
            path = outdir / record_filename(outcome.device.id)
            write_atomic(path, json.dumps(record, indent=2) + "\n")

    def write_now(outcomes: list[Record], records: list[dict[str, Any]], outdir: Path) -> None:
        for outcome, record in zip(outcomes, records, strict=True):
            write_record(outdir, outcome, record)

    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="iotprobe-bench-record-") as tmp:
        before_dir, now_dir = Path(tmp) / "before", Path(tmp) / "now"
        build_ms = best_ms(build, outcomes, records, now_dir, args.repeats)
        rows.append(("record_of + to_json", build_ms, build_ms))
        rows.append(("validate", best_ms(validate_before, outcomes, records, before_dir,
                                         args.repeats),
                     best_ms(validate_now, outcomes, records, now_dir, args.repeats)))
        rows.append(("serialize + atomic write", best_ms(write_before, outcomes, records,
                                                         before_dir, args.repeats),
                     best_ms(write_now, outcomes, records, now_dir, args.repeats)))
        written = sorted((now_dir / str(args.repeats - 1)).glob("*.record.json"))
        for path in written:
            reference.validate(json.loads(path.read_text(encoding="utf-8")))
        by_file = sorted(zip(outcomes, records, strict=True),
                         key=lambda pair: record_filename(pair[0].device.id))
        if [json.loads(p.read_text(encoding="utf-8")) for p in written] != [
                record for _, record in by_file]:
            print("the records written differ from the records built", file=sys.stderr)
            return 1
    before_total = sum(before for _, before, _ in rows)
    now_total = sum(now for _, _, now in rows)
    rows.append(("total", before_total, now_total))

    size = len(json.dumps(records[0], indent=2))
    print(f"{len(outcomes)} records of {len(outcomes[0].results)} results "
          f"({size / 1024:.0f} KiB), best of {args.repeats} rounds, CPU ms per record; "
          f"{len(written)} written, all valid by the reference validator")
    print()
    print("| step | before ms | now ms | speed-up |")
    print("|---|---:|---:|---:|")
    for name, before, now in rows:
        print(f"| {name} | {before:.3f} | {now:.3f} | {before / now:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
