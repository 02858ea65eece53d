"""SSH checks (27400-6.2): the algorithms a server offers, whether it takes passwords, and
whether it takes a default one. One finding per SSH endpoint ("tcp/22").

The algorithm policy (`weakness`), after current guidance (NIST SP 800-131A rev. 2, BSI TR-02102-4,
RFC 9142 for key exchange, RFC 8332 and OpenSSH 8.8 for ssh-rsa): a server fails when it
offers any of
- key exchange: SHA-1 based (diffie-hellman-group1-sha1, diffie-hellman-group14-sha1,
  diffie-hellman-group-exchange-sha1, rsa1024-sha1, gss-*-sha1-*) or a 1024-bit group (group1);
- host key: DSA (ssh-dss), SHA-1 RSA signatures (ssh-rsa and its certificate), an RSA key
  shorter than 2048 bits, a DSA key of any size;
- cipher: CBC mode, 3DES, RC4 (arcfour), Blowfish, CAST-128, DES, IDEA, none;
- MAC: MD5, SHA-1 (also -96 and -etm), truncated (-96) MACs, none.
NIST curves (ecdh-sha2-nistp*, ecdsa-sha2-nistp*) pass: current NIST and BSI guidance allows
them (ssh-audit fails them, see docs/ssh-telnet.md). Names the policy does not know pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from probe.checks.base import CONTROL_COMMUNICATION, Observations, check
from probe.checks.params import CredentialTrialParams, NoParams, Pairs
from probe.checks.trials import trial_verdict
from probe.model import Finding, Severity, errored, failed, not_applicable, passed
from probe.observe.base import need
from probe.protocols.ssh.collectors import (
    Algorithms,
    Methods,
    Trial,
    algorithms,
    auth_methods,
    default_credentials,
)

NO_ENDPOINT = "no SSH endpoint"
MIN_RSA_BITS = 2048
RSA_FAMILY = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")
PASSWORD_METHODS = ("password", "keyboard-interactive")
PSEUDO = ("kex-strict-", "ext-info-", "kexguess2@")
"""KEXINIT names that announce extensions, not algorithms."""
WEAK_CIPHERS = ("3des", "arcfour", "rc4", "blowfish", "cast128", "des-", "des@", "idea")


class DefaultCredentialsParams(CredentialTrialParams):
    pairs: Pairs = (("root", "root"), ("admin", "admin"), ("root", "admin"), ("root", ""),
                    ("admin", "password"), ("root", "123456"), ("user", "user"),
                    ("pi", "raspberry"), ("ubnt", "ubnt"), ("support", "support"))


def kex_weakness(name: str) -> str | None:
    if "group1-" in name or name.endswith("group1"):
        return "a 1024-bit Diffie-Hellman group"
    if "sha1" in name:
        return "SHA-1 hashing"
    return None


def host_key_weakness(name: str) -> str | None:
    if "dss" in name:
        return "DSA signatures"
    if name in ("ssh-rsa", "ssh-rsa-cert-v01@openssh.com") or name.startswith(
            ("x509v3-ssh-rsa", "x509v3-sign-rsa")):
        return "SHA-1 RSA signatures"
    return None


def cipher_weakness(name: str) -> str | None:
    if name == "none":
        return "no encryption"
    if name.startswith(WEAK_CIPHERS):
        return "a broken or 64-bit-block cipher"
    if "cbc" in name:
        return "CBC mode"
    return None


def mac_weakness(name: str) -> str | None:
    if name == "none":
        return "no integrity"
    if "md5" in name:
        return "MD5"
    if "sha1" in name:
        return "SHA-1"
    if name.endswith("-96") or "-96-" in name:
        return "a truncated 96-bit tag"
    return None


def weaknesses(found: Algorithms) -> dict[str, dict[str, str]]:
    """The offered algorithms the policy rejects, by list, each with the reason; host keys
    also by their size (the key's type and bits)."""
    kexinit = found.kexinit
    assert kexinit is not None
    out: dict[str, dict[str, str]] = {}
    lists = (("kex", kexinit.kex, kex_weakness), ("host_key", kexinit.host_key,
                                                  host_key_weakness),
             ("ciphers", kexinit.ciphers, cipher_weakness), ("macs", kexinit.macs, mac_weakness))
    for key, names, judge in lists:
        bad = {name: why for name in names if not name.startswith(PSEUDO)
               and (why := judge(name)) is not None}
        if bad:
            out[key] = bad
    for probe in found.keys:
        host = probe.key
        if host is not None and host.type == "ssh-rsa" and host.bits < MIN_RSA_BITS:
            for name in kexinit.host_key:  # every RSA signature algorithm signs with that key
                if name in RSA_FAMILY:
                    out.setdefault("host_key", {}).setdefault(name, f"a {host.bits}-bit RSA key")
    return out


def _algorithm_evidence(found: Algorithms) -> dict[str, Any]:
    out: dict[str, Any] = {"port": found.endpoint.port, "banner": found.endpoint.banner}
    if found.kexinit is not None:
        k = found.kexinit
        out |= {"kex": list(k.kex), "host_key_algorithms": list(k.host_key),
                "ciphers": list(k.ciphers), "macs": list(k.macs)}
    out["host_keys"] = [{"algorithm": p.algorithm, "type": p.key.type, "bits": p.key.bits}
                        if p.key is not None else {"algorithm": p.algorithm,
                                                   "problem": p.problem}
                        for p in found.keys]
    return out


def _listed(bad: dict[str, dict[str, str]]) -> str:
    return "; ".join(f"{group}: " + ", ".join(f"{name} ({why})" for name, why in names.items())
                     for group, names in bad.items())


def _judge_algorithms(found: Algorithms) -> Finding:
    target = found.endpoint.target
    evidence = _algorithm_evidence(found)
    if found.kexinit is None:
        return errored(f"the KEXINIT of {target} could not be read: {found.problem}", target,
                       **evidence, reason="kexinit")
    bad = weaknesses(found)
    if bad:
        return failed(f"{target} offers algorithms the policy rejects: {_listed(bad)}", target,
                      **evidence, rejected=bad)
    unread = [p for p in found.keys if p.key is None]
    if unread:
        return errored(f"{target}: the host key behind {unread[0].algorithm} could not be "
                       f"read ({unread[0].problem}), so its size is undecided", target,
                       **evidence, reason="host-key")
    keys = ", ".join(f"{p.key.type} {p.key.bits}-bit" for p in found.keys if p.key)
    return passed(f"{target} offers only algorithms the policy accepts (host keys: {keys})",
                  target, **evidence)


@check(
    "ssh.algorithms",
    applies_to=("ssh",),
    title="SSH offers only strong key exchange, host key, cipher and MAC algorithms",
    control=CONTROL_COMMUNICATION,
    severity=Severity.HIGH,
    needs=(algorithms,),
    remediation="Remove SHA-1 and 1024-bit key exchanges, DSA and SHA-1 RSA host key "
                "signatures, CBC/3DES/RC4 ciphers and MD5/SHA-1 MACs from the server "
                "(OpenSSH: KexAlgorithms, HostKeyAlgorithms, Ciphers, MACs; dropbear: build "
                "options), and replace RSA host keys shorter than 2048 bits (Ed25519 "
                "preferred).",
)
def ssh_algorithms(obs: Observations, params: NoParams) -> Iterable[Finding]:
    """Pass: the server's KEXINIT offers no key exchange, host key, cipher or MAC the policy
    rejects (SHA-1 or 1024-bit key exchange; DSA, SHA-1 RSA or RSA under 2048
    bits; CBC, 3DES, RC4 and other legacy ciphers; MD5, SHA-1 and 96-bit MACs) and every host
    key it offers was read.
    Fail: it offers one (the evidence lists each with the reason).
    Not applicable: no SSH endpoint.
    Error: the KEXINIT could not be read, or a host key could not be read (its size stays
    undecided)."""
    found = obs[algorithms]
    if not found:
        return [not_applicable(NO_ENDPOINT)]
    return [_judge_algorithms(item) for item in found]


def _judge_methods(found: Methods) -> Finding:
    endpoint = found.endpoint
    target = endpoint.target
    evidence: dict[str, Any] = {"port": endpoint.port, "banner": endpoint.banner,
                                "methods": list(found.methods)}
    if found.problem:
        return errored(f"the authentication methods of {target} could not be read: "
                       f"{found.problem}", target, **evidence, reason="session")
    if found.none_accepted:
        return failed(f"{target} accepted the `none` authentication method: it logs anybody "
                      "in without any credential", target, **evidence, none_accepted=True)
    offered = [m for m in found.methods if m in PASSWORD_METHODS]
    if offered:
        return failed(f"{target} offers password authentication ({', '.join(offered)}): "
                      "passwords can be guessed over the network", target, **evidence)
    listed = ", ".join(found.methods) or "none"
    return passed(f"{target} offers no password authentication (methods: {listed})", target,
                  **evidence)


@check(
    "ssh.password-auth",
    applies_to=("ssh",),
    title="SSH does not offer password authentication",
    control=CONTROL_COMMUNICATION,
    severity=Severity.MEDIUM,
    needs=(auth_methods,),
    remediation="Allow only public-key (or certificate) authentication: in OpenSSH set "
                "`PasswordAuthentication no` and `KbdInteractiveAuthentication no`; start "
                "dropbear with `-s`.",
)
def password_auth(obs: Observations, params: NoParams) -> Iterable[Finding]:
    """Pass: the methods the server lists after a `none` authentication request include
    neither `password` nor `keyboard-interactive`.
    Fail: they include one of them, or the server accepted `none` (no credential at all).
    Not applicable: no SSH endpoint.
    Error: the encrypted session could not be set up (among others when the server offers no
    key exchange, host key or cipher the probe's SSH library supports)."""
    found = obs[auth_methods]
    if not found:
        return [not_applicable(NO_ENDPOINT)]
    return [_judge_methods(item) for item in found]


def _judge_trial(trial: Trial) -> Finding:
    target = trial.endpoint.target
    evidence: dict[str, Any] = {"port": trial.endpoint.port,
                                "attempts": [a.evidence() for a in trial.attempts]}
    last = trial.last
    if last is not None and last.result == "no-method":
        return passed(f"{target} offers no password method, so no default pair can log in",
                      target, **evidence)
    return trial_verdict(target, trial.attempts, evidence, logged_in="were accepted on",
                         none_logged_in="was accepted on")


@check(
    "ssh.default-credentials",
    applies_to=("ssh",),
    title="SSH accepts no default credentials",
    control=CONTROL_COMMUNICATION,
    severity=Severity.CRITICAL,
    needs=lambda params, plan: (need(default_credentials, pairs=params.attempts,
                                     pace=float(params.pace_seconds)),),
    remediation="Remove default and shared accounts (root/admin with factory passwords), give "
                "every device its own random credential at provisioning, and prefer public-key "
                "authentication only.",
    intrusive=True,
    params=DefaultCredentialsParams,
)
def ssh_default_credentials(obs: Observations,
                            params: DefaultCredentialsParams) -> Iterable[Finding]:
    """Pass: none of the profile's default `pairs` (at most `max_attempts`, `pace_seconds`
    apart, a connection each, by password or, where the server offers only that,
    keyboard-interactive) logs in, or the server offers no password method.
    Fail: a pair logs in (the attempts stop there).
    Not applicable: no SSH endpoint.
    Error: an attempt got no decisive answer (the session could not be set up, or timed out).
    Skipped: the profile lists no pairs."""
    found = obs[default_credentials]
    if not found:
        return [not_applicable(NO_ENDPOINT)]
    return [_judge_trial(trial) for trial in found]


CHECKS = (ssh_algorithms, password_auth, ssh_default_credentials)
