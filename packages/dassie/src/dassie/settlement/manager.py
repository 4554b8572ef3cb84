"""When to close channels, and booking what closing them earned.

A channel is closed with its best accepted claim when its unsettled amount
reaches the chain's ``SETTLE_THRESHOLD``, when it comes within the expiry margin
of its expiration, or on request (``settlement.settleChannel``). Once the
transaction is mined with status 1 the node books, in one commit:
``assets/onchain/<CHAIN>/<CURRENCY>`` <- the channel's receivable (what it was paid,
in the channel's currency) and ``expenses/gas/<CHAIN>`` <- ``assets/onchain/<CHAIN>/<NATIVE>``
(the gas the relay paid, always in the chain's native coin).

A close that stays unmined for the chain's ``TX_TIMEOUT`` is sent again: with the
same nonce and a 12.5% higher fee while the chain still holds it, afresh if the
chain dropped it. Every transaction sent for one close is a candidate, recorded
``pending``; the first one mined is booked and the others become ``replaced``
(at most one can be mined: they share a nonce, or the contract refuses a second
close). Without this, a close stuck behind a low fee would leave the channel
refusing claims until it expired and the sender took the deposit back.

The background loop probes each chain (backing off while unreachable), follows
``ChannelOpened`` logs, watches expirations and resumes settlements pending at a
restart. Chain failures are recorded for ``/health`` and retried; they never stop
the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from ..claims.channels import ChainUnavailable, ChannelState
from ..claims.service import ClaimService
from ..ledger import (
    ClaimRecord,
    LedgerStore,
    SettlementRecord,
    chain_asset,
    channel_account,
    gas_account,
    onchain_account,
)
from ..ledger.accounts import native_currency
from ..ledger.model import Changes
from .evm import EvmChain, Receipt

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0


class SettlementError(RuntimeError):
    """The channel cannot be settled now."""


class SettlementManager:
    def __init__(
        self,
        store: LedgerStore,
        claims: ClaimService,
        chains: dict[str, EvmChain],
        expiry_margin: int,
        poll_interval: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.claims = claims
        self.chains = chains
        self.expiry_margin = expiry_margin
        self.poll_interval = poll_interval
        self.receipt_interval = min(poll_interval, 0.5)
        self.clock = clock
        self._settling: dict[str, asyncio.Future[str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._log_cursor: dict[str, int] = {}
        self._backoff: dict[str, float] = {}
        self._next_probe: dict[str, float] = {}
        self._booked: dict[str, asyncio.Future[SettlementRecord]] = {}
        self._channel_booked: dict[str, asyncio.Future[SettlementRecord]] = {}
        claims.on_accepted.append(self._on_accepted)

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def unsettled(self, channel: ChannelState) -> int:
        account = self.store.ledger.accounts.get(channel_account(channel.chain, channel.channel_id))
        return 0 if account is None else account.balance

    def _on_accepted(self, channel: ChannelState, record: ClaimRecord) -> None:
        chain = self.chains.get(channel.chain)
        if chain is None or chain.config.settle_threshold is None:
            return
        if self.unsettled(channel) >= chain.config.settle_threshold:
            self._spawn(self._settle_quietly(channel.channel_id, "threshold"))

    async def _settle_quietly(self, channel_id: str, reason: str) -> None:
        try:
            await self.settle(channel_id, reason=reason)
        except Exception as exc:
            log.warning("settling %s (%s) failed: %s", channel_id, reason, exc)

    # -- closing --------------------------------------------------------

    async def settle(self, channel_id: str, *, reason: str) -> str:
        """Close the channel with its best claim; returns the transaction hash."""
        existing = self._settling.get(channel_id)
        if existing is not None:
            return await asyncio.shield(existing)
        pending = [
            r.tx_hash
            for r in self.store.settlements.values()
            if r.channel_id == channel_id and r.status == "pending"
        ]
        if pending:
            return pending[-1]
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._settling[channel_id] = future
        try:
            tx_hash = await self._send(channel_id, reason)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        else:
            future.set_result(tx_hash)
            return tx_hash
        finally:
            del self._settling[channel_id]

    async def _send(self, channel_id: str, reason: str) -> str:
        channel = await self.claims.channel(channel_id)
        if channel is None:
            raise ValueError("channel not found")
        chain = self.chains.get(channel.chain)
        if chain is None:
            raise SettlementError(f"settlement is not enabled on {channel.chain}")
        best = self.store.best_claims.get(channel_id)
        if best is None:
            raise ValueError("no accepted claim on this channel")
        if channel.closed:
            raise ValueError("channel is closed")
        self.claims.mark_closed(channel_id)  # accept no claim the close would not pay
        try:
            tx_hash = await chain.close_channel(
                channel_id, best.claim_amount, best.nonce, best.signature
            )
        except ChainUnavailable as exc:
            self.claims.reopen(channel_id)
            raise SettlementError(str(exc)) from None
        log.info("settling %s on %s (%s): %s", channel_id, chain.name, reason, tx_hash)
        record = SettlementRecord(
            tx_hash, channel_id, chain.name, best.claim_amount, best.nonce, "pending"
        )
        await self.store.commit(Changes(), settlements=[record])
        self._spawn(self._follow([record]))
        return tx_hash

    async def _follow(self, candidates: list[SettlementRecord]) -> None:
        """Poll until one of a close's transactions is mined and booked; resend if stuck."""
        chain = self.chains[candidates[0].chain]
        delay = self.receipt_interval
        waiting_since = time.monotonic()
        while True:
            try:
                mined = await self._first_mined(chain, candidates)
                if mined is None and time.monotonic() - waiting_since >= chain.config.tx_timeout:
                    resent = await self._resend(chain, candidates[-1])
                    if resent is not None:
                        candidates.append(resent)
                    waiting_since = time.monotonic()
            except ChainUnavailable as exc:
                delay = min(delay * 2, MAX_BACKOFF)
                log.debug("settlement of %s: %s", candidates[0].channel_id, exc)
            else:
                delay = self.receipt_interval
                if mined is not None:
                    record, receipt = mined
                    await self._book(record, receipt, [c for c in candidates if c is not record])
                    return
            await asyncio.sleep(delay)

    @staticmethod
    async def _first_mined(
        chain: EvmChain, candidates: list[SettlementRecord]
    ) -> tuple[SettlementRecord, Receipt] | None:
        for record in candidates:
            receipt = await chain.receipt(record.tx_hash)
            if receipt is not None:
                return record, receipt
        return None

    async def _resend(self, chain: EvmChain, last: SettlementRecord) -> SettlementRecord | None:
        best = self.store.best_claims.get(last.channel_id)
        if best is None or best.nonce != last.nonce:  # cannot happen: claims stop at the close
            log.error("settlement %s: its claim is no longer the best one", last.tx_hash)
            return None
        tx_hash = await chain.resend_close(
            last.tx_hash, last.channel_id, best.claim_amount, best.nonce, best.signature
        )
        if tx_hash is None:  # mined after all: the next poll books it
            return None
        log.warning(
            "settlement %s of %s not mined after %ss: sent again as %s",
            last.tx_hash, last.channel_id, chain.config.tx_timeout, tx_hash,
        )  # fmt: skip
        record = replace(last, tx_hash=tx_hash, status="pending", gas_cost=None)
        await self.store.commit(Changes(), settlements=[record])
        return record

    async def _book(
        self,
        record: SettlementRecord,
        receipt: Receipt,
        others: list[SettlementRecord] | None = None,
    ) -> None:
        """Book the mined ``record``; the other candidates of its close become ``replaced``."""
        ledger = self.store.ledger
        changes = Changes()
        native = chain_asset(record.chain, native_currency(self.chains[record.chain].config))
        if receipt.status == 1:
            receivable = ledger.accounts.get(channel_account(record.chain, record.channel_id))
            if receivable is not None and receivable.balance > 0:
                # The payout is in the channel's currency: its receivable's asset.
                payout = onchain_account(receivable.asset)
                changes.merge(ledger.ensure_account(payout, receivable.asset))
                changes.merge(ledger.transfer(payout, receivable.path, receivable.balance)[1])
            done = replace(record, status="mined", gas_cost=receipt.gas_cost)
            self.claims.mark_closed(record.channel_id)
        else:
            done = replace(record, status="failed", gas_cost=receipt.gas_cost)
            self.claims.reopen(record.channel_id)  # look it up afresh
        if receipt.gas_cost > 0:  # gas is paid in the native coin, whatever the channel's
            onchain, gas = onchain_account(native), gas_account(record.chain)
            changes.merge(ledger.ensure_account(onchain, native))
            changes.merge(ledger.ensure_account(gas, native))
            changes.merge(ledger.transfer(gas, onchain, receipt.gas_cost)[1])
        others = others or []
        replaced = [replace(other, status="replaced") for other in others]
        await self.store.commit(changes, settlements=[done, *replaced])
        for waiter in (
            *(self._booked_future(r.tx_hash) for r in (record, *others)),
            self._channel_booked.setdefault(
                record.channel_id, asyncio.get_running_loop().create_future()
            ),
        ):
            if not waiter.done():
                waiter.set_result(done)
        log.info("settlement %s of %s: %s", record.tx_hash, record.channel_id, done.status)

    def _booked_future(self, tx_hash: str) -> asyncio.Future[SettlementRecord]:
        future = self._booked.get(tx_hash)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._booked[tx_hash] = future
        return future

    async def wait_booked(self, tx_hash: str) -> SettlementRecord:
        """Wait until the settlement ``tx_hash`` is mined and booked (or failed)."""
        record = self.store.settlements.get(tx_hash)
        if record is not None and record.status == "replaced":
            return await self.wait_channel_settled(record.channel_id)
        if record is not None and record.status != "pending":
            return record
        return await asyncio.shield(self._booked_future(tx_hash))

    async def wait_channel_settled(self, channel_id: str) -> SettlementRecord:
        """Wait until a settlement of ``channel_id`` (whatever started it) is booked."""
        for record in self.store.settlements.values():
            if record.channel_id == channel_id and record.status in ("mined", "failed"):
                return record
        future = self._channel_booked.setdefault(
            channel_id, asyncio.get_running_loop().create_future()
        )
        return await asyncio.shield(future)

    # -- the background loop --------------------------------------------

    async def run(self) -> None:
        """Resume pending settlements, then watch chains until cancelled."""
        closes: dict[str, list[SettlementRecord]] = {}
        for record in self.store.settlements.values():
            if record.status == "pending" and record.chain in self.chains:
                closes.setdefault(record.channel_id, []).append(record)
        for channel_id, candidates in closes.items():
            self.claims.mark_closed(channel_id)
            self._spawn(self._follow(candidates))
        while True:
            for chain in self.chains.values():
                await self._tick(chain)
            await self._check_expirations()
            await asyncio.sleep(self.poll_interval)

    async def _tick(self, chain: EvmChain) -> None:
        now = time.monotonic()
        if now < self._next_probe.get(chain.name, 0.0):
            return
        try:
            head = await chain.probe()
            cursor = self._log_cursor.get(chain.name)
            start = max(head - 5000, 0) if cursor is None else cursor
            if head >= start:
                for opened in await chain.opened_channels(start, head):
                    if opened.channel_id in self.claims.channels:
                        continue
                    if cursor is None:
                        # Logs from before this start: the channel may have been topped
                        # up or closed (by this node, before a restart) since; ask.
                        found = await chain.get_channel(opened.channel_id)
                        if found is not None:
                            self.claims.learn(found)
                    else:
                        # Opened since the last tick: the log is its state (no chain
                        # call per channel). A top-up meanwhile only makes the cached
                        # deposit low, and a claim above it refreshes it from the chain.
                        self.claims.learn(opened)
                self._log_cursor[chain.name] = head + 1
        except ChainUnavailable as exc:
            backoff = min(self._backoff.get(chain.name, self.poll_interval) * 2, MAX_BACKOFF)
            self._backoff[chain.name] = backoff
            self._next_probe[chain.name] = now + backoff
            log.warning("chain %s unreachable, retrying in %.0fs: %s", chain.name, backoff, exc)
        else:
            self._backoff.pop(chain.name, None)

    async def _check_expirations(self) -> None:
        now = self.clock()
        closing = {r.channel_id for r in self.store.settlements.values() if r.status != "failed"}
        for channel_id, best in list(self.store.best_claims.items()):
            if channel_id in closing or best.chain not in self.chains:
                continue
            account = self.store.ledger.accounts.get(channel_account(best.chain, channel_id))
            if account is None or account.balance <= 0:
                continue
            channel = self.claims.channels.get(channel_id)
            if channel is None:  # not cached since a restart: ask the chain
                try:
                    channel = await self.claims.channel(channel_id)
                except RuntimeError:
                    continue
            if channel is None or channel.closed:
                continue
            if now >= channel.expiration - self.expiry_margin:
                await self._settle_quietly(channel_id, "expiring")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
