"""Automine off: transactions wait, can be replaced by a higher fee or dropped, then mined."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from web3 import Web3
from web3.exceptions import Web3RPCError

from devchain.accounts import ACCOUNTS
from devchain.chain import DevChain
from devchain.mempool import Mempool, PooledTransaction, PoolError
from devchain.testing import in_process_web3

SENDER, SENDER_KEY = ACCOUNTS[3]
RECEIVER = ACCOUNTS[4][0]
GWEI = 10**9


def transfer(w3: Web3, nonce: int, tip: int, value: int = 1) -> bytes:
    tx: dict[str, Any] = {
        "to": RECEIVER,
        "value": value,
        "gas": 21_000,
        "nonce": nonce,
        "chainId": w3.eth.chain_id,
        "maxPriorityFeePerGas": tip,
        "maxFeePerGas": 20 * GWEI + 10 * tip,
    }
    return bytes(Account.sign_transaction(tx, SENDER_KEY).raw_transaction)


@pytest.fixture
def w3() -> Web3:
    w3 = in_process_web3(DevChain())
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    return w3


def rpc(w3: Web3, method: str, *params: Any) -> Any:
    return w3.provider.make_request(method, list(params))  # type: ignore[arg-type]


def test_a_waiting_transaction_is_visible_then_mined(w3: Web3) -> None:
    start = w3.eth.get_transaction_count(SENDER)
    before = w3.eth.get_balance(RECEIVER)
    tx_hash = w3.eth.send_raw_transaction(transfer(w3, start, GWEI, value=5))
    assert w3.eth.get_transaction(tx_hash)["blockNumber"] is None
    assert w3.eth.get_transaction_count(SENDER, "pending") == start + 1
    assert w3.eth.get_transaction_count(SENDER) == start
    assert rpc(w3, "eth_getTransactionReceipt", Web3.to_hex(tx_hash))["result"] is None
    pending = rpc(w3, "txpool_content")["result"]["pending"]
    assert list(pending[SENDER]) == [str(start)]

    rpc(w3, "evm_mine")
    receipt = w3.eth.get_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    assert w3.eth.get_balance(RECEIVER) - before == 5
    assert rpc(w3, "txpool_content")["result"]["pending"] == {}


def test_a_replacement_needs_ten_percent_more_and_only_it_is_mined(w3: Web3) -> None:
    nonce = w3.eth.get_transaction_count(SENDER)
    first = w3.eth.send_raw_transaction(transfer(w3, nonce, GWEI, value=1))
    with pytest.raises(Web3RPCError, match="underpriced"):
        w3.eth.send_raw_transaction(transfer(w3, nonce, GWEI + GWEI // 20, value=2))
    second = w3.eth.send_raw_transaction(transfer(w3, nonce, 2 * GWEI, value=3))
    assert rpc(w3, "eth_getTransactionByHash", Web3.to_hex(first))["result"] is None
    before = w3.eth.get_balance(RECEIVER)
    rpc(w3, "evm_mine")
    assert w3.eth.get_transaction_receipt(second)["status"] == 1
    assert w3.eth.get_balance(RECEIVER) - before == 3
    assert rpc(w3, "eth_getTransactionReceipt", Web3.to_hex(first))["result"] is None


def test_a_dropped_transaction_and_the_later_ones_are_gone(w3: Web3) -> None:
    nonce = w3.eth.get_transaction_count(SENDER)
    first = w3.eth.send_raw_transaction(transfer(w3, nonce, GWEI))
    later = w3.eth.send_raw_transaction(transfer(w3, nonce + 1, GWEI))
    with pytest.raises(Web3RPCError, match="nonce too high"):
        w3.eth.send_raw_transaction(transfer(w3, nonce + 3, GWEI))
    rpc(w3, "anvil_dropTransaction", Web3.to_hex(first))
    for gone in (first, later):
        assert rpc(w3, "eth_getTransactionByHash", Web3.to_hex(gone))["result"] is None
    assert w3.eth.get_transaction_count(SENDER, "pending") == nonce
    again = w3.eth.send_raw_transaction(transfer(w3, nonce, GWEI))  # the slot is free
    rpc(w3, "evm_setAutomine", True)  # mines what waits
    assert w3.eth.get_transaction_receipt(again)["status"] == 1
    assert w3.eth.get_transaction_count(SENDER) == nonce + 1


def test_unlocked_sending_needs_automine(w3: Web3) -> None:
    with pytest.raises(Web3RPCError, match="automine"):
        w3.eth.send_transaction({"from": SENDER, "to": RECEIVER, "value": 1})
    assert rpc(w3, "evm_setAutomine", "no")["error"]["code"] == -32602


def pooled(sender: str, nonce: int, fee: int, tip: int, tag: str) -> PooledTransaction:
    return PooledTransaction(f"0x{tag}", b"", sender, nonce, fee, tip, {})


def test_the_pool_alone() -> None:
    pool = Mempool()
    assert pool.add(pooled("a", 5, 100, 10, "01"), chain_nonce=5) is None
    assert pool.add(pooled("a", 6, 100, 10, "02"), chain_nonce=5) is None
    with pytest.raises(PoolError, match="too low"):
        pool.add(pooled("a", 4, 100, 10, "03"), chain_nonce=5)
    with pytest.raises(PoolError, match="underpriced"):  # the tip did not rise
        pool.add(pooled("a", 5, 200, 10, "04"), chain_nonce=5)
    with pytest.raises(PoolError, match="already known"):
        pool.add(pooled("a", 5, 100, 10, "01"), chain_nonce=5)
    old = pool.add(pooled("a", 5, 110, 11, "05"), chain_nonce=5)
    assert old is not None and old.tx_hash == "0x01"
    assert pool.add(pooled("b", 0, 1, 1, "06"), chain_nonce=0) is None
    assert [tx.tx_hash for tx in pool.snapshot()] == ["0x05", "0x02", "0x06"]
    assert pool.drop("0x05") == ["0x05", "0x02"]
    assert pool.waiting("a") == 0 and len(pool) == 1
    assert [tx.tx_hash for tx in pool.take_all()] == ["0x06"] and len(pool) == 0
