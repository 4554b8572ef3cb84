"""The event bus over Redis pub/sub, for several relay processes sharing one Redis.

A published event is handed to this process's callbacks at once and sent on
the Redis channel as ``<origin> <event JSON>``, where ``origin`` is a random
id of this bus instance; the reader drops messages carrying its own origin,
so each process delivers every event exactly once. When Redis is down,
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

    async def start(self) -> None:
        """Connect and subscribe; raises ``redis.exceptions.RedisError`` when Redis is down."""
        self._client = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=5, health_check_interval=30
        )
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
            await pubsub.aclose()
            await self._client.aclose()
            self._client = None
            raise
        self._connected = True
        self._reader = asyncio.create_task(self._read_loop(pubsub), name="redis-bus-reader")

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

    async def _read_loop(self, pubsub: aioredis.client.PubSub) -> None:
        delay = self._delay
        try:
            while True:
                try:
                    message = await pubsub.get_message(timeout=None)
                    self._connected = True
                    delay = self._delay
                    if message is not None and message.get("type") == "message":
                        self._on_message(message["data"])
                except (RedisError, OSError) as exc:
                    if self._connected:
                        log.warning("redis bus: connection lost: %s", exc)
                    self._connected = False
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_delay)
                    with contextlib.suppress(RedisError, OSError):
                        await pubsub.reset()
                        await pubsub.subscribe(self.channel)
        finally:
            await pubsub.aclose()
