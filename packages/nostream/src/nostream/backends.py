"""Builds the relay's parts (storage, bus, rate limiter, payment gate) from settings."""

from __future__ import annotations

from .bus.base import EventBus, LocalBus
from .config import Settings
from .payments import build_gate
from .ratelimit.base import MemoryRateLimiter, RateLimiter
from .relay import Relay
from .server.app import RelayServer
from .storage.base import EventStore
from .storage.sqlite import SqliteEventStore


def build_store(settings: Settings) -> EventStore:
    """PostgreSQL when ``DB_HOST`` is set, else SQLite under ``NOSTR_DATA_DIR``."""
    if settings.database is not None:
        from .storage.postgres import PostgresEventStore

        store: EventStore = PostgresEventStore(settings.database.dsn)
        return store
    return SqliteEventStore(settings.sqlite_path)


def build_bus(settings: Settings) -> EventBus:
    """Redis pub/sub when ``REDIS_HOST`` is set, else in-process."""
    if settings.redis is not None:
        from .bus.redis import RedisBus

        bus: EventBus = RedisBus(settings.redis.url)
        return bus
    return LocalBus()


def build_limiter(settings: Settings) -> RateLimiter:
    if settings.redis is not None:
        from .ratelimit.redis import RedisRateLimiter

        limiter: RateLimiter = RedisRateLimiter(settings.redis.url)
        return limiter
    return MemoryRateLimiter()


def build_server(settings: Settings) -> RelayServer:
    """The whole relay for ``settings`` (not started)."""
    store = build_store(settings)
    gate = build_gate(settings, store)  # the payment seam: FreePublishing unless paid
    return RelayServer(Relay(settings, store, build_bus(settings), build_limiter(settings), gate))
