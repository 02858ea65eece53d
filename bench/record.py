"""Benchmark (not a test): the record path of one device, build + validate + atomic write.

Run from the repository: `.venv/bin/python bench/record.py` (options: `--records`, `--repeats`,
`--record`). The outcomes are those of a real scan: `bench/data/bench-device.record.json` is the
record of one `bench-device` persona scanned with the built-in iso27400 profile (`iotprobe lab
up --devices 1 --personas bench-device`, then `iotprobe scan`), turned back into its
`DeviceOutcome` and given a new device id per record, so every record is a file of its own, as
in a fleet. Each step runs over all the records; the best of `--repeats` rounds is kept, in CPU
milliseconds per record (process time: the file system's work in the kernel counts, other jobs
on the machine do not).

- **before**: the pure-Python jsonschema Draft 2020-12 validator with format checking (built
  once), and `json.dumps(record, indent=2)` through the same atomic writer;
- **now**: `probe.record.validate_record` and `probe.record.write_record`.

Both build the record with `probe.record.build_record`. Every record written in the "now" rounds
is read back and checked against the shipped schema by the pure-Python validator.
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

from probe.engine import DeviceOutcome
from probe.profile_loader import load_profile
from probe.record import (
    build_record,
    record_filename,
    schema,
    validate_record,
    write_atomic,
    write_record,
)
from probe.run import outcome_of_record

REPO = Path(__file__).resolve().parent.parent
RECORD = REPO / "bench" / "data" / "bench-device.record.json"

Step = Callable[[list[DeviceOutcome], list[dict[str, Any]], Path], None]


def outcomes_of(record_path: Path, count: int) -> list[DeviceOutcome]:
    outcome = outcome_of_record(json.loads(record_path.read_text(encoding="utf-8")))
    return [dataclasses.replace(outcome, device=dataclasses.replace(
        outcome.device, id=f"{outcome.device.id}-{n:05d}")) for n in range(count)]


def best_ms(step: Step, outcomes: list[DeviceOutcome], records: list[dict[str, Any]],
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

    profile = load_profile("iso27400")
    outcomes = outcomes_of(args.record, args.records)
    records = [build_record(o, profile) for o in outcomes]
    reference = jsonschema.Draft202012Validator(
        schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)

    def build(outcomes: list[DeviceOutcome], _: list[dict[str, Any]], __: Path) -> None:
        for outcome in outcomes:
            build_record(outcome, profile)

    def validate_before(_: list[DeviceOutcome], records: list[dict[str, Any]],
                        __: Path) -> None:
        for record in records:
            reference.validate(record)

    def validate_now(_: list[DeviceOutcome], records: list[dict[str, Any]], __: Path) -> None:
        for record in records:
            validate_record(record)

    def write_before(_: list[DeviceOutcome], records: list[dict[str, Any]],
                     outdir: Path) -> None:
        for record in records:
            path = outdir / record_filename(record["device"]["id"])
            write_atomic(path, json.dumps(record, indent=2) + "\n")

    def write_now(_: list[DeviceOutcome], records: list[dict[str, Any]], outdir: Path) -> None:
        for record in records:
            write_record(outdir, record)

    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="iotprobe-bench-record-") as tmp:
        before_dir, now_dir = Path(tmp) / "before", Path(tmp) / "now"
        built = best_ms(build, outcomes, records, now_dir, args.repeats)
        rows.append(("build_record", built, built))
        rows.append(("validate", best_ms(validate_before, outcomes, records, before_dir,
                                         args.repeats),
                     best_ms(validate_now, outcomes, records, now_dir, args.repeats)))
        rows.append(("serialize + atomic write", best_ms(write_before, outcomes, records,
                                                         before_dir, args.repeats),
                     best_ms(write_now, outcomes, records, now_dir, args.repeats)))
        written = sorted((now_dir / str(args.repeats - 1)).glob("*.record.json"))
        for path in written:
            reference.validate(json.loads(path.read_text(encoding="utf-8")))
        if [json.loads(p.read_text(encoding="utf-8")) for p in written] != sorted(
                records, key=lambda r: record_filename(r["device"]["id"])):
            print("the records written differ from the records built", file=sys.stderr)
            return 1
    before_total = sum(before for _, before, _ in rows)
    now_total = sum(now for _, _, now in rows)
    rows.append(("total", before_total, now_total))

    size = len(json.dumps(records[0], indent=2))
    print(f"{len(outcomes)} records of {len(records[0]['results'])} results "
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
