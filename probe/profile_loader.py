"""Profiles from YAML: validation against the check catalogue, `extends` chains, the digest.

A profile file names its controls and, under each, its checks with severity, parameters,
per-class parameters and references to other frameworks. `extends` (a built-in id or a path
relative to the file, or a list of them) merges the parents left to right, then the file itself:
mappings merge deeply, `references` are replaced per framework, scalars are replaced, waivers
accumulate and `disabled` removes checks. Every problem is an InputError naming the file, the
line and the field.
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, Field, PlainValidator, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from probe.checks import catalogue as registry
from probe.checks.base import Check
from probe.errors import InputError
from probe.model import Severity, Waiver
from probe.profile import CheckConfig, Control, Profile
from probe.yamldoc import (
    ID,
    PortSpec,
    StrictModel,
    Where,
    deep_merge,
    describe,
    fail,
    field_name,
    load_yaml_mapping,
    show,
    token,
)

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def builtin_dir() -> Path:
    """Where the built-in profiles are: inside the installed wheel, else the source tree."""
    package = Path(__file__).resolve().parent
    packaged = package / "builtin_profiles"
    return packaged if packaged.is_dir() else package.parent / "profiles"


def builtin_profile_ids() -> list[str]:
    return sorted(path.stem for path in builtin_dir().glob("*.yaml"))


def load_profile(ref: str, *, catalogue: Mapping[str, Check] | None = None) -> Profile:
    """The resolved profile `ref`: a built-in id or the path of a YAML file.

    A built-in id wins over a file of the same name in the working directory (`./name` is the
    file).

    `catalogue` is the check catalogue to validate against (default: probe.checks.catalogue()).
    """
    if catalogue is None:
        catalogue = registry.catalogue()
    return _Resolver(catalogue).profile([_find_option(ref)])


def load_profiles(refs: Sequence[str], *,
                  catalogue: Mapping[str, Check] | None = None) -> Profile:
    """The profiles `refs` (as given by repeated `-p`) merged left to right into one.

    One ref gives that profile; several give a profile with the ids, titles and versions
    joined by `+`, as if a profile extended them all in that order.
    """
    if not refs:
        raise InputError("name at least one profile", field="PROFILE")
    if catalogue is None:
        catalogue = registry.catalogue()
    return _Resolver(catalogue).profile([_find_option(ref) for ref in refs])


def _find_option(ref: str) -> _Place:
    place = _find(ref, None)
    if place is None:
        raise InputError(f"unknown profile {ref!r}: neither a built-in profile "
                         f"({', '.join(builtin_profile_ids())}) nor a file", field="PROFILE")
    return place


# --------------------------------------------------------------------------------------------
# The file format
# --------------------------------------------------------------------------------------------


def _text(value: str) -> str:
    if not value.strip():
        fail("must not be empty")
    return value


def _extends(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        fail("expected a profile id or path, or a list of them; got an empty list")
    for item in items:
        if not isinstance(item, str) or not item.strip():
            fail(f"expected a profile id or path, or a list of them; got {describe(item)}")
    return tuple(items)


def _expires(value: Any) -> str:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        got = show(value) if isinstance(value, str) else describe(value)
        fail(f"expected a date as YYYY-MM-DD, got {got}")
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        fail(f"{show(value)} is not a valid date")


Text = Annotated[str, AfterValidator(_text)]
CheckId = Annotated[str, AfterValidator(token("check id"))]
ClassName = Annotated[str, AfterValidator(token("device class"))]
Framework = Literal["iso-27400-2022", "etsi-en-303-645", "owasp-isvs", "iec-62443-4-2",
                    "nistir-8259a"]
FRAMEWORKS: tuple[str, ...] = get_args(Framework)
"""The reference keys a profile may use (see docs/crosswalk.md)."""
References = dict[Framework, Annotated[list[Text], Field(min_length=1)]]
SeverityName = Literal["critical", "high", "medium", "low"]


class _CheckSpec(StrictModel):
    severity: SeverityName | None = None
    params: dict[str, Any] | None = None
    classes: dict[ClassName, dict[str, Any]] | None = None
    references: References | None = None


class _ControlSpec(StrictModel):
    title: Text | None = None
    references: References | None = None
    checks: dict[CheckId, _CheckSpec | None] | None = None


class _WaiverSpec(StrictModel):
    check: CheckId
    device: Annotated[str, AfterValidator(token("device id"))] | None = None
    device_class: ClassName | None = Field(None, alias="class")
    justification: Text
    expires: Annotated[str, PlainValidator(_expires)]

    @model_validator(mode="after")
    def _one_scope(self) -> _WaiverSpec:
        if (self.device is None) == (self.device_class is None):
            raise PydanticCustomError(
                "input", "a waiver names exactly one of `device` and `class`")
        return self


class _Scan(StrictModel):
    tcp_ports: PortSpec | None = None


class _ProfileFile(StrictModel):
    id: Annotated[str, AfterValidator(token("profile id"))]
    title: Text | None = None
    version: Text | None = None
    description: str | None = None
    extends: Annotated[tuple[str, ...], PlainValidator(_extends)] | None = None
    intrusive: bool | None = None
    scan: _Scan | None = None
    controls: dict[Annotated[str, AfterValidator(token("control id"))],
                   _ControlSpec | None] | None = None
    disabled: list[CheckId] | None = None
    waivers: list[_WaiverSpec] | None = None


# --------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Place:
    """A profile file: where it is, how messages name it, what the record calls it."""

    path: Path
    file: str
    source: str
    builtin: str | None = None

    @property
    def key(self) -> str:
        return str(self.path.resolve())


@dataclass
class _Check:
    control: str
    origin: tuple[str, int | None, str]
    """Where the check was last configured: file, line, field."""
    severity: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    references: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class _Control:
    title: str | None = None
    references: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class _Resolved:
    title: str | None = None
    version: str | None = None
    description: str | None = None
    intrusive: bool | None = None
    tcp_ports: tuple[int, ...] | None = None
    controls: dict[str, _Control] = field(default_factory=dict)
    checks: dict[str, _Check] = field(default_factory=dict)
    waivers: list[Waiver] = field(default_factory=list)


def _find(ref: str, relative_to: Path | None) -> _Place | None:
    is_name = ID.fullmatch(ref) is not None and not ref.endswith((".yaml", ".yml"))
    if is_name:
        builtin = builtin_dir() / f"{ref}.yaml"
        if builtin.is_file():
            return _Place(builtin, str(builtin), f"builtin:{ref}", ref)
    path = Path(ref).expanduser()
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if path.exists():
        return _Place(path, str(path), str(path))
    return None


class _Resolver:
    def __init__(self, catalogue: Mapping[str, Check]) -> None:
        self.catalogue = catalogue

    def profile(self, places: Sequence[_Place]) -> Profile:
        ids: list[str] = []
        titles: list[str] = []
        versions: list[str] = []
        resolved = _Resolved()
        for place in places:
            spec, own, where = self._resolve(place, [])
            if own.title is None or own.version is None:
                missing = "title" if own.title is None else "version"
                raise where.error(f"the profile has no {missing}: set it here or in a profile "
                                  "this one extends", missing)
            ids.append(spec.id)
            titles.append(own.title)
            versions.append(own.version)
            resolved = _overlay(resolved, own)
        profile_id = "+".join(ids)
        parents = (spec.extends or ()) if len(places) == 1 else tuple(ids)
        resolved.title = " + ".join(titles)
        resolved.version = "+".join(dict.fromkeys(versions))
        data = _digest_data(profile_id, resolved, self.catalogue)
        digest = hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False,
                                           separators=(",", ":")).encode()).hexdigest()
        return Profile(
            id=profile_id,
            title=resolved.title,
            version=resolved.version,
            digest=f"sha256:{digest}",
            source=", ".join(place.source for place in places),
            controls=tuple(
                Control(item["id"], item["title"], _refs(item["references"]))
                for item in data["controls"]),
            checks=tuple(
                CheckConfig(
                    id=check["id"], control=item["id"], severity=Severity(check["severity"]),
                    params=check["params"], class_params=check["classes"],
                    references=_refs(check["references"]))
                for item in data["controls"] for check in item["checks"]),
            waivers=tuple(resolved.waivers),
            tcp_ports=resolved.tcp_ports or (),
            intrusive=bool(resolved.intrusive),
            description=resolved.description or "",
            extends=parents,
        )

    def _resolve(self, place: _Place, chain: list[_Place]
                 ) -> tuple[_ProfileFile, _Resolved, Where]:
        doc = load_yaml_mapping(place.path, place.file, "`id`, `title`, `version` and `controls`")
        where = Where(place.file, doc.line)
        spec = where.validate(_ProfileFile, doc.data)
        if place.builtin is not None and spec.id != place.builtin:
            raise where.error(f"the built-in profile {place.builtin} must have the id "
                              f"{place.builtin}", "id")
        self._check_ids(spec, where)
        resolved = _Resolved()
        parents = spec.extends or ()
        for index, ref in enumerate(parents):
            at = where.at("extends", index) if isinstance(doc.data["extends"], list) \
                else where.at("extends")
            parent = _find(ref, place.path.parent)
            if parent is None:
                raise at.error(f"unknown profile {ref!r}: neither a built-in profile "
                               f"({', '.join(builtin_profile_ids())}) nor a file")
            loop = [*chain, place]
            if any(earlier.key == parent.key for earlier in loop):
                names = " -> ".join(item.source for item in [*loop, parent])
                raise at.error(f"extends forms a cycle: {names}")
            resolved = _overlay(resolved, self._resolve(parent, loop)[1])
        resolved = _overlay(resolved, _own(spec, where))
        for index, check_id in enumerate(spec.disabled or ()):
            if check_id not in resolved.checks:
                raise where.error(f"{check_id} is not in this profile, so it cannot be "
                                  "disabled", "disabled", index)
            del resolved.checks[check_id]
        return spec, resolved, where

    def _check_ids(self, spec: _ProfileFile, where: Where) -> None:
        """Every check the file names exists; its parameters are those the check takes."""
        for control_id, control in (spec.controls or {}).items():
            for check_id, check in ((control and control.checks) or {}).items():
                at = where.at("controls", control_id, "checks", check_id)
                known = self._known(check_id, at)
                if check is None:
                    continue
                self._check_params(known, check.params or {}, at.at("params"))
                for name, params in (check.classes or {}).items():
                    self._check_params(known, params, at.at("classes", name), check.params)
        for index, check_id in enumerate(spec.disabled or ()):
            self._known(check_id, where.at("disabled", index))
        for index, waiver in enumerate(spec.waivers or ()):
            self._known(waiver.check, where.at("waivers", index, "check"))

    def _known(self, check_id: str, at: Where) -> Check:
        known = self.catalogue.get(check_id)
        if known is None:
            close = difflib.get_close_matches(check_id, list(self.catalogue), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise at.error(f"unknown check {show(check_id)}{hint}")
        return known

    @staticmethod
    def _check_params(check: Check, params: Mapping[str, Any], at: Where,
                      base: Mapping[str, Any] | None = None) -> None:
        """`params` (merged over `base`: a class's values over the check's) are what the
        check's typed parameters accept: known names, types and ranges."""
        for name in params:
            if name not in check.params.model_fields:
                expected = ", ".join(check.params.model_fields) or "none"
                raise at.error(f"{check.id} has no parameter {show(name)} (parameters: "
                               f"{expected})", name)
        try:
            check.params.model_validate({**(base or {}), **params})
        except ValidationError as exc:
            raise at.first(exc) from None


def _own(spec: _ProfileFile, where: Where) -> _Resolved:
    """What one file says by itself, before its parents and its `disabled`."""
    own = _Resolved(
        title=spec.title, version=spec.version, description=spec.description,
        intrusive=spec.intrusive, tcp_ports=spec.scan.tcp_ports if spec.scan else None,
    )
    for control_id, control in (spec.controls or {}).items():
        own.controls[control_id] = _Control(
            title=control.title if control else None,
            references=_own_refs(control.references if control else None),
        )
        for check_id, check in ((control and control.checks) or {}).items():
            at = where.at("controls", control_id, "checks", check_id)
            own.checks[check_id] = _Check(
                control=control_id,
                origin=(where.file, at.line_of(at.prefix), field_name(at.prefix)),
                severity=check.severity if check else None,
                params=dict(check.params or {}) if check else {},
                classes={name: dict(values) for name, values in (check.classes or {}).items()}
                if check else {},
                references=_own_refs(check.references if check else None),
            )
    own.waivers = [
        Waiver(check=item.check, justification=item.justification, expires=item.expires,
               device=item.device, device_class=item.device_class)
        for item in spec.waivers or ()]
    return own


def _own_refs(references: Mapping[Framework, list[str]] | None) -> dict[str, list[str]]:
    return {framework: list(values) for framework, values in (references or {}).items()}


def _overlay(base: _Resolved, over: _Resolved) -> _Resolved:
    """`over` merged onto `base` (neither is changed)."""
    out = copy.deepcopy(base)
    for name in ("title", "version", "description", "intrusive", "tcp_ports"):
        value = getattr(over, name)
        if value is not None:
            setattr(out, name, value)
    for control_id, control in over.controls.items():
        mine = out.controls.setdefault(control_id, _Control())
        if control.title is not None:
            mine.title = control.title
        mine.references.update(copy.deepcopy(control.references))
    for check_id, check in over.checks.items():
        mine_check = out.checks.get(check_id)
        if mine_check is None:
            out.checks[check_id] = copy.deepcopy(check)
            continue
        if mine_check.control != check.control:
            file, line, name = mine_check.origin
            raise InputError(f"{check_id} is under control {mine_check.control} in {file}:{line}; "
                             f"a profile cannot move it to {check.control}",
                             file=check.origin[0], line=check.origin[1], field=check.origin[2])
        if check.severity is not None:
            mine_check.severity = check.severity
        mine_check.params = deep_merge(mine_check.params, check.params)
        mine_check.classes = deep_merge(mine_check.classes, check.classes)
        mine_check.references.update(copy.deepcopy(check.references))
        mine_check.origin = check.origin
    out.waivers.extend(waiver for waiver in over.waivers if waiver not in out.waivers)
    return out


def _digest_data(profile_id: str, resolved: _Resolved,
                 catalogue: Mapping[str, Check]) -> dict[str, Any]:
    """The resolved profile as plain data: what the digest covers, in profile order."""
    return {
        "id": profile_id,
        "title": resolved.title,
        "version": resolved.version,
        "description": resolved.description or "",
        "intrusive": bool(resolved.intrusive),
        "tcp_ports": list(resolved.tcp_ports or ()),
        "controls": [
            {
                "id": control_id,
                "title": control.title or control_id,
                "references": control.references,
                "checks": [
                    {
                        "id": check_id,
                        "severity": check.severity or catalogue[check_id].severity.value,
                        "params": check.params,
                        "classes": check.classes,
                        "references": check.references,
                    }
                    for check_id, check in resolved.checks.items()
                    if check.control == control_id
                ],
            }
            for control_id, control in resolved.controls.items()
        ],
        "waivers": [
            {"check": waiver.check, "device": waiver.device, "class": waiver.device_class,
             "justification": waiver.justification, "expires": waiver.expires}
            for waiver in resolved.waivers
        ],
    }


def _refs(references: Mapping[str, list[str]]) -> dict[str, tuple[str, ...]]:
    return {framework: tuple(values) for framework, values in references.items()}
