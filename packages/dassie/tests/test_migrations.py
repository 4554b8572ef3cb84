"""Opening a ledger written before accounts had assets: split by asset, losing nothing."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from dassie.claims.channels import InMemoryChannelSource
from dassie.config import ZERO_ADDRESS, ChainConfig
from dassie.ledger import (
    AssetMismatch,
    LedgerStore,
    LegacyAssets,
    MigrationError,
    channel_account,
)
from dassie.ledger.migrations import resolve_legacy_assets
from dassie.ledger.model import Ledger
from dassie.node import Node
from dassie.testing import LEDGER_SCHEMA_V0, RELAY, make_channel, make_config

ETH_CHANNEL = "0x" + "e1" * 32
TOKEN_CHANNEL = "0x" + "70" * 32
IDLE_CHANNEL = "0x" + "1d" * 32  # a claim that credited nothing: an account, no transfer
PUBKEY = "ab" * 32
PREPAID = f"prepaid/nostr/{PUBKEY}"
PEER = "peer/alice/interledger"


def _opt(value: int | None) -> str | None:
    return None if value is None else str(value)


class V0Ledger:
    """Writes a ledger the way the previous version did: one pool of base units, the
    mixed ``revenue/relay`` and ``assets/onchain/<CHAIN>``, no asset anywhere."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.transfers: list[tuple[int, str, str, int, str]] = []

    def account(self, path: str, max_balance: int | None = None) -> None:
        self.ledger.create_account(path, "v0", max_balance=max_balance)

    def transfer(self, debit: str, credit: str, amount: int) -> int:
        for path in (debit, credit):
            if path not in self.ledger.accounts:
                self.account(path)
        tid, _ = self.ledger.transfer(debit, credit, amount)
        self.transfers.append((tid, debit, credit, amount, "posted"))
        return tid

    def hold(self, debit: str, credit: str, amount: int) -> int:
        tid, _ = self.ledger.create_pending(debit, credit, amount)
        self.transfers.append((tid, debit, credit, amount, "pending"))
        return tid

    def void(self, tid: int) -> None:
        self.ledger.void(tid)
        self.transfers = [
            (t[0], t[1], t[2], t[3], "voided") if t[0] == tid else t for t in self.transfers
        ]

    def write(self, path: Path) -> None:
        conn = sqlite3.connect(path)
        conn.executescript(LEDGER_SCHEMA_V0)
        conn.executemany(
            "INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (a.path, str(a.debits_posted), str(a.credits_posted), str(a.debits_pending),
                 str(a.credits_pending), None, _opt(a.max_balance))
                for a in self.ledger.accounts.values()
            ],
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO transfers VALUES (?, ?, ?, ?, ?, 1.0)",
            [(t[0], t[1], t[2], str(t[3]), t[4]) for t in self.transfers],
        )
        conn.execute(
            "INSERT INTO claims VALUES (1, ?, 'LOCAL', '5000', '1', '0xsig', '5000', 1, 1.0, NULL)",
            (ETH_CHANNEL,),
        )
        conn.commit()
        conn.close()


def v0_ledger(path: Path) -> V0Ledger:
    """Claims on an ETH and a token channel, a settlement of the token channel, and an
    Interledger prepaid balance partly spent, all through the mixed accounts."""
    v0 = V0Ledger()
    eth, token = channel_account("LOCAL", ETH_CHANNEL), channel_account("LOCAL", TOKEN_CHANNEL)
    v0.account(channel_account("LOCAL", IDLE_CHANNEL))
    v0.account("ilp/node")
    v0.account(PEER)
    v0.account(PREPAID, max_balance=0)
    v0.transfer(eth, "revenue/relay", 5_000)  # wei
    v0.transfer(token, "revenue/relay", 300)  # token units
    v0.transfer(eth, "revenue/relay", 2_000)
    v0.transfer(token, "revenue/relay", 700)
    v0.transfer("assets/onchain/LOCAL", token, 1_000)  # the token channel settled
    v0.transfer("expenses/gas/LOCAL", "assets/onchain/LOCAL", 42)  # its gas, in wei
    v0.transfer(PEER, PREPAID, 900)  # prepaid over Interledger
    v0.transfer(PREPAID, "revenue/relay", 250)  # and spent
    v0.hold("ilp/node", PEER, 11)  # a packet in flight at the crash
    v0.void(v0.hold("ilp/node", PEER, 13))
    v0.write(path)
    return v0


LEGACY = LegacyAssets(
    ilp="ilp/ETH",
    natives={"LOCAL": "ETH"},
    channels={ETH_CHANNEL: "ETH", TOKEN_CHANNEL: "USDC", IDLE_CHANNEL: "ETH"},
    currencies={"LOCAL": ("ETH", "USDC")},
)

EXPECTED = {  # path: (asset, posted balance, pending balance)
    channel_account("LOCAL", ETH_CHANNEL): ("LOCAL/ETH", 7_000, 0),
    channel_account("LOCAL", TOKEN_CHANNEL): ("LOCAL/USDC", 0, 0),
    channel_account("LOCAL", IDLE_CHANNEL): ("LOCAL/ETH", 0, 0),
    "revenue/relay/LOCAL/ETH": ("LOCAL/ETH", -7_000, 0),
    "revenue/relay/LOCAL/USDC": ("LOCAL/USDC", -1_000, 0),
    "revenue/relay/ilp/ETH": ("ilp/ETH", -250, 0),
    "assets/onchain/LOCAL/USDC": ("LOCAL/USDC", 1_000, 0),
    "assets/onchain/LOCAL/ETH": ("LOCAL/ETH", -42, 0),
    "expenses/gas/LOCAL": ("LOCAL/ETH", 42, 0),
    "ilp/node": ("ilp/ETH", 0, 11),
    PEER: ("ilp/ETH", 900, -11),
    PREPAID: ("ilp/ETH", -650, 0),
}


def dump(path: Path) -> tuple[list[tuple[object, ...]], ...]:
    conn = sqlite3.connect(path)
    try:
        return (
            conn.execute("SELECT * FROM accounts ORDER BY path").fetchall(),
            conn.execute("SELECT * FROM transfers ORDER BY id").fetchall(),
            conn.execute("SELECT * FROM claims ORDER BY seq").fetchall(),
            [conn.execute("PRAGMA user_version").fetchone()],
        )
    finally:
        conn.close()


async def test_a_v0_ledger_is_split_by_asset_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    v0 = v0_ledger(path)
    store = await LedgerStore.open(path, LEGACY)
    try:
        got = {a.path: (a.asset, a.balance, a.pending) for a in store.accounts()}
        assert got == EXPECTED
        store.ledger.check_invariant()  # each asset sums to zero, posted and pending
        assert store.ledger.balances_by_asset() == {
            "LOCAL/ETH": (0, 0), "LOCAL/USDC": (0, 0), "ilp/ETH": (0, 0)
        }  # fmt: skip
        # Per asset, the split accounts add up to what the mixed ones held.
        old = v0.ledger.accounts
        assert sum(got[p][1] for p in got if p.startswith("revenue/relay/")) == (
            old["revenue/relay"].balance
        )
        assert got["assets/onchain/LOCAL/ETH"][1] + got["assets/onchain/LOCAL/USDC"][1] == (
            old["assets/onchain/LOCAL"].balance
        )
        for path_, account in old.items():  # the accounts that were not split: unchanged
            if path_ in got:
                assert (got[path_][1], got[path_][2]) == (account.balance, account.pending)
        # The held packet is still pending, re-read from its re-pointed transfer.
        ((tid, hold),) = store.ledger.pending.items()
        assert (hold.debit, hold.credit, hold.amount) == ("ilp/node", PEER, 11)
        # New work goes to the new accounts, in their asset only.
        eth = channel_account("LOCAL", ETH_CHANNEL)
        await store.transfer(eth, "revenue/relay/LOCAL/ETH", 1)
        with pytest.raises(AssetMismatch):
            await store.transfer(eth, "revenue/relay/LOCAL/USDC", 1)
        await store.void(tid)
    finally:
        await store.close()

    # Every transfer kept its id, amount and state and now joins two accounts of one asset.
    conn = sqlite3.connect(path)
    assets = dict(conn.execute("SELECT path, asset FROM accounts"))
    rows = conn.execute("SELECT id, debit, credit, amount, state FROM transfers").fetchall()
    conn.close()
    assert [(r[0], int(r[3])) for r in rows[: len(v0.transfers)]] == [
        (t[0], t[3]) for t in v0.transfers
    ]
    assert all(assets[debit] == assets[credit] for _, debit, credit, _, _ in rows)
    assert "revenue/relay" not in assets and "assets/onchain/LOCAL" not in assets
    by_id = {r[0]: r for r in rows}
    settled = next(t for t in v0.transfers if t[1] == "assets/onchain/LOCAL")
    assert by_id[settled[0]][1] == "assets/onchain/LOCAL/USDC"
    gas = next(t for t in v0.transfers if t[1] == "expenses/gas/LOCAL")
    assert by_id[gas[0]][2] == "assets/onchain/LOCAL/ETH"


async def test_a_second_open_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    v0_ledger(path)
    first = await LedgerStore.open(path, LEGACY)
    await first.close()
    upgraded = dump(path)
    assert upgraded[3] == [(1,)]
    again = await LedgerStore.open(path)  # no asset information needed any more
    try:
        assert {a.path: (a.asset, a.balance, a.pending) for a in again.accounts()} == EXPECTED
    finally:
        await again.close()
    assert dump(path) == upgraded


async def test_a_new_ledger_starts_at_the_current_version(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store = await LedgerStore.open(path)
    await store.create_account("a/b", "LOCAL/ETH")
    await store.close()
    assert dump(path)[3] == [(1,)]
    again = await LedgerStore.open(path)
    assert again.balance("a/b").asset == "LOCAL/ETH"
    await again.close()


@pytest.mark.parametrize(
    ("legacy", "damage", "message"),
    [
        (None, None, "written by an older version"),
        (replace(LEGACY, channels={}), None, "cannot tell the currency of channel"),
        (replace(LEGACY, natives={}), None, "cannot tell the native coin of chain LOCAL"),
        (  # the old ledger moved token units straight into the gas account
            LEGACY,
            "UPDATE transfers SET credit = 'assets/channel/LOCAL/" + TOKEN_CHANNEL + "' "
            "WHERE debit = 'expenses/gas/LOCAL'",
            "already crosses assets",
        ),
        (  # a mixed account whose stored balances its transfers do not explain
            LEGACY,
            "UPDATE accounts SET debits_posted = '1' WHERE path = 'revenue/relay'",
            "do not add up",
        ),
    ],
)
async def test_an_upgrade_that_cannot_be_exact_changes_nothing(
    tmp_path: Path, legacy: LegacyAssets | None, damage: str | None, message: str
) -> None:
    path = tmp_path / "ledger.db"
    v0_ledger(path)
    if damage is not None:
        with sqlite3.connect(path) as conn:
            conn.execute(damage)
    before = dump(path)
    with pytest.raises(MigrationError, match=message):
        await LedgerStore.open(path, legacy)
    assert dump(path) == before  # still version 0, no asset column, same rows
    columns = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(accounts)")]
    assert "asset" not in columns


def chain_config(name: str, assets: dict[str, str]) -> ChainConfig:
    return ChainConfig(
        name, 31337, "http://127.0.0.1:1", ZERO_ADDRESS, b"\x11" * 32, RELAY, None, assets
    )


async def test_the_node_upgrades_with_currencies_asked_from_the_chain(tmp_path: Path) -> None:
    """A node started on an older ledger: each channel's currency comes from its chain
    (here an in-memory chain ``TEST`` holding an ETH and a token channel)."""
    path = tmp_path / "ledger.db"
    eth_channel = make_channel()
    token_channel = replace(make_channel(), token="0x" + "77" * 20, currency="USDC")
    v0 = V0Ledger()
    v0.transfer(channel_account("TEST", eth_channel.channel_id), "revenue/relay", 10)
    v0.transfer(channel_account("TEST", token_channel.channel_id), "revenue/relay", 3)
    v0.write(path)
    source = InMemoryChannelSource("TEST", RELAY)
    source.add(eth_channel)
    source.add(token_channel)
    node = Node(make_config(path), sources=[source])
    await node.start()
    try:
        accounts = {a.path: (a.asset, a.balance) for a in node.store.accounts()}
        assert accounts["revenue/relay/TEST/ETH"] == ("TEST/ETH", -10)
        assert accounts["revenue/relay/TEST/USDC"] == ("TEST/USDC", -3)
        assert source.lookups == 2
        node.store.ledger.check_invariant()
    finally:
        await node.stop()


async def test_a_chain_that_cannot_answer_falls_back_to_its_only_currency(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    channel, other = make_channel(), make_channel()
    v0 = V0Ledger()
    v0.transfer(channel_account("TEST", channel.channel_id), "revenue/relay", 10)
    v0.transfer(channel_account("TEST", other.channel_id), "revenue/relay", 5)
    v0.write(path)
    down = InMemoryChannelSource("TEST", RELAY)
    down.unavailable = "connection refused"
    one = await resolve_legacy_assets(
        path, [chain_config("TEST", {"ETH": ZERO_ADDRESS})], [down], "ETH"
    )
    assert one is not None and one.channel_asset("TEST", channel.channel_id) == "TEST/ETH"
    two = await resolve_legacy_assets(
        path, [chain_config("TEST", {"ETH": ZERO_ADDRESS, "USDC": "0x" + "77" * 20})], [down], "ETH"
    )
    assert two is not None and two.ilp == "ilp/ETH" and two.natives["TEST"] == "ETH"
    with pytest.raises(MigrationError, match="configured with ETH, USDC"):
        await LedgerStore.open(path, two)
    store = await LedgerStore.open(path, one)
    assert store.balance("revenue/relay/TEST/ETH").balance == -15
    await store.close()
    assert await resolve_legacy_assets(path, [], [down], "ETH") is None  # upgraded: no lookups
    assert down.lookups == 2  # one per resolution: a chain that failed is not asked on
