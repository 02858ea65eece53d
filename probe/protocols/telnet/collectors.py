"""Telnet collectors: what a login with each default pair gets, and whether the server hands
out a shell before asking for anything.

Each attempt is one connection through `ctx.connect`: the server's options are refused
(`probe.protocols.telnet.codec`), then the probe waits for a prompt, each wait bounded by the
scan's timeout and `MAX_READ` bytes. What the prompts are is read from the last line the server
sent (see `LOGIN`, `PASSWORD`, `SHELL`, `REFUSED`): a refusal word, a new login or password
prompt after the password is a refusal, a closed connection too; a shell prompt is a login;
anything else (silence, an unknown question) decides nothing and stops the trial.

Passwords are written only to the connection; evidence names usernames, never passwords (a
server that echoes the password has it masked in what the evidence quotes).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any, Literal

from probe.context import DeviceContext
from probe.observe.discovery import Services, services
from probe.observe.tcp import excerpt
from probe.protocols.telnet import codec
from probe.protocols.telnet.ident import SERVICE

MAX_READ = 8192
"""The most bytes read while waiting for one prompt."""
TAIL = 160
"""How much of the end of the text the prompts are looked for in (and the evidence shows)."""
LOGIN = re.compile(r"(login|username|user name|user)\s*:\s*$", re.IGNORECASE)
PASSWORD = re.compile(r"(password|passcode|passwd)\s*:\s*$", re.IGNORECASE)
SHELL = re.compile(r"[#$%>]\s*$")
REFUSED = re.compile(r"incorrect|invalid|fail|denied|wrong|bad password|not allowed",
                     re.IGNORECASE)

Prompt = Literal["login", "password", "shell", "refused", "closed", "none"]
Result = Literal["accepted", "refused", "undecided"]


def _prompt(text: str, closed: bool, answered: bool) -> Prompt:
    """What the end of `text` asks for. In the answer to a credential (`answered`), a refusal
    word anywhere wins over a prompt, so that "Login incorrect" then "login:" is one refusal."""
    tail = text[-TAIL:].rstrip("\x00")
    if answered and REFUSED.search(text):
        return "refused"
    for name, pattern in (("password", PASSWORD), ("login", LOGIN), ("shell", SHELL)):
        if pattern.search(tail):
            return name  # type: ignore[return-value]
    return "closed" if closed else "none"


class _Session:
    """One Telnet connection, read prompt by prompt."""

    def __init__(self, ctx: DeviceContext, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.ctx, self.reader, self.writer = ctx, reader, writer
        self.stream = codec.Stream()
        self.text = ""
        self.closed = False

    async def wait(self, answered: bool = False, echo: str = "") -> Prompt:
        """Read until the text ends in a prompt, the connection closes, MAX_READ bytes or
        the timeout; what the text then asks for. `echo`, what the probe just typed, is not
        read as part of the server's answer (a password echoed back that ends in "#" is no
        shell prompt)."""
        self.text = ""
        got = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + self.ctx.timeout
        while got < MAX_READ and not self.closed:
            data, stalled = await self.ctx.read(self.reader, MAX_READ - got,
                                                deadline=max(0.0, end - loop.time()),
                                                until=lambda _: True)
            got += len(data)
            text, reply = self.stream.feed(data)
            self.text += text.decode("latin-1")
            if reply:
                self.writer.write(reply)
                await self.writer.drain()
            self.closed = not data and not stalled
            if stalled or _prompt(self._answer(echo), False, answered) != "none":
                break
        return _prompt(self._answer(echo), self.closed, answered)

    def _answer(self, echo: str) -> str:
        return self.text.replace(echo, "", 1) if echo else self.text

    async def say(self, text: str) -> None:
        self.writer.write(codec.line(text))
        await self.writer.drain()

    @property
    def seen(self) -> str:
        return excerpt(self.text[-TAIL:].encode("latin-1"), TAIL)


@dataclass(frozen=True)
class Endpoint:
    port: int

    @property
    def target(self) -> str:
        return f"tcp/{self.port}"


async def endpoints(ctx: DeviceContext) -> tuple[Endpoint, ...]:
    """Collector: the ports identification found speaking Telnet (option negotiation, or a
    login prompt on a banner port)."""
    found: Services = await ctx.observe(services)
    return tuple(Endpoint(i.port) for i in found.tcp if i.protocol == SERVICE)


@dataclass(frozen=True)
class Attempt:
    username: str
    result: Result
    detail: str = ""
    said: str = ""
    """The end of what the server sent last (bounded)."""

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"username": self.username, "result": self.result}
        if self.detail:
            out["detail"] = self.detail
        if self.said:
            out["server_said"] = self.said
        return out


@dataclass(frozen=True)
class Trial:
    endpoint: Endpoint
    attempts: tuple[Attempt, ...] = ()
    open_shell: str | None = None
    """What the server sent when it gave a shell prompt before asking for any credential."""
    problem: str = ""
    """Why no pair could be tried (the first prompt never came)."""


async def _login(session: _Session, username: str, password: str) -> Attempt:
    """One login through the prompts the server asks (a password-only prompt gets only the
    password)."""
    asked = await session.wait()
    if asked == "login":
        await session.say(username)
        asked = await session.wait(answered=True, echo=username)
    if asked in ("refused", "login", "closed"):  # refused on the user name alone
        return Attempt(username, "refused", asked, session.seen)
    if asked == "shell":
        return Attempt(username, "accepted", "a shell prompt before any password",
                       session.seen)
    if asked != "password":
        return Attempt(username, "undecided", f"no password prompt ({asked})", session.seen)
    await session.say(password)
    answer = await session.wait(answered=True, echo=password)
    said = session.seen.replace(password, "********") if password else session.seen
    if answer in ("refused", "login", "password", "closed"):  # asked again: refused
        return Attempt(username, "refused", answer, said)
    if answer == "shell":
        return Attempt(username, "accepted", "a shell prompt after the password", said)
    return Attempt(username, "undecided", f"no decisive answer after the password ({answer})",
                   said)


async def _attempt(ctx: DeviceContext, port: int, username: str, password: str) -> Attempt:
    try:
        async with ctx.connect(port) as (reader, writer):
            return await _login(_Session(ctx, reader, writer), username, password)
    except (OSError, TimeoutError) as exc:
        return Attempt(username, "undecided", type(exc).__name__)


async def _greeting(ctx: DeviceContext, port: int) -> tuple[Prompt, str]:
    """What the server asks first, and what it said."""
    async with ctx.connect(port) as (reader, writer):
        session = _Session(ctx, reader, writer)
        return await session.wait(), session.seen


async def _trial(ctx: DeviceContext, endpoint: Endpoint, pairs: tuple[tuple[str, str], ...],
                 pace: float, last: list[float]) -> Trial:
    try:
        first, said = await _greeting(ctx, endpoint.port)
    except (OSError, TimeoutError) as exc:
        return Trial(endpoint, problem=type(exc).__name__)
    if first == "shell":
        return Trial(endpoint, open_shell=said)
    if first not in ("login", "password"):
        return Trial(endpoint, problem=f"no login prompt ({first}): {said!r}")
    loop = asyncio.get_running_loop()
    attempts = []
    for username, password in pairs:
        if last:
            await asyncio.sleep(max(0.0, last[0] + pace - loop.time()))
        attempt = await _attempt(ctx, endpoint.port, username, password)
        last[:] = [loop.time()]
        attempts.append(attempt)
        if attempt.result != "refused":
            break
    return Trial(endpoint, tuple(attempts))


async def default_credentials(ctx: DeviceContext, *, pairs: tuple[tuple[str, str], ...],
                              pace: float) -> tuple[Trial, ...]:
    """Collector (intrusive): on each Telnet endpoint, the first prompt (a shell prompt there
    ends the trial: no credential is needed), then the (username, password) `pairs`, a
    connection each, `pace` seconds apart across the device, stopping at the first pair
    accepted or the first attempt without a decisive answer."""
    last: list[float] = []
    return tuple([await _trial(ctx, e, pairs, pace, last)
                  for e in await ctx.observe(endpoints)])
