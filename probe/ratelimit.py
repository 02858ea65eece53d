"""A token bucket shared by every device of a scan: the probe's global rate cap."""

from __future__ import annotations

import asyncio
import time


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
