"""The ledger seam: what the connector's adapter needs from a double-entry ledger."""

from __future__ import annotations

from typing import Protocol


class LimitError(Exception):
    """The ledger refused a hold because an account limit would be exceeded."""


class LedgerPort(Protocol):
    """Two-phase transfers: hold (pending), then commit (post) or release (void)."""

    async def hold(self, debit: str, credit: str, amount: int) -> int:
        """Reserve ``amount``; return the transfer id. Raise :class:`LimitError` on a limit."""
        ...

    async def commit(self, transfer_id: int) -> None: ...

    async def release(self, transfer_id: int) -> None: ...


class MemoryLedger:
    """An in-memory :class:`LedgerPort` for tests and benchmarks.

    Balances are ``debits - credits``; ``limits`` caps an account's balance plus
    its pending debits.
    """

    def __init__(self, limits: dict[str, int] | None = None) -> None:
        self.limits = dict(limits or {})
        self.balances: dict[str, int] = {}
        self.pending_debits: dict[str, int] = {}
        self.pending: dict[int, tuple[str, str, int]] = {}
        self.posted: list[int] = []
        self.voided: list[int] = []
        self._next = 1

    async def hold(self, debit: str, credit: str, amount: int) -> int:
        limit = self.limits.get(debit)
        used = self.balances.get(debit, 0) + self.pending_debits.get(debit, 0)
        if limit is not None and used + amount > limit:
            raise LimitError(f"{debit} would exceed its limit {limit}")
        tid, self._next = self._next, self._next + 1
        self.pending[tid] = (debit, credit, amount)
        self.pending_debits[debit] = self.pending_debits.get(debit, 0) + amount
        return tid

    def _finish(self, transfer_id: int) -> tuple[str, str, int]:
        debit, credit, amount = self.pending.pop(transfer_id)
        self.pending_debits[debit] -= amount
        return debit, credit, amount

    async def commit(self, transfer_id: int) -> None:
        debit, credit, amount = self._finish(transfer_id)
        self.balances[debit] = self.balances.get(debit, 0) + amount
        self.balances[credit] = self.balances.get(credit, 0) - amount
        self.posted.append(transfer_id)

    async def release(self, transfer_id: int) -> None:
        self._finish(transfer_id)
        self.voided.append(transfer_id)
