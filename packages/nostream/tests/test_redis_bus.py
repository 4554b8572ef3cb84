"""RedisBus against a real Redis: events cross processes exactly once."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from nostr_protocol.event import Event
from nostr_protocol.keys import sign_event
from nostream.bus.redis import RedisBus, decode_message, encode_message
from tests.support import free_port

SK = bytes.fromhex("41" * 32)


def ev(content: str) -> Event:
    return sign_event(SK, kind=1, content=content, created_at=int(time.time()))


class Inbox:
    """Collects delivered events; ``wait_for`` awaits a given one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, event: Event) -> None:
        async with asyncio.timeout(5):
            while event not in self.events:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
def channel() -> str:
    return "test:bus:" + secrets.token_hex(6)  # pub/sub ignores DB indexes


@pytest.fixture
async def buses(redis_url: str, channel: str) -> AsyncIterator[tuple[RedisBus, RedisBus]]:
    a, b = RedisBus(redis_url, channel), RedisBus(redis_url, channel)
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_an_event_reaches_every_process_exactly_once(
    buses: tuple[RedisBus, RedisBus],
) -> None:
    a, b = buses
    inbox_a, inbox_b = Inbox(), Inbox()
    a.subscribe(inbox_a)
    b.subscribe(inbox_b)
    first, marker = ev("first"), ev("marker")
    await a.publish(first)
    await a.publish(marker)
    # Redis keeps a publisher's order: once the marker is in, a duplicate would be too.
    await inbox_b.wait_for(marker)
    assert inbox_a.events == [first, marker]
    assert inbox_b.events == [first, marker]
    assert b.received == 2 and a.received == 0
    assert a.healthy() and b.healthy()


async def test_both_directions_and_several_subscribers(buses: tuple[RedisBus, RedisBus]) -> None:
    a, b = buses
    inboxes = [Inbox(), Inbox(), Inbox()]
    a.subscribe(inboxes[0])
    b.subscribe(inboxes[1])
    b.subscribe(inboxes[2])
    from_a, from_b = ev("from a"), ev("from b")
    await a.publish(from_a)
    await b.publish(from_b)
    await inboxes[0].wait_for(from_b)
    for inbox in inboxes:
        await inbox.wait_for(from_a)
        await inbox.wait_for(from_b)
        assert sorted(e.content for e in inbox.events) == ["from a", "from b"]


async def test_malformed_messages_are_dropped_and_the_bus_keeps_going(
    buses: tuple[RedisBus, RedisBus], redis_url: str, channel: str
) -> None:
    a, b = buses
    inbox = Inbox()
    b.subscribe(inbox)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        for junk in (b"no-origin", b"x {not json", b"x [1,2]", b'x {"id": "ab"}'):
            await raw.publish(channel, junk)
    finally:
        await raw.aclose()
    good = ev("good")
    await a.publish(good)
    await inbox.wait_for(good)
    assert inbox.events == [good]
    assert b.dropped == 4


async def test_a_failing_callback_does_not_stop_the_others(
    buses: tuple[RedisBus, RedisBus],
) -> None:
    a, b = buses

    def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    inbox = Inbox()
    b.subscribe(broken)
    b.subscribe(inbox)
    e = ev("still delivered")
    await a.publish(e)
    await inbox.wait_for(e)


async def test_reader_resubscribes_after_its_connection_is_killed(
    buses: tuple[RedisBus, RedisBus], redis_url: str, channel: str
) -> None:
    a, b = buses
    inbox = Inbox()
    b.subscribe(inbox)
    before = (a.connections, b.connections)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        assert await raw.client_kill_filter(_type="pubsub") >= 2
        async with asyncio.timeout(10):  # both readers come back on their own
            await a.wait_for_connection(before[0])
            await b.wait_for_connection(before[1])
        assert (await raw.pubsub_numsub(channel))[0][1] == 2
    finally:
        await raw.aclose()
    e = ev("after reconnect")
    await a.publish(e)
    await inbox.wait_for(e)
    assert b.healthy()


async def test_start_fails_clearly_when_redis_is_down() -> None:
    bus = RedisBus(f"redis://127.0.0.1:{free_port()}/0", "test:down")
    with pytest.raises(ConnectionError, match=r"cannot subscribe to Redis at redis://127\.0\.0\.1"):
        await bus.start()
    assert not bus.healthy()
    inbox = Inbox()
    bus.subscribe(inbox)
    e = ev("local only")
    await bus.publish(e)  # local subscribers still get it
    assert inbox.events == [e]


def test_message_codec_round_trips_and_rejects_junk() -> None:
    e = Event("ab" * 32, "cd" * 32, 5, 1, (("t", "x"),), "a\x00b \u2603", "ef" * 64)
    assert decode_message(encode_message(b"origin", e)) == (b"origin", e)
    for junk in (b"", b"o", b"o null", b'o {"id": 1}'):
        with pytest.raises(ValueError):
            decode_message(junk)
