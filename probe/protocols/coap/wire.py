"""CoAP over UDP (RFC 7252): resource discovery, reads, write-back, and every answer's size.

The probe speaks CoAP itself, over `ctx.udp_conversation`, rather than through aiocoap's client.
aiocoap's retransmissions can be shortened per message (`transport_tuning`; by default a silent
port costs about 88 s), but its client still runs its own transport: its sockets bypass the
scan's rate limiter and the device's connection slots, its block-wise and separate-response
handling send datagrams the probe does not see, and it hides the datagrams whose exact sizes
the amplification check needs. Here every request is one confirmable message answered within
the scan's timeout; when nothing at all (not even an ICMP refusal) has come back by half the
timeout, it is sent once more unchanged (same message id and token, RFC 7252 4.2), so one lost
datagram does not make an endpoint look absent, and both transmissions count as request bytes.
An empty ACK is followed by waiting (within the same timeout) for the separate response,
which is acknowledged; block-wise transfers (RFC 7959) are read with Block2 and written with
Block1, up to `MAX_BODY` bytes. The tests check this codec against aiocoap's and libcoap's
servers.

Collectors: `well_known_core(ctx, port)` (read by `discover`, discovery's CoAP probe, and shared
with the checks). The per-endpoint steps `survey_endpoint` and `endpoint_writes` are run by the
collectors of `probe.protocols.coap.collectors` (`coap_survey`, `coap_writes`), which start
from what discovery found.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from probe.context import Datagrams, DeviceContext, UdpConversation
from probe.observe.tcp import excerpt
from probe.observe.udp import UdpService, judge

CON, NON, ACK, RST = 0, 1, 2, 3
TYPES = ("CON", "NON", "ACK", "RST")
EMPTY, GET, PUT = 0x00, 0x01, 0x03
CONTENT, CONTINUE = 0x45, 0x5F  # 2.05, 2.31
URI_PATH, CONTENT_FORMAT, URI_QUERY, BLOCK2, BLOCK1 = 11, 12, 15, 23, 27
PAYLOAD_MARKER = 0xFF
WELL_KNOWN_CORE = "/.well-known/core"

MAX_BODY = 8192
"""Bytes of one representation the probe reads, and so the largest it writes back."""
MAX_BLOCKS = 64
MAX_SZX = 6  # 1024-byte blocks
MAX_ROUNDS = 4
"""Receives per request: the piggybacked answer, or an empty ACK and the separate response."""
LINGER = 0.05
"""After a first request's first datagram, how long to listen for more (amplification counts
every datagram one request draws); follow-up requests do not linger."""
MAX_TARGET = 255
MAX_EXTERNAL = 16


class CoapError(ValueError):
    """Bytes that are not a well-formed CoAP message."""


def uint(value: int) -> bytes:
    """An option value as a CoAP unsigned integer (shortest big-endian form)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def code_text(code: int) -> str:
    return f"{code >> 5}.{code & 31:02d}"


def _nibble(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes([value - 13])
    return 14, (value - 269).to_bytes(2, "big")


def _extended(data: bytes, nibble: int, at: int) -> tuple[int, int]:
    if nibble < 13:
        return nibble, at
    if nibble == 13 and at < len(data):
        return data[at] + 13, at + 1
    if nibble == 14 and at + 2 <= len(data):
        return int.from_bytes(data[at:at + 2], "big") + 269, at + 2
    raise CoapError("bad option delta or length")


@dataclass(frozen=True)
class Block:
    """A Block1 or Block2 option value (RFC 7959 2.2)."""

    num: int
    more: bool
    szx: int

    @property
    def size(self) -> int:
        return 16 << self.szx

    def encode(self) -> bytes:
        return uint(self.num << 4 | int(self.more) << 3 | self.szx)

    @classmethod
    def decode(cls, value: bytes) -> Block | None:
        if len(value) > 3 or (number := int.from_bytes(value, "big")) & 7 == 7:
            return None
        return cls(number >> 4, bool(number & 8), number & 7)


@dataclass(frozen=True)
class Message:
    """One CoAP message (RFC 7252 3); `options` are (number, value) in the order sent."""

    type: int
    code: int
    mid: int
    token: bytes = b""
    options: tuple[tuple[int, bytes], ...] = ()
    payload: bytes = b""

    @property
    def kind(self) -> str:
        return TYPES[self.type]

    @property
    def code_text(self) -> str:
        return code_text(self.code)

    def option(self, number: int) -> bytes | None:
        return next((value for n, value in self.options if n == number), None)

    def uint(self, number: int) -> int | None:
        value = self.option(number)
        return None if value is None else int.from_bytes(value, "big")

    def block(self, number: int) -> Block | None:
        value = self.option(number)
        return None if value is None else Block.decode(value)

    def encode(self) -> bytes:
        out = bytearray([0x40 | self.type << 4 | len(self.token), self.code])
        out += self.mid.to_bytes(2, "big") + self.token
        previous = 0
        for number, value in sorted(self.options, key=lambda option: option[0]):
            delta, delta_ext = _nibble(number - previous)
            length, length_ext = _nibble(len(value))
            out += bytes([delta << 4 | length]) + delta_ext + length_ext + value
            previous = number
        if self.payload:
            out += bytes([PAYLOAD_MARKER]) + self.payload
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> Message:
        if len(data) < 4 or data[0] >> 6 != 1:
            raise CoapError("not a CoAP version 1 header")
        kind, token_length = data[0] >> 4 & 3, data[0] & 15
        if token_length > 8 or len(data) < 4 + token_length:
            raise CoapError("bad token length")
        code, mid = data[1], int.from_bytes(data[2:4], "big")
        at, number = 4 + token_length, 0
        options: list[tuple[int, bytes]] = []
        payload = b""
        while at < len(data):
            if data[at] == PAYLOAD_MARKER:
                payload = data[at + 1:]
                if not payload:
                    raise CoapError("payload marker without a payload")
                break
            header = data[at]
            delta, at = _extended(data, header >> 4, at + 1)
            length, at = _extended(data, header & 15, at)
            if at + length > len(data):
                raise CoapError("option runs past the message")
            number += delta
            options.append((number, data[at:at + length]))
            at += length
        if code == EMPTY and (token_length or options or payload):
            raise CoapError("an empty message with content")
        return cls(kind, code, mid, data[4:4 + token_length], tuple(options), payload)


def uri_options(target: str) -> tuple[tuple[int, bytes], ...]:
    """Uri-Path and Uri-Query options for a local target such as `/sensors/t?unit=C`."""
    path, _, query = target.partition("?")
    options: list[tuple[int, bytes]] = []
    if path not in ("", "/"):
        options += [(URI_PATH, unquote_to_bytes(s)) for s in path.removeprefix("/").split("/")]
    if query:
        options += [(URI_QUERY, unquote_to_bytes(q)) for q in query.split("&")]
    if any(len(value) > MAX_TARGET for _, value in options):
        raise ValueError(f"a segment of {target!r} is too long for a CoAP option")
    return tuple(options)


def request(code: int, target: str, *, payload: bytes = b"", content_format: int | None = None,
            block1: Block | None = None, block2: Block | None = None) -> Message:
    """A confirmable request with a fresh message id and token."""
    options = list(uri_options(target))
    if content_format is not None:
        options.append((CONTENT_FORMAT, uint(content_format)))
    if block2 is not None:
        options.append((BLOCK2, block2.encode()))
    if block1 is not None:
        options.append((BLOCK1, block1.encode()))
    return Message(CON, code, secrets.randbits(16), secrets.token_bytes(4), tuple(options),
                   payload)


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def _links(text: str) -> Iterator[str]:
    """The links of a link-format document: split at commas outside <...> and quotes."""
    start, quoted, bracketed = 0, False, False
    for index, char in enumerate(text):
        if char == '"' and not bracketed:
            quoted = not quoted
        elif char == "<" and not quoted:
            bracketed = True
        elif char == ">" and not quoted:
            bracketed = False
        elif char == "," and not quoted and not bracketed:
            yield text[start:index]
            start = index + 1
    yield text[start:]


def link_targets(document: bytes) -> tuple[list[str], list[str]]:
    """The local targets a link-format document (RFC 6690) lists, in order and without
    repeats, and the links it makes to other hosts or schemes (never followed)."""
    local: list[str] = []
    external: list[str] = []
    for link in _links(document.decode("utf-8", errors="replace")):
        link = link.strip()
        end = link.find(">")
        if not link.startswith("<") or end < 0:
            continue
        target = link[1:end].strip()
        if target.startswith("//") or _SCHEME.match(target):
            external.append(target)
            continue
        target = target if target.startswith("/") else "/" + target
        try:
            uri_options(target)
        except ValueError:
            continue
        if target not in local:
            local.append(target)
    return local, external


@dataclass(frozen=True)
class Answer:
    """What came back to one request."""

    request: Message
    request_bytes: int
    """The bytes of every transmission of the request (each retransmission counts)."""
    response: Message | None
    """The response (piggybacked, separate, or a reset); None when none came."""
    response_bytes: int = 0
    """The bytes of every datagram that answered this request: an empty ACK, the response,
    any repeat of it."""
    datagrams: int = 0
    replies: tuple[bytes, ...] = ()
    """Every datagram received after the request was sent, as received."""
    refused: bool = False
    acknowledged: bool = False
    """An empty ACK came: the device took the request and owes a separate response."""
    sends: int = 1
    """How many times the request went out: 2 when the first drew nothing in half the time.
    Which of the two the answers belong to is not known."""

    @property
    def code(self) -> str | None:
        if self.response is None:
            return None
        return "reset" if self.response.type == RST else self.response.code_text

    def describe(self) -> str:
        """The answer in words: its code, or why there is none."""
        if self.code is not None:
            return self.code
        if self.acknowledged:
            return "acknowledged, no response in time"
        return "refused (ICMP port unreachable)" if self.refused else "no answer"


def _ours(sent: Message, message: Message) -> bool:
    if message.type in (ACK, RST):
        return message.mid == sent.mid
    return message.token == sent.token


async def ask(ctx: DeviceContext, conversation: UdpConversation, sent: Message, *,
              linger: float = LINGER) -> Answer:
    """Send one request and wait, within the scan's timeout, for its response; `linger`
    is how long to go on listening after the first datagram, for repeats and extras."""
    raw = sent.encode()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ctx.timeout
    got, sends = await _transmit(conversation, raw, deadline, linger)
    received = list(got.replies)
    response: Message | None = None
    size = count = 0
    acknowledged = False
    for _ in range(MAX_ROUNDS):
        confirmable: list[int] = []
        for data in got.replies:
            try:
                message = Message.decode(data)
            except CoapError:
                continue
            if not _ours(sent, message):
                continue
            size, count = size + len(data), count + 1
            if message.type == CON:
                confirmable.append(message.mid)
            if (message.type, message.code) == (ACK, EMPTY):
                acknowledged = True
            elif response is None:
                response = message
        for mid in confirmable:
            await conversation.send(Message(ACK, EMPTY, mid).encode())
        left = deadline - loop.time()
        if response is not None or not got.answered or left <= 0:
            break
        got = await conversation.receive(wait=left, linger=linger)
        received += got.replies
    return Answer(sent, len(raw) * sends, response, size, count, tuple(received),
                  got.refused and not received, acknowledged, sends)


async def _transmit(conversation: UdpConversation, raw: bytes, deadline: float,
                    linger: float) -> tuple[Datagrams, int]:
    """Send `raw`; if nothing (no datagram, no ICMP refusal) came back by half the time left,
    send it again and wait out the rest. What came back, and how many times `raw` was sent."""
    loop = asyncio.get_running_loop()
    got = await conversation.exchange(raw, wait=(deadline - loop.time()) / 2, linger=linger)
    if got.answered or got.refused or (left := deadline - loop.time()) <= 0:
        return got, 1
    await conversation.send(raw)
    return await conversation.receive(wait=left, linger=linger), 2


@dataclass(frozen=True)
class Fetch:
    """A GET of one resource: the first answer, as any client would get it, then the rest of
    a block-wise representation, up to MAX_BODY bytes."""

    target: str
    first: Answer
    body: bytes = b""
    complete: bool = False
    """The whole representation was read."""
    blocks: int = 0
    content_format: int | None = None

    @property
    def code(self) -> str | None:
        return self.first.code

    @property
    def served(self) -> bool:
        """The resource answered with content (2.05)."""
        response = self.first.response
        return response is not None and response.type != RST and response.code == CONTENT


async def fetch(ctx: DeviceContext, port: int, target: str) -> Fetch:
    async with ctx.udp_conversation(port) as conversation:
        first = await ask(ctx, conversation, request(GET, target))
        response = first.response
        if response is None or response.type == RST or response.code != CONTENT:
            return Fetch(target, first)
        body = bytearray(response.payload)
        block = response.block(BLOCK2)
        blocks = 1
        while block is not None and block.more and len(body) < MAX_BODY \
                and blocks < MAX_BLOCKS and len(body) % block.size == 0:
            ask_for = Block(len(body) // block.size, False, block.szx)
            answer = await ask(ctx, conversation, request(GET, target, block2=ask_for),
                               linger=0)
            reply = answer.response
            got = None if reply is None or reply.code != CONTENT else reply.block(BLOCK2)
            if reply is None or got is None or got.num * got.size != len(body):
                break
            body += reply.payload
            block, blocks = got, blocks + 1
        complete = (block is None or not block.more) and len(body) <= MAX_BODY
        return Fetch(target, first, bytes(body[:MAX_BODY]), complete, blocks,
                     response.uint(CONTENT_FORMAT))


@dataclass(frozen=True)
class Write:
    """A PUT of a resource's own representation back to it."""

    target: str
    answer: Answer
    """The answer to the last request sent (the only one, unless block-wise)."""
    blocks: int

    @property
    def code(self) -> str | None:
        return self.answer.code

    @property
    def accepted(self) -> bool:
        """The device took the write: a success code other than 2.31 Continue."""
        response = self.answer.response
        return response is not None and response.type != RST and response.code >> 5 == 2 \
            and response.code != CONTINUE


async def write_back(ctx: DeviceContext, port: int, read: Fetch) -> Write:
    """PUT `read.body` to `read.target` with the content format it was served in; a body
    larger than one 1024-byte block goes block-wise (Block1), following the block size the
    device asks for."""
    body, szx, offset, blocks = read.body, MAX_SZX, 0, 0
    async with ctx.udp_conversation(port) as conversation:
        if len(body) <= 16 << MAX_SZX:
            put = request(PUT, read.target, payload=body, content_format=read.content_format)
            return Write(read.target, await ask(ctx, conversation, put, linger=0), 1)
        while True:
            size = 16 << szx
            chunk = body[offset:offset + size]
            more = offset + len(chunk) < len(body)
            put = request(PUT, read.target, payload=chunk, content_format=read.content_format,
                          block1=Block(offset // size, more, szx))
            answer = await ask(ctx, conversation, put, linger=0)
            blocks += 1
            reply = answer.response
            if not more or reply is None or reply.code != CONTINUE or blocks >= MAX_BLOCKS:
                return Write(read.target, answer, blocks)
            offset += len(chunk)
            echoed = reply.block(BLOCK1)
            if echoed is not None and echoed.szx < szx:
                szx = echoed.szx


async def well_known_core(ctx: DeviceContext, port: int) -> Fetch:
    """Collector: GET /.well-known/core on `port` (discovery's CoAP probe)."""
    return await fetch(ctx, port, WELL_KNOWN_CORE)


async def discover(ctx: DeviceContext, port: int) -> UdpService | None:
    """Discovery's CoAP probe (`probe.observe.discovery`): what GET /.well-known/core on `port`
    drew, or None when nothing answered."""
    probe = await ctx.observe(well_known_core, port)
    first = probe.first
    if not first.replies:
        return None
    if first.response is None:
        return judge(port, "coap", first.replies, lambda data: None)
    code = first.code
    return UdpService(port, "coap", f"CoAP {code} to GET {WELL_KNOWN_CORE}",
                      {"code": code, "type": first.response.kind,
                       "resources": excerpt(probe.body), "reply_bytes": first.response_bytes})


@dataclass(frozen=True)
class CoapEndpoint:
    """A cleartext CoAP endpoint: its discovery document and the resources it lists."""

    port: int
    discovery: Fetch
    listed: int
    """Local resources the discovery document lists (besides itself)."""
    resources: tuple[Fetch, ...]
    """GETs of the first `max_resources` of them."""
    external: tuple[str, ...] = ()
    """Links to other hosts or schemes, not followed."""

    @property
    def target(self) -> str:
        return f"udp/{self.port}"

    @property
    def fetches(self) -> tuple[Fetch, ...]:
        return (self.discovery, *self.resources)


async def survey_endpoint(ctx: DeviceContext, port: int, limit: int) -> CoapEndpoint:
    """The discovery document of the endpoint on `port` and a GET of its first `limit` local
    resources."""
    discovery = await ctx.observe(well_known_core, port)
    local, external = link_targets(discovery.body) if discovery.served else ([], [])
    local = [target for target in local if target != WELL_KNOWN_CORE]
    resources = await asyncio.gather(*(fetch(ctx, port, target) for target in local[:limit]))
    return CoapEndpoint(port, discovery, len(local), tuple(resources),
                        tuple(external[:MAX_EXTERNAL]))


@dataclass(frozen=True)
class EndpointWrites:
    port: int
    writes: tuple[Write, ...]
    not_written: tuple[tuple[str, str], ...]
    """Resources not written back, with the reason: (target, reason)."""

    @property
    def target(self) -> str:
        return f"udp/{self.port}"


def _why_not(read: Fetch) -> str | None:
    if not read.served:
        return f"GET: {read.first.describe()}"
    if not read.complete:
        return f"the representation exceeds the {MAX_BODY} bytes the probe reads" \
            if len(read.body) >= MAX_BODY else "the block-wise read broke off"
    return None


async def endpoint_writes(ctx: DeviceContext, endpoint: CoapEndpoint) -> EndpointWrites:
    """Each resource of the endpoint read whole gets that representation PUT back."""
    reasons = [(read.target, _why_not(read)) for read in endpoint.resources]
    not_written = tuple((target, why) for target, why in reasons if why is not None)
    writable = [read for read in endpoint.resources if _why_not(read) is None]
    writes = await asyncio.gather(*(write_back(ctx, endpoint.port, read) for read in writable))
    return EndpointWrites(endpoint.port, tuple(writes), not_written)
