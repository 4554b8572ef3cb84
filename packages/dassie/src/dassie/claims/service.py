"""Claim verification with channel lookup and an atomic ledger commit.

Atomicity: the decision and its in-memory effects (best claim, balances) happen
in one synchronous step on the event loop, so two racing claims on a channel are
decided one after the other and the same nonce is credited once. The claim
record and the transfer that credits it are then committed in one transaction
(group commit); the caller learns ``valid`` only after that commit.

Order: each channel has a FIFO queue of claims; the claim at its head is decided
as soon as its signer is known and its channel is cached (a chain lookup or a
refresh runs as a task while the queue waits), so claims on a channel are
decided in the order they arrived. With a :class:`~.recovery.RecoveryPool` a
claim's signer recovery starts when the claim arrives, before it queues, and
runs on another core; without one the signer is recovered on the event loop
during the decision, and only if the cheaper checks pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from payment_channel.claim import (
    NOT_RECOVERABLE,
    InvalidSignature,
    claim_message,
    split_signature,
)
from payment_channel.tag import MalformedClaim, PaymentClaim, parse_fields

from ..ledger import (
    Changes,
    ClaimRecord,
    LedgerStore,
    LedgerUnavailable,
    chain_asset,
    channel_account,
    revenue_account,
)
from .channels import ChainUnavailable, ChannelSource, ChannelState
from .recovery import RecoveryPool
from .verify import Accepted, Decision, Reason, Rejected, Signer, decide

log = logging.getLogger(__name__)

NEGATIVE_CACHE_SECONDS = 5.0


class VerificationUnavailable(RuntimeError):
    """No chain could be asked about the channel; try again later."""


@dataclass(frozen=True, slots=True)
class Verified:
    """The outcome of one verification, as the RPC reports it."""

    decision: Decision
    channel: ChannelState | None = None
    replayed: bool = False
    """The same claim for the same event again: answered as first, credited once."""

    def to_json(self, now: float, margin: int) -> dict[str, object]:
        if isinstance(self.decision, Accepted):
            assert self.channel is not None
            answer: dict[str, object] = {
                "valid": True,
                "credited": str(self.decision.delta),
                "channel": self.channel.to_json(now, margin),
            }
            if self.replayed:
                answer["replayed"] = True
            return answer
        return {"valid": False, "reason": self.decision.reason.value}


class _Waiting:
    """The type of :data:`_WAITING`."""


_WAITING = _Waiting()
"""A signer being recovered in the pool."""


class _Unknown:
    """The type of :data:`_UNKNOWN`."""


_UNKNOWN = _Unknown()
"""A channel neither cached nor known missing: it must be looked up."""

_REFRESH_REASONS = (Reason.INSUFFICIENT_CHANNEL_BALANCE, Reason.CHANNEL_CLOSED)

_Answer = tuple[Verified, ClaimRecord | None]


class _ChannelQueue:
    """The claims on one channel, in arrival order; ``busy`` while the head waits for I/O."""

    __slots__ = ("advance", "busy", "channel_id", "items")

    def __init__(self, channel_id: str, advance: Callable[[_ChannelQueue], None]) -> None:
        self.channel_id = channel_id
        self.items: deque[_Pending] = deque()
        self.busy = False
        self.advance = advance


class _Pending:
    """A claim waiting in its channel's queue; called with its signer once recovered."""

    __slots__ = ("answer", "claim", "event_id", "future", "min_amount", "queue", "signer")

    def __init__(
        self,
        claim: PaymentClaim,
        min_amount: int,
        future: asyncio.Future[_Answer],
        queue: _ChannelQueue,
        event_id: str | None = None,
    ) -> None:
        self.claim = claim
        self.event_id = event_id
        self.min_amount = min_amount
        self.future = future
        self.queue = queue
        self.signer: Signer | _Waiting | None = None
        """None: recover it during the decision (no pool)."""
        self.answer: _Answer | None = None
        """Once accepted, the answer given when the ledger batch is durable."""

    def __call__(self, address: bytes | None) -> None:
        """The pool's answer (itself the callback: no closure per claim)."""
        self.signer = InvalidSignature(NOT_RECOVERABLE) if address is None else address
        self.queue.advance(self.queue)


def _answer_durable(waiters: list[_Pending], durable: asyncio.Future[None]) -> None:
    """Answer the accepted claims of one ledger batch once it committed (or failed)."""
    error = None if durable.cancelled() else durable.exception()
    for item in waiters:
        future = item.future
        if future.done():
            continue
        if error is None:
            assert item.answer is not None
            future.set_result(item.answer)
        else:
            future.set_exception(LedgerUnavailable(str(error)))


class ClaimService:
    """Verifies claims against channels from ``sources`` and records them in ``store``."""

    def __init__(
        self,
        store: LedgerStore,
        sources: Sequence[ChannelSource],
        expiry_margin: int,
        clock: Callable[[], float] = time.time,
        recovery: RecoveryPool | None = None,
    ) -> None:
        self.store = store
        self.recovery = recovery
        """Where signers are recovered; None: on the event loop, when a decision needs one."""
        self.sources = list(sources)
        self.expiry_margin = expiry_margin
        self.clock = clock
        self.channels: dict[str, ChannelState] = {}
        self._missing: dict[str, float] = {}
        self._lookups: dict[str, asyncio.Future[ChannelState | None]] = {}
        self.on_accepted: list[Callable[[ChannelState, ClaimRecord], None]] = []
        self._queues: dict[str, _ChannelQueue] = {}
        self._slow_tasks: set[asyncio.Task[None]] = set()
        self._durable: asyncio.Future[None] | None = None
        self._durable_waiters: list[_Pending] = []
        self._known: dict[str, asyncio.Future[ChannelState]] = {}
        self.closing: set[str] = set()
        """Channels this node is closing or has closed: no claim is accepted on them."""

    # -- channels -------------------------------------------------------

    def learn(self, channel: ChannelState) -> None:
        """Cache a channel (from a ``ChannelOpened`` log); ignored unless it pays this node."""
        if any(_is_ours(s, channel) for s in self.sources):
            self.channels[channel.channel_id] = channel
            self._missing.pop(channel.channel_id, None)
            waiter = self._known.pop(channel.channel_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(channel)

    async def wait_known(self, channel_id: str) -> ChannelState:
        """Wait until the channel is learnt from the chain's logs (tests, tools)."""
        cached = self.channels.get(channel_id)
        if cached is not None:
            return cached
        future = self._known.get(channel_id)
        if future is None:
            future = self._known[channel_id] = asyncio.get_running_loop().create_future()
        return await asyncio.shield(future)

    def mark_closed(self, channel_id: str) -> None:
        """Refuse further claims on the channel (it is being closed), whatever the chain says."""
        self.closing.add(channel_id)

    def reopen(self, channel_id: str) -> None:
        """Undo :meth:`mark_closed` (the close failed) and forget the cached state."""
        self.closing.discard(channel_id)
        self.channels.pop(channel_id, None)

    def _local(self, channel: ChannelState | None) -> ChannelState | None:
        if channel is not None and channel.channel_id in self.closing:
            return channel.closed_copy()
        return channel

    def _cached(self, channel_id: str) -> ChannelState | _Unknown | None:
        """The channel as cached (None: known missing), or _UNKNOWN: a lookup is needed."""
        cached = self.channels.get(channel_id)
        if cached is not None:
            return self._local(cached)
        missing_at = self._missing.get(channel_id)
        if missing_at is not None and self.clock() - missing_at < NEGATIVE_CACHE_SECONDS:
            return None
        return _UNKNOWN

    async def channel(self, channel_id: str, *, refresh: bool = False) -> ChannelState | None:
        """The channel paying this node, from the cache or the chains."""
        if not refresh:
            cached = self._cached(channel_id)
            if not isinstance(cached, _Unknown):
                return cached
        pending = self._lookups.get(channel_id)
        if pending is not None:  # one lookup per channel at a time
            return self._local(await asyncio.shield(pending))
        future: asyncio.Future[ChannelState | None] = asyncio.get_running_loop().create_future()
        self._lookups[channel_id] = future
        try:
            found = await self._lookup(channel_id)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved
            raise
        else:
            future.set_result(found)
        finally:
            del self._lookups[channel_id]
        if found is None:
            self._missing[channel_id] = self.clock()
            if len(self._missing) > 10_000:
                self._missing.clear()
        else:
            self.channels[channel_id] = found
        return self._local(found)

    async def _lookup(self, channel_id: str) -> ChannelState | None:
        errors: list[str] = []
        for source in self.sources:
            try:
                found = await source.get_channel(channel_id)
            except ChainUnavailable as exc:
                errors.append(f"{source.name}: {exc}")
                continue
            if found is not None and _is_ours(source, found):
                return found
        if errors:  # "unknown on every enabled chain" cannot be told while one is down
            raise VerificationUnavailable("; ".join(errors))
        return None

    # -- verification ---------------------------------------------------

    async def verify_params(
        self,
        channel_id: object,
        claim_amount: object,
        nonce: object,
        signature: object,
        currency: object,
        min_amount: int,
        event_id: str | None = None,
    ) -> Verified:
        """Parse the RPC's fields, then :meth:`verify`; malformed fields are rejected."""
        try:
            claim = parse_fields(channel_id, claim_amount, nonce, signature, currency)
        except MalformedClaim as exc:
            return Verified(Rejected(Reason.MALFORMED_CLAIM, str(exc)))
        return await self.verify(claim, min_amount, event_id)

    async def verify(
        self, claim: PaymentClaim, min_amount: int, event_id: str | None = None
    ) -> Verified:
        """Decide, and if accepted credit and record the claim atomically.

        With ``event_id`` (the Nostr event the claim pays for), the channel's best
        claim sent again for that same event is answered valid again, crediting
        nothing more: a relay that gave up waiting for the first answer can ask
        again, and the user does not pay twice. For any other event it is a reused
        nonce, as without ``event_id``.
        """
        store = self.store
        store.check_available()
        # The store's loop: asyncio.get_running_loop() costs a getpid() system call.
        future: asyncio.Future[_Answer] = store.loop.create_future()
        channel_id = claim.channel_id
        queue = self._queues.get(channel_id)
        if queue is None:
            queue = self._queues[channel_id] = _ChannelQueue(channel_id, self._advance)
        item = _Pending(claim, min_amount, future, queue, event_id)
        queue.items.append(item)
        if self.recovery is not None:
            self._recover(item, self.recovery)
        if item.signer is not _WAITING:  # else its recovery's answer advances the queue
            self._advance(queue)
        verified, record = await future
        if record is not None:
            assert verified.channel is not None
            for callback in self.on_accepted:
                callback(verified.channel, record)
        return verified

    def _recover(self, item: _Pending, pool: RecoveryPool) -> None:
        """Start recovering the claim's signer in ``pool``; its queue advances when known."""
        c = item.claim.claim
        try:
            compact = split_signature(c.signature)
        except InvalidSignature as exc:
            item.signer = exc
            return
        item.signer = _WAITING
        pool.submit(claim_message(c.channel_id, c.claim_amount, c.nonce), compact, item)

    def _advance(self, queue: _ChannelQueue) -> None:
        """Decide the claims at the head of ``queue`` while that needs no waiting."""
        items = queue.items
        while items and not queue.busy:
            item = items[0]
            if item.future.done():  # its caller gave up before the decision
                items.popleft()
                continue
            signer = item.signer
            if signer is _WAITING:
                return
            assert not isinstance(signer, _Waiting)
            channel_id = queue.channel_id
            channel: ChannelState | _Unknown | None = self.channels.get(channel_id)
            if channel is None or channel_id in self.closing:  # else cached and usable as is
                channel = self._cached(channel_id)
                if channel is _UNKNOWN:
                    self._slow(queue)
                    return
            assert not isinstance(channel, _Unknown)
            decision = decide(
                channel,
                self.store.best_claims.get(channel_id),
                item.claim,
                item.min_amount,
                self.clock(),
                self.expiry_margin,
                signer,
            )
            if decision.__class__ is not Accepted and self._stale(channel, decision):
                self._slow(queue)
                return
            items.popleft()
            self._conclude(item, channel, decision)
        if not items and not queue.busy and self._queues.get(queue.channel_id) is queue:
            del self._queues[queue.channel_id]

    def _slow(self, queue: _ChannelQueue) -> None:
        queue.busy = True
        task = asyncio.create_task(self._slow_step(queue))
        self._slow_tasks.add(task)
        task.add_done_callback(self._slow_tasks.discard)

    async def _slow_step(self, queue: _ChannelQueue) -> None:
        """Decide the head claim of ``queue`` after a chain lookup (or refresh)."""
        item = queue.items[0]
        signer = item.signer
        assert not isinstance(signer, _Waiting)
        try:
            channel = await self.channel(queue.channel_id)
            if item.future.done():
                return
            decision = self._decide(channel, item.claim, item.min_amount, signer)
            if self._stale(channel, decision):
                # The cache may be stale (a top-up); ask the chain once more.
                try:
                    channel = await self.channel(queue.channel_id, refresh=True)
                except VerificationUnavailable:
                    pass
                if item.future.done():
                    return
                decision = self._decide(channel, item.claim, item.min_amount, signer)
            # No await between _decide and here: the decision and its effects are one step.
            self._conclude(item, channel, decision)
        except asyncio.CancelledError:
            item.future.cancel()
            raise
        except Exception as exc:
            if not item.future.done():
                item.future.set_exception(exc)
        finally:
            queue.items.popleft()
            queue.busy = False
            self._advance(queue)

    def _stale(self, channel: ChannelState | None, decision: Decision) -> bool:
        """Whether a rejection may come from a stale cache (a top-up) and deserves a refresh."""
        return (
            isinstance(decision, Rejected)
            and channel is not None
            and decision.reason in _REFRESH_REASONS
            and channel.channel_id not in self.closing
        )

    def _conclude(self, item: _Pending, channel: ChannelState | None, decision: Decision) -> None:
        """Answer a rejection now; apply an acceptance and answer once it is durable."""
        if isinstance(decision, Rejected):
            replayed = self._replayed(item)
            if replayed is None:
                item.future.set_result((Verified(decision, channel), None))
                return
            # Answered as the first time, once that first credit is durable (it is in
            # this batch or an earlier one, and batches commit in order).
            item.answer = (Verified(Accepted(replayed.delta), channel, replayed=True), None)
            if self._durable is None or self._durable.done():
                item.future.set_result(item.answer)
            else:
                self._durable_waiters.append(item)
            return
        assert channel is not None
        try:
            record, durable = self._apply(channel, item.claim, decision.delta, item.event_id)
        except Exception as exc:  # the ledger is down
            item.future.set_exception(exc)
            return
        item.answer = (Verified(decision, channel), record)
        if durable is not self._durable:
            self._durable = durable
            self._durable_waiters = []
            durable.add_done_callback(partial(_answer_durable, self._durable_waiters))
        self._durable_waiters.append(item)

    def _decide(
        self,
        channel: ChannelState | None,
        claim: PaymentClaim,
        min_amount: int,
        signer: Signer | None = None,
        channel_id: str | None = None,
    ) -> Decision:
        return decide(
            channel,
            self.store.best_claims.get(channel_id or claim.channel_id),
            claim,
            min_amount,
            self.clock(),
            self.expiry_margin,
            signer,
        )

    def _replayed(self, item: _Pending) -> ClaimRecord | None:
        """The recorded claim ``item`` repeats for the same event, if it does."""
        if item.event_id is None:
            return None
        best = self.store.best_claims.get(item.claim.channel_id)
        c = item.claim.claim
        if (
            best is None
            or best.event_id != item.event_id
            or (best.nonce, best.claim_amount) != (c.nonce, c.claim_amount)
            or best.signature.lower() != item.claim.signature.lower()
        ):
            return None
        return best

    def _apply(
        self, channel: ChannelState, claim: PaymentClaim, delta: int, event_id: str | None = None
    ) -> tuple[ClaimRecord, asyncio.Future[None]]:
        """Credit and record an accepted claim in memory; the future: its batch is durable."""
        self.store.check_available()
        ledger = self.store.ledger
        asset = chain_asset(channel.chain, channel.currency)  # the channel's currency
        receivable = channel_account(channel.chain, channel.channel_id)
        revenue = revenue_account(asset)
        changes = None
        if receivable not in ledger.accounts or revenue not in ledger.accounts:
            changes = ledger.ensure_account(receivable, asset)
            changes.merge(ledger.ensure_account(revenue, asset))
        transfer_id = None
        if delta > 0:
            transfer_id, posted = ledger.transfer(receivable, revenue, delta)
            if changes is None:
                changes = posted
            else:
                changes.merge(posted)
        c = claim.claim
        record = ClaimRecord(
            channel.channel_id,
            channel.chain,
            c.claim_amount,
            c.nonce,
            claim.signature,
            delta,
            transfer_id,
            self.clock(),
            event_id,
        )
        return record, self.store.enqueue(changes or Changes(), claims=(record,))

    def best_claim(self, channel_id: str) -> ClaimRecord | None:
        return self.store.best_claims.get(channel_id)


def _is_ours(source: ChannelSource, channel: ChannelState) -> bool:
    return (
        source.name == channel.chain and channel.recipient.lower() == source.relay_address.lower()
    )
