"""The double-entry ledger as a pure, in-memory model (no I/O).

Accounts are named by Dassie-style paths (``revenue/relay/LOCAL/ETH``,
``assets/channel/LOCAL/0x...``, ``peer/alice/interledger``; see :mod:`.accounts`)
and each holds exactly one asset (``LOCAL/ETH``, ``BASE/USDC``, ``ilp/ETH``): a
transfer between accounts of different assets is refused. A transfer moves
``amount`` from its credit account to its debit account, either at once
(:meth:`Ledger.transfer`) or in two phases: :meth:`Ledger.create_pending`
reserves it, then :meth:`Ledger.post` makes it final or :meth:`Ledger.void`
cancels it. A transfer leaves the pending state exactly once.

Balances are ``debits - credits``; because every transfer debits one account and
credits another of the same asset by the same amount, posted and pending balances
each sum to zero over the accounts of each asset (:meth:`Ledger.check_invariant`).

Every mutation either raises before changing anything or returns the
:class:`Changes` to persist; the SQLite adapter writes those.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

_PATH = re.compile(r"[A-Za-z0-9_.:~+-]+(?:/[A-Za-z0-9_.:~+-]+)*\Z")
_ASSET = re.compile(r"[A-Za-z0-9_.~+-]+(?:/[A-Za-z0-9_.~+-]+)?\Z")


class LedgerError(ValueError):
    """A ledger operation was refused; nothing changed."""


class UnknownAccount(LedgerError):
    pass


class UnknownTransfer(LedgerError):
    pass


class TransferNotPending(LedgerError):
    """The transfer was already posted or voided."""


class LimitExceeded(LedgerError):
    pass


class AssetMismatch(LedgerError):
    """A transfer between accounts of different assets, or an account re-created in
    another asset."""


class TransferState(enum.StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"


@dataclass(slots=True)
class Account:
    path: str
    asset: str
    """What the account counts, in that asset's base unit (``LOCAL/ETH``: wei on LOCAL)."""
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0
    min_balance: int | None = None
    """Posted balance minus pending credits may not fall below this."""
    max_balance: int | None = None
    """Posted balance plus pending debits may not rise above this."""

    @property
    def balance(self) -> int:
        """Posted ``debits - credits``."""
        return self.debits_posted - self.credits_posted

    @property
    def pending(self) -> int:
        """Pending ``debits - credits``."""
        return self.debits_pending - self.credits_pending

    def to_json(self) -> dict[str, object]:
        return {
            "account": self.path,
            "asset": self.asset,
            "balance": str(self.balance),
            "pending": str(self.pending),
            "debitsPosted": str(self.debits_posted),
            "creditsPosted": str(self.credits_posted),
            "debitsPending": str(self.debits_pending),
            "creditsPending": str(self.credits_pending),
            "minBalance": None if self.min_balance is None else str(self.min_balance),
            "maxBalance": None if self.max_balance is None else str(self.max_balance),
        }


@dataclass(slots=True)
class Transfer:
    id: int
    debit: str
    credit: str
    amount: int
    state: TransferState


@dataclass(slots=True)
class Changes:
    """What a mutation changed: the rows the adapter must write, in order."""

    accounts: dict[str, Account] = field(default_factory=dict)
    transfers: dict[int, Transfer] = field(default_factory=dict)

    def merge(self, other: Changes) -> None:
        self.accounts.update(other.accounts)
        self.transfers.update(other.transfers)


def check_path(path: str) -> str:
    if not isinstance(path, str) or not _PATH.match(path) or len(path) > 256:
        raise LedgerError(f"bad account path {path!r}")
    return path


def check_asset(asset: str) -> str:
    """An asset is ``<CHAIN>/<CURRENCY>``, ``ilp/<CODE>`` or one plain name."""
    if not isinstance(asset, str) or not _ASSET.match(asset) or len(asset) > 64:
        raise LedgerError(f"bad asset {asset!r}")
    return asset


class Ledger:
    """Accounts and pending transfers; finished transfers are only persisted."""

    def __init__(self, next_transfer_id: int = 1) -> None:
        self.accounts: dict[str, Account] = {}
        self.pending: dict[int, Transfer] = {}
        self.next_transfer_id = next_transfer_id

    # -- accounts -------------------------------------------------------

    def create_account(
        self,
        path: str,
        asset: str,
        *,
        min_balance: int | None = None,
        max_balance: int | None = None,
    ) -> Changes:
        """Create an account of ``asset`` (idempotent when it exists with the same asset
        and limits)."""
        check_path(path)
        check_asset(asset)
        existing = self.accounts.get(path)
        if existing is not None:
            if existing.asset != asset:
                raise AssetMismatch(f"account {path} exists in {existing.asset}, not {asset}")
            if (existing.min_balance, existing.max_balance) != (min_balance, max_balance):
                raise LedgerError(f"account {path} exists with other limits")
            return Changes()
        account = Account(path, asset, min_balance=min_balance, max_balance=max_balance)
        self.accounts[path] = account
        return Changes(accounts={path: account})

    def ensure_account(self, path: str, asset: str) -> Changes:
        """Create an unlimited account of ``asset`` unless it exists (in that asset)."""
        existing = self.accounts.get(path)
        if existing is not None:
            if existing.asset != asset:
                raise AssetMismatch(f"account {path} exists in {existing.asset}, not {asset}")
            return Changes()
        return self.create_account(path, asset)

    def account(self, path: str) -> Account:
        try:
            return self.accounts[path]
        except KeyError:
            raise UnknownAccount(f"no account {path}") from None

    # -- transfers ------------------------------------------------------

    def _check(self, debit: str, credit: str, amount: int, *, pending: bool) -> None:
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise LedgerError("amount must be a positive integer")
        if debit == credit:
            raise LedgerError("debit and credit accounts must differ")
        d, c = self.account(debit), self.account(credit)
        if d.asset != c.asset:
            raise AssetMismatch(
                f"cannot transfer between {debit} ({d.asset}) and {credit} ({c.asset})"
            )
        if d.max_balance is not None and d.balance + d.debits_pending + amount > d.max_balance:
            raise LimitExceeded(f"{debit} would exceed its maximum balance")
        if c.min_balance is not None and c.balance - c.credits_pending - amount < c.min_balance:
            raise LimitExceeded(f"{credit} would fall below its minimum balance")

    def _new_id(self) -> int:
        transfer_id = self.next_transfer_id
        self.next_transfer_id += 1
        return transfer_id

    def create_pending(self, debit: str, credit: str, amount: int) -> tuple[int, Changes]:
        """Reserve a transfer; returns its id."""
        self._check(debit, credit, amount, pending=True)
        d, c = self.accounts[debit], self.accounts[credit]
        d.debits_pending += amount
        c.credits_pending += amount
        transfer = Transfer(self._new_id(), debit, credit, amount, TransferState.PENDING)
        self.pending[transfer.id] = transfer
        return transfer.id, Changes({debit: d, credit: c}, {transfer.id: transfer})

    def _finish(self, transfer_id: int, state: TransferState) -> Changes:
        transfer = self.pending.get(transfer_id)
        if transfer is None:
            if 0 < transfer_id < self.next_transfer_id:
                raise TransferNotPending(f"transfer {transfer_id} is not pending")
            raise UnknownTransfer(f"no transfer {transfer_id}")
        d, c = self.accounts[transfer.debit], self.accounts[transfer.credit]
        d.debits_pending -= transfer.amount
        c.credits_pending -= transfer.amount
        if state is TransferState.POSTED:
            d.debits_posted += transfer.amount
            c.credits_posted += transfer.amount
        del self.pending[transfer_id]
        transfer.state = state
        return Changes({d.path: d, c.path: c}, {transfer_id: transfer})

    def post(self, transfer_id: int) -> Changes:
        """Make a pending transfer final."""
        return self._finish(transfer_id, TransferState.POSTED)

    def void(self, transfer_id: int) -> Changes:
        """Cancel a pending transfer."""
        return self._finish(transfer_id, TransferState.VOIDED)

    def transfer(self, debit: str, credit: str, amount: int) -> tuple[int, Changes]:
        """A transfer posted at once; returns its id."""
        self._check(debit, credit, amount, pending=False)
        d, c = self.accounts[debit], self.accounts[credit]
        d.debits_posted += amount
        c.credits_posted += amount
        transfer = Transfer(self._new_id(), debit, credit, amount, TransferState.POSTED)
        return transfer.id, Changes({debit: d, credit: c}, {transfer.id: transfer})

    # -- invariant ------------------------------------------------------

    def balances_by_asset(self) -> dict[str, tuple[int, int]]:
        """Asset -> (sum of posted balances, sum of pending balances): both 0 when sound."""
        sums: dict[str, tuple[int, int]] = {}
        for a in self.accounts.values():
            posted, pending = sums.get(a.asset, (0, 0))
            sums[a.asset] = (posted + a.balance, pending + a.pending)
        return dict(sorted(sums.items()))

    def check_invariant(self) -> None:
        """Raise AssertionError unless, for each asset, posted and pending balances each
        sum to zero (and every pending transfer stays within one asset)."""
        for asset, (posted, pending) in self.balances_by_asset().items():
            if posted != 0 or pending != 0:
                raise AssertionError(
                    f"ledger unbalanced in {asset}: posted {posted}, pending {pending}"
                )
        reserved = sum(t.amount for t in self.pending.values())
        debits_pending = sum(a.debits_pending for a in self.accounts.values())
        if reserved != debits_pending:
            raise AssertionError(f"ledger unbalanced: reserved {reserved} vs {debits_pending}")
        for t in self.pending.values():
            if self.accounts[t.debit].asset != self.accounts[t.credit].asset:
                raise AssertionError(f"pending transfer {t.id} crosses assets")
