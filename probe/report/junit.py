"""JUnit XML for CI systems: one <testsuite> per device, one <testcase> per check result.

A test case's classname is the device id and its name the check id and target. A failure
carries the summary as its message, the severity as its type, and the evidence, remediation and
references as its text; an `error` result is an <error>; `skipped`, `not_applicable` and waived
failures are <skipped> with the reason. Every failure is reported, whatever `--fail-on` says:
the exit code is the gate, the report the explanation.

The document is written device by device with xml.etree (a first pass over the records counts
the totals of the root element), so a fleet's report never sits in memory whole. Characters
XML cannot carry, and every other control or bidi character (from a banner, a topic), are
written as \\xNN or \\uNNNN (probe.escaping.shown), as in the records.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from typing import TextIO
from xml.sax.saxutils import quoteattr

from probe.escaping import shown
from probe.model import Result, Status
from probe.record.model import Record
from probe.report.source import RecordSource
from probe.stamps import STAMP


def clean(text: str) -> str:
    """`text` with every character XML 1.0 forbids, and every other control or bidi
    character, replaced by a visible \\xNN or \\uNNNN escape; tab and line feed kept."""
    return shown(text, lines=True)


def _kind(result: Result) -> str:
    status = result.status
    if status is Status.FAIL:
        return "skipped" if result.waived is not None else "failure"
    if status is Status.ERROR:
        return "error"
    if status in (Status.SKIPPED, Status.NOT_APPLICABLE):
        return "skipped"
    return "pass"


def _counts(record: Record) -> Counter[str]:
    kinds = Counter(_kind(r) for r in record.results)
    kinds["tests"] = len(record.results)
    return kinds


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.3f}"


def _details(result: Result) -> str:
    parts = [result.finding.summary, "", "evidence:",
             json.dumps(result.finding.evidence, indent=2, sort_keys=True)]
    if result.remediation:
        parts += ["", f"remediation: {result.remediation}"]
    references = "; ".join(f"{k} {', '.join(v)}" for k, v in result.references.items())
    if references:
        parts += ["", f"references: {references}"]
    return clean("\n".join(parts))


def _case(device_id: str, result: Result) -> ET.Element:
    case = ET.Element("testcase", {
        "classname": clean(device_id), "name": clean(f"{result.check} {result.finding.target}"),
        "time": _seconds(result.duration_ms)})
    kind = _kind(result)
    summary = clean(result.finding.summary)
    waived = result.waived
    if kind == "failure":
        failure = ET.SubElement(case, "failure", {"message": summary,
                                                  "type": result.severity.value})
        failure.text = _details(result)
    elif kind == "error":
        reason = result.finding.evidence.get("reason")
        error = ET.SubElement(case, "error", {"message": summary,
                                              "type": clean(str(reason or "error"))})
        error.text = _details(result)
    elif kind == "skipped":
        if waived is not None and result.status is Status.FAIL:
            message = (f"waived until {waived.expires}: {clean(waived.justification)} "
                       f"(failure: {summary})")
        elif result.status is Status.NOT_APPLICABLE:
            message = f"not applicable: {summary}"
        else:
            message = summary
        ET.SubElement(case, "skipped", {"message": message})
    else:
        ET.SubElement(case, "system-out").text = summary
    return case


def _suite(index: int, record: Record) -> ET.Element:
    device = record.device
    counts = _counts(record)
    elapsed = sum(r.duration_ms for r in record.results)
    suite = ET.Element("testsuite", {
        "id": str(index), "name": clean(device.id), "package": "iotprobe",
        "hostname": clean(device.address),
        "timestamp": record.started_at.strftime(STAMP).rstrip("Z"),
        "tests": str(counts["tests"]), "failures": str(counts["failure"]),
        "errors": str(counts["error"]), "skipped": str(counts["skipped"]),
        "time": _seconds(elapsed)})
    properties = ET.SubElement(suite, "properties")
    profile = record.profile
    for name, value in (("verdict", record.verdict.value), ("address", device.address),
                        ("class", device.device_class), ("profile", profile.id),
                        ("profile.version", profile.version),
                        ("profile.digest", profile.digest),
                        ("finished_at", record.finished_at.strftime(STAMP))):
        if value:
            ET.SubElement(properties, "property", {"name": name, "value": clean(str(value))})
    for result in record.results:
        suite.append(_case(device.id, result))
    return suite


def write_junit(source: RecordSource, out: TextIO) -> None:
    """The JUnit XML document of `source`'s records."""
    totals: Counter[str] = Counter()
    elapsed = 0
    for record in source.records():
        totals.update(_counts(record))
        elapsed += sum(r.duration_ms for r in record.results)
    attributes = {
        "name": f"iotprobe {source.profile['id']}: {source.title}",
        "tests": str(totals["tests"]), "failures": str(totals["failure"]),
        "errors": str(totals["error"]), "skipped": str(totals["skipped"]),
        "time": _seconds(elapsed),
    }
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites')
    for name, value in attributes.items():
        out.write(f" {name}={quoteattr(clean(value))}")
    out.write(">\n")
    for index, record in enumerate(source.records()):
        out.write(ET.tostring(_suite(index, record), encoding="unicode"))
        out.write("\n")
    out.write("</testsuites>\n")
