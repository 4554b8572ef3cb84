"""Double-entry ledger: the pure model (:mod:`.model`), its SQLite store (:mod:`.store`),
the account names and assets (:mod:`.accounts`) and the upgrade of older ledgers
(:mod:`.migrations`).

Every account holds exactly one asset and a transfer never crosses assets; see
:mod:`.accounts` for the paths the node uses (``revenue/relay/<CHAIN>/<CURRENCY>``,
``assets/channel/<CHAIN>/<channelId>``, ``assets/onchain/<CHAIN>/<CURRENCY>``,
``expenses/gas/<CHAIN>``, the Interledger accounts).
"""

from .accounts import (
    chain_asset,
    channel_account,
    gas_account,
    ilp_asset,
    onchain_account,
    revenue_account,
)
from .migrations import LegacyAssets, MigrationError
from .model import (
    Account,
    AssetMismatch,
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

__all__ = [
    "Account",
    "AssetMismatch",
    "Changes",
    "ClaimRecord",
    "Ledger",
    "LedgerError",
    "LedgerStore",
    "LedgerUnavailable",
    "LegacyAssets",
    "LimitExceeded",
    "MigrationError",
    "SettlementRecord",
    "Transfer",
    "TransferNotPending",
    "TransferState",
    "UnknownAccount",
    "UnknownTransfer",
    "chain_asset",
    "channel_account",
    "gas_account",
    "ilp_asset",
    "onchain_account",
    "revenue_account",
]
