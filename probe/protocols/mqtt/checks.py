"""MQTT checks (27400-6.2): encryption, authentication and authorization of MQTT endpoints.

Every check judges each MQTT endpoint (3.1.1 and 5, cleartext and TLS, on TCP or over WebSockets)
on its own and yields one result per endpoint (`tcp/<port>`, or `tcp/<port> ws <path>` and
`tcp/<port> wss <path>`); a device without MQTT endpoint gets `not_applicable`. The
evidence is what was sent and what came back: CONNACK return codes (3.1.1) and reason codes (5),
SUBACK codes, which messages reached the probe. Passwords never appear, usernames may.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from probe.checks.base import CONTROL_COMMUNICATION, Observations, check
from probe.checks.params import CheckParams, CredentialTrialParams, NoParams, Pairs, Seconds
from probe.model import Finding, Severity, errored, failed, not_applicable, passed, skipped
from probe.observe.base import need
from probe.protocols.mqtt.codec import PROTOCOL, SUBACK, meaning
from probe.protocols.mqtt.collectors import (
    Anonymous,
    CredentialTrial,
    Endpoint,
    TopicProbe,
    anonymous_access,
    default_credentials,
    endpoints,
    topic_authorization,
)

NO_ENDPOINT = "no MQTT endpoint on the device"


class DefaultCredentialsParams(CredentialTrialParams):
    pairs: Pairs = (("admin", "admin"), ("admin", "password"), ("admin", "public"),
                    ("root", "root"), ("user", "user"), ("mqtt", "mqtt"), ("guest", "guest"),
                    ("test", "test"), ("admin", "1234"), ("pi", "raspberry"))


class TopicAuthorizationParams(CheckParams):
    window_seconds: Seconds = 2.0
    """How long the canary's publication and `$SYS` are watched for."""
    canary_prefix: str = "iotprobe/canary"
    """The topic prefix the canary identity publishes under."""


def _silent(endpoint: Endpoint, what: str) -> Finding:
    return errored(f"{endpoint.target} gave MQTT no answer ({endpoint.hello.detail}), so "
                   f"{what} could not be decided", endpoint.target, **endpoint.evidence(),
                   connect=endpoint.hello.evidence(), reason="timeout")


def _levels(anonymous: Anonymous) -> str:
    return "; ".join(f"{PROTOCOL[o.level]}: {o.describe()}" for o in anonymous.levels)


def _refused(anonymous: Anonymous) -> str:
    """Why anonymous access is refused, from the levels the endpoint speaks only: a level
    whose version it refused (it does not speak it) is named as such, not as a refusal."""
    target = anonymous.endpoint.target
    refusals = "; ".join(f"{PROTOCOL[o.level]}: {o.describe()}" for o in anonymous.spoken)
    unspoken = anonymous.unspoken
    if not unspoken:
        return f"CONNECT without credentials is refused on {target}: {refusals}"
    return (f"CONNECT without credentials is refused on {target} at the level it speaks "
            f"({refusals}); it does not speak "
            + "; ".join(f"{PROTOCOL[o.level]} ({o.describe()})" for o in unspoken))


@check(
    "mqtt.cleartext-listener",
    applies_to=("mqtt",),
    title="No MQTT listener without TLS",
    control=CONTROL_COMMUNICATION,
    severity=Severity.HIGH,
    needs=(endpoints,),
    remediation="Serve MQTT only over TLS (port 8883) and close the cleartext listener (1883): "
                "on a cleartext listener user names, passwords and every message cross the "
                "network readable and alterable by anyone on the path.",
)
def cleartext_listener(obs: Observations, params: NoParams) -> Iterable[Finding]:
    """Pass: every MQTT endpoint runs over TLS.
    Fail: an MQTT listener without TLS answers a CONNECT with a CONNACK (whatever its code:
    credentials and messages travel in clear).
    Not applicable: no MQTT endpoint.
    Error: a cleartext listener gave no decisive answer to the CONNECT, or never answered at
    all."""
    found = obs[endpoints]
    if not found:
        return [not_applicable(NO_ENDPOINT)]
    findings = []
    for endpoint in found:
        target, hello = endpoint.target, endpoint.answer
        evidence = {**endpoint.evidence(), "connect": hello.evidence()}
        if endpoint.silent:
            findings.append(_silent(endpoint, "whether it serves MQTT in cleartext"))
        elif endpoint.tls:
            version = endpoint.tls_info.get("tls_version", "TLS")
            findings.append(passed(f"MQTT on {target} runs over TLS ({version})", target,
                                   **evidence))
        elif hello.result == "connack":
            findings.append(failed(
                f"MQTT on {target} answers a CONNECT in cleartext ({hello.describe()}): "
                "credentials and messages travel unencrypted", target, **evidence))
        else:
            findings.append(errored(f"MQTT on {target} is in cleartext but its answer to a "
                                    f"CONNECT was not decisive: {hello.describe()}", target,
                                    **evidence, reason=hello.result))
    return findings


@check(
    "mqtt.anonymous-access",
    applies_to=("mqtt", "mqtts"),
    title="MQTT refuses clients without credentials",
    control=CONTROL_COMMUNICATION,
    severity=Severity.CRITICAL,
    needs=(anonymous_access,),
    remediation="Refuse clients that present no credentials: in mosquitto set "
                "`allow_anonymous false` on every listener and give each client its own "
                "password (password_file or the dynamic security plugin) or client "
                "certificate; other brokers have an equivalent switch. Check both MQTT 3.1.1 "
                "and MQTT 5 clients are refused.",
)
def anonymous(obs: Observations, params: NoParams) -> Iterable[Finding]:
    """Pass: a CONNECT without user name and password is refused at every protocol level the
    endpoint speaks, both MQTT 3.1.1 and MQTT 5 having been asked.
    Fail: one is accepted (the evidence gives the CONNACK code).
    Not applicable: no MQTT endpoint.
    Error: the broker refused the protocol version of every CONNECT (reason `protocol-version`),
    or a CONNECT got no decisive answer; silence is no refusal."""
    found = obs[anonymous_access]
    if not found:
        return [not_applicable(NO_ENDPOINT)]
    findings = []
    for item in found:
        endpoint = item.endpoint
        target = endpoint.target
        evidence: dict[str, Any] = {**endpoint.evidence(),
                                    "levels": [o.evidence() for o in item.levels]}
        accepted = item.accepted
        if endpoint.silent:
            findings.append(_silent(endpoint, "anonymous access"))
        elif accepted is not None:
            code_key = "connack_code" if accepted.packet_level == 4 else "reason_code"
            findings.append(failed(
                f"{PROTOCOL[accepted.level]} CONNECT without credentials was accepted on "
                f"{target} (CONNACK {accepted.code})", target, **evidence,
                protocol_level=accepted.level, **{code_key: accepted.code}))
        elif all(o.refused for o in item.levels) and not item.spoken:
            findings.append(errored(
                f"{target} refused the protocol version of every CONNECT ({_levels(item)}): "
                "whether it admits clients without credentials at the level it speaks is "
                "undecided", target, **evidence, reason="protocol-version"))
        elif item.spoken and all(o.refused for o in item.spoken) and (
                {o.level for o in item.levels} == {4, 5}):
            findings.append(passed(_refused(item), target, **evidence))
        else:
            undecided = next(o for o in item.levels if not o.decided)
            findings.append(errored(
                f"{PROTOCOL[undecided.level]} CONNECT without credentials on {target} was not "
                f"answered decisively: {undecided.describe()}", target, **evidence,
                reason=undecided.result))
    return findings


def _pairs_tried(trial: CredentialTrial) -> dict[str, Any]:
    return {**trial.endpoint.evidence(), "protocol_level": trial.level,
            "attempts": [a.evidence() for a in trial.attempts],
            "anonymous_accepted": trial.anonymous_accepted}


@check(
    "mqtt.default-credentials",
    applies_to=("mqtt", "mqtts"),
    title="MQTT accepts no default credentials",
    control=CONTROL_COMMUNICATION,
    severity=Severity.CRITICAL,
    needs=lambda params, plan: (need(default_credentials, pairs=params.attempts,
                                     pace=float(params.pace_seconds)),),
    remediation="Remove default and shared accounts from the broker or device (admin, guest, "
                "mqtt, test, ...) and give every device and user an individual, random "
                "password or a client certificate, set at provisioning.",
    intrusive=True,
    params=DefaultCredentialsParams,
)
def default_creds(obs: Observations, params: DefaultCredentialsParams) -> Iterable[Finding]:
    """Pass: none of the profile's default `pairs` (at most `max_attempts`, `pace_seconds`
    apart) is accepted, or the endpoint demands a client certificate the probe lacks, so no pair
    reaches MQTT.
    Fail: a pair is accepted (the attempts stop there).
    Not applicable: no MQTT endpoint.
    Error: an attempt got no decisive answer.
    Skipped: the profile lists no pairs."""
    found = obs[default_credentials]
    if not found:
        return [not_applicable(NO_ENDPOINT)]
    findings = []
    for trial in found:
        endpoint = trial.endpoint
        target = endpoint.target
        evidence = _pairs_tried(trial)
        accepted, undecided = trial.accepted, trial.undecided
        if endpoint.silent:
            findings.append(_silent(endpoint, "default credentials"))
        elif trial.not_tried:
            findings.append(passed(f"no default pair can reach the MQTT layer of {target}: "
                                   f"{trial.not_tried}", target, **evidence,
                                   client_certificate_required=True))
        elif accepted is not None:
            also = (" (the endpoint accepts clients without credentials too)"
                    if trial.anonymous_accepted else "")
            findings.append(failed(
                f"the default credentials of user {accepted.username!r} were accepted on "
                f"{target} ({PROTOCOL[trial.level]}, attempt {len(trial.attempts)}){also}",
                target, **evidence, accepted_username=accepted.username))
        elif undecided is not None:
            findings.append(errored(
                f"attempt {len(trial.attempts)} (user {undecided.username!r}) on {target} got "
                f"no decisive answer: {undecided.outcome.describe()}; stopped there", target,
                **evidence, reason=undecided.outcome.result))
        elif not trial.attempts:
            findings.append(skipped("the profile lists no default credentials to try", target,
                                    **evidence, reason="no-pairs"))
        else:
            findings.append(passed(f"none of {len(trial.attempts)} default pairs was accepted "
                                   f"on {target}", target, **evidence))
    return findings


def _topic_evidence(probe: TopicProbe) -> dict[str, Any]:
    out: dict[str, Any] = {**probe.endpoint.evidence(), "protocol_level": probe.level}
    if probe.identity:
        out["identity"] = probe.identity
    if probe.login is not None:
        out["login"] = probe.login.evidence()
    if probe.suback:
        out["suback"] = {f: {"code": c, "meaning": meaning(probe.level, c, SUBACK)}
                         for f, c in probe.suback.items()}
    if probe.canary is not None:
        out["canary"] = probe.canary.evidence()
    if probe.watch is not None and probe.suback:
        out["received"] = probe.watch.evidence()
    if probe.window:
        out["window_seconds"] = probe.window
    return out


def _topic_finding(probe: TopicProbe) -> Finding:
    endpoint, target, login = probe.endpoint, probe.endpoint.target, probe.login
    evidence = _topic_evidence(probe)
    watch, canary = probe.watch, probe.canary
    if endpoint.silent:
        return _silent(endpoint, "topic authorization")
    if probe.not_tried:
        return skipped(f"not run on {target}: {probe.not_tried}", target, **evidence,
                       reason="no-credentials")
    if login is not None and not login.accepted:
        if login.refused:
            return skipped(f"the probe identity {probe.identity!r} was refused on {target} "
                           f"({login.describe()})", target, **evidence,
                           reason="credentials-refused")
        return errored(f"the probe identity's CONNECT on {target} was not answered "
                       f"decisively: {login.describe()}", target, **evidence,
                       reason=login.result)
    if probe.problem or watch is None:
        return errored(f"topic authorization on {target} could not be observed: "
                       f"{probe.problem}", target, **evidence, reason="protocol")
    who = probe.identity
    if watch.canary or watch.sys_messages:
        what = []
        if watch.canary and canary is not None:
            what.append(f"the canary nonce that {canary.identity!r} published")
        if watch.sys_messages:
            what.append(f"{watch.sys_messages} $SYS message(s) ({', '.join(watch.sys_topics)})")
        return failed(f"identity {who!r} subscribed to {' and '.join(probe.granted)} on "
                      f"{target} and received " + " and ".join(what), target, **evidence)
    if not probe.granted:
        return passed(f"SUBACK refused # and $SYS/# to identity {who!r} on {target}", target,
                      **evidence)
    if "#" in probe.granted:
        if canary is None:
            return skipped(f"SUBACK granted # to {who!r} on {target} and no $SYS message "
                           f"arrived, but delivery filtering is unproven without a canary: "
                           f"{probe.no_canary}", target, **evidence, reason="no-canary")
        if not canary.proved:
            problem, undecided = canary.problem, canary.undecided
            if canary.login is not None and not canary.login.accepted:
                problem = f"it could not log in ({canary.login.describe()})"
                undecided = not canary.login.decided
            summary = (f"the canary {canary.identity!r} could not prove delivery on {target}: "
                       f"{problem}")
            if undecided:
                return errored(summary, target, **evidence, reason="canary")
            return skipped(summary, target, **evidence, reason="canary-unusable")
    return passed(f"identity {who!r} was granted {' and '.join(probe.granted)} on {target}, "
                  f"but within {probe.window:g} s no message outside its scope arrived"
                  + (" (the canary's nonce did not reach it)" if canary is not None else ""),
                  target, **evidence)


@check(
    "mqtt.topic-authorization",
    applies_to=("mqtt", "mqtts"),
    title="MQTT identities receive nothing outside their scope",
    control=CONTROL_COMMUNICATION,
    severity=Severity.HIGH,
    needs=lambda params, plan: (need(topic_authorization, window=float(params.window_seconds),
                                     canary_prefix=params.canary_prefix),),
    remediation="Give every client an ACL that limits it to its own topics (mosquitto: an "
                "acl_file with per-user `topic` lines or `pattern` rules, or roles in the "
                "dynamic security plugin) and deny `#` and `$SYS/#` to device and application "
                "identities.",
    params=TopicAuthorizationParams,
)
def topic_auth(obs: Observations, params: TopicAuthorizationParams) -> Iterable[Finding]:
    """Pass: the probe identity (`credentials.mqtt`, or anonymous where the broker admits it) is
    refused `#` and `$SYS/#` at SUBACK, or, where granted, receives within `window_seconds`
    neither the nonce a second identity (`credentials.mqtt_canary`) published under
    `canary_prefix` nor any `$SYS` message.
    Fail: it receives either.
    Not applicable: no MQTT endpoint.
    Error: the probe identity's CONNECT got no decisive answer, the subscription could not be
    observed, or the canary's delivery stayed undecided (reason `canary`).
    Skipped: no usable credentials, the probe identity was refused, or `#` was granted with no
    usable canary to prove delivery filtering (a granted SUBACK alone never passes)."""
    found = obs[topic_authorization]
    if not found:
        return [not_applicable(NO_ENDPOINT)]
    return [_topic_finding(probe) for probe in found]


@check(
    "mqtt.client-certificate",
    applies_to=("mqtts",),
    title="MQTT over TLS requires a client certificate",
    control=CONTROL_COMMUNICATION,
    severity=Severity.MEDIUM,
    needs=(endpoints,),
    remediation="Require mutual TLS on every MQTT-over-TLS listener (mosquitto: `cafile` with "
                "the device CA and `require_certificate true`; optionally "
                "`use_identity_as_username true`), and provision each client with its own "
                "certificate.",
)
def client_certificate(obs: Observations, params: NoParams) -> Iterable[Finding]:
    """Pass: every MQTT-over-TLS endpoint refuses a client that presents no certificate at the
    TLS layer.
    Fail: it completes TLS without one and answers the CONNECT.
    Not applicable: no MQTT-over-TLS endpoint.
    Error: the answer decided nothing, or the endpoint never answered."""
    found = obs[endpoints]
    tls = [e for e in found if e.tls]
    if not tls:
        what = NO_ENDPOINT if not found else (
            "no MQTT-over-TLS endpoint (cleartext only: "
            + ", ".join(e.target for e in found) + ")")
        return [not_applicable(what)]
    findings = []
    for endpoint in tls:
        target, hello = endpoint.target, endpoint.answer
        evidence = {**endpoint.evidence(), "connect": hello.evidence()}
        if endpoint.silent:
            findings.append(_silent(endpoint, "whether it requires a client certificate"))
        elif endpoint.needs_certificate:
            how = (f"TLS alert: {hello.detail}" if hello.detail else "it asked for a "
                   "certificate and closed the connection before any CONNACK")
            findings.append(passed(f"the TLS layer of {target} refused a client without "
                                   f"certificate ({how})", target, **evidence))
        elif hello.result == "connack":
            findings.append(failed(f"{target} completed TLS with a client that presented no "
                                   f"certificate and answered its CONNECT "
                                   f"({hello.describe()})", target, **evidence))
        else:
            findings.append(errored(f"{target}: {hello.describe()}", target, **evidence,
                                    reason=hello.result))
    return findings


CHECKS = (cleartext_listener, anonymous, default_creds, topic_auth, client_certificate)
