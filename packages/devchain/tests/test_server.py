"""The dev chain over real HTTP: web3.py (async) and raw JSON-RPC against a live server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import pytest
from eth_abi.abi import encode
from eth_account import Account
from eth_utils.crypto import keccak
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.types import Nonce, TxData, Wei

from devchain.accounts import ACCOUNTS, CHAIN_ID, FACTORY_ADDRESS, INITIAL_BALANCE_WEI
from devchain.testing import DevchainHandle, running_devchain
from payment_channel.artifacts import CHANNEL_FACTORY

NATIVE = "0x" + "00" * 20


@pytest.fixture
async def chain() -> AsyncIterator[DevchainHandle]:
    async with running_devchain() as handle:
        yield handle


@pytest.fixture
async def w3(chain: DevchainHandle) -> AsyncIterator[AsyncWeb3[Any]]:
    web3 = AsyncWeb3(AsyncHTTPProvider(chain.url))
    yield web3
    await web3.provider.disconnect()


async def rpc(url: str, payload: Any) -> tuple[int, Any]:
    """POST a raw JSON-RPC payload (bytes are sent as is); returns (status, decoded body)."""
    data = payload if isinstance(payload, bytes) else None
    async with aiohttp.ClientSession() as session:
        kwargs: dict[str, Any] = {"data": data} if data is not None else {"json": payload}
        async with session.post(url, **kwargs) as response:
            body = await response.read()
            return response.status, (await response.json() if body else None)


async def call(url: str, method: str, *params: Any) -> Any:
    status, answer = await rpc(url, {"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    assert status == 200
    return answer


# -- identity ---------------------------------------------------------------------


async def test_chain_identity_accounts_and_factory(
    chain: DevchainHandle, w3: AsyncWeb3[Any]
) -> None:
    assert await w3.eth.chain_id == CHAIN_ID
    assert (await call(chain.url, "net_version"))["result"] == "31337"
    assert (await call(chain.url, "web3_clientVersion"))["result"].startswith("devchain/")
    assert await w3.eth.syncing is False
    assert list(await w3.eth.accounts) == [address for address, _ in ACCOUNTS]
    assert chain.factory_address == FACTORY_ADDRESS
    # Block 1 holds exactly one transaction: account 0 deploying the factory.
    block = await w3.eth.get_block(1, full_transactions=True)
    (deploy,) = cast(list[TxData], block["transactions"])
    receipt = await w3.eth.get_transaction_receipt(deploy["hash"])
    assert (deploy["from"], deploy["nonce"]) == (ACCOUNTS[0][0], 0)
    assert deploy.get("to") is None
    assert receipt["contractAddress"] == FACTORY_ADDRESS
    deploy_cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert await w3.eth.get_balance(ACCOUNTS[0][0]) == INITIAL_BALANCE_WEI - deploy_cost
    for address, _ in ACCOUNTS[1:]:
        assert await w3.eth.get_balance(address) == INITIAL_BALANCE_WEI
    code = await w3.eth.get_code(FACTORY_ADDRESS)
    assert "0x" + code.hex() == CHANNEL_FACTORY.deployed_bytecode
    assert await w3.eth.block_number == 1


# -- transactions and logs ----------------------------------------------------------


async def test_raw_signed_transaction_opens_a_channel_and_its_log_is_found(
    chain: DevchainHandle, w3: AsyncWeb3[Any]
) -> None:
    sender = Account.from_key(ACCOUNTS[4][1])
    recipient = ACCOUNTS[5][0]
    factory = w3.eth.contract(address=FACTORY_ADDRESS, abi=CHANNEL_FACTORY.abi)
    latest = await w3.eth.get_block("latest")
    expiration = latest["timestamp"] + 86400
    tx = await factory.functions.openChannel(
        NATIVE, recipient, 10**18, expiration
    ).build_transaction({"from": sender.address, "value": Wei(10**18), "nonce": Nonce(0)})
    assert tx["chainId"] == CHAIN_ID and tx["gas"] > 21000
    signed = sender.sign_transaction(tx)
    tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 1 and receipt["blockNumber"] == 2
    # The estimate is enough and tight (refunds and SSTORE's 2300-gas floor aside).
    assert receipt["gasUsed"] <= tx["gas"] <= receipt["gasUsed"] + 7000
    assert await w3.eth.get_balance(FACTORY_ADDRESS) == 10**18

    topic0 = (
        "0x" + keccak(text="ChannelOpened(bytes32,address,address,address,uint256,uint256)").hex()
    )
    sender_topic = "0x" + "00" * 12 + sender.address[2:].lower()
    logs = await w3.eth.get_logs(
        {
            "address": FACTORY_ADDRESS,
            "fromBlock": 0,
            "toBlock": "latest",
            "topics": [topic0, None, sender_topic],
        }
    )
    assert len(logs) == 1 and logs[0]["transactionHash"] == tx_hash
    event = factory.events.ChannelOpened().process_log(logs[0])
    assert event["args"]["sender"] == sender.address
    assert event["args"]["recipient"] == recipient
    assert event["args"]["balance"] == 10**18
    assert event["args"]["expiration"] == expiration
    channel = await factory.functions.getChannel(event["args"]["channelId"]).call()
    assert channel[:4] == [sender.address, recipient, NATIVE, 10**18]
    # Filters that must not match.
    other = "0x" + "00" * 12 + ACCOUNTS[6][0][2:].lower()
    assert await w3.eth.get_logs({"fromBlock": 0, "topics": [topic0, None, other]}) == []
    assert await w3.eth.get_logs({"fromBlock": 0, "toBlock": 1, "address": FACTORY_ADDRESS}) == []
    by_hash = await w3.eth.get_logs({"blockHash": receipt["blockHash"]})
    assert [log["logIndex"] for log in by_hash] == [0]
    # The transaction and its block are served too.
    fetched = await w3.eth.get_transaction(tx_hash)
    assert fetched["from"] == sender.address and fetched["value"] == 10**18
    block = await w3.eth.get_block(receipt["blockHash"])
    assert block["transactions"] == [tx_hash] and block["number"] == 2


async def test_send_transaction_from_unlocked_accounts_with_default_fees(
    w3: AsyncWeb3[Any],
) -> None:
    sender, receiver = ACCOUNTS[1][0], ACCOUNTS[2][0]
    tx_hash = await w3.eth.send_transaction({"from": sender, "to": receiver, "value": Wei(12345)})
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash)
    cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert receipt["gasUsed"] == 21000
    assert await w3.eth.get_balance(sender) == INITIAL_BALANCE_WEI - 12345 - cost
    assert await w3.eth.get_balance(receiver) == INITIAL_BALANCE_WEI + 12345
    assert await w3.eth.get_transaction_count(sender) == 1
    history = await w3.eth.fee_history(2, "latest", [50])
    assert len(history["baseFeePerGas"]) == 3 and len(history["reward"]) == 2


async def test_sending_from_an_account_the_node_does_not_hold_is_an_error(
    chain: DevchainHandle,
) -> None:
    stranger = Account.create().address
    answer = await call(chain.url, "eth_sendTransaction", {"from": stranger, "to": stranger})
    assert answer["error"]["code"] == -32000 and "unknown account" in answer["error"]["message"]


async def test_invalid_raw_transactions_are_rejected_and_nothing_is_mined(
    chain: DevchainHandle, w3: AsyncWeb3[Any]
) -> None:
    sender = Account.from_key(ACCOUNTS[3][1])
    base = {"to": ACCOUNTS[4][0], "value": 1, "gas": 21000, "gasPrice": 10**10}
    good = sender.sign_transaction({**base, "nonce": 0, "chainId": CHAIN_ID}).raw_transaction
    await w3.eth.wait_for_transaction_receipt(await w3.eth.send_raw_transaction(good))
    cases = {
        "nonce too low": sender.sign_transaction({**base, "nonce": 0, "chainId": CHAIN_ID}),
        "nonce too high": sender.sign_transaction({**base, "nonce": 5, "chainId": CHAIN_ID}),
        "invalid chain id": sender.sign_transaction({**base, "nonce": 1, "chainId": 1}),
        "insufficient funds": Account.create().sign_transaction(
            {**base, "nonce": 0, "chainId": CHAIN_ID}
        ),
    }
    for reason, signed in cases.items():
        answer = await call(
            chain.url, "eth_sendRawTransaction", "0x" + signed.raw_transaction.hex()
        )
        assert answer["error"]["code"] == -32000
        assert reason in answer["error"]["message"]
    garbage = await call(chain.url, "eth_sendRawTransaction", "0xdeadbeef")
    assert garbage["error"]["code"] == -32000
    not_hex = await call(chain.url, "eth_sendRawTransaction", "hello")
    assert not_hex["error"]["code"] == -32602
    assert await w3.eth.block_number == 2  # only the good one was mined


# -- errors ---------------------------------------------------------------------------


async def test_a_revert_is_a_jsonrpc_error_and_the_server_serves_on(
    chain: DevchainHandle, w3: AsyncWeb3[Any]
) -> None:
    factory = w3.eth.contract(address=FACTORY_ADDRESS, abi=CHANNEL_FACTORY.abi)
    close = factory.functions.closeChannel(b"\x01" * 32, 1, 1, b"\x00" * 65)
    not_found = "0x" + keccak(text="ChannelNotFound()")[:4].hex()
    with pytest.raises(ContractCustomError) as raised:
        await close.call({"from": ACCOUNTS[1][0]})
    assert raised.value.data == not_found
    with pytest.raises(ContractCustomError):
        await close.estimate_gas({"from": ACCOUNTS[1][0]})
    answer = await call(
        chain.url, "eth_call", {"to": FACTORY_ADDRESS, "data": close._encode_transaction_data()}
    )
    assert answer["error"] == {"code": 3, "message": "execution reverted", "data": not_found}
    assert await w3.eth.block_number == 1


async def test_a_revert_with_a_reason_string_carries_the_reason(
    chain: DevchainHandle, w3: AsyncWeb3[Any]
) -> None:
    # Init code that reverts with Error("nope"): MSTORE the ABI-encoded error, REVERT.
    error = bytes.fromhex("08c379a0") + encode(["string"], ["nope"])
    padded = error.ljust(128, b"\x00")
    code = b"".join(
        b"\x7f" + padded[i : i + 32] + b"\x60" + bytes([i]) + b"\x52" for i in range(0, 128, 32)
    )
    code += b"\x60" + bytes([len(error)]) + b"\x60\x00\xfd"
    answer = await call(chain.url, "eth_call", {"data": "0x" + code.hex()})
    assert answer["error"]["code"] == 3
    assert answer["error"]["message"] == "execution reverted: nope"
    assert answer["error"]["data"] == "0x" + error.hex()
    with pytest.raises(ContractLogicError, match="nope"):
        await w3.eth.call({"data": code})


async def test_malformed_json_is_a_parse_error(chain: DevchainHandle) -> None:
    status, answer = await rpc(chain.url, b'{"jsonrpc": "2.0", "id": 1, "method": ')
    assert status == 200
    assert answer["id"] is None and answer["error"]["code"] == -32700
    # Deep nesting would overflow the C stack (py-evm lifts the recursion limit).
    _, deep = await rpc(chain.url, b"[" * 200_000 + b"]" * 200_000)
    assert deep["error"]["code"] == -32700
    assert (await call(chain.url, "eth_chainId"))["result"] == hex(CHAIN_ID)


async def test_unknown_method_and_bad_params_and_bad_requests(chain: DevchainHandle) -> None:
    unknown = await call(chain.url, "eth_doesNotExist")
    assert unknown["error"]["code"] == -32601
    bad_address = await call(chain.url, "eth_getBalance", "not-an-address", "latest")
    assert bad_address["error"]["code"] == -32602
    missing = await call(chain.url, "eth_getBalance")
    assert missing["error"]["code"] == -32602
    _, no_method = await rpc(chain.url, {"jsonrpc": "2.0", "id": 7})
    assert no_method == {"jsonrpc": "2.0", "id": 7, "error": no_method["error"]}
    assert no_method["error"]["code"] == -32600
    _, params_not_array = await rpc(
        chain.url, {"jsonrpc": "2.0", "id": 8, "method": "eth_chainId", "params": {"a": 1}}
    )
    assert params_not_array["error"]["code"] == -32602


async def test_batches_and_notifications(chain: DevchainHandle) -> None:
    status, answers = await rpc(
        chain.url,
        [
            {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"},
            {"jsonrpc": "2.0", "id": "two", "method": "nope"},
            {"jsonrpc": "2.0", "method": "eth_blockNumber"},  # a notification: no answer
            {"jsonrpc": "2.0", "id": 3, "method": "eth_blockNumber", "params": []},
            42,
        ],
    )
    assert status == 200
    assert [a["id"] for a in answers] == [1, "two", 3, None]
    assert answers[0]["result"] == hex(CHAIN_ID)
    assert answers[1]["error"]["code"] == -32601
    assert answers[2]["result"] == "0x1"
    assert answers[3]["error"]["code"] == -32600
    _, empty = await rpc(chain.url, [])
    assert empty["error"]["code"] == -32600
    status, nothing = await rpc(chain.url, {"jsonrpc": "2.0", "method": "eth_chainId"})
    assert (status, nothing) == (204, None)


async def test_unknown_hashes_and_future_blocks_are_null(
    chain: DevchainHandle,
) -> None:
    unknown = "0x" + "ab" * 32
    assert (await call(chain.url, "eth_getTransactionReceipt", unknown))["result"] is None
    assert (await call(chain.url, "eth_getTransactionByHash", unknown))["result"] is None
    assert (await call(chain.url, "eth_getBlockByHash", unknown, False))["result"] is None
    assert (await call(chain.url, "eth_getBlockByNumber", "0x99", False))["result"] is None


async def test_concurrent_requests_are_all_answered(w3: AsyncWeb3[Any]) -> None:
    balances = await asyncio.gather(*(w3.eth.get_balance(a) for a, _ in ACCOUNTS * 3))
    assert balances[1::10] == [INITIAL_BALANCE_WEI] * 3


# -- time and snapshots -----------------------------------------------------------------


async def test_increase_time_moves_block_timestamps(
    chain: DevchainHandle, w3: AsyncWeb3[Any]
) -> None:
    wall_clock = int(time.time())
    offset = await call(chain.url, "evm_increaseTime", 7200)
    assert offset["result"] == 7200
    assert (await call(chain.url, "evm_mine"))["result"] == "0x0"
    after = await w3.eth.get_block("latest")
    assert after["number"] == 2
    # Wall clock + offset (+1 at most: a block is always after its parent).
    assert wall_clock + 7200 <= after["timestamp"] <= int(time.time()) + 7200 + 1
    # Transactions are stamped the same way.
    tx = await w3.eth.send_transaction({"from": ACCOUNTS[1][0], "to": ACCOUNTS[2][0]})
    mined = await w3.eth.get_block((await w3.eth.wait_for_transaction_receipt(tx))["blockNumber"])
    assert mined["timestamp"] > after["timestamp"]
    bad = await call(chain.url, "evm_increaseTime", -5)
    assert bad["error"]["code"] == -32602


async def test_set_next_block_timestamp_and_snapshots(
    chain: DevchainHandle, w3: AsyncWeb3[Any]
) -> None:
    snapshot = (await call(chain.url, "evm_snapshot"))["result"]
    target = (await w3.eth.get_block("latest"))["timestamp"] + 1000
    assert (await call(chain.url, "evm_setNextBlockTimestamp", hex(target)))["result"] is None
    tx = await w3.eth.send_transaction(
        {"from": ACCOUNTS[1][0], "to": ACCOUNTS[2][0], "value": Wei(10**18)}
    )
    receipt = await w3.eth.wait_for_transaction_receipt(tx)
    assert (await w3.eth.get_block(receipt["blockNumber"]))["timestamp"] == target
    past = await call(chain.url, "evm_setNextBlockTimestamp", hex(target - 1))
    assert past["error"]["code"] == -32602
    assert (await call(chain.url, "evm_revert", snapshot))["result"] is True
    assert await w3.eth.block_number == 1
    assert await w3.eth.get_balance(ACCOUNTS[2][0]) == INITIAL_BALANCE_WEI
    assert (await call(chain.url, "evm_revert", "0x99"))["result"] is False


# -- filters ------------------------------------------------------------------------------


async def test_log_and_block_filters_report_new_entries_once(
    chain: DevchainHandle, w3: AsyncWeb3[Any]
) -> None:
    factory = w3.eth.contract(address=FACTORY_ADDRESS, abi=CHANNEL_FACTORY.abi)
    opened = await factory.events.ChannelOpened.create_filter(from_block="latest")
    blocks = await w3.eth.filter("latest")
    assert await opened.get_new_entries() == []
    expiration = (await w3.eth.get_block("latest"))["timestamp"] + 3600
    open_channel = factory.functions.openChannel(NATIVE, ACCOUNTS[2][0], 5, expiration)
    tx_hash = await open_channel.transact({"from": ACCOUNTS[1][0], "value": Wei(5)})
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash)
    (entry,) = await opened.get_new_entries()
    assert entry["args"]["balance"] == 5 and entry["transactionHash"] == tx_hash
    assert await opened.get_new_entries() == []
    new_blocks: list[Any] = list(await blocks.get_new_entries())
    assert new_blocks == [receipt["blockHash"]]
    assert len(await opened.get_all_entries()) == 1
    assert (await call(chain.url, "eth_uninstallFilter", opened.filter_id))["result"] is True
    gone = await call(chain.url, "eth_getFilterChanges", opened.filter_id)
    assert gone["error"]["code"] == -32000
