"""Prepaid balances of Nostr pubkeys, funded by Interledger payments to the node.

A payment to the SPSP account ``<64-hex pubkey>`` credits ``prepaid/nostr/<pubkey>``;
:func:`spend` moves value from there to ``revenue/relay`` atomically, or not at all.
"""

from __future__ import annotations

from ..ledger import LedgerStore, LimitExceeded, UnknownAccount
from .accounts import REVENUE, is_pubkey, prepaid_account


def balance(store: LedgerStore, pubkey: str) -> int:
    """The prepaid balance of ``pubkey`` (0 if it never received anything)."""
    try:
        account = store.balance(prepaid_account(pubkey))
    except UnknownAccount:
        return 0
    # Credit-normal: what the node owes the pubkey is credits minus debits.
    return -(account.balance + account.debits_pending)


async def spend(store: LedgerStore, pubkey: str, amount: int) -> bool:
    """Debit ``amount`` from the pubkey's prepaid balance; False (nothing changed) if short.

    Atomic: the balance check and the transfer happen in one step on the event
    loop and the transfer is durable when this returns True.
    """
    if not is_pubkey(pubkey):
        raise ValueError("pubkey must be 64 lowercase hex digits")
    if amount <= 0:
        raise ValueError("amount must be positive")
    path = prepaid_account(pubkey)
    if path not in store.ledger.accounts:
        return False
    await store.ensure_account(REVENUE)
    try:
        # The account's maximum balance of 0 makes the ledger refuse an overdraft in
        # the same synchronous step that books the transfer.
        await store.transfer(path, REVENUE, amount)
    except LimitExceeded:
        return False
    return True
