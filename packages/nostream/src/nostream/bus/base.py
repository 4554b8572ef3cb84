"""The event bus: how an event accepted by one relay process reaches every other one.

Each relay process calls :meth:`EventBus.subscribe` once with a callback, then
:meth:`EventBus.publish` for every stored (or ephemeral) event it accepted.
Every subscribed callback, in every process on the bus (including the
publisher's), receives each published event exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from nostr_protocol.event import Event

EventCallback = Callable[[Event], None]
"""Called on the event loop for each event on the bus; must not block."""


class EventBus(Protocol):
    """Publish/subscribe of events between relay processes."""

    async def start(self) -> None:
        """Connect; after it returns, published events reach subscribers."""
        ...

    async def close(self) -> None: ...

    async def publish(self, event: Event) -> None:
        """Send ``event`` to every subscriber (this process included)."""
        ...

    def subscribe(self, callback: EventCallback) -> None:
        """Register ``callback`` for every event published on the bus."""
        ...

    def healthy(self) -> bool:
        """True when connected (``/health``'s ``redis`` check)."""
        ...


class LocalBus:
    """The bus of a single relay process: publish calls the callbacks directly."""

    def __init__(self) -> None:
        self._callbacks: list[EventCallback] = []

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._callbacks.clear()

    async def publish(self, event: Event) -> None:
        for callback in list(self._callbacks):
            callback(event)

    def subscribe(self, callback: EventCallback) -> None:
        self._callbacks.append(callback)

    def healthy(self) -> bool:
        return True
