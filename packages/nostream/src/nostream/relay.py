"""The relay's services and its ingest pipeline, shared by every connection.

Ingest order: policy (cheap) -> rate limit -> duplicate -> id hash -> signature
-> auth/protected -> expiry -> deletion/older-version checks -> payment
(``gate.charge``) -> store (OK true only once durable) -> broadcast on the bus.
The duplicate and deletion/older-version answers come from one
``store.check_new`` call made at the duplicate step (the latter two are
replied at their own step). When publishing is free they come from
``store.save`` itself (same replies, no extra storage round trip).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nostr_protocol.event import Event, KindClass
from nostr_protocol.filters import Filter
from nostr_protocol.nips import DELETION_KIND, is_expired, is_protected
from nostr_protocol.validate import InvalidEvent, check_id

from . import policy
from .bus.base import EventBus
from .config import RateLimit, Settings
from .metrics import Metrics
from .payments.gate import FreePublishing, PaymentGate
from .ratelimit.base import RateLimiter
from .storage.base import EventStore, SaveOutcome, StorageError
from .verifier import SignatureVerifier

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("nostream.relay")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to an EVENT: ``["OK", id, accepted, message]``."""

    accepted: bool
    message: str = ""


_ACCEPTED = Verdict(True, "")
_DUPLICATE = Verdict(True, "duplicate: already have this event")
_EVENT_KEYS_CACHED = 10_000
"""Clients whose event rate-limit keys are kept (the cache starts over past it)."""


class Relay:
    """Holds storage, bus, rate limiter, payment gate and live sessions."""

    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        bus: EventBus,
        limiter: RateLimiter,
        gate: PaymentGate,
    ) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.limiter = limiter
        self.gate = gate
        self.metrics = Metrics()
        self.verifier = SignatureVerifier()
        """Checks signatures off the event loop once started (the server starts it)."""
        self.sessions: set[Session] = set()
        self._in_flight: set[str] = set()
        """Ids being charged/stored now: a copy arriving meanwhile is not charged twice."""
        self._event_keys: dict[str, list[tuple[str, int, float, RateLimit]]] = {}
        """Per client IP: each event rate limit's limiter key, rate, window and rule."""
        self._free = isinstance(gate, FreePublishing)
        """With free publishing nothing is charged, so the checks made only to avoid
        charging for an event the store would refuse are left to ``store.save``."""
        bus.subscribe(self._on_bus_event)

    # -- fan-out -----------------------------------------------------------------------

    def _on_bus_event(self, event: Event) -> None:
        encoded: bytes | None = None
        for session in list(self.sessions):
            if session.subscriptions:
                if encoded is None:  # encoded once, and only when someone may want it
                    encoded = event.to_json()
                session.deliver(event, encoded)

    # -- reads -------------------------------------------------------------------------

    async def query(self, filters: Sequence[Filter]) -> list[Event]:
        limits = self.settings.subscriptions
        started = time.perf_counter()
        try:
            return await self.store.query(filters, limits.default_limit, limits.max_limit)
        finally:
            self.metrics.query_seconds.observe(time.perf_counter() - started)

    async def count(self, filters: Sequence[Filter]) -> int:
        started = time.perf_counter()
        try:
            return await self.store.count(filters)
        finally:
            self.metrics.query_seconds.observe(time.perf_counter() - started)

    # -- ingest ------------------------------------------------------------------------

    async def ingest(self, event: Event, client_ip: str, authed: frozenset[str]) -> Verdict:
        """Run ``event`` through the pipeline; count the outcome in the metrics."""
        try:
            verdict = await self._ingest(event, client_ip, authed)
        except StorageError as exc:
            log.error("storage failed for %s: %s", event.id, exc)
            verdict = Verdict(False, "error: could not store the event, try again later")
        if verdict.accepted:
            self.metrics.events_accepted += 1
        else:
            self.metrics.reject(verdict.message)
        return verdict

    async def _ingest(self, event: Event, client_ip: str, authed: frozenset[str]) -> Verdict:
        settings = self.settings
        now = int(time.time())
        refusal = policy.check_event(event, settings.events, now)
        if refusal is not None:
            return Verdict(False, refusal)
        limits = self._event_keys.get(client_ip)
        if limits is None:
            limits = self._rate_limit_keys(client_ip)
        for key, rate, seconds, rule in limits:
            if rule.applies_to(event.kind) and not await self.limiter.hit(key, rate, seconds):
                return Verdict(False, "rate-limited: slow down, too many events")
        ephemeral = event.kind_class is KindClass.EPHEMERAL
        found: SaveOutcome | None = None
        if not ephemeral and not self._free:
            # One store round trip answers all three pre-payment checks; a deleted or
            # superseded event is refused later, after its signature and auth checks.
            found = await self.store.check_new(event)
            if found is SaveOutcome.DUPLICATE:
                return _DUPLICATE
        try:
            check_id(event)
        except InvalidEvent as exc:
            return Verdict(False, f"invalid: {exc.reason}")
        if not await self.verifier.verify(event):
            return Verdict(False, "invalid: signature is not valid")
        if event.id in self._in_flight:
            return Verdict(False, "duplicate: this event is already being processed")
        self._in_flight.add(event.id)
        try:
            return await self._admit(event, authed, now, ephemeral, found)
        finally:
            self._in_flight.discard(event.id)

    def _rate_limit_keys(self, client_ip: str) -> list[tuple[str, int, float, RateLimit]]:
        if len(self._event_keys) >= _EVENT_KEYS_CACHED:
            self._event_keys.clear()
        limits = [
            (f"event:{index}:{client_ip}", rule.rate, rule.period_ms / 1000, rule)
            for index, rule in enumerate(self.settings.events.rate_limits)
        ]
        self._event_keys[client_ip] = limits
        return limits

    async def _admit(
        self,
        event: Event,
        authed: frozenset[str],
        now: int,
        ephemeral: bool,
        found: SaveOutcome | None,
    ) -> Verdict:
        """Auth, expiry and supersession checks, then payment, storage and broadcast."""
        settings = self.settings
        if settings.auth_required and not authed:
            return Verdict(False, "auth-required: authenticate to publish to this relay")
        if is_protected(event) and event.pubkey not in authed:
            return Verdict(False, "auth-required: this event may only be published by its author")
        if is_expired(event, now):
            return Verdict(False, "invalid: event has expired")
        if found is SaveOutcome.DELETED:
            return Verdict(False, "blocked: this event was deleted by its author")
        if found is SaveOutcome.SHADOWED:
            return Verdict(False, "duplicate: a newer version of this event is stored")
        charge = await self.gate.charge(event)
        if not charge.accepted:
            return Verdict(False, charge.message or "restricted: payment refused")
        if not ephemeral:
            outcome = await self.store.save(event)
            if outcome is SaveOutcome.DUPLICATE:
                return _DUPLICATE
            if outcome is SaveOutcome.SHADOWED:
                return Verdict(False, "duplicate: a newer version of this event is stored")
            if outcome is SaveOutcome.DELETED:
                return Verdict(False, "blocked: this event was deleted by its author")
            if event.kind == DELETION_KIND:
                await self.store.delete(event)
        await self.bus.publish(event)
        return _ACCEPTED
