"""Monitoring checks (27400-6.5) that provoke and observe: does the device report a failed
login, over what channel, does it slow down a brute force, does it send its heartbeat.

The sinks come from the inventory's `monitor:` (see `probe.monitoring.sinks`); a device that
declares none gets `skipped`, never a guess. The evidence names the nonce, each tagged attempt
and its answer, each sink and whether it could be watched, and the matching event with its
delay; passwords never appear (event texts are scrubbed of the inventory's secrets).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import Field

from probe.checks.base import CONTROL_MONITORING, Observations, PlanView, check
from probe.checks.params import CheckParams, NoParams, Seconds, Wait
from probe.model import Finding, Severity, errored, failed, not_applicable, passed, skipped
from probe.monitoring.collectors import (
    Burst,
    CanaryRun,
    canary,
    heartbeat,
    slowdowns,
    throttling,
)
from probe.observe.base import Need, need
from probe.protocols.http import checks as http

NO_SINK = ("no monitoring sink is declared for this device (inventory `monitor:` with an "
           "`mqtt` topic, a `syslog` listener or a `command`)")
NO_LOGIN = "no MQTT endpoint and no HTTP path that asks for credentials: nothing to log in to"
MAX_ATTEMPTS = 100
"""Whatever a profile says, no burst is longer."""
MAX_RATE = 50.0


class EventParams(CheckParams):
    event_timeout: Wait = 30
    """How long (seconds) the sinks are watched for the failed login's event."""


class ThrottlingParams(CheckParams):
    attempts: Annotated[int, Field(ge=2, le=MAX_ATTEMPTS)] = 10
    """The failed logins in one burst per login endpoint."""
    min_delay_factor: Annotated[float, Field(gt=0)] = 3.0
    """How many times slower the last answers must be than the first to count as throttled."""
    max_rate: Annotated[float, Field(gt=0, le=MAX_RATE)] = 5.0
    """The most attempts per second the burst sends."""
    min_slowdown_seconds: Seconds = 0.2
    """The least slowdown (seconds) that counts as throttled, whatever the factor."""


class HeartbeatParams(CheckParams):
    grace_seconds: Seconds = 5.0
    """How long past one declared heartbeat interval the probe still waits."""


def _paths(plan: PlanView) -> tuple[str, ...]:
    """Where HTTP logins are looked for: http.authentication's `protected_paths`."""
    return plan.params(http.authentication).protected_paths


def provoked(plan: PlanView) -> Need[CanaryRun]:
    """The device's one canary run: both checks that read it wait monitor.auth-failure-event's
    `event_timeout` (its default when that check is not planned)."""
    return need(canary, window=float(plan.params(auth_failure_event).event_timeout),
                paths=_paths(plan))


def _not_provoked(run: CanaryRun) -> Finding | None:
    """The finding when the canary could not make a failed login at all, else None."""
    evidence = run.evidence() if run.tag else {
        "sinks": list(run.sinks.for_events), "not_tried": [t.evidence() for t in run.targets]}
    if not run.targets:
        return not_applicable(NO_LOGIN)
    if not run.usable:
        reasons = "; ".join(sorted({t.not_tried for t in run.targets}))
        return skipped(f"no login endpoint could be tried: {reasons}", **evidence)
    if not run.watched:
        problems = "; ".join(f"{r.sink}: {r.problem}" for r in run.problems)
        return errored(f"no declared sink could be watched, so nothing was provoked: "
                       f"{problems}", **evidence, reason="sink")
    if not run.provoked:
        answers = "; ".join(f"{a.target.kind} {a.target.target}: {a.answer}"
                            for a in run.attempts)
        return errored(f"no tagged login was refused as a wrong password ({answers}), so "
                       "there was no failed login to report", **evidence,
                       reason="no-failed-login")
    return None


@check(
    "monitor.auth-failure-event",
    title="A failed login is reported to the monitoring sink",
    control=CONTROL_MONITORING,
    severity=Severity.HIGH,
    needs=lambda params, plan: (provoked(plan),),
    remediation="Make the device log every failed login as a security event that names the "
                "client (client id or user name, and source address and port) and says that "
                "the login failed, and forward it to the fleet's monitoring (syslog, an MQTT "
                "security topic, the SIEM) within seconds. A broker's generic log line such as "
                "mosquitto's `Client <unknown> disconnected, not authorised.` names no one and "
                "is not enough.",
    params=EventParams,
)
def auth_failure_event(obs: Observations, params: EventParams) -> Iterable[Finding]:
    """Pass: after the probe's tagged failed login on each login endpoint, an event reaches a
    declared sink within `event_timeout` that comes from the device or a declared forwarder,
    names the attempt (its nonce, or its MQTT source address and port) and at most three
    attempts, and says the login failed.
    Fail: no such event arrived; near misses are in the evidence.
    Not applicable: no login endpoint.
    Error: a sink could not be watched (reason `sink`), the device accepted the random login
    (`no-failed-login`), or the device budget ended the wait (`budget`).
    Skipped: no sink declared, or no login endpoint could be tried."""
    run = obs[canary]
    if not run.sinks.for_events:
        return [skipped(NO_SINK)]
    early = _not_provoked(run)
    if early is not None:
        return [early]
    evidence = run.evidence()
    if run.matched:
        event = evidence["events"][0]
        again = ("" if run.repeated_after is None else
                 f" (the login was made again {run.repeated_after:.1f} s after the first)")
        return [passed(f"the tagged failed login {run.tag} was reported through "
                       f"{event['channel']} by {event['delivered_by']} after "
                       f"{event['delay_seconds']:g} s{again}", **evidence)]
    sinks = ", ".join(r.channel for r in run.reports)
    if run.problems:
        problems = "; ".join(f"{r.sink}: {r.problem}" for r in run.problems)
        return [errored(f"no event naming {run.tag} arrived, and not every sink could be "
                        f"watched ({problems})", **evidence, reason="sink")]
    if run.cut_short:
        return [errored(f"no event naming {run.tag} arrived in the {run.waited:.1f} s the "
                        f"device budget left (event_timeout is {run.window:g} s)", **evidence,
                        reason="budget")]
    hint = ""
    if run.rejected:
        hint = f"; {len(run.rejected)} event(s) were rejected ({run.rejected[0].reason})"
    elif run.named:
        hint = "; events named the attempt without saying that it failed"
    elif run.failures:
        hint = "; failure events arrived but named neither the nonce nor the probe's source"
    return [failed(f"no event naming the tagged failed login {run.tag} and its failure "
                   f"reached {sinks} within {run.window:g} s{hint}", **evidence)]


@check(
    "monitor.event-transport",
    title="Security events travel over an encrypted channel",
    control=CONTROL_MONITORING,
    severity=Severity.MEDIUM,
    needs=lambda params, plan: (provoked(plan),),
    remediation="Send security events over TLS: syslog over TLS (RFC 5425, port 6514) with "
                "the collector's certificate verified, or MQTT over TLS (8883). Over UDP or TCP "
                "syslog or cleartext MQTT anyone on the path can read, drop or forge them.",
)
def event_transport(obs: Observations, params: NoParams) -> Iterable[Finding]:
    """Pass: every canary event that arrived came over an encrypted channel (syslog over TLS,
    MQTT over TLS).
    Fail: one came in cleartext (UDP or TCP syslog, MQTT without TLS).
    Skipped: no sink declared, no canary event arrived, or only the command sink found it (a
    command does not show how the event travelled)."""
    run = obs[canary]
    if not run.sinks.for_events:
        return [skipped(NO_SINK)]
    if not run.matched:
        return [skipped("no canary event arrived (see monitor.auth-failure-event), so its "
                        "channel is unknown", reason="no-event")]
    events = [run.event(e) for e in run.matched]
    known = [e for e in events if "encrypted" in e]
    evidence: dict[str, Any] = {"nonce": run.tag, "events": events}
    if not known:
        return [skipped("the canary event was found only by the command sink, which does not "
                        "show how it travelled", **evidence)]
    clear = sorted({e["channel"] for e in known if not e["encrypted"]})
    if clear:
        return [failed(f"the canary event arrived in cleartext over {', '.join(clear)}",
                       **evidence)]
    channels = ", ".join(sorted({e["channel"] for e in known}))
    return [passed(f"the canary event arrived encrypted, over {channels}", **evidence)]


def _burst(burst: Burst, factor: float, floor: float) -> Finding:
    target = burst.target.target
    evidence: dict[str, Any] = {**burst.target.evidence(), "planned_attempts": burst.planned,
                                "max_rate": burst.max_rate, "min_delay_factor": factor,
                                "attempts": burst.timings()}
    attempts = burst.attempts
    if not attempts:
        return skipped(f"{target}: {burst.target.not_tried}", target, **evidence)
    first = attempts[0]
    if first.kind == "accepted":
        return failed(f"{target} accepted a random password ({first.answer}): there is no "
                      "failed login to throttle, anyone gets in", target, **evidence)
    if first.kind != "denied":
        return errored(f"{target}: the first attempt got no ordinary refusal ({first.answer}), "
                       "so there is no baseline to compare", target, **evidence,
                       reason=first.kind)
    odd = [not (a.kind == "denied" and a.code == first.code) for a in attempts]
    for index in range(1, len(attempts)):
        # a refusal counts when the next attempt is refused too, or when it ended the burst:
        # a lone timeout between ordinary answers is the network's noise
        if odd[index] and (index == len(attempts) - 1 or odd[index + 1]):
            item = attempts[index]
            if item.kind == "denied":
                how = f"answered attempt {index + 1} with {item.answer} instead of {first.answer}"
            else:
                how = f"{item.kind} attempt {index + 1} ({item.answer}) after {first.answer}"
            return passed(f"{target} {how}: it stops a brute force", target, **evidence)
    changes = slowdowns(attempts)
    if not changes:
        return errored(f"{target}: too few answered attempts to compare", target, **evidence,
                       reason="too-few")
    evidence["slowdown"] = [c.evidence() for c in changes]
    for change in changes:
        if change.factor >= factor and change.final - change.baseline >= floor:
            return passed(f"{target} slowed down {change.factor:.1f}x over {len(attempts)} "
                          f"failed logins (median {change.measure} time "
                          f"{change.baseline * 1000:.0f} ms, then {change.final * 1000:.0f} ms)",
                          target, **evidence)
    change = changes[-1]
    return failed(f"{target} answered all {len(attempts)} rapid failed logins alike (median "
                  f"{change.baseline * 1000:.0f} ms, then {change.final * 1000:.0f} ms): no "
                  "slowdown, refusal or lockout", target, **evidence)


@check(
    "monitor.bruteforce-throttling",
    title="Repeated failed logins are slowed down or refused",
    control=CONTROL_MONITORING,
    severity=Severity.MEDIUM,
    needs=lambda params, plan: (need(throttling, attempts=int(params.attempts),
                                     max_rate=float(params.max_rate), paths=_paths(plan)),),
    remediation="Throttle failed logins per source and per account: add a growing delay after "
                "a few failures, refuse or drop further attempts for a while, or lock the "
                "account (e.g. nginx `limit_req` on the login location, fail2ban on the "
                "broker's log, or the device firmware's own back-off).",
    intrusive=True,
    params=ThrottlingParams,
)
def bruteforce_throttling(obs: Observations, params: ThrottlingParams) -> Iterable[Finding]:
    """Pass: during a burst of at most `attempts` tagged failed logins (2 to 100), at most
    `max_rate` per second, an endpoint answers two attempts in a row (or the last one) otherwise
    than the first refusal: it refuses (MQTT busy, banned or rate limited; HTTP 423, 429, 503),
    drops the attempt or locks the source out; or the median time of the last three refusals is
    at least `min_delay_factor` times that of the first three and `min_slowdown_seconds` longer.
    Fail: every attempt was answered alike, or the endpoint accepted a random password.
    Not applicable: no MQTT endpoint and no HTTP path that asks for credentials.
    Error: the first attempt got no ordinary refusal, or too few attempts were answered to
    compare.
    Skipped: the endpoint could not be tried."""
    bursts = obs[throttling]
    if not bursts:
        return [not_applicable(NO_LOGIN)]
    factor = float(params.min_delay_factor)
    floor = float(params.min_slowdown_seconds)
    return [_burst(b, factor, floor) for b in bursts]


@check(
    "monitor.heartbeat",
    title="The device publishes its heartbeat",
    control=CONTROL_MONITORING,
    severity=Severity.LOW,
    needs=lambda params, plan: (need(heartbeat, grace=float(params.grace_seconds)),),
    remediation="Publish a heartbeat (status, uptime) on the declared topic at the declared "
                "interval, so that monitoring notices a device that went silent, was switched "
                "off or was taken over.",
    params=HeartbeatParams,
)
def heartbeat_check(obs: Observations, params: HeartbeatParams) -> Iterable[Finding]:
    """Pass: a publication (not a retained message) arrives on the declared
    `monitor.mqtt.heartbeat_topic` within `heartbeat_interval` plus `grace_seconds`.
    Fail: none arrived.
    Error: the topic could not be watched (reason `sink`), or the device budget left less than
    that wait (reason `budget`: raise `--budget`).
    Skipped: no heartbeat declared."""
    watch = obs[heartbeat]
    sink = watch.sink
    if sink is None:
        return [skipped("no heartbeat is declared (inventory monitor.mqtt.heartbeat_topic and "
                        "heartbeat_interval)")]
    evidence = watch.evidence()
    if watch.problem is not None:
        return [errored(f"the heartbeat topic could not be watched: {watch.problem}",
                        **evidence, reason="sink")]
    if watch.arrived is not None and watch.delay is not None:
        return [passed(f"a heartbeat arrived on {watch.arrived.topic} after "
                       f"{watch.delay:.1f} s (declared interval {sink.heartbeat_interval:g} s)",
                       **evidence)]
    if watch.cut_short:
        return [errored(f"no heartbeat in the {watch.waited:.1f} s the device budget left; the "
                        f"declared interval is {sink.heartbeat_interval:g} s: raise --budget",
                        **evidence, reason="budget")]
    return [failed(f"no heartbeat on {sink.heartbeat_topic} within {watch.waited:.1f} s (the "
                   f"declared interval {sink.heartbeat_interval:g} s plus grace)", **evidence)]


CHECKS = (auth_failure_event, event_transport, bruteforce_throttling, heartbeat_check)
