"""A device's scan context: the only way collectors reach the network.

Every connection and datagram goes to `ctx.address` (the device, never anything else), takes a
token from the scan-wide rate limiter, holds one of the device's connection slots, and is bounded
by the per-operation timeout. Collectors never open sockets themselves, so scope, rate, per-device
concurrency and timeouts hold by construction.

One explicit exception to "the device and nothing else": `connect_declared` reaches a monitoring
sink (a broker the inventory names under the device's `monitor:`), and only an address written
there, so that the 6.5 checks can watch where the device reports its security events.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import functools
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from probe.model import Device
from probe.numbers import require_finite
from probe.ratelimit import (
    ADAPTIVE,
    CEILING,
    DEVICE,
    RATE_MODES,
    Lane,
    Lanes,
    Pace,
    ScanRate,
    current_lane,
)

T = TypeVar("T")

Call = tuple[Callable[..., Awaitable[Any]], Mapping[str, Hashable]]
"""A collector and the keyword arguments it runs with."""
IP_RECVERR, IPV6_RECVERR = 11, 25
"""Linux's socket options (<linux/in.h>, <linux/in6.h>); the socket module does not name them."""
ICMP_ERRORS = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN,
                         errno.ENETDOWN})
"""What the kernel reports on a socket for an ICMP host or network unreachable: congestion (or
a link or router that gave up) on the way to the device."""
RECONNECTS = 4
"""In adaptive mode, how many times a connection refused by a port that accepted one before is
made again (each after the device's pace has halved)."""
RECONNECT_WAIT = 0.25
"""Seconds before the first of those; each later one waits twice as long as the one before
(0.25, 0.5, 1, 2: 3.75 s in all), as a client's SYN retransmissions do."""
LOST_SYN = 0.9
"""A connection that took this long (Linux retransmits an unanswered SYN after a second) to a
device that accepted one in under a third of it lost its first SYN: congestion."""


@dataclass(frozen=True)
class ScanOptions:
    """How a scan behaves; the CLI fills it from its flags."""

    timeout: float = 5.0
    budget: float = 120.0
    concurrency: int = 64
    per_device: int = 4
    rate: float = CEILING
    """New connections and datagrams a second, whole scan: the ceiling in adaptive mode."""
    rate_mode: str = ADAPTIVE
    intrusive: bool = False
    tcp_ports: tuple[int, ...] | None = None
    exclude_ports: tuple[int, ...] = ()
    syn: bool = False
    udp: bool = True
    trust_anchor: str | None = None
    blocking_threads: int = 8
    processes: int | None = 1  # worker processes of a scan; None: one per core (probe.pool)

    def __post_init__(self) -> None:
        require_finite(timeout=self.timeout, budget=self.budget, rate=self.rate)
        if self.rate_mode not in RATE_MODES:
            raise ValueError(f"unknown rate mode {self.rate_mode!r}")


@dataclass
class Network:
    """What all devices of one scan share: the paces (probe.ratelimit) and the pool for
    blocking libraries. `rate` is what collectors take a token from: the running device's
    lane."""

    options: ScanOptions
    lanes: Lanes = field(init=False)
    rate: ScanRate = field(init=False)
    threads: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.lanes = Lanes(self.options.rate_mode, self.options.rate)
        self.rate = self.lanes.shared
        self.threads = ThreadPoolExecutor(
            max_workers=self.options.blocking_threads, thread_name_prefix="iotprobe-blocking"
        )

    def close(self) -> None:
        self.threads.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class Datagrams:
    """What came back to one UDP request."""

    replies: tuple[bytes, ...]
    refused: bool = False
    truncated: bool = False
    sent: int = 1
    """How many times the request went out (see `DeviceContext.exchange_udp`'s `again_after`)."""

    @property
    def answered(self) -> bool:
        return bool(self.replies)


class _Collecting(asyncio.DatagramProtocol):
    def __init__(self, max_datagrams: int, max_bytes: int, source: str | None = None) -> None:
        self.source = None if source is None else ipaddress.ip_address(source)
        self.replies: list[bytes] = []
        self.refused = False
        self.unreachable = False
        self.truncated = False
        self.total = 0
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.first = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.source is not None and ipaddress.ip_address(addr[0]) != self.source:
            return
        if len(self.replies) >= self.max_datagrams or self.total + len(data) > self.max_bytes:
            self.truncated = True
            return
        self.replies.append(data)
        self.total += len(data)
        if not self.first.done():
            self.first.set_result(None)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):
            self.refused = True
        elif isinstance(exc, OSError) and exc.errno in ICMP_ERRORS:
            self.unreachable = True
        if not self.first.done():
            self.first.set_result(None)

    def reset(self) -> None:
        """Forget what arrived so far: the next reply starts a new exchange."""
        self.replies = []
        self.refused = False
        self.unreachable = False
        self.truncated = False
        self.total = 0
        if self.first.done():
            self.first = asyncio.get_running_loop().create_future()

    def collected(self) -> Datagrams:
        return Datagrams(tuple(self.replies), self.refused and not self.replies, self.truncated)


class UdpConversation:
    """Successive datagrams between one local port and one port of the device.

    For protocols whose peer binds state to the client's address and port: a DTLS cookie, a
    CoAP separate response or the blocks of one transfer. Every datagram sent takes a token from
    the scan's rate limiter; the conversation holds one of the device's slots until it ends.
    """

    def __init__(self, ctx: DeviceContext, transport: asyncio.DatagramTransport,
                 protocol: _Collecting) -> None:
        self._ctx = ctx
        self._transport = transport
        self._protocol = protocol
        self._sent = time.monotonic()

    async def send(self, payload: bytes) -> None:
        """Send one datagram; what was received before it is dropped."""
        self._sent = await self._ctx.lane.acquire()
        self._ctx.datagrams += 1
        self._protocol.reset()
        self._transport.sendto(payload)

    async def receive(self, *, wait: float | None = None, linger: float = 0.05) -> Datagrams:
        """What arrived since the last send or receive: waits up to `wait` (default: the
        scan's timeout) for a first datagram, then `linger` for more."""
        protocol = self._protocol
        if not protocol.first.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._ctx.timeout if wait is None else wait):
                    await asyncio.shield(protocol.first)
        if protocol.replies and linger > 0:
            await asyncio.sleep(linger)
        got = protocol.collected()
        self._ctx.heard(protocol, self._sent)
        protocol.reset()
        return got

    async def exchange(self, payload: bytes, *, wait: float | None = None,
                       linger: float = 0.05) -> Datagrams:
        """Send one datagram and collect what comes back (see `receive`)."""
        await self.send(payload)
        return await self.receive(wait=wait, linger=linger)


def _unconnected_udp(address: str) -> socket.socket:
    """A UDP socket bound to a wildcard address that still reports ICMP errors: Linux tells an
    unconnected socket of a port-unreachable only when IP_RECVERR (IPV6_RECVERR) is set."""
    v6 = ipaddress.ip_address(address).version == 6
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        with contextlib.suppress(AttributeError, OSError):
            if v6:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        sock.bind(("::" if v6 else "0.0.0.0", 0))
    except BaseException:
        sock.close()
        raise
    return sock


async def _first(protocol: _Collecting, wait: float) -> bool:
    """Whether a first reply (or an ICMP refusal) came within `wait` seconds."""
    if not protocol.first.done():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(wait, 0.0)):
                await asyncio.shield(protocol.first)
    return protocol.first.done()


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def _outcome(task: asyncio.Task[T]) -> T:
    """A shared task's result: at once when it is done, else awaited through a shield (one
    waiter's cancellation must not cancel the task the device's other checks wait for)."""
    if task.done():
        return task.result()
    return await asyncio.shield(task)


async def _close(writer: asyncio.StreamWriter, limit: float) -> None:
    """Close a connection, waiting at most a second (or `limit`) for an orderly end; a peer that
    never completes it (a TLS close_notify that never comes, a stream that keeps pouring in) has
    its connection aborted, so nothing of it outlives the `connect` block."""
    writer.close()
    try:
        async with asyncio.timeout(min(limit, 1.0)):
            await writer.wait_closed()
    except Exception:
        writer.transport.abort()
    except asyncio.CancelledError:
        writer.transport.abort()
        raise


async def _receive(fetch: Callable[[int], Awaitable[bytes]], max_bytes: int, limit: float,
                   until: Callable[[bytes], bool] | None) -> tuple[bytes, bool]:
    """Chunks from `fetch(n)` (a stream's `read`, a bare socket's `sock_recv`) until
    `max_bytes`, EOF, `until(data)` holds or `limit` seconds pass: the bytes, and whether the
    deadline cut them short."""
    loop = asyncio.get_running_loop()
    data = bytearray()
    end = loop.time() + limit
    while len(data) < max_bytes:
        left = end - loop.time()
        if left <= 0:
            return bytes(data), True
        try:
            async with asyncio.timeout(left):
                chunk = await fetch(max_bytes - len(data))
        except TimeoutError:
            return bytes(data), True
        if not chunk:
            break
        data += chunk
        if until is not None and until(bytes(data)):
            break
    return bytes(data), False


def _drain(sock: socket.socket) -> None:
    """Read what the peer has already sent (at most 1 MiB) and drop it, so that closing the
    socket ends the connection with a FIN rather than a reset for unread data, as asyncio's
    transport (which reads whatever arrives) does; what arrives after the close gets a reset
    in both."""
    with contextlib.suppress(OSError):
        for _ in range(16):
            if not sock.recv(64 * 1024):
                return


class _Share:
    """One shared resource of a device context (see `DeviceContext.shared`): the task that
    opens it, the stack that closes it and how many users hold it."""

    def __init__(self, manager: contextlib.AbstractAsyncContextManager[Any]) -> None:
        self.users = 0
        self.stack = contextlib.AsyncExitStack()
        self.opening = asyncio.ensure_future(self.stack.enter_async_context(manager))

    @property
    def failed(self) -> bool:
        return self.opening.done() and (self.opening.cancelled()
                                        or self.opening.exception() is not None)

    async def close(self) -> None:
        if not self.opening.done():
            self.opening.cancel()
            await asyncio.wait([self.opening])
        await self.stack.aclose()


class DeviceContext:
    """One device during one scan: its address, options and observation cache."""

    def __init__(
        self,
        device: Device,
        address: str,
        options: ScanOptions,
        network: Network,
        scan_tcp_ports: tuple[int, ...] = (),
        lane: Lane | None = None,
    ) -> None:
        self.device = device
        self.address = address
        self.options = options
        self.network = network
        self.scan_tcp_ports = scan_tcp_ports
        self._slots = asyncio.Semaphore(options.per_device)
        self._cache: dict[tuple[Any, ...], asyncio.Task[Any]] = {}
        self.connections = 0
        self.datagrams = 0
        self._budget_ends = time.monotonic() + options.budget
        self._family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 \
            else socket.AF_INET
        self.lane = lane if lane is not None else _solo_lane(network)
        """When this device's exchanges may start (probe.ratelimit); the engine gives each
        device one of the scan's lanes."""
        self._accepting: set[int] = set()
        """The device's TCP ports that accepted a connection during this scan."""
        self._refusing: set[int] = set()
        """Those that refused one without ever accepting one."""
        self._fastest = float("inf")
        """The fastest bare TCP connect to the device so far, in seconds."""
        self._vars = contextvars.copy_context()
        self._vars.run(current_lane.set, self.lane)

    @property
    def timeout(self) -> float:
        return self.options.timeout

    def remaining(self) -> float:
        """Seconds left of the device's budget, counted from when this context was made (the
        engine makes it just before the budget starts): collectors that wait on purpose (for an
        event, a heartbeat) end their wait before the budget does."""
        return max(0.0, self._budget_ends - time.monotonic())

    async def observe(self, collector: Callable[..., Awaitable[T]], *args: Hashable,
                      **kwargs: Hashable) -> T:
        """The collector's result for this device, gathered at most once per argument set.

        `collector(ctx, *args, **kwargs)` runs once; every later call with the same arguments
        awaits the same task, so concurrent checks share one round trip.
        """
        return await _outcome(self._task(collector, args, kwargs))

    async def observe_all(self, calls: Iterable[Call]) -> list[Any]:
        """`observe` for several (collector, keyword arguments): all are started before any
        is awaited, so they run at once, without a gather's task per collector."""
        tasks = [self._task(collector, (), kwargs) for collector, kwargs in calls]
        return [await _outcome(task) for task in tasks]

    def _task(self, collector: Callable[..., Awaitable[T]], args: tuple[Hashable, ...],
              kwargs: Mapping[str, Hashable]) -> asyncio.Task[T]:
        key = (collector, args, tuple(sorted(kwargs.items())))
        task: asyncio.Task[T] | None = self._cache.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                _awaited(collector(self, *args, **kwargs)), context=self._vars.copy())
            self._cache[key] = task
        return task

    def cancel_pending(self) -> None:
        for task in self._cache.values():
            if not task.done():
                task.cancel()
            elif not task.cancelled():
                task.exception()  # mark retrieved: errors were reported through the checks

    @contextlib.asynccontextmanager
    async def connect(
        self,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
        """A TCP (or TLS) connection to the device, closed on exit.

        Raises ConnectionRefusedError, TimeoutError, ssl.SSLError or OSError as the network
        answers; callers turn those into observations.
        """
        limit = self.timeout if timeout is None else timeout
        async with self._slots:
            reader, writer = await self._connected(port, limit, tls is None, functools.partial(
                asyncio.open_connection, self.address, port, ssl=tls,
                server_hostname=server_hostname if tls is not None else None,
                ssl_handshake_timeout=limit if tls is not None else None, limit=256 * 1024))
            try:
                yield reader, writer
            finally:
                await _close(writer, limit)

    async def knock(self, port: int, *, timeout: float | None = None) -> None:
        """Open a bare TCP connection to the device's `port` and close it at once: a port
        scan's question, without the streams `connect` sets up (a third of its cost). Same
        slot, rate token, count and timeout; raises ConnectionRefusedError, TimeoutError or
        OSError as the network answers."""
        limit = self.timeout if timeout is None else timeout
        async with self._slots:
            await self._connected(port, limit, True,
                                  functools.partial(self._bare_connect, port))

    async def _bare_connect(self, port: int) -> None:
        (await self._bare_socket(port)).close()

    async def _bare_socket(self, port: int) -> socket.socket:
        """A non-blocking TCP socket connected to the device's `port` (closed if the connect
        fails or is cancelled)."""
        sock = socket.socket(self._family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (self.address, port))
        except BaseException:
            sock.close()
            raise
        return sock

    async def _connected(self, port: int, limit: float, bare: bool,
                         opener: Callable[[], Awaitable[T]]) -> T:
        """`opener()`'s connection to `port`, each attempt after a token of the device's lane
        and within `limit` seconds in all; tells the lane what the attempt showed. In adaptive
        mode a refusal from a port that accepted before looks like overload (a device whose
        connection table is full): the connection is made again, up to RECONNECTS times, each
        after the device's pace has halved and a wait that doubles (RECONNECT_WAIT). The waits
        are not taken from `limit`, which bounds each attempt: a device that refuses for as
        long as the timeout would otherwise have every retry land inside its pause (the
        scan's budget bounds the device in all). A refusal sends no data, so
        the exchange itself is made once, as the kernel does for a lost SYN. Only a `bare` TCP
        connect's time tells of a lost SYN (a TLS one includes the device's handshake)."""
        for attempt in range(RECONNECTS + 1):
            since = await self.lane.acquire()
            self.connections += 1
            try:
                async with asyncio.timeout(limit):
                    opened = await opener()
            except ConnectionRefusedError:
                if not self._refused(port, since) or attempt == RECONNECTS:
                    raise
                await asyncio.sleep(RECONNECT_WAIT * 2 ** attempt)
                continue
            except (TimeoutError, OSError) as exc:
                self._failed(port, since, exc)
                raise
            self._accepted(port, since, bare)
            return opened
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _accepted(self, port: int, since: float, bare: bool) -> None:
        took = time.monotonic() - since
        if bare and took >= LOST_SYN and self._fastest < LOST_SYN / 3:
            self.lane.congested(since, network=False)
        else:
            self.lane.succeeded()
        if bare:
            self._fastest = min(self._fastest, took)
        self._accepting.add(port)
        self._refusing.discard(port)

    def _refused(self, port: int, since: float) -> bool:
        """Whether a refusal of `port` looks like overload (the port accepted before) and the
        connection is to be made again; an ordinary refusal is an answer like any other."""
        if port in self._accepting:
            self.lane.congested(since, network=False)
            return self.lane.adaptive
        self._refusing.add(port)
        self.lane.succeeded()
        return False

    def _failed(self, port: int, since: float, exc: BaseException) -> None:
        """A connection that timed out or failed: congestion if the port answered before
        (its device and network back off), or if the kernel reports an ICMP error; a reset
        in the handshake of a port that accepted before backs off the device."""
        answered = port in self._accepting or port in self._refusing
        if isinstance(exc, TimeoutError):
            if answered:
                self.lane.congested(since, network=True)
        elif isinstance(exc, OSError) and exc.errno in ICMP_ERRORS:
            self.lane.congested(since, network=True)
        elif isinstance(exc, ConnectionResetError) and port in self._accepting:
            self.lane.congested(since, network=False)

    def heard(self, protocol: _Collecting, since: float) -> None:
        """Tell the lane what a UDP exchange started at `since` showed: replies or a refusal
        are answers, an ICMP unreachable is congestion; silence says nothing (many UDP
        services ignore what they do not understand)."""
        if protocol.unreachable and not protocol.replies:
            self.lane.congested(since, network=True)
        elif protocol.replies or protocol.refused:
            self.lane.succeeded()

    async def ask(self, port: int, payload: bytes, max_bytes: int, *,
                  until: Callable[[bytes], bool]) -> tuple[bytes, bool]:
        """Send `payload` on a fresh TCP connection and read the answer as `read` does (until
        `max_bytes`, EOF, `until(data)` holds or the timeout passes; the bytes and whether the
        timeout cut the read short), over a bare non-blocking socket: `connect`, `write` and
        `read` without the transport and streams asyncio builds for `connect`, for the twenty
        or so one-question connections of a TLS endpoint's raw hellos. The connection is made
        as `connect` makes it (`_connected`: slot, the lane's token, count, what it tells the
        lane, the retries of an overload refusal, the timeout); raises ConnectionRefusedError,
        TimeoutError or OSError as the network answers."""
        limit = self.timeout
        loop = asyncio.get_running_loop()
        async with self._slots:
            sock = await self._connected(port, limit, True,
                                         functools.partial(self._bare_socket, port))
            with sock:
                async with asyncio.timeout(limit):
                    await loop.sock_sendall(sock, payload)
                try:
                    fetch = functools.partial(loop.sock_recv, sock)
                    return await _receive(fetch, max_bytes, limit, until)
                finally:
                    _drain(sock)

    def declared(self, address: str) -> bool:
        """Whether `address` is an IP literal that the device's inventory `monitor:` names as
        a sink's `address` (the only other host the probe may reach for this device)."""
        try:
            wanted = ipaddress.ip_address(address)
        except ValueError:
            return False
        for entry in self.device.monitor.values():
            named = entry.get("address") if isinstance(entry, Mapping) else None
            with contextlib.suppress(ValueError, TypeError):
                if isinstance(named, str) and ipaddress.ip_address(named) == wanted:
                    return True
        return False

    @contextlib.asynccontextmanager
    async def connect_declared(
        self,
        address: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
        """A TCP (or TLS) connection to a monitoring sink the inventory declares for this
        device (`monitor.<sink>.address`), closed on exit.

        Raises ValueError for any other address and for an excluded port (`exclude_ports`,
        where 2024 belongs); takes a rate token and counts as a connection like `connect`, and
        its connect and handshake are bounded by the timeout. It holds no device slot: the
        sink is another host, and a subscription may stay open for a whole event window.
        """
        if not self.declared(address):
            raise ValueError(f"{address} is not a monitoring sink of device {self.device.id}")
        if port in self.options.exclude_ports or not 0 < port < 65536:
            raise ValueError(f"port {port} is excluded from the scan")
        limit = self.timeout if timeout is None else timeout
        await self.network.lanes.ceiling.acquire()
        self.connections += 1
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                address, port, ssl=tls,
                server_hostname=server_hostname if tls is not None else None,
                ssl_handshake_timeout=limit if tls is not None else None,
                limit=256 * 1024,
            ),
            limit,
        )
        try:
            yield reader, writer
        finally:
            await _close(writer, limit)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the device's connection slots while a library that opens its own
        connections (sslyze) works; the caller takes a rate token and counts each connection
        it hands that library."""
        async with self._slots:
            yield

    @functools.cached_property
    def _shares(self) -> dict[tuple[Any, ...], _Share]:
        """The shared resources open now, by key (see `shared`)."""
        return {}

    @contextlib.asynccontextmanager
    async def shared(
        self, key: tuple[Any, ...], opener: Callable[[], contextlib.AbstractAsyncContextManager[T]],
    ) -> AsyncIterator[T]:
        """One resource for all the users that hold `key` at the same time (a keep-alive HTTP
        client of one listener): the first to enter opens it with `opener()`, the others, also
        those that enter while it is still opening, get the same one, and the last to leave
        closes it, so what it holds (connections, device slots) is given back as soon as nobody
        needs it. A failed opening fails the users waiting on it; the next user opens anew."""
        share = self._shares.get(key)
        if share is None or share.failed:
            share = self._shares[key] = _Share(opener())
        share.users += 1
        try:
            yield await asyncio.shield(share.opening)
        finally:
            share.users -= 1
            if share.users == 0:
                if self._shares.get(key) is share:
                    del self._shares[key]
                await share.close()

    async def read(
        self, reader: asyncio.StreamReader, max_bytes: int, *, deadline: float | None = None,
        until: Callable[[bytes], bool] | None = None,
    ) -> tuple[bytes, bool]:
        """Read until `max_bytes`, EOF, `until(data)` holds, or the deadline passes.

        Returns the bytes and whether the deadline cut the read short. A peer that drips a byte
        a second, or sends without end, costs at most the deadline and `max_bytes` of memory.
        """
        return await _receive(reader.read, max_bytes,
                              self.timeout if deadline is None else deadline, until)

    async def exchange_udp(
        self,
        port: int,
        payload: bytes,
        *,
        wait: float | None = None,
        linger: float = 0.05,
        max_datagrams: int = 16,
        max_bytes: int = 64 * 1024,
        any_source_port: bool = False,
        again_after: float | None = None,
    ) -> Datagrams:
        """Send one datagram to the device and collect what comes back.

        Waits up to `wait` for a first reply, then `linger` for more; replies beyond
        `max_datagrams` or `max_bytes` are counted as truncation, not stored (a reply flood
        cannot grow memory). With `any_source_port`, replies from any port of the device count
        (a TFTP server answers from a new port); the socket is then unconnected and asks the
        kernel for ICMP errors (IP_RECVERR), so a closed port is still seen as refused at once
        instead of costing the whole wait. With `again_after`, the same datagram is sent once
        more from the same socket when nothing at all (no reply, no refusal) came back by then,
        within the same total wait: one lost datagram then does not hide a service.
        """
        loop = asyncio.get_running_loop()
        async with self._slots:
            since = await self.lane.acquire()
            self.datagrams += 1
            if any_source_port:
                transport, proto = await loop.create_datagram_endpoint(
                    lambda: _Collecting(max_datagrams, max_bytes, self.address),
                    sock=_unconnected_udp(self.address),
                )
            else:
                transport, proto = await loop.create_datagram_endpoint(
                    lambda: _Collecting(max_datagrams, max_bytes),
                    remote_addr=(self.address, port),
                )
            destination = (self.address, port) if any_source_port else None
            deadline = loop.time() + (self.timeout if wait is None else wait)
            sent = 1
            try:
                transport.sendto(payload, destination)
                if again_after is not None and not await _first(proto, again_after):
                    await self.lane.acquire()
                    self.datagrams += 1
                    sent = 2
                    transport.sendto(payload, destination)
                await _first(proto, deadline - loop.time())
                if proto.replies:
                    await asyncio.sleep(linger)
            finally:
                transport.close()
            self.heard(proto, since)
        return Datagrams(tuple(proto.replies), proto.refused and not proto.replies,
                         proto.truncated, sent)

    @contextlib.asynccontextmanager
    async def udp_conversation(
        self, port: int, *, max_datagrams: int = 16, max_bytes: int = 64 * 1024,
    ) -> AsyncIterator[UdpConversation]:
        """A UDP socket connected to the device's `port`, for several exchanges from one local
        port; each receive keeps at most `max_datagrams` datagrams and `max_bytes` bytes."""
        loop = asyncio.get_running_loop()
        async with self._slots:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _Collecting(max_datagrams, max_bytes),
                remote_addr=(self.address, port),
            )
            try:
                yield UdpConversation(self, transport, protocol)
            finally:
                transport.close()

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking library call (sslyze, scapy, paho) off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.network.threads, fn, *args)


def _solo_lane(network: Network) -> Lane:
    """The lane of a context made outside the engine (probe.api, tests): the device's own
    pace in adaptive mode, no network's, and the scan's ceiling."""
    lanes = network.lanes
    adaptive = lanes.mode == ADAPTIVE
    return Lane(lanes.ceiling, Pace(DEVICE, lanes.ceiling.rate) if adaptive else None, None)
