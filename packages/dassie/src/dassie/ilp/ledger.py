"""Binds the connector's :class:`~interledger.connector.LedgerPort` to the node's ledger."""

from __future__ import annotations

import logging

from interledger.connector import LedgerPort, LimitError

from ..ledger import LedgerError, LedgerStore, LimitExceeded

log = logging.getLogger(__name__)


class StoreLedger(LedgerPort):
    """Holds are pending transfers in the node's ledger; commit posts, release voids."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store

    async def hold(self, debit: str, credit: str, amount: int) -> int:
        await self.store.ensure_account(debit)
        await self.store.ensure_account(credit)
        try:
            return await self.store.create_pending(debit, credit, amount)
        except LimitExceeded as exc:
            raise LimitError(str(exc)) from None

    async def commit(self, transfer_id: int) -> None:
        await self.store.post(transfer_id)

    async def release(self, transfer_id: int) -> None:
        await self.store.void(transfer_id)

    async def transfer(self, debit: str, credit: str, amount: int) -> int:
        """A transfer posted at once (local delivery)."""
        await self.store.ensure_account(debit)
        await self.store.ensure_account(credit)
        try:
            return await self.store.transfer(debit, credit, amount)
        except LimitExceeded as exc:
            raise LimitError(str(exc)) from None

    async def ensure_limited(self, path: str, max_balance: int | None) -> None:
        """Create a peer account with its credit limit (kept as is if it already exists)."""
        try:
            await self.store.create_account(path, max_balance=max_balance)
        except LedgerError as exc:
            log.warning("ILP account %s: %s; keeping its stored limits", path, exc)
