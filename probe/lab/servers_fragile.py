"""A fragile listener for the lab: a service on a device whose network stack breaks under load.

Small devices keep a handful of connection slots: a few connections a second are served, a
burst fills the table and the device refuses everything until it has recovered. A `Fragile`
listener serves each connection with its service and counts it in its device's
`ConnectionTable`, which all the fragile listeners of one device share; when more than `limit`
connections arrived within one second, each listener serves those it took, then stops
listening for `pause` seconds (every new connection is refused), and listens again. The probe's
adaptive rate (docs/rate.md) must finish such a device with the same results as a slow scan; a
fast fixed rate does not.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import Any

from probe.lab.servers import HANDSHAKE_TIMEOUT, MAX_READ, StreamServer, TcpListener

log = logging.getLogger(__name__)

WINDOW = 1.0
"""Seconds over which a fragile listener counts its connections."""
_BACKLOG = 8


@dataclass(frozen=True)
class Fragile(TcpListener):
    """A plain TCP listener of a device that takes at most `limit` connections a second, all
    its fragile listeners together, and refuses every connection for `pause` seconds after a
    second that brought more."""

    limit: int = 3
    pause: float = 1.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tls:
            raise ValueError("a fragile listener is plain TCP")
        if self.limit < 1 or self.pause <= 0:
            raise ValueError("a fragile listener needs a positive limit and pause")


class ConnectionTable:
    """The connections one device took in the last second, over all its fragile listeners,
    and until when it refuses new ones."""

    def __init__(self) -> None:
        self.arrivals: collections.deque[float] = collections.deque()
        self.refusing_until = float("-inf")
        self.overloads = 0
        """How many times the device was overloaded (the tests read it)."""

    def arrived(self, now: float, limit: int, pause: float) -> None:
        """Count a connection that arrived at `now`; past `limit` in the last second, the
        device refuses connections for `pause` seconds."""
        self.arrivals.append(now)
        while self.arrivals and self.arrivals[0] <= now - WINDOW:
            self.arrivals.popleft()
        if len(self.arrivals) > limit:
            self.arrivals.clear()
            self.refusing_until = now + pause
            self.overloads += 1

    def refusing(self, now: float) -> float:
        """Seconds the device still refuses connections from `now`."""
        return max(0.0, self.refusing_until - now)


class FragileServer(StreamServer):
    """Serves a `Fragile` listener (see the module docstring) with its own accept loop, so that
    it can stop listening and listen again."""

    def __init__(self, listener: Fragile, table: ConnectionTable) -> None:
        super().__init__(listener.service)
        self.limit = listener.limit
        self.pause = listener.pause
        self.table = table
        self._opening: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self, address: str, port: int, tls: ssl.SSLContext | None) -> None:
        if tls is not None:
            raise ValueError("a fragile listener is plain TCP")
        first = _listen(address, port)
        self._loop_task = asyncio.create_task(self._run(address, port, first))

    async def _run(self, address: str, port: int, sock: socket.socket) -> None:
        """Listen and take connections until the device is overloaded (by this listener or
        another of its fragile ones: the listener looks at least every `pause`), stop
        listening while it refuses; again, until the listener is stopped."""
        loop = asyncio.get_running_loop()
        while True:
            with sock:
                accepting: asyncio.Future[tuple[socket.socket, Any]] | None = None
                try:
                    while not self.table.refusing(loop.time()):
                        accepting = accepting or asyncio.ensure_future(loop.sock_accept(sock))
                        done, _ = await asyncio.wait({accepting}, timeout=self.pause / 4)
                        if done:
                            self._take(accepting.result()[0])
                            accepting = None
                            self.table.arrived(loop.time(), self.limit, self.pause)
                finally:
                    if accepting is not None:
                        accepting.cancel()
                for conn in _queued(sock):
                    self._take(conn)
            log.debug("fragile listener %s:%d refuses connections", address, port)
            await asyncio.sleep(self.table.refusing(loop.time()))
            sock = _listen(address, port)

    def _take(self, conn: socket.socket) -> None:
        task = asyncio.create_task(self._serve(conn))
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)

    async def _serve(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=MAX_READ)
        except OSError:
            conn.close()
            return
        await self._handle(reader, writer)

    async def stop(self) -> None:
        if self._loop_task is None:
            return
        self._loop_task.cancel()
        await asyncio.wait([self._loop_task])
        for writer in list(self.connections.values()):
            writer.transport.abort()
        pending: list[asyncio.Task[Any]] = [*self._opening, *self.connections]
        if pending:
            _, stuck = await asyncio.wait(pending, timeout=HANDSHAKE_TIMEOUT)
            for task in stuck:
                task.cancel()


def _listen(address: str, port: int) -> socket.socket:
    """A non-blocking listening socket on `address`:`port` (an IP literal)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _queued(sock: socket.socket) -> list[socket.socket]:
    """The connections the kernel completed but the listener has not taken yet (at most its
    backlog): they are in, and are served, before it stops listening."""
    taken: list[socket.socket] = []
    for _ in range(_BACKLOG + 1):
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            break
        taken.append(conn)
    return taken
