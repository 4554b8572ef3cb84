"""Every ledger account the node uses: its path and its asset, in one place.

An asset names what an account counts, in that asset's base unit:

- ``<CHAIN>/<CURRENCY>`` for a coin or token on an EVM chain (``LOCAL/ETH``,
  ``BASE/USDC``): the same code on two chains is two assets;
- ``ilp/<CODE>`` for the node's Interledger asset (``ILP_ASSET_CODE``), which
  every ILP link and prepaid balance is in.

Accounts (the asset in brackets):

- ``assets/channel/<CHAIN>/<channelId>`` [the channel's currency]: what the channel
  owes the node (claims accepted, not yet settled).
- ``revenue/relay/<CHAIN>/<CURRENCY>`` [``<CHAIN>/<CURRENCY>``]: income from claims.
- ``revenue/relay/ilp/<CODE>`` [``ilp/<CODE>``]: income from prepaid balances spent.
- ``assets/onchain/<CHAIN>/<CURRENCY>`` [``<CHAIN>/<CURRENCY>``]: what settlement paid
  the relay's address (payouts in the channel's currency; gas out of the native coin).
- ``expenses/gas/<CHAIN>`` [``<CHAIN>/<native coin>``]: gas the relay's address paid.
- ``ilp/node``, ``peer/<name>/interledger``, ``prepaid/nostr/<pubkey>``,
  ``ilp/receive/<account>`` [``ilp/<CODE>``]: the Interledger side.

Chain names are upper case (``SETTLEMENT_<NAME>_...``), so ``ilp/...`` never names
a chain.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import ChainConfig

ILP_NODE = "ilp/node"
"""The node's own ILP funds: debited when the node pays (``ilp.pay``)."""

_PUBKEY = re.compile(r"[0-9a-f]{64}\Z")


# -- assets ---------------------------------------------------------------


def chain_asset(chain: str, currency: str | None) -> str:
    """The asset of ``currency`` on ``chain`` (``LOCAL/ETH``)."""
    if not currency:
        raise ValueError(f"no currency for an account on {chain}")
    return f"{chain}/{currency}"


def native_currency(chain: ChainConfig) -> str:
    """The code of ``chain``'s native coin (what gas is paid in): the currency its
    ``_ASSETS`` lists without a token address, else its preset's, else ``ETH``."""
    from ..config import PRESETS, ZERO_ADDRESS

    for code, token in chain.assets.items():
        if token == ZERO_ADDRESS:
            return code
    preset = PRESETS.get(chain.name)
    return "ETH" if preset is None else preset.native


def ilp_asset(code: str) -> str:
    """The node's Interledger asset (``ilp/ETH``)."""
    return f"ilp/{code}"


# -- claims and settlement ------------------------------------------------


def channel_account(chain: str, channel_id: str) -> str:
    """The receivable account of one channel (in the channel's currency)."""
    return f"assets/channel/{chain}/{channel_id}"


def revenue_account(asset: str) -> str:
    """Income in ``asset`` (``revenue/relay/LOCAL/ETH``, ``revenue/relay/ilp/ETH``)."""
    return f"revenue/relay/{asset}"


def onchain_account(asset: str) -> str:
    """What the relay's address holds of a chain asset (``assets/onchain/LOCAL/ETH``)."""
    return f"assets/onchain/{asset}"


def gas_account(chain: str) -> str:
    """Gas paid on ``chain``; its asset is the chain's native coin."""
    return f"expenses/gas/{chain}"


# -- Interledger ----------------------------------------------------------


def peer_account(name: str) -> str:
    """What a peer owes the node for unsettled packets (debited when it sends)."""
    return f"peer/{name}/interledger"


def is_ilp_account(path: str) -> bool:
    """True for the accounts whose pending transfers are ILP packet holds."""
    return path == ILP_NODE or (path.startswith("peer/") and path.endswith("/interledger"))


def in_ilp_asset(path: str) -> bool:
    """True for every account of the Interledger side (all in the ILP asset)."""
    return is_ilp_account(path) or path.startswith(("prepaid/nostr/", "ilp/receive/"))


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
