"""One client connection's protocol state: subscriptions, auth, and what to send.

The session knows nothing about sockets. The adapter feeds it frames with
:meth:`Session.handle` and gives it ``send(frame)`` (queue one outgoing frame,
never blocks) and optionally ``flush()`` (wait while the outgoing queue is
full), awaited after each stored event so one REQ cannot flood the queue.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nostr_protocol.event import Event
from nostr_protocol.filters import Filter
from nostr_protocol.messages import (
    AuthMessage,
    CloseMessage,
    CountMessage,
    EventMessage,
    MessageError,
    ReqMessage,
    encode_auth_challenge,
    encode_closed,
    encode_count,
    encode_eose,
    encode_event,
    encode_notice,
    encode_ok,
    event_frame_prefix,
    parse_client_message,
)
from nostr_protocol.nips import check_auth_event
from nostr_protocol.validate import InvalidEvent, check_id, check_signature

from . import policy
from .relay import Relay
from .storage.base import StorageError

log = logging.getLogger("nostream.session")

Send = Callable[[bytes], None]
Flush = Callable[[], Awaitable[None]]

MAX_PENDING_LIVE = 1000
"""Live events kept per subscription while its stored events are still being sent."""

MAX_EVENTS_IN_FLIGHT = 64
"""EVENTs of one connection processed at once; beyond it the session stops reading."""


@dataclass(slots=True)
class Subscription:
    filters: tuple[Filter, ...]
    prefix: bytes
    """``["EVENT",<id>,``: a live event's frame is this, the encoded event, and ``]``."""
    pending: list[tuple[Event, bytes]] | None = field(default_factory=list)
    """Live events that arrived while stored events were being sent (None once live)."""

    def matches(self, event: Event) -> bool:
        return any(f.matches(event) for f in self.filters)


class Session:
    """The relay side of one WebSocket connection."""

    def __init__(
        self, relay: Relay, client_ip: str, send: Send, flush: Flush | None = None
    ) -> None:
        self.relay = relay
        self.client_ip = client_ip
        self._send = send
        self._flush = flush
        self.subscriptions: dict[str, Subscription] = {}
        self.challenge = secrets.token_hex(16)
        self.authed: frozenset[str] = frozenset()
        self._ingesting: set[asyncio.Task[None]] = set()
        self._slot_freed: asyncio.Future[None] | None = None
        """Set while :meth:`handle` waits for one of the EVENTs in flight to finish."""
        self._message_limits = [
            (f"msg:{index}:{client_ip}", rule.rate, rule.period_ms / 1000)
            for index, rule in enumerate(relay.settings.message_rate_limits)
        ]
        """This client's limiter key, rate and window for each message rate limit."""

    def start(self) -> None:
        """Register for live events and send the NIP-42 challenge."""
        self.relay.sessions.add(self)
        self._send(encode_auth_challenge(self.challenge))

    def stop(self) -> None:
        self.relay.sessions.discard(self)
        self.subscriptions.clear()

    async def drain(self) -> None:
        """Wait for the EVENTs still being processed (they are stored even if the
        client has gone: it may have paid for them)."""
        while self._ingesting:
            await asyncio.gather(*self._ingesting, return_exceptions=True)

    # -- incoming ----------------------------------------------------------------------

    async def handle(self, data: str | bytes) -> None:
        """Handle one client frame; every failure becomes a NOTICE, CLOSED or OK false."""
        self.relay.metrics.messages_received += 1
        limits = self.relay.settings.subscriptions
        try:
            msg = parse_client_message(
                data,
                max_filters=limits.max_filters,
                max_subscription_id_length=limits.max_subscription_id_length,
            )
        except MessageError as exc:
            self._refuse(exc)
            return
        if self._message_limits and not await self._message_allowed():
            if isinstance(msg, EventMessage):
                self.relay.metrics.reject("rate-limited:")
                self._ok(msg.event.id, False, "rate-limited: slow down, too many messages")
            elif isinstance(msg, (ReqMessage, CountMessage)):
                self._send(encode_closed(msg.subscription_id, "rate-limited: slow down"))
            else:
                self._send(encode_notice("rate-limited: slow down"))
            return
        if type(msg) is EventMessage:
            # EVENTs run concurrently (OKs may come back out of order); REQ, COUNT,
            # CLOSE and AUTH are handled in the order they arrive.
            while len(self._ingesting) >= MAX_EVENTS_IN_FLIGHT:
                self._slot_freed = asyncio.get_running_loop().create_future()
                await self._slot_freed
            task = asyncio.get_running_loop().create_task(self._ingest(msg.event))
            self._ingesting.add(task)
            task.add_done_callback(self._ingest_done)
            return
        try:
            if isinstance(msg, ReqMessage):
                await self._req(msg)
            elif isinstance(msg, CountMessage):
                await self._count(msg)
            elif isinstance(msg, CloseMessage):
                self.subscriptions.pop(msg.subscription_id, None)
            elif isinstance(msg, AuthMessage):
                self._auth(msg.event)
        except StorageError as exc:
            log.error("storage failed: %s", exc)
            if isinstance(msg, (ReqMessage, CountMessage)):
                self.subscriptions.pop(msg.subscription_id, None)
                self._send(encode_closed(msg.subscription_id, "error: storage unavailable"))
            else:
                self._send(encode_notice("error: storage unavailable"))

    async def _ingest(self, event: Event) -> None:
        try:
            verdict = await self.relay.ingest(event, self.client_ip, self.authed)
        except Exception:
            log.exception("ingest of %s failed", event.id)
            self._ok(event.id, False, "error: internal error, try again later")
            return
        self._ok(event.id, verdict.accepted, verdict.message)

    def _ingest_done(self, task: asyncio.Task[None]) -> None:
        self._ingesting.discard(task)
        freed = self._slot_freed
        if freed is not None and not freed.done():
            freed.set_result(None)

    def _refuse(self, exc: MessageError) -> None:
        if exc.subscription_id is not None:
            self.subscriptions.pop(exc.subscription_id, None)
            self._send(encode_closed(exc.subscription_id, exc.reason))
        elif exc.event_id is not None:
            reason = exc.reason if ":" in exc.reason else f"invalid: {exc.reason}"
            self.relay.metrics.reject(reason)
            self._ok(exc.event_id, False, reason)
        else:
            self._send(encode_notice(f"invalid: {exc.reason}"))

    async def _message_allowed(self) -> bool:
        hit = self.relay.limiter.hit
        for key, rate, seconds in self._message_limits:
            if not await hit(key, rate, seconds):
                return False
        return True

    def _ok(self, event_id: str, accepted: bool, message: str) -> None:
        self._send(encode_ok(event_id, accepted, message))

    async def _req(self, msg: ReqMessage) -> None:
        sub_id = msg.subscription_id
        limits = self.relay.settings.subscriptions
        refusal = policy.check_filters(msg.filters, limits)
        if (
            refusal is None
            and sub_id not in self.subscriptions
            and len(self.subscriptions) >= limits.max_subscriptions
        ):
            refusal = f"blocked: too many subscriptions (at most {limits.max_subscriptions})"
        if refusal is not None:
            self.subscriptions.pop(sub_id, None)
            self._send(encode_closed(sub_id, refusal))
            return
        sub = Subscription(msg.filters, event_frame_prefix(sub_id))
        self.subscriptions[sub_id] = sub  # replaces any subscription with the same id
        stored = await self.relay.query(msg.filters)
        if self.subscriptions.get(sub_id) is not sub:
            return  # closed or replaced meanwhile
        sent = set()
        for event in stored:
            sent.add(event.id)
            self._send(encode_event(sub_id, event))
            if self._flush is not None:
                await self._flush()
            if self.subscriptions.get(sub_id) is not sub:
                return
        self._send(encode_eose(sub_id))
        pending, sub.pending = sub.pending or [], None
        for event, encoded in pending:
            if event.id not in sent:
                self._send(encode_event(sub_id, encoded))

    async def _count(self, msg: CountMessage) -> None:
        refusal = policy.check_filters(msg.filters, self.relay.settings.subscriptions)
        if refusal is not None:
            self._send(encode_closed(msg.subscription_id, refusal))
            return
        self._send(encode_count(msg.subscription_id, await self.relay.count(msg.filters)))

    def _auth(self, event: Event) -> None:
        try:
            check_id(event)
            check_signature(event)
        except InvalidEvent as exc:
            self._ok(event.id, False, f"invalid: {exc.reason}")
            return
        problem = check_auth_event(
            event,
            challenge=self.challenge,
            relay_url=self.relay.settings.info.relay_url,
            now=int(time.time()),
        )
        if problem is not None:
            self._ok(event.id, False, f"invalid: {problem}")
            return
        self.authed = self.authed | {event.pubkey}
        self._ok(event.id, True, "")

    # -- outgoing live events ----------------------------------------------------------

    def deliver(self, event: Event, encoded: bytes) -> None:
        """Send a live event to every subscription it matches."""
        for sub in self.subscriptions.values():
            if sub.matches(event):
                if sub.pending is not None:
                    if len(sub.pending) < MAX_PENDING_LIVE:
                        sub.pending.append((event, encoded))
                else:
                    self._send(sub.prefix + encoded + b"]")
