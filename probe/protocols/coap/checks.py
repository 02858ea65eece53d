"""CoAP checks (27400-6.2): content served in clear, DTLS versions, unauthenticated writes, and
how much larger than a request its answer is. One finding per CoAP endpoint ("udp/5683")."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import Field

from probe.checks.base import CONTROL_COMMUNICATION, Observations, PlanView, check
from probe.checks.params import CheckParams, NoParams
from probe.model import Finding, Severity, errored, failed, not_applicable, passed
from probe.observe.base import Need, need
from probe.observe.discovery import UdpService, udp_services
from probe.observe.tcp import excerpt
from probe.protocols.coap.collectors import coap_survey, coap_writes
from probe.protocols.coap.wire import CoapEndpoint, EndpointWrites, Fetch, Write
from probe.protocols.dtls.collectors import dtls_survey
from probe.protocols.dtls.wire import SUITES, DtlsEndpoint, Handshake

EXCERPT_CHARS = 48
WORST = 5
MAX_LISTED = 8


class CleartextParams(CheckParams):
    max_resources: Annotated[int, Field(ge=0)] = 32
    """How many discovered resources are read (and written, by coap.unauthenticated-write)."""


class AmplificationParams(CheckParams):
    max_amplification: Annotated[float, Field(gt=0)] = 10
    """The largest answer/request size ratio that passes."""


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else "")


def _served(read: Fetch) -> dict[str, Any]:
    return {"resource": read.target, "code": read.code, "bytes": len(read.body),
            "content": excerpt(read.body, EXCERPT_CHARS)}


def _coverage(endpoint: CoapEndpoint) -> dict[str, Any]:
    out: dict[str, Any] = {"listed": endpoint.listed, "read": len(endpoint.resources)}
    if endpoint.external:
        out["external_links"] = list(endpoint.external)
    return out


def survey(plan: PlanView) -> Need[tuple[CoapEndpoint, ...]]:
    """The device's one CoAP survey: every CoAP check reads it with coap.cleartext's
    `max_resources` (its default when coap.cleartext is not planned)."""
    return need(coap_survey, max_resources=plan.params(cleartext).max_resources)


def writes(plan: PlanView) -> Need[tuple[EndpointWrites, ...]]:
    """The write-backs of what that survey read."""
    return need(coap_writes, max_resources=plan.params(cleartext).max_resources)


def _coap_ports(found: tuple[UdpService, ...], protocol: str) -> list[int]:
    return [s.port for s in found if s.protocol == protocol]


@check(
    "coap.cleartext",
    title="CoAP serves nothing without DTLS",
    control=CONTROL_COMMUNICATION,
    severity=Severity.HIGH,
    needs=lambda params, plan: (udp_services, survey(plan)),
    remediation="Serve CoAP over DTLS (CoAPS, udp/5684) with PSK or certificate authentication "
                "and turn the plain CoAP listener off; where plain CoAP must stay, answer every "
                "request without valid authorization, /.well-known/core included, with 4.01 "
                "or 4.03, or protect the resources end to end with OSCORE (RFC 8613).",
    params=CleartextParams,
)
def cleartext(obs: Observations, params: CleartextParams) -> Iterable[Finding]:
    """Pass: CoAP over plain UDP serves no resource content: every GET, the discovered resources
    and `/.well-known/core` included (up to `max_resources`), gets no 2.05; or CoAP is served
    over DTLS only.
    Fail: a resource answers 2.05 over plain CoAP; the finding names them.
    Not applicable: no CoAP endpoint answered."""
    endpoints: tuple[CoapEndpoint, ...] = obs[coap_survey]
    if not endpoints:
        dtls_ports = _coap_ports(obs[udp_services], "dtls")
        if not dtls_ports:
            return [not_applicable("no CoAP endpoint answered")]
        where = ", ".join(f"udp/{port}" for port in dtls_ports)
        return [passed(f"no CoAP over plain UDP; CoAP is served over DTLS only ({where})",
                       dtls_endpoints=dtls_ports)]
    findings = []
    for endpoint in endpoints:
        served = [read for read in endpoint.fetches if read.served]
        others = {read.target: read.first.describe() for read in endpoint.fetches
                  if not read.served}
        evidence = {"served": [_served(read) for read in served], "not_served": others,
                    **_coverage(endpoint)}
        if served:
            findings.append(failed(
                f"{len(served)} resource(s) answered 2.05 over plain CoAP on {endpoint.target}: "
                + _names([read.target for read in served]), endpoint.target, **evidence))
        else:
            findings.append(passed(
                f"no resource content over plain CoAP on {endpoint.target}: every GET got "
                + _names(sorted(set(others.values()))), endpoint.target, **evidence))
    return findings


def _version_state(hello: Handshake) -> str:
    if hello.accepted:
        return "accepted"
    if hello.outcome == "hello_verify_request":
        return "cookie exchange only"
    if hello.outcome == "no_answer":
        return "no answer"
    if hello.outcome == "alert":
        return f"refused ({hello.alert})"
    if hello.outcome == "server_hello":
        return f"refused (the server answered with {hello.summary().get('version')})"
    return f"refused ({hello.outcome})"


def _dtls_evidence(endpoint: DtlsEndpoint) -> dict[str, Any]:
    hellos = [*endpoint.undecided]
    hellos += [h for h in (endpoint.dtls12, endpoint.dtls10, endpoint.certificate)
               if h is not None and h not in hellos]
    out: dict[str, Any] = {
        "versions": {"DTLS 1.2": _version_state(endpoint.dtls12),
                     "DTLS 1.0": _version_state(endpoint.dtls10)},
        "handshakes": [{"hello": h.offer, **h.summary()} for h in hellos],
    }
    if endpoint.dtls12.accepted and endpoint.dtls12.suite is not None:
        out["suite"] = SUITES.get(endpoint.dtls12.suite, f"0x{endpoint.dtls12.suite:04X}")
    if endpoint.psk_only is not None:
        out["psk_only"] = endpoint.psk_only
    return out


def _judge_dtls(endpoint: DtlsEndpoint) -> Finding:
    target = f"udp/{endpoint.port}"
    evidence = _dtls_evidence(endpoint)
    versions = evidence["versions"]
    if endpoint.dtls10.accepted:
        suite = SUITES.get(endpoint.dtls10.suite or 0, "an unknown suite")
        return failed(f"{target} accepts DTLS 1.0 (chose {suite})", target, **evidence)
    if not endpoint.answers_dtls12:
        if not endpoint.dtls12.answered and not endpoint.dtls10.answered:
            return errored(f"{target} answered discovery but no ClientHello this time", target,
                           **evidence)
        return failed(f"{target} does not complete a DTLS 1.2 hello: {versions['DTLS 1.2']}",
                      target, **evidence)
    if endpoint.dtls10_unknown:
        return errored(f"{target} answers DTLS 1.2, but whether it accepts DTLS 1.0 is unknown: "
                       "every DTLS 1.0 hello got a cookie exchange and then no answer", target,
                       **evidence)
    chose = f" with {evidence['suite']}" if "suite" in evidence else ""
    return passed(f"{target} answers DTLS 1.2{chose}; DTLS 1.0 {versions['DTLS 1.0']}",
                  target, **evidence)


@check(
    "coap.dtls",
    title="CoAPS speaks DTLS 1.2 and refuses DTLS 1.0",
    control=CONTROL_COMMUNICATION,
    severity=Severity.HIGH,
    needs=(udp_services, dtls_survey),
    remediation="Serve CoAP over DTLS 1.2 (or 1.3) on udp/5684 and disable DTLS 1.0 in the DTLS "
                "stack's configuration; offer CoAP's suites (TLS_PSK_WITH_AES_128_CCM_8, "
                "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8) with per-device keys.",
)
def dtls(obs: Observations, params: NoParams) -> Iterable[Finding]:
    """Pass: every CoAPS endpoint takes part in a DTLS 1.2 handshake (a HelloVerifyRequest or a
    ServerHello) and refuses DTLS 1.0 (an alert, another version, or silence).
    Fail: DTLS 1.0 is accepted, DTLS 1.2 gets neither answer, or CoAP answers only in cleartext
    with no DTLS endpoint.
    Not applicable: no CoAP endpoint at all.
    Error: the endpoint answered no ClientHello this time, or every DTLS 1.0 hello got a cookie
    exchange and then silence."""
    endpoints: tuple[DtlsEndpoint, ...] = obs[dtls_survey]
    if endpoints:
        return [_judge_dtls(endpoint) for endpoint in endpoints]
    plain = _coap_ports(obs[udp_services], "coap")
    if not plain:
        return [not_applicable("no CoAP endpoint answered")]
    return [failed(f"CoAP is served in cleartext only: udp/{port} answers and no DTLS endpoint "
                   "answered a ClientHello", f"udp/{port}", cleartext_port=port)
            for port in plain]


def _write(write: Write) -> dict[str, Any]:
    return {"resource": write.target, "code": write.answer.describe(), "blocks": write.blocks,
            "accepted": write.accepted}


@check(
    "coap.unauthenticated-write",
    title="CoAP refuses unauthenticated writes",
    control=CONTROL_COMMUNICATION,
    severity=Severity.CRITICAL,
    needs=lambda params, plan: (writes(plan),),
    intrusive=True,
    remediation="Require authentication and authorization for PUT, POST and DELETE on every "
                "resource (CoAPS with per-device credentials, or OSCORE); resources that are "
                "read-only must answer 4.05 Method Not Allowed.",
)
def unauthenticated_write(obs: Observations, params: NoParams) -> Iterable[Finding]:
    """Pass: on every cleartext CoAP endpoint, writing back the value a resource just served (a
    PUT of the GET payload, so its state is unchanged) is refused.
    Fail: a write-back is accepted without authentication.
    Not applicable: no cleartext CoAP endpoint, or no resource served its whole value to write
    back."""
    endpoints: tuple[EndpointWrites, ...] = obs[coap_writes]
    if not endpoints:
        return [not_applicable("no cleartext CoAP endpoint")]
    findings = []
    for endpoint in endpoints:
        evidence = {"writes": [_write(w) for w in endpoint.writes],
                    "not_written": dict(endpoint.not_written)}
        accepted = [w for w in endpoint.writes if w.accepted]
        if accepted:
            findings.append(failed(
                f"{len(accepted)} resource(s) on {endpoint.target} took a write-back of their "
                "own value without authentication: "
                + _names([f"{w.target} ({w.code})" for w in accepted]),
                endpoint.target, **evidence))
        elif endpoint.writes:
            findings.append(passed(
                f"every write-back on {endpoint.target} was refused: "
                + _names([f"{w.target} ({w.answer.describe()})" for w in endpoint.writes]),
                endpoint.target, **evidence))
        else:
            findings.append(not_applicable(
                f"no resource on {endpoint.target} answered a GET with its whole value, so "
                "none could be written back unchanged", endpoint.target, **evidence))
    return findings


def _ratios(endpoint: CoapEndpoint) -> list[dict[str, Any]]:
    out = []
    for read in endpoint.fetches:
        first = read.first
        if first.response_bytes:
            measured = {"resource": read.target, "request_bytes": first.request_bytes,
                        "response_bytes": first.response_bytes, "datagrams": first.datagrams,
                        "ratio": round(first.response_bytes / first.request_bytes, 2)}
            if first.sends > 1:
                # The request went out twice; if only one transmission was answered, the
                # answer drew up to `sends` times the ratio over both.
                measured["sends"] = first.sends
                measured["ratio_if_one_answered"] = round(
                    first.response_bytes * first.sends / first.request_bytes, 2)
            out.append(measured)
    return sorted(out, key=lambda m: (-m["ratio"], m["resource"]))


@check(
    "coap.amplification",
    title="CoAP answers are not much larger than requests",
    control=CONTROL_COMMUNICATION,
    severity=Severity.MEDIUM,
    needs=lambda params, plan: (survey(plan),),
    remediation="Keep answers to unauthenticated requests small (RFC 7252 11.3): serve large "
                "representations block-wise with small blocks, or only over DTLS, keep "
                "/.well-known/core short (or behind authorization), and rate-limit answers per "
                "client.",
    params=AmplificationParams,
)
def amplification(obs: Observations, params: AmplificationParams) -> Iterable[Finding]:
    """Pass: over cleartext CoAP, no single request is answered with more than
    `max_amplification` times its size in bytes (or nothing is answered).
    Fail: one is; the finding names the worst.
    Not applicable: no cleartext CoAP endpoint.
    Error (reason `undecided`): a request sent twice drew an answer whose ratio is within the
    limit over both sends but beyond it over one."""
    endpoints: tuple[CoapEndpoint, ...] = obs[coap_survey]
    if not endpoints:
        return [not_applicable("no cleartext CoAP endpoint")]
    limit = float(params.max_amplification)
    findings = []
    for endpoint in endpoints:
        ratios = _ratios(endpoint)
        over = [m for m in ratios if m["ratio"] > limit]
        unsure = [m for m in ratios if m["ratio"] <= limit < m.get("ratio_if_one_answered", 0)]
        evidence = {"max_amplification": limit, "measured": len(ratios),
                    "over_limit": len(over), "worst": ratios[:WORST]}
        if unsure and not over:
            evidence["undecided"] = unsure[:WORST]
        if over:
            worst = over[0]
            findings.append(failed(
                f"{len(over)} request(s) on {endpoint.target} drew more than {limit:g}x their "
                f"size; worst: GET {worst['resource']} ({worst['request_bytes']} bytes) got "
                f"{worst['response_bytes']} bytes back ({worst['ratio']:g}x)",
                endpoint.target, **evidence))
        elif unsure:
            first = unsure[0]
            findings.append(errored(
                f"GET {first['resource']} on {endpoint.target} went unanswered for half the "
                f"timeout and was sent again; its answer is {first['ratio']:g}x the two "
                f"requests but {first['ratio_if_one_answered']:g}x one of them, on both sides "
                f"of {limit:g}x", endpoint.target, reason="undecided", **evidence))
        elif ratios:
            worst = ratios[0]
            findings.append(passed(
                f"no answer on {endpoint.target} exceeds {limit:g}x its request; largest: GET "
                f"{worst['resource']} {worst['request_bytes']} -> {worst['response_bytes']} "
                f"bytes ({worst['ratio']:g}x)", endpoint.target, **evidence))
        else:
            findings.append(passed(f"no request on {endpoint.target} was answered",
                                   endpoint.target, **evidence))
    return findings


CHECKS = (cleartext, dtls, unauthenticated_write, amplification)
