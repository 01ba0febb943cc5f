"""Per-key limits on one replica: a request rate and concurrent streams.

Kept in process: a replica protects itself without a round trip, and the load balancer spreads
a key's traffic, so the effective cluster limit is the per-replica one times the replicas.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable

from agentstream.runtime.http import TooManyRequests

# Bounds the memory the limiters hold whatever the number of distinct keys seen.
_MAX_KEYS = 10_000


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def check(self, key: str) -> None:
        """Take one token for ``key`` or raise 429 with ``Retry-After``."""
        if self._rate <= 0:
            return
        now = time.monotonic()
        tokens, last = self._buckets.pop(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens < 1.0:
            self._remember(key, tokens, now)
            wait = math.ceil((1.0 - tokens) / self._rate)
            raise TooManyRequests(
                f"more than {self._rate:g} requests a second",
                headers={"Retry-After": str(max(1, wait))},
                limit="request_rate",
            )
        self._remember(key, tokens - 1.0, now)

    def _remember(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > _MAX_KEYS:
            self._buckets.popitem(last=False)


class StreamSlots:
    """Concurrent SSE connections per key."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._open: collections.Counter[str] = collections.Counter()

    def acquire(self, key: str) -> Callable[[], None]:
        """Take one of ``key``'s slots, or raise 429; returns its (idempotent) release."""
        if self._open[key] >= self._limit:
            raise TooManyRequests(
                f"more than {self._limit} open streams for this key",
                headers={"Retry-After": "5"},
                limit="streams_per_key",
            )
        self._open[key] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._open[key] -= 1
                if self._open[key] <= 0:
                    del self._open[key]

        return release

    @property
    def open_streams(self) -> int:
        """Streams open on this replica."""
        return sum(self._open.values())
