"""Telnet checks (27400-6.2): default credentials, and shells given without any. One finding per
Telnet endpoint ("tcp/23").

The default pairs are those the Mirai botnet tried on Telnet (the credential table of its
scanner, `scanner.c` in the source code published in September 2016), in its order; every
later IoT botnet reuses and extends that table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import Field

from probe.checks.base import CONTROL_COMMUNICATION, Observations, check
from probe.checks.params import CredentialTrialParams, Pairs
from probe.checks.trials import trial_verdict
from probe.model import Finding, Severity, errored, failed, not_applicable
from probe.observe.base import need
from probe.protocols.telnet.collectors import Trial, default_credentials

NO_ENDPOINT = "no Telnet endpoint"
MIRAI = (("root", "xc3511"), ("root", "vizxv"), ("root", "admin"), ("admin", "admin"),
         ("root", "888888"), ("root", "xmhdipc"), ("root", "default"), ("root", "juantech"),
         ("root", "123456"), ("root", "54321"), ("support", "support"), ("root", ""),
         ("admin", "password"), ("root", "root"), ("root", "12345"), ("user", "user"),
         ("admin", ""), ("root", "pass"), ("admin", "admin1234"), ("root", "1111"),
         ("admin", "smcadmin"), ("admin", "1111"), ("root", "666666"), ("root", "password"),
         ("root", "1234"), ("root", "klv123"), ("Administrator", "admin"),
         ("service", "service"), ("supervisor", "supervisor"), ("guest", "guest"),
         ("guest", "12345"), ("admin1", "password"), ("administrator", "1234"),
         ("666666", "666666"), ("888888", "888888"), ("ubnt", "ubnt"), ("root", "klv1234"),
         ("root", "Zte521"), ("root", "hi3518"), ("root", "jvbzd"), ("root", "anko"),
         ("root", "zlxx."), ("root", "7ujMko0vizxv"), ("root", "7ujMko0admin"),
         ("root", "system"), ("root", "ikwb"), ("root", "dreambox"), ("root", "user"),
         ("root", "realtek"), ("root", "00000000"), ("admin", "1111111"), ("admin", "1234"),
         ("admin", "12345"), ("admin", "54321"), ("admin", "123456"),
         ("admin", "7ujMko0admin"), ("admin", "pass"), ("admin", "meinsm"), ("tech", "tech"))
"""The Telnet credential table of Mirai's scanner (scanner.c, 2016), in its order."""


class DefaultCredentialsParams(CredentialTrialParams):
    pairs: Pairs = MIRAI
    max_attempts: Annotated[int, Field(ge=0)] = 20


def _judge(trial: Trial) -> Finding:
    target = trial.endpoint.target
    evidence: dict[str, Any] = {"port": trial.endpoint.port,
                                "attempts": [a.evidence() for a in trial.attempts]}
    if trial.open_shell is not None:
        return failed(f"{target} gives a shell prompt without asking for any credential",
                      target, **evidence, server_said=trial.open_shell, open_shell=True)
    if trial.problem:
        return errored(f"{target} showed no login prompt: {trial.problem}", target,
                       **evidence, reason="no-prompt")
    return trial_verdict(target, trial.attempts, evidence, logged_in="logged in on",
                         none_logged_in="logged in on", show_detail=True)


@check(
    "telnet.default-credentials",
    applies_to=("telnet",),
    title="Telnet accepts no default credentials and gives no shell without them",
    control=CONTROL_COMMUNICATION,
    severity=Severity.CRITICAL,
    needs=lambda params, plan: (need(default_credentials, pairs=params.attempts,
                                     pace=float(params.pace_seconds)),),
    remediation="Disable Telnet (manage the device over SSH with keys, or not remotely at "
                "all); where it must stay, remove factory accounts and give each device its "
                "own random password, and never start a shell without a login.",
    intrusive=True,
    params=DefaultCredentialsParams,
)
def telnet_default_credentials(obs: Observations,
                               params: DefaultCredentialsParams) -> Iterable[Finding]:
    """Pass: none of the profile's default `pairs` (by default the Mirai botnet's table, at
    most `max_attempts`, `pace_seconds` apart, a connection each) reaches a shell prompt.
    Fail: a pair does, or the server shows a shell prompt before asking for any credential.
    Not applicable: no Telnet endpoint.
    Error: the server showed no login prompt, or an attempt got no decisive answer (neither a
    refusal, a new login or password prompt, a closed connection nor a shell
    prompt).
    Skipped: the profile lists no pairs."""
    found = obs[default_credentials]
    if not found:
        return [not_applicable(NO_ENDPOINT)]
    return [_judge(trial) for trial in found]


CHECKS = (telnet_default_credentials,)
