"""The event bus over Redis pub/sub, for several relay processes sharing one Redis.

A published event is handed to this process's callbacks at once and sent on
the Redis channel as ``<origin> <event JSON>``, where ``origin`` is a random
id of this bus instance; the reader drops messages carrying its own origin,
so each process delivers every event exactly once. Pub/sub is at most once:
an event published while a reader is reconnecting does not reach it (the
event is stored; clients get it from a REQ). When Redis is down,
events still reach local subscribers; the reader reconnects and resubscribes
with a capped backoff, and :meth:`RedisBus.healthy` reports the link state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from nostr_protocol.event import Event

from .base import EventCallback

log = logging.getLogger(__name__)

DEFAULT_CHANNEL = "nostream:events"


def encode_message(origin: bytes, event: Event) -> bytes:
    """The wire form of one bus message."""
    return origin + b" " + event.to_json()


def decode_message(data: bytes) -> tuple[bytes, Event]:
    """Split a bus message into ``(origin, event)``; raises ValueError when malformed."""
    origin, sep, body = data.partition(b" ")
    if not sep:
        raise ValueError("bus message has no origin")
    obj: Any = orjson.loads(body)
    if not isinstance(obj, dict):
        raise ValueError("bus message is not an event object")
    try:
        tags = tuple(tuple(str(v) for v in tag) for tag in obj["tags"])
        event = Event(
            str(obj["id"]),
            str(obj["pubkey"]),
            int(obj["created_at"]),
            int(obj["kind"]),
            tags,
            str(obj["content"]),
            str(obj["sig"]),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"bus message is not an event: {exc}") from exc
    return origin, event


def _safe(url: str) -> str:
    """``url`` without its password."""
    scheme, sep, rest = url.partition("://")
    return scheme + sep + rest.rpartition("@")[2]


class RedisBus:
    """:class:`~nostream.bus.base.EventBus` over one Redis pub/sub channel."""

    def __init__(
        self,
        url: str,
        channel: str = DEFAULT_CHANNEL,
        *,
        reconnect_delay: float = 0.1,
        max_reconnect_delay: float = 5.0,
    ) -> None:
        self.url = url
        self.channel = channel
        self.origin = secrets.token_hex(8).encode()
        self._callbacks: list[EventCallback] = []
        self._client: aioredis.Redis | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connected = False
        self._delay = reconnect_delay
        self._max_delay = max_reconnect_delay
        self.received = 0
        """Events delivered from other processes."""
        self.dropped = 0
        """Malformed bus messages ignored."""
        self.connections = 0
        """How many times the reader has subscribed (1 + reconnections)."""
        self._state = asyncio.Condition()

    async def start(self) -> None:
        """Connect and subscribe; raises :class:`ConnectionError` when Redis is unreachable."""
        self._client = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=5, health_check_interval=30
        )
        try:
            pubsub = await self._subscribe()
        except (RedisError, OSError) as exc:
            await self._client.aclose()
            self._client = None
            raise ConnectionError(f"cannot subscribe to Redis at {_safe(self.url)}: {exc}") from exc
        except BaseException:
            await self._client.aclose()
            self._client = None
            raise
        self._reader = asyncio.create_task(self._read_loop(pubsub), name="redis-bus-reader")

    async def _subscribe(self) -> aioredis.client.PubSub:
        """A pubsub subscribed to the channel (confirmed by Redis) on a new connection."""
        assert self._client is not None
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
            # The confirmation arrives before any message published after it.
            while True:
                confirm = await pubsub.parse_response(block=True, timeout=5)
                if confirm is None:
                    raise RedisError("no subscribe confirmation from Redis")
                if confirm[0] in (b"subscribe", "subscribe"):
                    break
        except BaseException:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            raise
        self._connected = True
        self.connections += 1
        async with self._state:
            self._state.notify_all()
        return pubsub

    async def wait_for_connection(self, after: int) -> None:
        """Return once the bus has (re)subscribed more than ``after`` times in total."""
        async with self._state:
            await self._state.wait_for(lambda: self.connections > after)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._connected = False
        self._callbacks.clear()

    def subscribe(self, callback: EventCallback) -> None:
        self._callbacks.append(callback)

    def healthy(self) -> bool:
        return self._connected

    async def publish(self, event: Event) -> None:
        """Deliver locally, then send to the other processes (best effort when Redis is down)."""
        self._deliver(event)
        if self._client is None:
            return
        try:
            await self._client.publish(self.channel, encode_message(self.origin, event))
        except (RedisError, OSError) as exc:
            self._connected = False
            log.warning("redis bus: publish failed, event %s not fanned out: %s", event.id, exc)

    def _deliver(self, event: Event) -> None:
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:
                log.exception("redis bus: subscriber callback failed")

    def _on_message(self, data: bytes) -> None:
        try:
            origin, event = decode_message(data)
        except ValueError as exc:
            self.dropped += 1
            log.warning("redis bus: dropped a malformed message: %s", exc)
            return
        if origin == self.origin:
            return
        self.received += 1
        self._deliver(event)

    async def _read_loop(self, pubsub: aioredis.client.PubSub | None) -> None:
        delay = self._delay
        try:
            while True:
                try:
                    if pubsub is None:
                        pubsub = await self._subscribe()
                        delay = self._delay
                    message = await pubsub.get_message(timeout=None)
                    if message is not None and message.get("type") == "message":
                        self._on_message(message["data"])
                except (RedisError, OSError) as exc:
                    if self._connected:
                        log.warning("redis bus: connection lost, reconnecting: %s", exc)
                    self._connected = False
                    if pubsub is not None:
                        with contextlib.suppress(RedisError, OSError):
                            await pubsub.aclose()  # type: ignore[no-untyped-call]
                        pubsub = None
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_delay)
        finally:
            if pubsub is not None:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
