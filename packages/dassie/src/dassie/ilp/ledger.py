"""Binds the connector's :class:`~interledger.connector.LedgerPort` to the node's ledger."""

from __future__ import annotations

import asyncio
import logging

from interledger.connector import LedgerPort, LimitError

from ..config import ConfigError
from ..ledger import LedgerError, LedgerStore, LimitExceeded
from ..ledger.accounts import in_ilp_asset

log = logging.getLogger(__name__)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("ILP hold not written: %s", future.exception())


class StoreLedger(LedgerPort):
    """Holds are pending transfers in the node's ledger; commit posts, release voids.

    Every account it creates is in ``asset``, the node's ILP asset (``ilp/<CODE>``).
    """

    def __init__(self, store: LedgerStore, asset: str) -> None:
        self.store = store
        self.asset = asset

    def check_asset(self) -> None:
        """Raise ConfigError if the ledger's Interledger accounts are in another asset
        (``ILP_ASSET_CODE`` changed): their balances would not be in the new unit."""
        for account in self.store.ledger.accounts.values():
            if account.asset != self.asset and in_ilp_asset(account.path):
                raise ConfigError(
                    f"ILP_ASSET_CODE: the ledger's Interledger accounts are in {account.asset}"
                    f" ({account.path}), not {self.asset}"
                )

    async def _ensure(self, path: str) -> None:
        if path not in self.store.ledger.accounts:  # the hot path skips the coroutine
            await self.store.ensure_account(path, self.asset)

    async def ensure_accounts(self, *paths: str) -> None:
        for path in paths:
            await self._ensure(path)

    async def hold(self, debit: str, credit: str, amount: int) -> int:
        await self.ensure_accounts(debit, credit)
        return self.hold_now(debit, credit, amount)

    def hold_now(self, debit: str, credit: str, amount: int) -> int:
        """:meth:`hold` for accounts that exist, without a coroutine (the packet path)."""
        self.store.check_available()
        try:
            transfer_id, changes = self.store.ledger.create_pending(debit, credit, amount)
        except LimitExceeded as exc:
            raise LimitError(str(exc)) from None
        # Not awaited: a hold only has to be durable once it is posted (the post is
        # awaited and is written with or after this one). Holds a crash leaves pending
        # are voided at the next start, like the packets they were for.
        self.store.commit(changes).add_done_callback(_retrieve)
        return transfer_id

    def finish_now(self, transfer_id: int, *, post: bool) -> asyncio.Future[None]:
        """Post or void a hold in memory now; the future is done once that is durable."""
        self.store.check_available()
        ledger = self.store.ledger
        return self.store.commit(ledger.post(transfer_id) if post else ledger.void(transfer_id))

    async def commit(self, transfer_id: int) -> None:
        await self.finish_now(transfer_id, post=True)

    async def release(self, transfer_id: int) -> None:
        await self.finish_now(transfer_id, post=False)

    async def transfer(self, debit: str, credit: str, amount: int) -> int:
        """A transfer posted at once (local delivery)."""
        await self._ensure(debit)
        await self._ensure(credit)
        try:
            return await self.store.transfer(debit, credit, amount)
        except LimitExceeded as exc:
            raise LimitError(str(exc)) from None

    async def ensure_limited(self, path: str, max_balance: int | None) -> None:
        """Create a peer account with its credit limit (kept as is if it already exists)."""
        try:
            await self.store.create_account(path, self.asset, max_balance=max_balance)
        except LedgerError as exc:
            log.warning("ILP account %s: %s; keeping its stored limits", path, exc)
