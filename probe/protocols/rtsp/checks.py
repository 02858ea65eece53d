"""RTSP checks (27400-6.2): a stream's description needs credentials, and RTSP runs inside TLS.
One finding per RTSP endpoint ("tcp/554")."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import Field

from probe.checks.base import CONTROL_COMMUNICATION, Observations, check
from probe.checks.params import CheckParams, NoParams, Paths
from probe.model import Finding, Severity, errored, failed, not_applicable, passed
from probe.observe.base import need
from probe.observe.discovery import Identification, Services, services
from probe.protocols.rtsp.collectors import DEFAULT_PATHS, Answer, RtspEndpoint, rtsp_survey
from probe.protocols.rtsp.ident import SERVICE

MAX_PATHS = 16


class AuthenticationParams(CheckParams):
    paths: Annotated[Paths, Field(min_length=1, max_length=MAX_PATHS)] = DEFAULT_PATHS
    """The stream paths asked DESCRIBE without credentials (at most 16), in order."""


def _answer(answer: Answer) -> dict[str, Any]:
    out: dict[str, Any] = {"path": answer.path}
    if answer.reply is None:
        return out | {"problem": answer.problem}
    reply = answer.reply
    out |= {"status": reply.status, "line": reply.line}
    if reply.schemes:
        out["schemes"] = list(reply.schemes)
    if reply.content_type:
        out["content_type"] = reply.content_type
    if reply.body:
        out["body"] = reply.body
    return out


def _status(answer: Answer) -> int | None:
    return answer.reply.status if answer.reply is not None else None


def _judge(endpoint: RtspEndpoint) -> Finding:
    """The finding of one endpoint, by the rule of `authentication`."""
    target, tried = endpoint.target, [_answer(a) for a in endpoint.answers]
    served = [a for a in endpoint.answers if a.reply is not None and a.reply.sdp]
    if served:
        return failed(f"{target} serves the session description of {served[0].path} to "
                      "DESCRIBE without credentials", target, tls=endpoint.tls, answers=tried)
    refused = [a.path for a in endpoint.answers if _status(a) == 401]
    absent = [a.path for a in endpoint.answers if _status(a) == 404]
    other = [a for a in endpoint.answers if _status(a) not in (401, 404)]
    if other:
        first = other[0]
        said = first.reply.line if first.reply is not None else first.problem
        return errored(f"{target} answered DESCRIBE {first.path} with neither 401 nor a "
                       f"session description: {said}", target, tls=endpoint.tls, answers=tried)
    if not refused:
        return errored(f"{target} has no stream at any path tried (404 on each): add the "
                       "device's stream path to `paths`", target, tls=endpoint.tls,
                       answers=tried)
    return passed(f"{target} refuses DESCRIBE without credentials with 401 on "
                  f"{len(refused)} path(s)" + (f"; {len(absent)} not found" if absent else ""),
                  target, tls=endpoint.tls, answers=tried)


@check(
    "rtsp.authentication",
    title="RTSP streams require authentication",
    control=CONTROL_COMMUNICATION,
    severity=Severity.HIGH,
    needs=lambda params, plan: (need(rtsp_survey, paths=tuple(params.paths)),),
    remediation="Require credentials for every RTSP request (Digest, or Basic only inside "
                "TLS): DESCRIBE, SETUP and PLAY without them must get 401. Set a unique "
                "password per device and turn off anonymous or 'guest' stream access.",
    params=AuthenticationParams,
    applies_to=(SERVICE,),
)
def authentication(obs: Observations, params: AuthenticationParams) -> Iterable[Finding]:
    """Pass: on every RTSP endpoint, DESCRIBE without credentials is refused with 401 on at
    least one of the stream paths (`paths`) and every other path answers 401 or 404.
    Fail: an endpoint serves a session description (SDP) to DESCRIBE without credentials.
    Error: an endpoint answers another status, something that is not RTSP, or nothing (the
    finding quotes a bounded excerpt), or answers 404 on every path tried.
    Not applicable: no RTSP endpoint was identified."""
    endpoints: tuple[RtspEndpoint, ...] = obs[rtsp_survey]
    if not endpoints:
        return [not_applicable("no RTSP endpoint was identified")]
    return [_judge(endpoint) for endpoint in endpoints]


def _identified(ident: Identification) -> dict[str, Any]:
    return {"port": ident.port, "tls": ident.tls, "detail": ident.detail,
            "identified_by": dict(ident.evidence)}


@check(
    "rtsp.cleartext",
    title="RTSP runs only inside TLS",
    control=CONTROL_COMMUNICATION,
    severity=Severity.MEDIUM,
    needs=(services,),
    remediation="Serve the streams over RTSPS (RTSP inside TLS, tcp/322 by convention) or "
                "another encrypted transport, and turn the cleartext RTSP listener off: in "
                "clear, the session, its credentials (Basic) and the stream can be read.",
    applies_to=(SERVICE,),
)
def cleartext(obs: Observations, params: NoParams) -> Iterable[Finding]:
    """Pass: RTSP answers only inside TLS (RTSPS).
    Fail: RTSP answers without TLS; one finding per endpoint.
    Not applicable: no RTSP endpoint was identified."""
    found: Services = obs[services]
    endpoints = [i for i in found.tcp if i.protocol == SERVICE]
    if not endpoints:
        return [not_applicable("no RTSP endpoint was identified")]
    return [passed(f"RTSP on tcp/{i.port} runs inside TLS", f"tcp/{i.port}", **_identified(i))
            if i.tls else
            failed(f"RTSP answers in clear on tcp/{i.port}: {i.detail}", f"tcp/{i.port}",
                   **_identified(i))
            for i in endpoints]


CHECKS = (authentication, cleartext)
