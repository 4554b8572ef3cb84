"""Double-entry ledger: the pure model (:mod:`.model`) and its SQLite store (:mod:`.store`).

Account paths used by the node (others, e.g. Interledger peers, add their own):

- ``assets/channel/<CHAIN>/<channelId>``: what a channel owes the node (claims accepted,
  not yet settled).
- ``revenue/relay``: income from accepted claims.
- ``assets/onchain/<CHAIN>``: what settlement has paid the relay's address.
- ``expenses/gas/<CHAIN>``: gas the relay's address paid to settle.
"""

from .model import (
    Account,
    Changes,
    Ledger,
    LedgerError,
    LimitExceeded,
    Transfer,
    TransferNotPending,
    TransferState,
    UnknownAccount,
    UnknownTransfer,
)
from .store import ClaimRecord, LedgerStore, LedgerUnavailable, SettlementRecord

REVENUE = "revenue/relay"


def channel_account(chain: str, channel_id: str) -> str:
    """The receivable account of one channel."""
    return f"assets/channel/{chain}/{channel_id}"


def onchain_account(chain: str) -> str:
    return f"assets/onchain/{chain}"


def gas_account(chain: str) -> str:
    return f"expenses/gas/{chain}"


__all__ = [
    "REVENUE",
    "Account",
    "Changes",
    "ClaimRecord",
    "Ledger",
    "LedgerError",
    "LedgerStore",
    "LedgerUnavailable",
    "LimitExceeded",
    "SettlementRecord",
    "Transfer",
    "TransferNotPending",
    "TransferState",
    "UnknownAccount",
    "UnknownTransfer",
    "channel_account",
    "gas_account",
    "onchain_account",
]
