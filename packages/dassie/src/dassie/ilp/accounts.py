"""Ledger account paths used by the Interledger side of the node."""

from __future__ import annotations

import re

NODE = "ilp/node"
"""The node's own ILP funds: debited when the node pays (``ilp.pay``)."""
REVENUE = "revenue/relay"

_PUBKEY = re.compile(r"[0-9a-f]{64}\Z")


def peer_account(name: str) -> str:
    """What a peer owes the node for unsettled packets (debited when it sends)."""
    return f"peer/{name}/interledger"


def is_ilp_account(path: str) -> bool:
    """True for the accounts whose pending transfers are ILP packet holds."""
    return path == NODE or (path.startswith("peer/") and path.endswith("/interledger"))


def is_pubkey(account: str) -> bool:
    return _PUBKEY.match(account) is not None


def prepaid_account(pubkey: str) -> str:
    """A Nostr pubkey's prepaid balance (credited by payments, debited by spending)."""
    return f"prepaid/nostr/{pubkey.lower()}"


def receive_account(account: str) -> str:
    """Where money paid to the SPSP account ``account`` is credited."""
    if is_pubkey(account.lower()):
        return prepaid_account(account)
    return f"ilp/receive/{account}"
