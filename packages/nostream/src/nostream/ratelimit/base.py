"""The rate-limiter interface and an in-process sliding-window implementation."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Protocol


class RateLimiter(Protocol):
    """Counts hits per key in a sliding window shared by all relay processes."""

    async def hit(self, key: str, limit: int, window_seconds: float) -> bool:
        """Record one hit on ``key``; True when allowed (at most ``limit`` hits in
        the last ``window_seconds``, this one included), False when over the limit.
        A refused hit is not counted."""
        ...

    async def close(self) -> None: ...


class MemoryRateLimiter:
    """Sliding-window limiter kept in this process's memory."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}

    async def hit(self, key: str, limit: int, window_seconds: float) -> bool:
        now = self._clock()
        hits = self._hits.get(key)
        if hits is None:  # a key not seen in the window (no deque built on every hit)
            if limit < 1:
                return False
            if len(self._hits) >= 100_000:
                self._prune(now, window_seconds)
            self._hits[key] = deque((now,))
            return True
        oldest = now - window_seconds
        while hits and hits[0] <= oldest:
            hits.popleft()
        if len(hits) >= limit:
            return False
        hits.append(now)
        return True

    def _prune(self, now: float, window_seconds: float) -> None:
        for key in [k for k, v in self._hits.items() if not v or v[-1] <= now - window_seconds]:
            del self._hits[key]

    async def close(self) -> None:
        self._hits.clear()
