"""Claim verification with channel lookup and an atomic ledger commit.

Atomicity: the decision and its in-memory effects (best claim, balances) happen
in one synchronous step on the event loop, so two racing claims on a channel are
decided one after the other and the same nonce is credited once. The claim
record and the transfer that credits it are then committed in one transaction
(group commit); the caller learns ``valid`` only after that commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from payment_channel.tag import MalformedClaim, PaymentClaim, parse_fields

from ..ledger import REVENUE, ClaimRecord, LedgerStore, channel_account
from .channels import ChainUnavailable, ChannelSource, ChannelState
from .verify import Accepted, BestClaim, Decision, Reason, Rejected, decide

log = logging.getLogger(__name__)

NEGATIVE_CACHE_SECONDS = 5.0


class VerificationUnavailable(RuntimeError):
    """No chain could be asked about the channel; try again later."""


@dataclass(frozen=True, slots=True)
class Verified:
    """The outcome of one verification, as the RPC reports it."""

    decision: Decision
    channel: ChannelState | None = None

    def to_json(self, now: float, margin: int) -> dict[str, object]:
        if isinstance(self.decision, Accepted):
            assert self.channel is not None
            return {
                "valid": True,
                "credited": str(self.decision.delta),
                "channel": self.channel.to_json(now, margin),
            }
        return {"valid": False, "reason": self.decision.reason.value}


class ClaimService:
    """Verifies claims against channels from ``sources`` and records them in ``store``."""

    def __init__(
        self,
        store: LedgerStore,
        sources: Sequence[ChannelSource],
        expiry_margin: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sources = list(sources)
        self.expiry_margin = expiry_margin
        self.clock = clock
        self.channels: dict[str, ChannelState] = {}
        self._missing: dict[str, float] = {}
        self._lookups: dict[str, asyncio.Future[ChannelState | None]] = {}
        self.on_accepted: list[Callable[[ChannelState, ClaimRecord], None]] = []
        self._locks: dict[str, list[Any]] = {}
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

    async def channel(self, channel_id: str, *, refresh: bool = False) -> ChannelState | None:
        """The channel paying this node, from the cache or the chains."""
        if not refresh:
            cached = self.channels.get(channel_id)
            if cached is not None:
                return self._local(cached)
            missing_at = self._missing.get(channel_id)
            if missing_at is not None and self.clock() - missing_at < NEGATIVE_CACHE_SECONDS:
                return None
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
    ) -> Verified:
        """Parse the RPC's fields, then :meth:`verify`; malformed fields are rejected."""
        try:
            claim = parse_fields(channel_id, claim_amount, nonce, signature, currency)
        except MalformedClaim as exc:
            return Verified(Rejected(Reason.MALFORMED_CLAIM, str(exc)))
        return await self.verify(claim, min_amount)

    async def verify(self, claim: PaymentClaim, min_amount: int) -> Verified:
        """Decide, and if accepted credit and record the claim atomically."""
        self.store.check_available()
        channel_id = claim.channel_id
        entry = self._locks.get(channel_id)
        if entry is None:
            entry = self._locks[channel_id] = [asyncio.Lock(), 0]
        lock: asyncio.Lock = entry[0]
        entry[1] += 1
        try:
            # FIFO per channel: claims are decided in the order they arrived, even
            # when an earlier one waits for a chain lookup.
            async with lock:
                verified, accepted = await self._decide_and_apply(claim, min_amount)
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[channel_id]
        if accepted is not None:
            record, durable = accepted
            await durable
            assert verified.channel is not None
            for callback in self.on_accepted:
                callback(verified.channel, record)
        return verified

    async def _decide_and_apply(
        self, claim: PaymentClaim, min_amount: int
    ) -> tuple[Verified, tuple[ClaimRecord, asyncio.Future[None]] | None]:
        channel_id = claim.channel_id
        channel = await self.channel(channel_id)
        decision = self._decide(channel, claim, min_amount)
        if (
            isinstance(decision, Rejected)
            and channel is not None
            and channel_id not in self.closing
            and decision.reason in (Reason.INSUFFICIENT_CHANNEL_BALANCE, Reason.CHANNEL_CLOSED)
        ):
            # The cache may be stale (a top-up); ask the chain once more.
            try:
                channel = await self.channel(channel_id, refresh=True)
            except VerificationUnavailable:
                pass
            decision = self._decide(channel, claim, min_amount)
        if isinstance(decision, Rejected):
            return Verified(decision, channel), None
        assert channel is not None
        # No await between _decide and here: the decision and its effects are one step.
        return Verified(decision, channel), self._apply(channel, claim, decision.delta)

    def _decide(
        self, channel: ChannelState | None, claim: PaymentClaim, min_amount: int
    ) -> Decision:
        best = self.store.best_claims.get(claim.channel_id)
        return decide(
            channel,
            None if best is None else BestClaim(best.claim_amount, best.nonce),
            claim,
            min_amount,
            self.clock(),
            self.expiry_margin,
        )

    def _apply(
        self, channel: ChannelState, claim: PaymentClaim, delta: int
    ) -> tuple[ClaimRecord, asyncio.Future[None]]:
        ledger = self.store.ledger
        receivable = channel_account(channel.chain, channel.channel_id)
        changes = ledger.ensure_account(receivable)
        changes.merge(ledger.ensure_account(REVENUE))
        transfer_id = None
        if delta > 0:
            transfer_id, posted = ledger.transfer(receivable, REVENUE, delta)
            changes.merge(posted)
        record = ClaimRecord(
            channel_id=channel.channel_id,
            chain=channel.chain,
            claim_amount=claim.claim.claim_amount,
            nonce=claim.claim.nonce,
            signature=claim.signature,
            delta=delta,
            transfer_id=transfer_id,
            accepted_at=self.clock(),
        )
        return record, self.store.commit(changes, claims=[record])

    def best_claim(self, channel_id: str) -> ClaimRecord | None:
        return self.store.best_claims.get(channel_id)


def _is_ours(source: ChannelSource, channel: ChannelState) -> bool:
    return (
        source.name == channel.chain and channel.recipient.lower() == source.relay_address.lower()
    )
