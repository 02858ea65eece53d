"""HTTP checks (27400-6.2): cleartext web listeners, unauthenticated management paths, default
credentials and HSTS, judged per listener."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import Field

from probe.checks.base import CONTROL_COMMUNICATION, Observations, PlanView, check
from probe.checks.params import CheckParams, CredentialTrialParams, NoParams, Pairs, Paths
from probe.model import Finding, Severity, errored, failed, not_applicable, passed, skipped
from probe.observe.base import Need, need
from probe.observe.tcp import excerpt
from probe.protocols.http.collectors import (
    CredentialTrial,
    HttpEndpoint,
    Response,
    Visit,
    default_credentials,
    http_endpoints,
    http_protected,
    http_roots,
    looks_like_login,
)

PROTECTED = frozenset({401, 403, 404})
UPGRADE_REQUIRED = 426
"""The answer of a listener that serves only another protocol on its port (RFC 9110 15.5.22),
as WebSocket-only MQTT brokers do to a plain GET: it serves no resource, so the path is not
exposed; what the upgrade carries is judged by that protocol's checks."""
_MAX_AGE = re.compile(r"(?:^|;)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:;|$)", re.IGNORECASE)


class AuthenticationParams(CheckParams):
    protected_paths: Paths = ("/admin", "/api", "/config", "/cgi-bin/", "/setup", "/settings",
                              "/system", "/management")
    """The paths that must not answer without credentials (each starts with /)."""


class DefaultCredentialsParams(CredentialTrialParams):
    pairs: Pairs = (("admin", "admin"), ("admin", "password"), ("admin", "1234"),
                    ("admin", "12345"), ("admin", ""), ("root", "root"), ("root", "admin"),
                    ("user", "user"), ("support", "support"), ("admin", "admin123"))


class HstsParams(CheckParams):
    min_max_age: Annotated[int, Field(ge=0)] = 15552000
    """The shortest Strict-Transport-Security max-age (seconds) that passes."""


def protected(plan: PlanView) -> Need[tuple[Visit, ...]]:
    """The unauthenticated visits of http.authentication's `protected_paths` (its defaults
    when it is not planned): every check and collector that looks for a protected path reads
    this one run."""
    return need(http_protected, paths=plan.params(authentication).protected_paths)


def _trials(params: DefaultCredentialsParams, plan: PlanView
            ) -> tuple[Need[tuple[CredentialTrial, ...]]]:
    return (need(default_credentials, paths=plan.params(authentication).protected_paths,
                 pairs=params.attempts, pace=float(params.pace_seconds)),)


def _listener(endpoint: HttpEndpoint) -> dict[str, Any]:
    return {"port": endpoint.port, "tls": endpoint.tls}


@check(
    "http.cleartext",
    applies_to=("http",),
    title="No content is served over cleartext HTTP",
    control=CONTROL_COMMUNICATION,
    severity=Severity.MEDIUM,
    needs=(http_endpoints, http_roots),
    remediation="Serve the web interface over HTTPS only: close the cleartext HTTP port, or "
                "have it answer every request with a redirect to the HTTPS URL.",
)
def cleartext(obs: Observations, params: NoParams) -> Iterable[Finding]:
    """Pass: every HTTP listener without TLS redirects GET / to an https:// URL, or answers it
    with no content (an empty 2xx, or any other status).
    Fail: a listener serves content: a 2xx with a body, after following redirects on the
    listener.
    Not applicable: no HTTP listener without TLS.
    Error: GET / got no answer, or answered a redirect with an unusable Location."""
    visits = [v for v in obs[http_roots] if not v.endpoint.tls]
    if not visits:
        return [not_applicable("no HTTP listener without TLS")]
    return [_cleartext(v) for v in visits]


def _cleartext(item: Visit) -> Finding:
    target, final = item.endpoint.target, item.final
    evidence = {**_listener(item.endpoint), **item.evidence()}
    if final.error is not None:
        return errored(f"{target}: GET / got no answer: {final.error}", target,
                       reason="network", **evidence)
    if item.unusable is not None:
        return errored(f"{target}: GET / answered {final.status} with an unusable Location: "
                       f"{item.unusable}", target, reason="undecided", **evidence)
    if item.left_to is not None and item.left_to.lower().startswith("https://"):
        return passed(f"{target} redirects to HTTPS ({item.left_to})", target, **evidence)
    if final.success and final.body:
        where = f" (after redirects, at {final.path})" if len(item.hops) > 1 else ""
        return failed(f"{target} serves content over cleartext HTTP: {final.status} with "
                      f"{len(final.body)} bytes{where}", target, **evidence)
    return passed(f"{target} serves nothing over cleartext HTTP (status {final.status})",
                  target, **evidence)


def _upgrade(response: Response) -> str:
    """The protocol a 426 asks for, in the device's words (bounded)."""
    offered = response.header("upgrade")
    return f"Upgrade: {offered[:40]}" if offered else "no Upgrade header"


def _outcome(item: Visit) -> tuple[str, str]:
    """(exposed | protected | undecided, why) for one path visited without credentials. Only
    what the catalogue names counts as protected: 401, 403 or 404, a redirect to a login page,
    or (on cleartext HTTP) a redirect to HTTPS, whose listener is judged on its own. A 2xx is
    exposed unless it is a login page; every other answer (a 5xx, with or without a body, an
    unknown status, a redirect that cannot be followed) is undecided."""
    final = item.final
    if final.error is not None:
        return "undecided", f"no answer: {final.error}"
    if item.unusable is not None:
        return "undecided", f"{final.status} with an unusable Location: {item.unusable}"
    if item.left_to is not None:
        if not item.endpoint.tls and item.left_to.lower().startswith("https://"):
            return "protected", f"redirected to HTTPS ({item.left_to})"
        if looks_like_login(item):
            return "protected", f"redirected to a login page ({item.left_to})"
        return "undecided", f"redirected off the listener to {item.left_to} (not followed)"
    where = f" at {final.path}" if len(item.hops) > 1 else ""
    if final.status in PROTECTED:
        return "protected", f"{final.status}{where}"
    if final.status == UPGRADE_REQUIRED:
        return "protected", (f"{final.status}{where}: served only after a protocol upgrade "
                             f"({_upgrade(final)})")
    if final.success:
        if looks_like_login(item):
            return "protected", f"a login page ({final.path})"
        return "exposed", f"{final.status} with {len(final.body)} bytes, no credentials asked" + (
            f" (at {final.path})" if len(item.hops) > 1 else "")
    if final.redirect:
        return "undecided", f"still redirecting after {len(item.hops)} requests"
    served = f" with {len(final.body)} bytes" if final.body else ""
    return "undecided", (f"{final.status}{served}{where}: neither a refusal (401, 403, 404) "
                         "nor a redirect to a login page")


@check(
    "http.authentication",
    applies_to=("http", "https"),
    title="Management paths need credentials",
    control=CONTROL_COMMUNICATION,
    severity=Severity.HIGH,
    needs=lambda params, plan: (http_endpoints, protected(plan)),
    remediation="Require authentication for every management and API path of the web "
                "interface (answer 401/403, or redirect to the login page), including "
                "configuration, CGI and setup pages left from development or first-time setup.",
    params=AuthenticationParams,
)
def authentication(obs: Observations, params: AuthenticationParams) -> Iterable[Finding]:
    """Pass: on every HTTP(S) listener, each path of `protected_paths`, asked without
    credentials, answers 401, 403 or 404, redirects to a login page, or (on cleartext HTTP)
    redirects to HTTPS; or answers 426 Upgrade Required, serving nothing without another
    protocol (a WebSocket-only MQTT listener, whose MQTT checks judge what it serves).
    Fail: a path serves a 2xx that is not a login page.
    Not applicable: no HTTP(S) listener.
    Error (reason `undecided`): any other answer (a 5xx, an unknown status, a redirect that
    cannot be followed, no answer) decides that listener as `error`, never `pass`, with the
    start of the body in the evidence."""
    endpoints = obs[http_endpoints]
    if not endpoints:
        return [not_applicable("no HTTP(S) listener")]
    visits = obs[http_protected]
    return [_authentication(e, [v for v in visits if v.endpoint.port == e.port])
            for e in endpoints]


def _authentication(endpoint: HttpEndpoint, visits: list[Visit]) -> Finding:
    target = endpoint.target
    outcomes = [(v, *_outcome(v)) for v in visits]
    paths = [{**v.evidence(), "outcome": kind, "why": why, **_body(v, kind)}
             for v, kind, why in outcomes]
    evidence = {**_listener(endpoint), "paths": paths}
    exposed = [f"{v.path} ({why})" for v, kind, why in outcomes if kind == "exposed"]
    if exposed:
        return failed(f"{target} serves without credentials: " + "; ".join(exposed), target,
                      exposed=[v.path for v, kind, _ in outcomes if kind == "exposed"],
                      **evidence)
    undecided = [f"{v.path} ({why})" for v, kind, why in outcomes if kind == "undecided"]
    if undecided:
        return errored(f"{target}: could not decide " + "; ".join(undecided), target,
                       reason="undecided", **evidence)
    return passed(f"{target}: every protected path ({len(visits)}) is refused or asks for "
                  "credentials", target, **evidence)


def _body(item: Visit, kind: str) -> dict[str, str]:
    """The start of the body an undecided path served (a 5xx page may be the admin page
    itself, or a stack trace): to look at, escaped and bounded."""
    body = item.final.body
    return {"body_excerpt": excerpt(body)} if kind == "undecided" and body else {}


@check(
    "http.default-credentials",
    applies_to=("http", "https"),
    title="HTTP authentication accepts no default credentials",
    control=CONTROL_COMMUNICATION,
    severity=Severity.CRITICAL,
    needs=_trials,
    remediation="Remove vendor default accounts (admin/admin and the like) from the web "
                "interface; require a unique password per device, set at provisioning or "
                "forced at first login.",
    intrusive=True,
    params=DefaultCredentialsParams,
)
def default_creds(obs: Observations, params: DefaultCredentialsParams) -> Iterable[Finding]:
    """Pass: every path that asks for Basic or Digest credentials refuses each of the profile's
    default `pairs` (at most `max_attempts`, `pace_seconds` apart).
    Fail: one pair is accepted (the attempts stop there).
    Not applicable: no path asked for Basic or Digest credentials.
    Error: an attempt got no answer.
    Skipped: the profile lists no pairs."""
    trials = obs[default_credentials]
    if not trials:
        return [not_applicable("no authenticated HTTP path: no listener asked for Basic or "
                               "Digest credentials")]
    findings = []
    for trial in trials:
        target = trial.endpoint.target
        evidence = {**_listener(trial.endpoint), "path": trial.path, "scheme": trial.scheme,
                    "attempts": [a.evidence() for a in trial.attempts]}
        accepted, undecided = trial.accepted, trial.undecided
        if not trial.attempts:
            findings.append(skipped(f"{target}: the profile lists no default pairs to try",
                                    target, reason="no-pairs", **evidence))
        elif accepted is not None:
            findings.append(failed(
                f"{target}: {trial.scheme.title()} authentication on {trial.path} accepted a "
                f"default pair for user {accepted.username!r}", target,
                accepted_username=accepted.username, **evidence))
        elif undecided is not None:
            findings.append(errored(
                f"{target}: the attempt for user {undecided.username!r} got no answer "
                f"({undecided.error})", target, reason="network", **evidence))
        else:
            findings.append(passed(
                f"{target}: {len(trial.attempts)} default pair(s) refused by "
                f"{trial.scheme.title()} authentication on {trial.path}", target, **evidence))
    return findings


MAX_DELTA_SECONDS = 2**31
"""RFC 9111 1.2.2: a delta-seconds value larger than 2^31 is read as 2^31 (a header's 5,000
digits would otherwise be an int() too long for Python to convert)."""


def max_age(value: str) -> int | None:
    match = _MAX_AGE.search(value)
    if match is None:
        return None
    digits = match.group(1).lstrip("0") or "0"
    return MAX_DELTA_SECONDS if len(digits) > 10 else min(int(digits), MAX_DELTA_SECONDS)


@check(
    "http.hsts",
    applies_to=("https",),
    title="HTTPS responses carry HSTS",
    control=CONTROL_COMMUNICATION,
    severity=Severity.LOW,
    needs=(http_endpoints, http_roots),
    remediation="Send Strict-Transport-Security: max-age=31536000 (at least the profile's "
                "min_max_age) on every HTTPS response of the web interface.",
    params=HstsParams,
)
def hsts(obs: Observations, params: HstsParams) -> Iterable[Finding]:
    """Pass: GET / on every HTTPS listener answers with Strict-Transport-Security whose max-age
    is at least `min_max_age` (a max-age beyond 2^31 counts as 2^31).
    Fail: the header is missing, has no valid max-age, or a smaller one.
    Not applicable: no HTTPS listener.
    Error: GET / got no answer."""
    minimum = int(params.min_max_age)
    visits = [v for v in obs[http_roots] if v.endpoint.tls]
    if not visits:
        return [not_applicable("no HTTPS listener")]
    return [_hsts(v, minimum) for v in visits]


def _hsts(item: Visit, minimum: int) -> Finding:
    target, first = item.endpoint.target, item.hops[0]
    evidence: dict[str, Any] = {**_listener(item.endpoint), **first.evidence(),
                                "min_max_age": minimum}
    if first.error is not None:
        return errored(f"{target}: GET / got no answer: {first.error}", target,
                       reason="network", **evidence)
    header = first.header("strict-transport-security")
    if header is None:
        return failed(f"{target}: no Strict-Transport-Security header (status "
                      f"{first.status})", target, **evidence)
    evidence["strict_transport_security"] = excerpt(header.encode("latin-1", "replace"))
    age = max_age(header)
    if age is None:
        return failed(f"{target}: Strict-Transport-Security has no valid max-age", target,
                      **evidence)
    evidence["max_age"] = age
    if age < minimum:
        return failed(f"{target}: HSTS max-age {age} is below {minimum}", target, **evidence)
    return passed(f"{target}: HSTS max-age {age}", target, **evidence)


CHECKS = (cleartext, authentication, default_creds, hsts)
