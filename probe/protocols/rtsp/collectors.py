"""The RTSP collector: each RTSP endpoint identification found, asked DESCRIBE without
credentials on each of the stream paths it is given.

One connection per path, each bounded by the timeout and `codec.MAX_REPLY` bytes; the survey
of an endpoint stops at the first path that serves a session description (one is enough to
fail it) and at the first that draws no answer (a hanging endpoint costs one timeout, not one
per path, and is an `error` either way). Endpoints inside TLS (RTSPS) are asked through TLS,
with any certificate accepted: the TLS checks judge the certificate.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from probe.context import DeviceContext
from probe.observe.discovery import services
from probe.observe.identify import TlsClient
from probe.protocols.rtsp import codec
from probe.protocols.rtsp.ident import SERVICE

DEFAULT_PATHS = ("/", "/live", "/stream", "/live.sdp", "/h264", "/ch0", "/video1",
                 "/cam/realmonitor", "/Streaming/Channels/101", "/media/video1")


@dataclass(frozen=True)
class Answer:
    path: str
    reply: codec.Reply | None
    problem: str = ""  # why nothing came back (timeout, refused, TLS failure)


@dataclass(frozen=True)
class RtspEndpoint:
    port: int
    tls: bool
    answers: tuple[Answer, ...]

    @property
    def target(self) -> str:
        return f"tcp/{self.port}"


def _url(ctx: DeviceContext, port: int, tls: bool, path: str) -> str:
    host = f"[{ctx.address}]" if ":" in ctx.address else ctx.address
    return f"{'rtsps' if tls else 'rtsp'}://{host}:{port}{path}"


async def describe(ctx: DeviceContext, port: int, tls: bool, path: str) -> Answer:
    """DESCRIBE `path` without credentials: the reply, or why there is none."""
    client = TlsClient() if tls else None
    try:
        async with ctx.connect(port, tls=client.context if client else None,
                               server_hostname=ctx.device.hostname) as (reader, writer):
            writer.write(codec.describe(_url(ctx, port, tls, path)))
            await writer.drain()
            data, stalled = await ctx.read(reader, codec.MAX_REPLY, until=codec.complete)
    except TimeoutError:
        return Answer(path, None, f"no answer within {ctx.timeout:g} s")
    except (OSError, ssl.SSLError) as exc:
        return Answer(path, None, f"connection failed: {type(exc).__name__}")
    if not data:
        why = f"no byte within {ctx.timeout:g} s" if stalled else "closed without a byte"
        return Answer(path, None, why)
    return Answer(path, codec.parse(data))


async def _endpoint(ctx: DeviceContext, port: int, tls: bool,
                    paths: tuple[str, ...]) -> RtspEndpoint:
    answers: list[Answer] = []
    for path in paths:
        answer = await describe(ctx, port, tls, path)
        answers.append(answer)
        if answer.reply is None or answer.reply.sdp:
            break  # served: failed already; silent or refused: the next path would cost as much
    return RtspEndpoint(port, tls, tuple(answers))


async def rtsp_survey(ctx: DeviceContext, *, paths: tuple[str, ...]
                      ) -> tuple[RtspEndpoint, ...]:
    """Collector: every endpoint identified as RTSP, each of `paths` asked DESCRIBE."""
    found = await ctx.observe(services)
    return tuple(await asyncio.gather(*(_endpoint(ctx, i.port, i.tls, paths)
                                        for i in found.tcp if i.protocol == SERVICE)))
