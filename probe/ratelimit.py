"""How fast the probe puts new connections and datagrams on the network (docs/rate.md).

Every new connection and every datagram takes a token. In fixed mode (`--rate-mode fixed`) the
only bucket is the scan's: `--rate` per second, whatever the devices do. In adaptive mode (the
default) a token also comes from the device's own bucket and from its network's (its site, else
its /24 or /64), whose rates adapt as nmap's congestion windows do: they start conservative,
grow while exchanges are answered (slow start, then one more per second), and halve when an
exchange shows congestion. `--rate` stays the hard ceiling of the whole scan in both modes.

The pace only decides when an exchange starts, never which exchanges are made, so a device's
verdict does not depend on it, except that a device that breaks under load is not broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import time
from collections.abc import Iterator
from dataclasses import dataclass

ADAPTIVE, FIXED = "adaptive", "fixed"
RATE_MODES = (ADAPTIVE, FIXED)
FIXED_RATE = 500.0
"""The scan's rate in fixed mode when `--rate` is not given (the probe's rate before it adapted)."""
CEILING = 10000.0
"""The scan's ceiling in adaptive mode when `--rate` is not given."""


@dataclass(frozen=True)
class PaceSettings:
    """Where an adaptive rate starts, how low it may fall, and how many tokens it may bank."""

    start: float
    floor: float
    burst: int


DEVICE = PaceSettings(start=20.0, floor=1.0, burst=4)
"""One device: 20 new connections or datagrams a second at first, never under 1 a second."""
NETWORK = PaceSettings(start=500.0, floor=20.0, burst=50)
"""All the devices of one site (or /24, or /64) together."""


class RateLimiter:
    """Allows at most `rate` events per second, with bursts of at most `burst`.

    Every new connection and every datagram the probe sends takes one token, so `--rate` bounds
    what the whole scan puts on the network, however many devices run at once.
    """

    def __init__(self, rate: float, burst: int | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1, min(int(rate), 50))
        self._tokens = float(self.burst)
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()
        self.granted = 0

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    self.granted += 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)


class Pace(RateLimiter):
    """A token bucket whose rate adapts: additive increase, multiplicative decrease.

    Below its threshold (at first: the ceiling) every answered exchange adds one to the rate,
    which doubles it each second the rate is used (slow start); above it, each adds 1/rate,
    one more per second. Congestion halves the rate (never below the floor), makes that the
    threshold and empties the bucket; only exchanges started after the last halving count, so
    a burst of failures from one round halves it once.
    """

    def __init__(self, settings: PaceSettings, ceiling: float) -> None:
        super().__init__(min(settings.start, ceiling), settings.burst)
        self.floor = min(settings.floor, ceiling)
        self.ceiling = ceiling
        self.threshold = ceiling
        self.backoffs = 0
        self._halved_at = float("-inf")

    def succeeded(self) -> None:
        step = 1.0 if self.rate < self.threshold else 1.0 / self.rate
        self.rate = min(self.ceiling, self.rate + step)

    def congested(self, since: float) -> None:
        """Halve the rate for congestion shown by an exchange that started at `since`."""
        if since < self._halved_at:
            return
        now = time.monotonic()
        self._halved_at = now
        self.rate = max(self.floor, self.rate / 2)
        self.threshold = self.rate
        self._tokens = min(self._tokens, 0.0)
        self._stamp = now
        self.backoffs += 1


class Lane:
    """One device's way onto the network: its own pace and its network's (adaptive mode only),
    then the scan's ceiling, in that order."""

    def __init__(self, ceiling: RateLimiter, device: Pace | None, network: Pace | None) -> None:
        self.ceiling = ceiling
        self.device = device
        self.network = network

    @property
    def adaptive(self) -> bool:
        return self.device is not None

    @property
    def final(self) -> float:
        """The rate the device is at now: its own pace's, or the scan's fixed rate."""
        return self.ceiling.rate if self.device is None else self.device.rate

    async def acquire(self) -> float:
        """Wait for a token; the monotonic time it was granted (what `congested` takes)."""
        if self.device is not None:
            await self.device.acquire()
        if self.network is not None:
            await self.network.acquire()
        await self.ceiling.acquire()
        return time.monotonic()

    def succeeded(self) -> None:
        """An exchange was answered (a reply, an accepted or refused connection)."""
        for pace in (self.device, self.network):
            if pace is not None:
                pace.succeeded()

    def congested(self, since: float, *, network: bool) -> None:
        """An exchange started at `since` showed congestion: the device backs off, and with
        `network` (a timeout, an ICMP error: the path may be what is overloaded) its network
        too."""
        if self.device is not None:
            self.device.congested(since)
        if network and self.network is not None:
            self.network.congested(since)


current_lane: contextvars.ContextVar[Lane | None] = contextvars.ContextVar(
    "iotprobe_lane", default=None)
"""The lane of the device whose collector is running (DeviceContext sets it for its tasks)."""


class ScanRate:
    """The rate limiter collectors reach as `ctx.network.rate`: a token from the lane of the
    device being scanned (its pace, its network's, the ceiling), or only from the ceiling
    outside a device's tasks."""

    def __init__(self, ceiling: RateLimiter) -> None:
        self.ceiling = ceiling

    @property
    def granted(self) -> int:
        return self.ceiling.granted

    async def acquire(self) -> None:
        lane = current_lane.get()
        if lane is None:
            await self.ceiling.acquire()
        else:
            await lane.acquire()


def starting_rate(mode: str, rate: float) -> float:
    """The rate a device starts at in `mode` under the scan's `rate` (what a device no exchange
    was made with ended at)."""
    return rate if mode == FIXED else min(DEVICE.start, rate)


def network_key(address: str, site: str | None) -> str:
    """The network a device shares its pace with: its site when the inventory names one, else
    its /24 (IPv4) or /64 (IPv6)."""
    if site:
        return f"site:{site}"
    ip = ipaddress.ip_address(address)
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


class Lanes:
    """The paces of one scan: the ceiling, and in adaptive mode one pace per network in use
    (kept while a device of it is being scanned, so a long scan holds only the networks of the
    devices in flight)."""

    def __init__(self, mode: str, rate: float) -> None:
        if mode not in RATE_MODES:
            raise ValueError(f"unknown rate mode {mode!r}")
        self.mode = mode
        self.ceiling = RateLimiter(rate)
        self.shared = ScanRate(self.ceiling)
        self._networks: dict[str, tuple[Pace, int]] = {}

    @property
    def start(self) -> float:
        return starting_rate(self.mode, self.ceiling.rate)

    @contextlib.contextmanager
    def lane(self, address: str, site: str | None) -> Iterator[Lane]:
        """A new device's lane, for as long as it is scanned."""
        if self.mode == FIXED:
            yield Lane(self.ceiling, None, None)
            return
        key = network_key(address, site)
        pace, users = self._networks.get(key) or (Pace(NETWORK, self.ceiling.rate), 0)
        self._networks[key] = (pace, users + 1)
        try:
            yield Lane(self.ceiling, Pace(DEVICE, self.ceiling.rate), pace)
        finally:
            pace, users = self._networks[key]
            if users > 1:
                self._networks[key] = (pace, users - 1)
            else:
                del self._networks[key]
