"""A sliding-window rate limiter shared by every relay process through Redis.

Each key is a sorted set of hit timestamps. One Lua script prunes hits older
than the window, refuses when ``limit`` remain, else records the hit; it runs
atomically in Redis and reads Redis's own clock, so processes on different
hosts agree. When Redis cannot be reached the limiter fails open (allows the
hit, logs a warning, counts it in :attr:`RedisRateLimiter.failures`): a rate
limit is a protection, not a reason to refuse service.
"""

from __future__ import annotations

import itertools
import logging
import secrets

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "nostream:ratelimit:"

SLIDING_WINDOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
    return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
return 1
"""


class RedisRateLimiter:
    """:class:`~nostream.ratelimit.base.RateLimiter` backed by Redis sorted sets."""

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX) -> None:
        self.url = url
        self.prefix = prefix
        self._client = aioredis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        self._script = self._client.register_script(SLIDING_WINDOW_LUA)
        self._instance = secrets.token_hex(6)
        self._seq = itertools.count()
        self.failures = 0
        """Hits allowed because Redis could not be asked."""

    async def hit(self, key: str, limit: int, window_seconds: float) -> bool:
        if limit <= 0:
            return False
        member = f"{self._instance}:{next(self._seq)}"
        try:
            allowed = await self._script(
                keys=[self.prefix + key], args=[window_seconds, limit, member]
            )
        except (RedisError, OSError) as exc:
            self.failures += 1
            log.warning("redis rate limiter unavailable, allowing %r: %s", key, exc)
            return True
        return bool(allowed)

    async def ping(self) -> bool:
        """True when Redis answers."""
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._client.aclose()
