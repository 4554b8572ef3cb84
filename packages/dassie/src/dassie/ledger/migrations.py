"""Upgrading a ledger written by an older version, at open, in one transaction.

Version 0 (``PRAGMA user_version`` 0): accounts had no asset, and ``revenue/relay``
and ``assets/onchain/<CHAIN>`` added up base units of every currency. Version 1:
every account has an ``asset`` column, and those mixed accounts are split by asset.

How the split is decided (:func:`plan`, pure):

1. Some accounts' assets follow from their names and :class:`LegacyAssets`: a
   channel account is in its channel's currency, ``expenses/gas/<CHAIN>`` in the
   chain's native coin, the Interledger accounts in the ILP asset.
2. Each transfer is in the asset of its endpoint of known asset (both known and
   different: the old ledger crossed assets and the upgrade refuses); a transfer
   between two other accounts takes the one asset the rest of their transfers say.
3. ``revenue/relay`` becomes ``revenue/relay/<asset>`` and ``assets/onchain/<CHAIN>``
   becomes ``assets/onchain/<asset>``, one account per asset its transfers are in,
   each with the sums of those transfers; any other account whose transfers span
   several assets becomes ``<path>/<asset>`` the same way. Transfers are re-pointed
   at the new accounts; their ids, amounts and states do not change.

Guarantees, checked before the transaction commits (else :class:`MigrationError`
and the file is left exactly as it was): the parts of a split account add up to
its old debits and credits (posted and pending), no transfer crosses assets, and
for each asset the posted and the pending balances sum to zero. A second open
finds version 1 and does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .accounts import (
    chain_asset,
    ilp_asset,
    in_ilp_asset,
    native_currency,
    onchain_account,
    revenue_account,
)
from .model import LedgerError, check_asset

if TYPE_CHECKING:
    from ..claims.channels import ChannelSource
    from ..config import ChainConfig

log = logging.getLogger(__name__)

VERSION = 1
"""``PRAGMA user_version`` of a ledger whose accounts each hold one asset."""

_LEGACY_REVENUE = "revenue/relay"


class MigrationError(LedgerError):
    """An older ledger could not be upgraded; nothing was changed."""


@dataclass(frozen=True, slots=True)
class LegacyAssets:
    """What an older ledger does not record: the assets of its accounts."""

    ilp: str = "ilp/ETH"
    """The asset of the Interledger accounts (``ilp/<ILP_ASSET_CODE>``)."""
    natives: Mapping[str, str] = field(default_factory=dict)
    """Chain -> its native coin's code (the asset of its gas)."""
    channels: Mapping[str, str] = field(default_factory=dict)
    """Channel id (lower case) -> its currency code, as its chain says."""
    currencies: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Chain -> the currencies it is configured with; a chain with one currency needs
    no channel lookups."""

    def channel_asset(self, chain: str, channel_id: str) -> str:
        currency = self.channels.get(channel_id.lower())
        if currency is None:
            configured = self.currencies.get(chain, ())
            if len(configured) != 1:
                raise MigrationError(
                    f"cannot tell the currency of channel {channel_id} on {chain}: the chain "
                    "did not answer and it is configured with "
                    + (", ".join(configured) if configured else "no currency")
                    + f"; start again with SETTLEMENT_{chain}_ENABLED and its endpoint up"
                )
            currency = configured[0]
        return chain_asset(chain, currency)

    def native_asset(self, chain: str) -> str:
        native = self.natives.get(chain)
        if native is None:
            raise MigrationError(f"cannot tell the native coin of chain {chain}: configure it")
        return chain_asset(chain, native)


@dataclass(slots=True)
class _Row:
    path: str
    counters: list[int]
    """debits_posted, credits_posted, debits_pending, credits_pending."""
    min_balance: str | None
    max_balance: str | None


@dataclass(frozen=True, slots=True)
class Plan:
    """The rows an upgrade writes."""

    accounts: list[tuple[Any, ...]]
    """``(path, debits_posted, credits_posted, debits_pending, credits_pending,
    min_balance, max_balance, asset)``, as stored."""
    transfers: list[tuple[str, str, int]]
    """``(debit, credit, id)`` of the transfers re-pointed at new accounts."""
    split: dict[str, list[str]]
    """Old path -> the accounts it became (renamed, split or dropped when empty)."""


def _known_asset(path: str, legacy: LegacyAssets) -> str | None:
    parts = path.split("/")
    if len(parts) == 4 and parts[:2] == ["assets", "channel"]:
        return legacy.channel_asset(parts[2], parts[3])
    if len(parts) == 3 and parts[:2] == ["expenses", "gas"]:
        return legacy.native_asset(parts[2])
    if in_ilp_asset(path):
        return legacy.ilp
    return None


def _always_split(path: str) -> bool:
    """The old mixed accounts: renamed by asset even when they hold one."""
    parts = path.split("/")
    return path == _LEGACY_REVENUE or (len(parts) == 3 and parts[:2] == ["assets", "onchain"])


def _part_name(path: str, asset: str) -> str:
    if path == _LEGACY_REVENUE:
        return revenue_account(asset)
    if _always_split(path):
        return onchain_account(asset)
    return f"{path}/{asset}"


def plan(
    accounts: Sequence[tuple[Any, ...]],
    transfers: Sequence[tuple[Any, ...]],
    legacy: LegacyAssets,
) -> Plan:
    """The upgrade of version-0 rows (accounts as stored, transfers as
    ``(id, debit, credit, amount, state)``); raises MigrationError."""
    check_asset(legacy.ilp)
    rows = {
        r[0]: _Row(r[0], [int(r[1]), int(r[2]), int(r[3]), int(r[4])], r[5], r[6]) for r in accounts
    }
    known = {path: a for path in rows if (a := _known_asset(path, legacy)) is not None}
    for asset in set(known.values()):
        check_asset(asset)
    assets: dict[int, str] = {}
    for tid, debit, credit, _, _ in transfers:
        for path in (debit, credit):
            if path not in rows:
                raise MigrationError(f"transfer {tid} names {path}, which has no account")
        a, b = known.get(debit), known.get(credit)
        if a is not None and b is not None and a != b:
            raise MigrationError(
                f"transfer {tid} from {credit} ({b}) to {debit} ({a}) already crosses assets"
            )
        if a is not None:
            assets[tid] = a
        elif b is not None:
            assets[tid] = b
    # Transfers between two accounts of unknown asset: the asset their other transfers say.
    progress = True
    while progress and len(assets) < len(transfers):
        progress = False
        seen: dict[str, set[str]] = {}
        for tid, debit, credit, _, _ in transfers:
            if tid in assets:
                seen.setdefault(debit, set()).add(assets[tid])
                seen.setdefault(credit, set()).add(assets[tid])
        for tid, debit, credit, _, _ in transfers:
            if tid in assets:
                continue
            for path in (debit, credit):
                if len(seen.get(path, ())) == 1:
                    (assets[tid],) = seen[path]
                    progress = True
                    break
    for tid, debit, credit, _, _ in transfers:
        if tid not in assets:
            raise MigrationError(
                f"cannot tell the asset of transfer {tid} between {credit} and {debit}"
            )

    # Each account's transfers, by asset: (debits, credits) posted and pending.
    sums: dict[str, dict[str, list[int]]] = {path: {} for path in rows}
    for tid, debit, credit, amount, state in transfers:
        asset, amount = assets[tid], int(amount)
        for path, side in ((debit, 0), (credit, 1)):
            counters = sums[path].setdefault(asset, [0, 0, 0, 0])
            if state == "posted":
                counters[side] += amount
            elif state == "pending":
                counters[2 + side] += amount

    out: dict[str, tuple[Any, ...]] = {}
    renamed: dict[tuple[str, str], str] = {}
    split: dict[str, list[str]] = {}
    for path, row in rows.items():
        by_asset = sums[path]
        if path in known:
            parts = {known[path]: row.counters}
            names = {known[path]: path}
        elif _always_split(path) or len(by_asset) > 1:
            if [sum(c[i] for c in by_asset.values()) for i in range(4)] != row.counters:
                raise MigrationError(f"account {path}: its transfers do not add up to its balances")
            parts = by_asset
            names = {asset: _part_name(path, asset) for asset in by_asset}
            split[path] = sorted(names.values())
        elif by_asset:
            ((asset, _),) = by_asset.items()
            parts, names = {asset: row.counters}, {asset: path}
        else:
            raise MigrationError(f"account {path} has no transfer to tell its asset by")
        for asset, counters in parts.items():
            name = names[asset]
            if name in out or (name != path and name in rows):
                raise MigrationError(f"account {path}: {name} already exists")
            renamed[path, asset] = name
            out[name] = (
                name, *(str(c) for c in counters), row.min_balance, row.max_balance, asset
            )  # fmt: skip

    moved: list[tuple[str, str, int]] = []
    for tid, debit, credit, _, _ in transfers:
        asset = assets[tid]
        new_debit, new_credit = renamed[debit, asset], renamed[credit, asset]
        if (new_debit, new_credit) != (debit, credit):
            moved.append((new_debit, new_credit, tid))

    totals: dict[str, list[int]] = {}
    for row_out in out.values():
        total = totals.setdefault(row_out[7], [0, 0])
        total[0] += int(row_out[1]) - int(row_out[2])
        total[1] += int(row_out[3]) - int(row_out[4])
    for asset, (posted, pending) in sorted(totals.items()):
        if posted != 0 or pending != 0:
            raise MigrationError(
                f"ledger unbalanced in {asset} after the upgrade: posted {posted}, "
                f"pending {pending}"
            )
    return Plan(list(out.values()), moved, split)


def upgrade(conn: sqlite3.Connection, legacy: LegacyAssets | None) -> None:
    """Bring the ledger on ``conn`` (autocommit) to :data:`VERSION`, in one transaction.

    A no-op on a ledger already at that version. ``legacy`` may be None when the
    ledger has no account yet (a new file).
    """
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version >= VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(accounts)")}
        if "asset" not in columns:
            conn.execute("ALTER TABLE accounts ADD COLUMN asset TEXT")
        accounts = conn.execute(
            "SELECT path, debits_posted, credits_posted, debits_pending, credits_pending,"
            " min_balance, max_balance FROM accounts"
        ).fetchall()
        if accounts:
            if legacy is None:
                raise MigrationError(
                    "the ledger was written by an older version: open it with the node "
                    "(which knows the assets of its accounts) to upgrade it"
                )
            transfers = conn.execute(
                "SELECT id, debit, credit, amount, state FROM transfers ORDER BY id"
            ).fetchall()
            result = plan(accounts, transfers, legacy)
            conn.execute("DELETE FROM accounts")
            conn.executemany(
                "INSERT INTO accounts (path, debits_posted, credits_posted, debits_pending,"
                " credits_pending, min_balance, max_balance, asset)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                result.accounts,
            )
            conn.executemany(
                "UPDATE transfers SET debit = ?, credit = ? WHERE id = ?", result.transfers
            )
            for old, new in sorted(result.split.items()):
                log.warning("ledger upgrade: %s became %s", old, ", ".join(new) or "nothing")
        conn.execute(f"PRAGMA user_version = {VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def legacy_channels(path: Path | str) -> list[tuple[str, str]] | None:
    """The ``(chain, channel id)`` of every channel account of a version-0 ledger at
    ``path``; None when there is nothing to upgrade (no file, or already upgraded)."""
    path = Path(path)
    if not path.exists():
        return None
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if version >= VERSION or "accounts" not in tables:
            return None
        found = []
        query = "SELECT path FROM accounts WHERE path LIKE 'assets/channel/%'"
        for (account,) in conn.execute(query):
            parts = account.split("/")
            if len(parts) == 4:
                found.append((parts[2], parts[3]))
        return found
    finally:
        conn.close()


async def resolve_legacy_assets(
    path: Path | str,
    chains: Sequence[ChainConfig],
    sources: Sequence[ChannelSource],
    ilp_code: str,
    concurrency: int = 8,
) -> LegacyAssets | None:
    """What :func:`upgrade` needs for the ledger at ``path``, asking the chains for the
    currency of each channel it holds; None when the ledger needs no upgrade.

    A channel its chain cannot tell (unreachable, or a token no longer configured)
    falls back to its chain's only configured currency, if it has one.
    """
    from ..config import PRESETS  # the node's settings, not the ledger's

    channels = await asyncio.to_thread(legacy_channels, path)
    if channels is None:
        return None
    natives = {name: preset.native for name, preset in PRESETS.items()}
    currencies: dict[str, tuple[str, ...]] = {}
    for chain in chains:
        currencies[chain.name] = tuple(chain.assets)
        natives[chain.name] = native_currency(chain)
    by_name = {source.name: source for source in sources}
    found: dict[str, str] = {}
    down: set[str] = set()
    gate = asyncio.Semaphore(concurrency)

    async def lookup(chain: str, channel_id: str) -> None:
        source = by_name.get(chain)
        if source is None:
            return
        async with gate:
            if chain in down:  # one failure is enough: do not wait for every channel
                return
            try:
                state = await source.get_channel(channel_id)
            except Exception as exc:  # unreachable: the fallback decides, or refuses
                down.add(chain)
                log.warning("ledger upgrade: channel %s on %s: %s", channel_id, chain, exc)
                return
        if state is not None and state.currency is not None:
            found[channel_id.lower()] = state.currency

    await asyncio.gather(*(lookup(chain, channel_id) for chain, channel_id in channels))
    return LegacyAssets(ilp_asset(ilp_code), natives, found, currencies)
