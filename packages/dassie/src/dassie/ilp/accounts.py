"""Ledger accounts of the Interledger side (named in :mod:`dassie.ledger.accounts`).

Every one of them is in the node's ILP asset, ``ilp/<ILP_ASSET_CODE>``.
"""

from __future__ import annotations

from ..ledger.accounts import (
    ILP_NODE,
    ilp_asset,
    is_ilp_account,
    is_pubkey,
    peer_account,
    prepaid_account,
    receive_account,
    revenue_account,
)

NODE = ILP_NODE
"""The node's own ILP funds: debited when the node pays (``ilp.pay``)."""

__all__ = [
    "NODE",
    "ilp_asset",
    "is_ilp_account",
    "is_pubkey",
    "peer_account",
    "prepaid_account",
    "receive_account",
    "revenue_account",
]
