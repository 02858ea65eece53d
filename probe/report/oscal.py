"""NIST OSCAL assessment results (JSON): one result per device, an observation per check
result, a finding per control.

A control's finding is `satisfied` when none of its results on the device failed (waived
failures excepted) or errored, else `not-satisfied` with the reason `fail`, or `other` when
the device was inconclusive there. Every id is a uuid5, derived from the scan or sweep, the
device and the result, so the same records always give the same document. `import-ap` names
the profile as a URN: urn:iotprobe:profile:<id>:<digest>.

OSCAL ids are tokens and must start with a letter or `_`: a control id that does not (the
profiles' `27400-6.2`) gets a leading `_`; the original is kept in a `control` property.
Results are written one device at a time.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any, TextIO

from probe import __version__
from probe.escaping import shown
from probe.model import Result, Status
from probe.record.model import Record
from probe.report.source import RecordSource, stamp
from probe.stamps import STAMP

OSCAL_VERSION = "1.2.1"
NS = "urn:iotprobe:oscal"
"""The namespace of iotprobe's own OSCAL properties (docs/outputs.md): a URN like the profile's
`urn:iotprobe:profile:...`, since the project owns no web domain whose URL would stay put. Every
uuid of a document derives from it: it never changes."""
_ROOT = uuid.uuid5(uuid.NAMESPACE_URL, NS)
_TOKEN = re.compile(r"^[_A-Za-z][_A-Za-z0-9.\-]*$")
_SPACE = re.compile(r"\s+")


def token(control: str) -> str:
    """`control` as an OSCAL token (see the module doc)."""
    if _TOKEN.match(control):
        return control
    return "_" + re.sub(r"[^_A-Za-z0-9.\-]", "_", control)


def _line(text: str) -> str:
    """One line, no surrounding space: what OSCAL titles and property values allow."""
    return _SPACE.sub(" ", text).strip() or "-"


def _shown(value: Any) -> Any:
    """`value` with every string's control and bidi characters written as \\xNN/\\uNNNN."""
    if isinstance(value, str):
        return shown(value, lines=True)
    if isinstance(value, dict):
        return {key: _shown(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shown(item) for item in value]
    return value


def _prop(name: str, value: str) -> dict[str, str]:
    return {"name": name, "ns": NS, "value": _line(value)}


def profile_urn(profile: Mapping[str, str]) -> str:
    return f"urn:iotprobe:profile:{profile['id']}:{profile['digest']}"


def device_uuid(device_id: str) -> str:
    """The same device has the same inventory-item uuid in every document."""
    return str(uuid.uuid5(_ROOT, shown(f"device:{device_id}")))


def _address_prop(address: str) -> dict[str, str]:
    if ":" in address:
        return {"name": "ipv6-address", "value": address}
    if re.fullmatch(r"[0-9.]+", address):
        return {"name": "ipv4-address", "value": address}
    return {"name": "fqdn", "value": address}


def _observation(base: uuid.UUID, index: int, device: str, result: Result,
                 collected: str) -> dict[str, Any]:
    target, status = result.finding.target, result.status.value
    props = [_prop("check", result.check), _prop("target", target),
             _prop("control", result.control), _prop("status", status),
             _prop("severity", result.severity.value)]
    waived = result.waived
    if waived is not None:
        props.append(_prop("waived-until", waived.expires))
    observation: dict[str, Any] = {
        "uuid": str(uuid.uuid5(base, shown(f"observation:{index}:{result.check}:{target}"))),
        "title": _line(f"{result.check} {target}: {status}"),
        "description": result.finding.summary,
        "props": props,
        "methods": ["TEST"],
        "types": ["finding"] if result.status is Status.FAIL else ["control-objective"],
        "subjects": [{"subject-uuid": device, "type": "inventory-item"}],
        "relevant-evidence": [{"description": json.dumps(result.finding.evidence,
                                                         sort_keys=True)}],
        "collected": collected,
    }
    remarks = []
    if result.remediation:
        remarks.append(f"Remediation: {result.remediation}")
    if waived is not None:
        remarks.append(f"Waived until {waived.expires}: {waived.justification}")
    if remarks:
        observation["remarks"] = "\n\n".join(remarks)
    return observation


def _finding(base: uuid.UUID, control: str, device_id: str,
             members: list[tuple[Result, str]]) -> dict[str, Any]:
    failing = [r for r, _ in members if r.counts_as_failure]
    errors = [r for r, _ in members if r.status is Status.ERROR]
    if failing:
        state, reason = "not-satisfied", "fail"
        description = (f"{len(failing)} of {len(members)} result(s) fail: "
                       + ", ".join(sorted({r.check for r in failing})))
    elif errors:
        state, reason = "not-satisfied", "other"
        description = (f"inconclusive: {len(errors)} of {len(members)} result(s) could not be "
                       "decided: " + ", ".join(sorted({r.check for r in errors})))
    else:
        state, reason = "satisfied", "pass"
        description = f"none of {len(members)} result(s) fails"
    return {
        "uuid": str(uuid.uuid5(base, f"finding:{control}")),
        "title": _line(f"{control} on {device_id}: {state}"),
        "description": description,
        "props": [_prop("control", control)],
        "target": {"type": "objective-id", "target-id": token(control),
                   "status": {"state": state, "reason": reason}},
        "related-observations": [{"observation-uuid": obs} for _, obs in members],
    }


def _result(document: uuid.UUID, record: Record) -> dict[str, Any]:
    device = record.device
    verdict = record.verdict.value
    finished = record.finished_at.strftime(STAMP)
    base = uuid.uuid5(document, shown(f"result:{device.id}"))
    subject = device_uuid(device.id)
    observations = []
    by_control: dict[str, list[tuple[Result, str]]] = {}
    for index, result in enumerate(record.results):
        observation = _observation(base, index, subject, result, finished)
        observations.append(observation)
        by_control.setdefault(result.control, []).append((result, observation["uuid"]))
    item_props = [_address_prop(device.address), _prop("device-id", device.id)]
    if device.device_class:
        item_props.append(_prop("device-class", device.device_class))
    out: dict[str, Any] = {
        "uuid": str(base),
        "title": _line(f"iotprobe: {device.id} ({device.address}): {verdict}"),
        "description": f"Conformance of device {device.id} to profile "
                       f"{record.profile.id} {record.profile.version}: {verdict}.",
        "start": record.started_at.strftime(STAMP),
        "end": finished,
        "props": [_prop("verdict", verdict),
                  _prop("intrusive", str(record.probe.intrusive).lower())],
        "local-definitions": {"inventory-items": [{
            "uuid": subject, "description": f"device {device.id}", "props": item_props}]},
        "reviewed-controls": {"control-selections": [{"include-controls": [
            {"control-id": token(c)} for c in sorted(by_control)]}]},
    }
    if observations:
        out["observations"] = observations
        out["findings"] = [_finding(base, c, device.id, by_control[c])
                           for c in sorted(by_control)]
    return out


def _empty(document: uuid.UUID, source: RecordSource) -> dict[str, Any]:
    return {
        "uuid": str(uuid.uuid5(document, "result:none")),
        "title": "iotprobe: no device", "description": f"The {source.title} held no device.",
        "start": stamp(source.generated),
        "reviewed-controls": {"control-selections": [{"include-all": {}}]},
    }


def write_oscal(source: RecordSource, out: TextIO) -> None:
    """The OSCAL assessment-results document of `source`'s records."""
    document = uuid.uuid5(_ROOT, f"assessment-results:{source.identity}")
    profile = source.profile
    head = {
        "uuid": str(document),
        "metadata": {
            "title": _line(f"iotprobe assessment results: {source.title}, profile "
                           f"{profile['id']} {profile['version']}"),
            "last-modified": stamp(source.generated),
            "version": __version__,
            "oscal-version": OSCAL_VERSION,
            "props": [_prop("profile-digest", profile["digest"])],
        },
        "import-ap": {"href": profile_urn(profile),
                      "remarks": "The iotprobe profile the devices were assessed against."},
    }
    out.write('{"assessment-results": {\n')
    for key, value in head.items():
        out.write(f"{json.dumps(key)}: {json.dumps(_shown(value), indent=2)},\n")
    out.write('"results": [\n')
    written = 0
    for record in source.records():
        out.write(",\n" if written else "")
        out.write(json.dumps(_shown(_result(document, record)), indent=2))
        written += 1
    if not written:
        out.write(json.dumps(_shown(_empty(document, source)), indent=2))
    out.write("\n]}}\n")
