"""One asset per account: refused crossings, a revenue account per asset, prepaid spend."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from dassie.config import ConfigError
from dassie.ilp import IlpService, prepaid
from dassie.ilp.accounts import ilp_asset, peer_account, prepaid_account
from dassie.ilp.config import load_ilp_config
from dassie.ledger import (
    AssetMismatch,
    Ledger,
    LedgerError,
    LedgerStore,
    channel_account,
    revenue_account,
)
from dassie.testing import TOKEN, claim_params, make_channel, running_node

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_a_cross_asset_transfer_is_refused_and_changes_nothing() -> None:
    ledger = Ledger()
    ledger.create_account("assets/channel/BASE/0xaa", "BASE/USDC")
    ledger.create_account("revenue/relay/BASE/ETH", "BASE/ETH")
    ledger.create_account("revenue/relay/BASE/USDC", "BASE/USDC")
    ledger.transfer("assets/channel/BASE/0xaa", "revenue/relay/BASE/USDC", 5)
    before = {p: (a.balance, a.pending) for p, a in ledger.accounts.items()}
    next_id = ledger.next_transfer_id
    for attempt in (ledger.transfer, ledger.create_pending):
        with pytest.raises(AssetMismatch, match=r"\(BASE/USDC\) and revenue/relay/BASE/ETH"):
            attempt("assets/channel/BASE/0xaa", "revenue/relay/BASE/ETH", 1)
    assert {p: (a.balance, a.pending) for p, a in ledger.accounts.items()} == before
    assert ledger.next_transfer_id == next_id and ledger.pending == {}
    # An account keeps its asset: re-creating it in another one is refused too.
    with pytest.raises(AssetMismatch):
        ledger.ensure_account("revenue/relay/BASE/ETH", "BASE/USDC")
    with pytest.raises(AssetMismatch):
        ledger.create_account("revenue/relay/BASE/ETH", "BASE/USDC")
    assert ledger.ensure_account("revenue/relay/BASE/ETH", "BASE/ETH").accounts == {}
    for bad in ("", "a b", "a/b/c", "x" * 65):
        with pytest.raises(LedgerError, match="bad asset"):
            ledger.create_account("other", bad)
    ledger.check_invariant()


async def test_a_refused_crossing_is_not_written(tmp_path: Path) -> None:
    store = await LedgerStore.open(tmp_path / "ledger.db")
    await store.create_account("a/eth", "LOCAL/ETH")
    await store.create_account("a/token", "LOCAL/TEST")
    with pytest.raises(AssetMismatch):
        await store.transfer("a/eth", "a/token", 7)
    with pytest.raises(AssetMismatch):
        await store.create_pending("a/token", "a/eth", 7)
    await store.close()
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        assert db.execute("SELECT COUNT(*) FROM transfers").fetchone() == (0,)
        assert dict(db.execute("SELECT path, asset FROM accounts")) == {
            "a/eth": "LOCAL/ETH",
            "a/token": "LOCAL/TEST",
        }


async def test_a_relay_taking_eth_and_a_token_books_each_in_its_own_revenue(
    tmp_path: Path,
) -> None:
    eth = make_channel()
    token = replace(make_channel(), token="0x" + "77" * 20, currency="USDC")
    async with running_node(tmp_path / "ledger.db") as running:
        running.source.add(eth)
        running.source.add(token)
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(running.url + "/trpc", headers=AUTH) as ws,
        ):

            async def call(method: str, params: Mapping[str, object]) -> Any:
                frame = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
                await ws.send_bytes(orjson.dumps(frame))
                return orjson.loads((await ws.receive()).data)

            claims = [(eth, 100, "ETH"), (token, 7, "USDC"), (eth, 250, "ETH"), (token, 9, "USDC")]
            for nonce, (channel, amount, currency) in enumerate(claims, 1):
                params = claim_params(channel.channel_id, amount, nonce, currency=currency)
                answer = await call("payment.verifyPaymentClaim", params)
                assert answer["result"]["valid"] is True, answer
            wrong = claim_params(token.channel_id, 20, 9, currency="ETH")  # not its currency
            answer = await call("payment.verifyPaymentClaim", wrong)
            assert answer["result"]["reason"] == "unsupported-currency"
            listed = await call("ledger.getAccounts", {"prefix": "revenue/"})
            revenue = listed["result"]["accounts"]
            assert [(a["account"], a["asset"], a["balance"]) for a in revenue] == [
                ("revenue/relay/TEST/ETH", "TEST/ETH", "-250"),
                ("revenue/relay/TEST/USDC", "TEST/USDC", "-9"),
            ]
            owed = await call(
                "ledger.getBalance", {"account": channel_account("TEST", token.channel_id)}
            )
            assert owed["result"]["asset"] == "TEST/USDC"
            assert owed["result"]["balance"] == "9"
        store = running.node.store
        store.ledger.check_invariant()
        assert store.ledger.balances_by_asset() == {"TEST/ETH": (0, 0), "TEST/USDC": (0, 0)}
        async with aiohttp.ClientSession() as http, http.get(running.url + "/metrics") as resp:
            metrics = await resp.text()
        assert (
            'dassie_ledger_balance{account="revenue/relay/TEST/USDC",asset="TEST/USDC"} -9'
            in metrics.splitlines()
        )
        assert 'dassie_ledger_balance{account="assets/channel/TEST",asset="TEST/ETH"} 250' in (
            metrics.splitlines()
        )


async def test_prepaid_spend_lands_in_the_ilp_assets_revenue(tmp_path: Path) -> None:
    asset = ilp_asset("USD")
    store = await LedgerStore.open(tmp_path / "ledger.db")
    try:
        pubkey = "cd" * 32
        await store.create_account(peer_account("alice"), asset)
        await store.create_account(prepaid_account(pubkey), asset, max_balance=0)
        await store.transfer(peer_account("alice"), prepaid_account(pubkey), 500)
        await store.create_account("revenue/relay/LOCAL/ETH", "LOCAL/ETH")  # not touched
        assert await prepaid.spend(store, pubkey, 120) is True
        assert await prepaid.spend(store, pubkey, 400) is False  # short: nothing changes
        assert prepaid.balance(store, pubkey) == 380
        assert store.balance(revenue_account(asset)).asset == "ilp/USD"
        assert store.balance(revenue_account(asset)).balance == -120
        assert store.balance("revenue/relay/LOCAL/ETH").balance == 0
        store.ledger.check_invariant()
    finally:
        await store.close()


@pytest.mark.parametrize("account", [peer_account("alice"), prepaid_account("ef" * 32)])
async def test_the_ilp_service_refuses_a_changed_ilp_asset(tmp_path: Path, account: str) -> None:
    """``ILP_ASSET_CODE`` changed while the ledger holds Interledger balances in the old
    asset: the ILP side does not start (its balances would be read in the wrong unit)."""
    store = await LedgerStore.open(tmp_path / "ledger.db")
    try:
        await store.create_account(account, ilp_asset("ETH"))
        peers = '[{"name": "alice", "token": "' + "k" * 20 + '"}]'
        env = {"ILP_ASSET_CODE": "USD", "ILP_PEERS": peers}
        service = IlpService(load_ilp_config(env, "test.dassie", TOKEN), store)
        with pytest.raises(ConfigError, match=r"ILP_ASSET_CODE: .* are in ilp/ETH"):
            await service.start()
        assert [a.path for a in store.accounts()] == [account]  # nothing created
        same = IlpService(load_ilp_config({**env, "ILP_ASSET_CODE": "ETH"}, "x.y", TOKEN), store)
        same.ledger.check_asset()  # the same asset: fine
    finally:
        await store.close()
