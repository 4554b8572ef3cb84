"""The storage interface every backend (SQLite, PostgreSQL) implements identically.

Semantics shared by all backends (the tests in ``tests/storage_contract.py``
run unchanged against each of them):

* Ordering: results are newest first, ``created_at`` descending, then ``id``
  ascending.
* Replaceable kinds (0, 3, 10000-19999) keep one event per ``(pubkey, kind)``;
  addressable kinds (30000-39999) keep one per ``(pubkey, kind, d-tag)``. The
  newer ``created_at`` wins; on a tie the lowest ``id`` wins. Replacement is
  atomic: a query never sees both versions nor neither.
* Ephemeral kinds (20000-29999) are never passed to a store.
* NIP-09: a kind-5 event deletes the author's own events it references, by
  ``e`` id, or by ``a`` address ``kind:pubkey:d`` (versions with ``created_at``
  <= the deletion's). Deleted events are removed, and a deleted event that is
  published again is refused with :attr:`SaveOutcome.DELETED`. Kind-5 events
  are never deleted.
* NIP-40: events whose ``expiration`` tag lies in the past are never returned
  by ``query``/``count``/``exists`` (they may be purged lazily).
* Durability: ``save`` returns only once the event is committed. Backends may
  group concurrent saves into one transaction (one writer batching commits).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from typing import Protocol

from nostr_protocol.event import Event
from nostr_protocol.filters import Filter
from nostr_protocol.nips import expiration


class SaveOutcome(enum.Enum):
    """What :meth:`EventStore.save` did with an event."""

    STORED = "stored"
    """Committed (and, if replaceable/addressable, the older version removed)."""
    DUPLICATE = "duplicate"
    """An event with this id is already stored."""
    SHADOWED = "shadowed"
    """A newer version of this replaceable/addressable event is stored (or same
    ``created_at`` with a lower id); nothing changed."""
    DELETED = "deleted"
    """The author deleted this id or address (NIP-09) earlier; nothing changed."""


class StorageError(RuntimeError):
    """The backend failed (connection lost, disk full); the operation did not happen."""


class EventStore(Protocol):
    """Durable event storage used by the relay."""

    async def open(self) -> None:
        """Connect and run migrations. Must be called once before any other method."""
        ...

    async def close(self) -> None:
        """Flush pending writes and release connections."""
        ...

    async def save(self, event: Event) -> SaveOutcome:
        """Store ``event`` with replaceable/addressable/deletion semantics, durably."""
        ...

    async def delete(self, deletion: Event) -> int:
        """Apply the kind-5 ``deletion`` (NIP-09) and return how many events were removed.

        Only events by ``deletion.pubkey`` are affected. The relay first
        ``save``s the deletion event itself, then calls this.
        """
        ...

    async def query(
        self, filters: Sequence[Filter], default_limit: int, max_limit: int
    ) -> list[Event]:
        """Events matching any filter, newest first, each at most once.

        Each filter's ``limit`` (``default_limit`` when absent, capped at
        ``max_limit``) bounds the events *that filter* contributes; a limit of 0
        contributes none. The union is then sorted newest first.
        """
        ...

    async def count(self, filters: Sequence[Filter]) -> int:
        """How many distinct stored events match any filter (limits ignored, NIP-45)."""
        ...

    async def exists(self, event_id: str) -> bool:
        """True when an event with this id is stored (and not expired)."""
        ...

    async def check_new(self, event: Event) -> SaveOutcome | None:
        """What ``save(event)`` would refuse it with now, in one round trip, storing nothing.

        DUPLICATE when its id is stored (and not expired), DELETED when its author
        deleted its id or (for a replaceable/addressable event) its address at or
        after its ``created_at``, SHADOWED when a newer (unexpired) version of its
        address is stored; None when it would be stored. The relay asks this
        before charging, so an event that will be refused is never paid for.
        """
        ...

    async def bump_counter(self, name: str, key: str, limit: int) -> bool:
        """Durably add 1 to counter ``(name, key)`` if it is below ``limit``.

        Returns True when incremented, False when already at ``limit``. Atomic
        under concurrency (used for the paid relay's free tier).
        """
        ...

    async def ping(self) -> bool:
        """True when the backend answers (for ``/health``)."""
        ...


def expiration_of(event: Event) -> int | None:
    """The NIP-40 ``expiration`` timestamp of ``event``, or None (stored as ``expires_at``)."""
    return expiration(event)


def is_expired(event: Event, now: float | None = None) -> bool:
    """True when ``event`` carries an ``expiration`` that has passed."""
    exp = expiration_of(event)
    return exp is not None and exp <= (time.time() if now is None else now)


def effective_limit(f: Filter, default_limit: int, max_limit: int) -> int:
    """The number of events filter ``f`` may contribute to a query."""
    limit = default_limit if f.limit is None else f.limit
    return max(0, min(limit, max_limit))
