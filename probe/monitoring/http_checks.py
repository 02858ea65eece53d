"""Monitoring checks read over HTTP(S) (27400-6.5): the device clock and its vulnerability
disclosure contact."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from probe.checks.base import CONTROL_MONITORING, Observations, check
from probe.checks.params import CheckParams, NoParams, Seconds
from probe.model import Finding, Severity, errored, failed, not_applicable, passed
from probe.observe.tcp import excerpt
from probe.protocols.http.collectors import Visit, date_of, http_roots, security_txt
from probe.stamps import STAMP

DATE_RESOLUTION = 1.0
"""An HTTP Date has whole seconds: the device's clock read anywhere in [Date, Date + 1)."""
MAX_FIELDS = 200
ONE_YEAR = dt.timedelta(days=366)
"""RFC 9116 2.5.5: Expires SHOULD be less than a year ahead (a leap year's 366 days allowed)."""


class ClockSyncParams(CheckParams):
    max_skew_seconds: Seconds = 60
    """The largest difference between the device's Date header and the probe's clock."""


@check(
    "monitor.clock-sync",
    applies_to=("http", "https"),
    title="The device clock is synchronised",
    control=CONTROL_MONITORING,
    severity=Severity.MEDIUM,
    needs=(http_roots,),
    remediation="Synchronise the device clock with NTP (or NTS) from a trusted time source at "
                "boot and periodically; without it, event timestamps and certificate validity "
                "checks on the device are unreliable.",
    params=ClockSyncParams,
)
def clock_sync(obs: Observations, params: ClockSyncParams) -> Iterable[Finding]:
    """Pass: the `Date` header of every HTTP(S) listener's answer to GET / is within
    `max_skew_seconds` of the probe's clock (allowing for the round trip and the header's whole
    seconds).
    Fail: the clock is further off, or the header is missing or unreadable.
    Not applicable: no HTTP(S) listener.
    Error: GET / got no answer."""
    limit = float(params.max_skew_seconds)
    visits = obs[http_roots]
    if not visits:
        return [not_applicable("no HTTP(S) listener")]
    return [_clock(v, limit) for v in visits]


def _clock(item: Visit, limit: float) -> Finding:
    target, first = item.endpoint.target, item.hops[0]
    evidence: dict[str, Any] = {"port": item.endpoint.port, "tls": item.endpoint.tls,
                                "path": first.path, "max_skew_seconds": limit}
    if first.error is not None:
        return errored(f"{target}: GET / got no answer: {first.error}", target,
                       reason="network", **evidence)
    header = first.header("date")
    device = date_of(first)
    if device is None:
        if header:
            evidence["date"] = excerpt(header.encode("latin-1", "replace"))
        what = "an unreadable Date header" if header else "no Date header"
        return failed(f"{target}: the response has {what}, so the device clock cannot be "
                      "checked (RFC 9110 requires Date from servers with a clock)", target,
                      **evidence)
    # The device read its clock between our send and receive, truncated to whole seconds.
    low = device - first.received_at
    high = device + DATE_RESOLUTION - first.sent_at
    skew = (low + high) / 2
    evidence |= {"date": excerpt((header or "").encode("latin-1", "replace")),
                 "probe_time": time.strftime(STAMP, time.gmtime(first.received_at)),
                 "skew_seconds": round(skew, 1)}
    nearest = 0.0 if low <= 0 <= high else min(abs(low), abs(high))
    if nearest > limit:
        direction = "ahead of" if skew > 0 else "behind"
        return failed(f"{target}: the device clock is {abs(skew):.0f} s {direction} the "
                      f"probe's (more than {limit:g} s)", target, **evidence)
    return passed(f"{target}: the device clock is within {max(nearest, 1.0):.0f} s of the "
                  "probe's", target, **evidence)


def parse_security_txt(text: str) -> dict[str, list[str]]:
    """The fields of an RFC 9116 file, by lower-case name (comments and the OpenPGP armour of
    a signed file skipped)."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines()[:MAX_FIELDS * 4]:
        line = line.strip()
        if not line or line.startswith(("#", "-----")) or ":" not in line:
            continue
        name, _, value = line.partition(":")
        if " " in name.strip() or not name.strip():
            continue
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    return fields


def parse_expires(value: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


@check(
    "monitor.vulnerability-disclosure",
    applies_to=("https",),
    title="A security contact is published (security.txt)",
    control=CONTROL_MONITORING,
    severity=Severity.LOW,
    needs=(security_txt,),
    remediation="Serve /.well-known/security.txt (RFC 9116) over HTTPS with at least one "
                "Contact (mailto: or https: URL of the vendor's PSIRT) and an Expires date "
                "less than a year ahead; renew it before it expires.",
)
def vulnerability_disclosure(obs: Observations, params: NoParams) -> Iterable[Finding]:
    """Pass: every HTTPS listener serves `/.well-known/security.txt` valid per RFC 9116: at
    least one Contact, each a `mailto:`, `https:` or `tel:` URI, and exactly one Expires, an RFC
    3339 date-time with a time zone, in the future (more than a year ahead passes with
    `expires_note`).
    Fail: the file is not served, or a MUST is broken; the finding names what.
    Not applicable: no HTTPS listener.
    Error: no answer, or a redirect with an unusable Location."""
    visits = obs[security_txt]
    if not visits:
        return [not_applicable("no HTTPS listener")]
    return [_disclosure(v) for v in visits]


def _disclosure(item: Visit) -> Finding:
    """RFC 9116 read strictly on its MUSTs (a fail names each violation) and leniently on its
    SHOULD: an Expires more than a year ahead passes, with the RFC's advice in the evidence."""
    target, final = item.endpoint.target, item.final
    evidence: dict[str, Any] = {"port": item.endpoint.port, **item.evidence()}
    if final.error is not None:
        return errored(f"{target}: GET {item.path} got no answer: {final.error}", target,
                       reason="network", **evidence)
    if item.unusable is not None:
        return errored(f"{target}: {item.path} answered {final.status} with an unusable "
                       f"Location: {item.unusable}", target, reason="undecided", **evidence)
    if not final.success:
        return failed(f"{target}: {item.path} is not served (status {final.status})", target,
                      **evidence)
    fields = parse_security_txt(final.body.decode("utf-8", "replace"))
    contacts = fields.get("contact", [])
    expires = fields.get("expires", [])
    evidence |= {"contact": [excerpt(c.encode()) for c in contacts[:5]],
                 "expires": [excerpt(e.encode()) for e in expires[:2]]}
    problems = []
    if not contacts:
        problems.append("no Contact field")
    wrong = [(c, why) for c in contacts if (why := contact_problem(c)) is not None]
    if wrong:
        evidence["invalid_contact"] = [{"contact": excerpt(c.encode()), "why": why}
                                       for c, why in wrong[:5]]
        problems.append(f"{len(wrong)} invalid Contact field(s): " + "; ".join(
            f"{excerpt(c.encode(), 60)} is {why}" for c, why in wrong[:3]))
    now = dt.datetime.now(dt.UTC)
    moment = parse_expires(expires[0]) if len(expires) == 1 else None
    if len(expires) != 1:
        problems.append("no Expires field" if not expires else "more than one Expires field")
    elif moment is None:
        problems.append(f"an unreadable Expires date ({excerpt(expires[0].encode(), 60)}; "
                        "RFC 9116 asks for an RFC 3339 date-time with a time zone)")
    elif moment <= now:
        problems.append(f"expired on {moment.isoformat()}")
    if problems:
        return failed(f"{target}: {item.path} has " + ", ".join(problems), target, **evidence)
    assert moment is not None
    note = ""
    if moment - now > ONE_YEAR:
        evidence["expires_note"] = ("more than a year ahead: RFC 9116 2.5.5 recommends less "
                                    "than a year, so that stale contacts expire")
        note = " (more than a year ahead, against RFC 9116's advice)"
    return passed(f"{target}: {item.path} names {len(contacts)} valid contact(s), valid until "
                  f"{moment.isoformat()}{note}", target, **evidence)


def contact_problem(value: str) -> str | None:
    """Why a Contact value is not what RFC 9116 2.5.3 allows (a mailto:, https: or tel: URI),
    or None when it is."""
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        return "not a URI (empty, or with spaces or control characters)"
    scheme, colon, rest = value.partition(":")
    scheme = scheme.lower()
    if not colon or not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
        return "not a URI (no scheme)"
    if scheme == "https":
        try:
            host = urlsplit(value).hostname
        except ValueError:
            host = None
        return None if rest.startswith("//") and host else "an https: URI without a host"
    if scheme == "mailto":
        return None if "@" in rest else "a mailto: URI without an address"
    if scheme == "tel":
        return None if any(c.isdigit() for c in rest) else "a tel: URI without a number"
    if scheme == "http":
        return "an http: URI (RFC 9116 requires https: for a web contact)"
    return f"a {scheme}: URI (RFC 9116 allows mailto:, https: and tel: only)"


CHECKS = (clock_sync, vulnerability_disclosure)
