"""Prepaid balances of Nostr pubkeys, funded by Interledger payments to the node.

A payment to the SPSP account ``<64-hex pubkey>`` credits ``prepaid/nostr/<pubkey>``
(in the node's ILP asset); :func:`spend` moves value from there to the revenue
account of that same asset, ``revenue/relay/ilp/<CODE>``, atomically, or not at all.
"""

from __future__ import annotations

from ..ledger import LedgerStore, LimitExceeded, UnknownAccount
from .accounts import is_pubkey, prepaid_account, revenue_account


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
    account = store.ledger.accounts.get(path)
    if account is None:
        return False
    revenue = revenue_account(account.asset)
    await store.ensure_account(revenue, account.asset)
    try:
        # The account's maximum balance of 0 makes the ledger refuse an overdraft in
        # the same synchronous step that books the transfer.
        await store.transfer(path, revenue, amount)
    except LimitExceeded:
        return False
    return True
