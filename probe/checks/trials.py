"""The verdict a default-credential trial reaches from its last attempt, shared by the checks
that try pairs one after another and stop at the first that logs in or decides nothing (SSH,
Telnet)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from probe.model import Finding, errored, failed, passed, skipped


class Attempt(Protocol):
    """One pair tried: who, and how it ended (`accepted`, `undecided` or a refusal)."""

    @property
    def username(self) -> str: ...

    @property
    def result(self) -> str: ...

    @property
    def detail(self) -> str: ...


def trial_verdict(target: str, attempts: Sequence[Attempt], evidence: dict[str, Any], *,
                  logged_in: str, none_logged_in: str, show_detail: bool = False) -> Finding:
    """Skipped when no pair was tried, fail when the last attempt was accepted, error when it
    decided nothing (the trial stopped there), else pass. `logged_in` and `none_logged_in`
    are the protocol's words for an accepted pair ("were accepted on", "logged in on");
    `show_detail` quotes the accepted attempt's detail."""
    if not attempts:
        return skipped("the profile lists no default credentials to try", target, **evidence,
                       reason="no-pairs")
    last, count = attempts[-1], len(attempts)
    if last.result == "accepted":
        said = f": {last.detail}" if show_detail else ""
        return failed(f"the default credentials of user {last.username!r} {logged_in} "
                      f"{target} (attempt {count}{said})", target, **evidence,
                      accepted_username=last.username)
    if last.result == "undecided":
        return errored(f"attempt {count} (user {last.username!r}) on {target} got no "
                       f"decisive answer: {last.detail}; stopped there", target, **evidence,
                       reason="undecided")
    return passed(f"none of {count} default pairs {none_logged_in} {target}", target,
                  **evidence)
