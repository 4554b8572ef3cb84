"""RedisRateLimiter against a real Redis: one sliding window shared by processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from nostream.ratelimit.redis import RedisRateLimiter
from tests.support import free_port


@pytest.fixture
async def limiters(redis_url: str) -> AsyncIterator[tuple[RedisRateLimiter, RedisRateLimiter]]:
    a, b = RedisRateLimiter(redis_url), RedisRateLimiter(redis_url)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_allows_up_to_the_limit_then_refuses(
    limiters: tuple[RedisRateLimiter, RedisRateLimiter],
) -> None:
    a, _ = limiters
    assert [await a.hit("ip:1", 3, 60) for _ in range(5)] == [True, True, True, False, False]
    assert await a.hit("ip:2", 3, 60)  # keys are independent
    assert not await a.hit("ip:1", 0, 60)


async def test_the_window_is_shared_by_two_processes(
    limiters: tuple[RedisRateLimiter, RedisRateLimiter],
) -> None:
    a, b = limiters
    results = await asyncio.gather(*((a if i % 2 else b).hit("pk", 10, 60) for i in range(40)))
    assert results.count(True) == 10
    assert not await a.hit("pk", 10, 60)
    assert not await b.hit("pk", 10, 60)


async def test_refused_hits_are_not_counted_and_old_hits_slide_out(
    limiters: tuple[RedisRateLimiter, RedisRateLimiter],
) -> None:
    a, b = limiters
    window = 0.3
    assert await a.hit("k", 2, window)
    assert await b.hit("k", 2, window)
    for _ in range(5):
        assert not await a.hit("k", 2, window)
    await asyncio.sleep(window + 0.05)  # let the window pass (time itself is under test)
    assert await a.hit("k", 2, window)
    assert await b.hit("k", 2, window)
    assert not await a.hit("k", 2, window)


async def test_keys_expire_from_redis(
    limiters: tuple[RedisRateLimiter, RedisRateLimiter], redis_url: str
) -> None:
    import redis.asyncio as aioredis

    a, _ = limiters
    await a.hit("short", 5, 30)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        ttl = await raw.pttl(a.prefix + "short")
    finally:
        await raw.aclose()
    assert 0 < ttl <= 30_000


async def test_fails_open_when_redis_is_unreachable() -> None:
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0")
    try:
        assert await limiter.hit("k", 1, 60)
        assert await limiter.hit("k", 1, 60)
        assert limiter.failures == 2
        assert not await limiter.ping()
    finally:
        await limiter.close()
