"""Settlement end to end on the dev chain (in process)."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.logs import DISCARD

from dassie.app import build_app
from dassie.claims.channels import ChainUnavailable, ChannelState
from dassie.claims.service import VerificationUnavailable
from dassie.config import load_config
from dassie.node import Node
from dassie.settlement.evm import EvmChain
from dassie.testing import TOKEN, claim_params, open_channel
from devchain.testing import DevchainHandle, running_devchain

AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAY = 86400


class Client:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        frame = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        await self.ws.send_str(orjson.dumps(frame).decode())
        return orjson.loads((await self.ws.receive()).data)


@asynccontextmanager
async def evm_node(
    chain: DevchainHandle, tmp_path: Path, **env: str
) -> AsyncIterator[tuple[Node, Client, str]]:
    config = load_config(
        {
            "RPC_AUTH_TOKEN": TOKEN,
            "LEDGER_DB_PATH": str(tmp_path / "ledger.db"),
            "SETTLEMENT_LOCAL_ENABLED": "true",
            "SETTLEMENT_LOCAL_RPC_URL": chain.url,
            "SETTLEMENT_LOCAL_FACTORY_ADDRESS": chain.factory_address,
            "SETTLEMENT_LOCAL_RELAY_PRIVATE_KEY": chain.accounts[2][1],
            "SETTLEMENT_POLL_INTERVAL": "1",
            **env,
        }
    )
    node = Node(config)
    runner = web.AppRunner(build_app(node))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url + "/trpc", headers=AUTH) as ws,
        ):
            yield node, Client(ws), url
    finally:
        await runner.cleanup()


def sender_key(chain: DevchainHandle) -> bytes:
    return bytes.fromhex(chain.accounts[1][1].removeprefix("0x"))


async def open_to_relay(chain: DevchainHandle, deposit: int, expiration: int) -> str:
    return await open_channel(
        chain.url, chain.factory_address, chain.accounts[1][1], chain.accounts[2][0], deposit,
        expiration,
    )  # fmt: skip


async def test_settle_channel_pays_the_relay(tmp_path: Path) -> None:
    async with running_devchain() as chain:
        relay_addr = chain.accounts[2][0]
        channel_id = await open_to_relay(chain, 10**18, int(time.time()) + 2 * DAY)
        w3 = AsyncWeb3(AsyncHTTPProvider(chain.url))
        key = sender_key(chain)
        async with evm_node(chain, tmp_path) as (node, rpc, url):
            amounts = [10**15, 3 * 10**15, 7 * 10**15]
            for nonce, amount in enumerate(amounts, 1):
                params = claim_params(channel_id, amount, nonce, key=key)
                answer = await rpc.call("payment.verifyPaymentClaim", params)
                assert answer["result"]["valid"] is True, answer
            state = await rpc.call("payment.getChannelState", {"channelId": channel_id})
            assert state["result"]["channel"]["sender"] == chain.accounts[1][0]
            assert state["result"]["channel"]["status"] == "open"

            before = await w3.eth.get_balance(relay_addr)
            settled = await rpc.call("settlement.settleChannel", {"channelId": channel_id})
            tx_hash = settled["result"]["txHash"]
            assert node.settlement is not None
            record = await node.settlement.wait_booked(tx_hash)
            assert record.status == "mined"
            receipt = await w3.eth.get_transaction_receipt(tx_hash)
            gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
            after = await w3.eth.get_balance(relay_addr)
            assert after - before == amounts[-1] - gas
            assert record.gas_cost == gas

            balances = {a.path: a.balance for a in node.store.accounts()}
            assert balances[f"assets/channel/LOCAL/{channel_id}"] == 0
            assert balances["assets/onchain/LOCAL/ETH"] == amounts[-1] - gas
            assert balances["expenses/gas/LOCAL"] == gas
            assert balances["revenue/relay/LOCAL/ETH"] == -amounts[-1]
            node.store.ledger.check_invariant()

            late = claim_params(channel_id, 8 * 10**15, 4, key=key)
            answer = await rpc.call("payment.verifyPaymentClaim", late)
            assert answer["result"] == {"valid": False, "reason": "channel-closed"}
            again = await rpc.call("settlement.settleChannel", {"channelId": channel_id})
            assert again["error"]["code"] == -32602  # already closed
            async with aiohttp.ClientSession() as http, http.get(url + "/health") as response:
                body = await response.json()
                assert body["checks"]["chains"]["LOCAL"]["status"] == "ok"
        await w3.provider.disconnect()


async def test_threshold_triggers_settlement(tmp_path: Path) -> None:
    async with running_devchain() as chain:
        channel_id = await open_to_relay(chain, 10**18, int(time.time()) + 2 * DAY)
        key = sender_key(chain)
        async with evm_node(chain, tmp_path, SETTLEMENT_LOCAL_SETTLE_THRESHOLD="5000") as (
            node,
            rpc,
            _,
        ):
            first = await rpc.call(
                "payment.verifyPaymentClaim", claim_params(channel_id, 4000, 1, key=key)
            )
            assert first["result"]["valid"]
            assert node.store.settlements == {}  # below the threshold
            second = await rpc.call(
                "payment.verifyPaymentClaim", claim_params(channel_id, 6000, 2, key=key)
            )
            assert second["result"]["valid"]
            assert node.settlement is not None
            record = await asyncio.wait_for(node.settlement.wait_channel_settled(channel_id), 30)
            assert (record.status, record.claim_amount, record.nonce) == ("mined", 6000, 2)
            assert node.store.balance(f"assets/channel/LOCAL/{channel_id}").balance == 0


async def test_expiring_channel_is_settled_and_refused(tmp_path: Path) -> None:
    async with running_devchain() as chain:
        channel_id = await open_to_relay(chain, 10**18, int(time.time()) + 3600 + 300)
        key = sender_key(chain)
        async with evm_node(chain, tmp_path) as (node, rpc, _):
            answer = await rpc.call(
                "payment.verifyPaymentClaim", claim_params(channel_id, 500, 1, key=key)
            )
            assert answer["result"]["valid"]
            # Ten minutes later the channel is inside the expiry margin.
            later = time.time() + 600
            node.claims.clock = lambda: later
            assert node.settlement is not None
            node.settlement.clock = lambda: later
            refused = await rpc.call(
                "payment.verifyPaymentClaim", claim_params(channel_id, 900, 2, key=key)
            )
            assert refused["result"] == {"valid": False, "reason": "channel-expired"}
            record = await asyncio.wait_for(node.settlement.wait_channel_settled(channel_id), 30)
            assert (record.status, record.claim_amount) == ("mined", 500)


async def test_channels_are_learnt_from_logs(tmp_path: Path) -> None:
    async with running_devchain() as chain, evm_node(chain, tmp_path) as (node, _, _):
        channel_id = await open_to_relay(chain, 10**17, int(time.time()) + 2 * DAY)
        other = await open_channel(
            chain.url, chain.factory_address, chain.accounts[1][1], chain.accounts[4][0], 10**17,
            int(time.time()) + 2 * DAY,
        )  # fmt: skip
        learnt = await asyncio.wait_for(node.claims.wait_known(channel_id), 30)
        assert (learnt.deposit, learnt.sender, learnt.currency) == (
            10**17,
            chain.accounts[1][0],
            "ETH",
        )
        assert other not in node.claims.channels  # pays someone else


async def test_a_channel_opened_while_running_is_learnt_from_its_log_alone(
    tmp_path: Path,
) -> None:
    """After the first poll, a new ChannelOpened log is the channel's state: no getChannel."""
    async with running_devchain() as chain:
        before = await open_to_relay(chain, 10**17, int(time.time()) + 2 * DAY)
        async with evm_node(chain, tmp_path) as (node, rpc, _):
            source = node.sources[0]
            assert isinstance(source, EvmChain)
            # Learnt by the first poll (from the chain), which sets its log cursor next.
            await asyncio.wait_for(node.claims.wait_known(before), 30)
            asked: list[str] = []
            get_channel = source.get_channel

            async def counting(channel_id: str) -> ChannelState | None:
                asked.append(channel_id)
                return await get_channel(channel_id)

            source.get_channel = counting  # type: ignore[method-assign]
            expiration = int(time.time()) + 2 * DAY
            channel_id = await open_to_relay(chain, 10**17, expiration)
            learnt = await asyncio.wait_for(node.claims.wait_known(channel_id), 30)
            assert (learnt.deposit, learnt.sender, learnt.expiration, learnt.closed) == (
                10**17,
                chain.accounts[1][0],
                expiration,
                False,
            )
            params = claim_params(channel_id, 10**15, 1, key=sender_key(chain))
            answer = await rpc.call("payment.verifyPaymentClaim", params)
            assert answer["result"]["valid"] is True, answer
            assert asked == []


async def test_unreachable_chain_degrades_health(tmp_path: Path) -> None:
    config = load_config(
        {
            "RPC_AUTH_TOKEN": TOKEN,
            "LEDGER_DB_PATH": str(tmp_path / "ledger.db"),
            "SETTLEMENT_LOCAL_ENABLED": "true",
            "SETTLEMENT_LOCAL_RPC_URL": "http://127.0.0.1:9",
            "SETTLEMENT_LOCAL_RELAY_PRIVATE_KEY": "0x" + "11" * 32,
        }
    )
    node = Node(config)
    await node.start()
    try:
        try:
            await node.sources[0].get_channel("0x" + "ab" * 32)
        except ChainUnavailable:
            pass
        code, body = await node.health()
        assert (code, body["status"]) == (200, "degraded")
        assert body["checks"]["chains"]["LOCAL"]["status"] == "unreachable"
        assert body["checks"]["chains"]["LOCAL"]["lastError"]
        try:
            await node.claims.verify_params("0x" + "cd" * 32, "1", "1", "0x" + "11" * 65, "ETH", 1)
        except VerificationUnavailable:
            pass
        else:
            raise AssertionError("expected VerificationUnavailable")
        assert node.store.ledger.accounts == {}
    finally:
        await node.stop()


async def test_expiring_channel_is_settled_after_a_restart(tmp_path: Path) -> None:
    async with running_devchain() as chain:
        margin = 60
        channel_id = await open_to_relay(chain, 10**18, int(time.time()) + margin + 3)
        key = sender_key(chain)
        env = {"SETTLEMENT_EXPIRY_MARGIN": str(margin)}
        async with evm_node(chain, tmp_path, **env) as (_, rpc, _):
            params = claim_params(channel_id, 700, 1, key=key)
            assert (await rpc.call("payment.verifyPaymentClaim", params))["result"]["valid"]
        # The restarted node has no channel cached; it must still notice the expiry.
        async with evm_node(chain, tmp_path, **env) as (node, _, _):
            assert node.settlement is not None
            record = await asyncio.wait_for(node.settlement.wait_channel_settled(channel_id), 30)
            assert (record.status, record.claim_amount) == ("mined", 700)


async def chain_rpc(w3: AsyncWeb3, method: str, *params: Any) -> Any:
    return (await w3.provider.make_request(method, list(params)))["result"]  # type: ignore[arg-type]


async def pooled_hashes(w3: AsyncWeb3) -> set[str]:
    pending = await chain_rpc(w3, "txpool_content")
    return {tx["hash"] for by_nonce in pending["pending"].values() for tx in by_nonce.values()}


async def wait_for_pool(w3: AsyncWeb3, predicate: Any) -> set[str]:
    """Poll the dev chain's mempool until ``predicate(hashes)`` holds (or fail after 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        hashes = await pooled_hashes(w3)
        if predicate(hashes):
            return hashes
        assert time.monotonic() < deadline, f"mempool never matched: {hashes}"
        await asyncio.sleep(0.1)


async def test_a_stuck_close_is_replaced_with_a_higher_fee(tmp_path: Path) -> None:
    async with running_devchain() as chain:
        relay_addr = chain.accounts[2][0]
        channel_id = await open_to_relay(chain, 10**18, int(time.time()) + 2 * DAY)
        w3 = AsyncWeb3(AsyncHTTPProvider(chain.url))
        key = sender_key(chain)
        async with evm_node(chain, tmp_path, SETTLEMENT_LOCAL_TX_TIMEOUT="1") as (node, rpc, _):
            params = claim_params(channel_id, 4 * 10**15, 1, key=key)
            assert (await rpc.call("payment.verifyPaymentClaim", params))["result"]["valid"]
            await chain_rpc(w3, "evm_setAutomine", False)  # nothing is mined until evm_mine
            before = await w3.eth.get_balance(relay_addr)
            settled = await rpc.call("settlement.settleChannel", {"channelId": channel_id})
            first = settled["result"]["txHash"]
            assert await pooled_hashes(w3) == {first}
            # After TX_TIMEOUT the node replaces it: same nonce, at least 12.5% more.
            pool = await wait_for_pool(w3, lambda hashes: hashes and first not in hashes)
            (second,) = pool
            assert await chain_rpc(w3, "eth_getTransactionByHash", first) is None  # replaced
            new_tx = await w3.eth.get_transaction(second)  # type: ignore[arg-type]
            assert new_tx["nonce"] == 0
            assert new_tx["maxPriorityFeePerGas"] * 8 >= 9 * 10**9  # the devchain's tip x 1.125
            assert node.store.settlements[first].status == "pending"  # still a candidate

            await chain_rpc(w3, "evm_mine")
            assert node.settlement is not None
            record = await asyncio.wait_for(node.settlement.wait_booked(first), 30)
            assert (record.tx_hash, record.status) == (second, "mined")
            assert node.store.settlements[first].status == "replaced"
            receipt = await w3.eth.get_transaction_receipt(second)  # type: ignore[arg-type]
            gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
            assert await w3.eth.get_balance(relay_addr) - before == 4 * 10**15 - gas
            assert node.store.balance("expenses/gas/LOCAL").balance == gas
            node.store.ledger.check_invariant()
        await chain_rpc(w3, "evm_setAutomine", True)
        await w3.provider.disconnect()


async def test_a_dropped_close_is_sent_again(tmp_path: Path) -> None:
    async with running_devchain() as chain:
        channel_id = await open_to_relay(chain, 10**18, int(time.time()) + 2 * DAY)
        w3 = AsyncWeb3(AsyncHTTPProvider(chain.url))
        key = sender_key(chain)
        env = {"SETTLEMENT_LOCAL_TX_TIMEOUT": "1"}
        async with evm_node(chain, tmp_path, **env) as (node, rpc, _):
            params = claim_params(channel_id, 5 * 10**15, 1, key=key)
            assert (await rpc.call("payment.verifyPaymentClaim", params))["result"]["valid"]
            await chain_rpc(w3, "evm_setAutomine", False)
            settled = await rpc.call("settlement.settleChannel", {"channelId": channel_id})
            first = settled["result"]["txHash"]
        # The node stops; meanwhile the chain forgets the transaction.
        await chain_rpc(w3, "anvil_dropTransaction", first)
        assert await pooled_hashes(w3) == set()
        async with evm_node(chain, tmp_path, **env) as (node, rpc, _):
            again = await rpc.call("settlement.settleChannel", {"channelId": channel_id})
            assert again["result"]["txHash"] == first  # still the pending close
            (second,) = await wait_for_pool(w3, bool)
            assert second != first
            await chain_rpc(w3, "evm_mine")
            assert node.settlement is not None
            record = await asyncio.wait_for(node.settlement.wait_channel_settled(channel_id), 30)
            assert (record.tx_hash, record.status, record.claim_amount) == (
                second,
                "mined",
                5 * 10**15,
            )
            assert node.store.settlements[first].status == "replaced"
            assert node.store.balance(f"assets/channel/LOCAL/{channel_id}").balance == 0
            late = claim_params(channel_id, 6 * 10**15, 2, key=key)
            answer = await rpc.call("payment.verifyPaymentClaim", late)
            assert answer["result"] == {"valid": False, "reason": "channel-closed"}
        await chain_rpc(w3, "evm_setAutomine", True)
        await w3.provider.disconnect()


async def test_a_close_the_chain_refuses_leaves_the_chain_healthy(tmp_path: Path) -> None:
    """The sender expired the channel while the node still had it cached as open: the
    close reverts. That is a refusal, not an outage: the chain stays ok in /health."""
    from payment_channel.artifacts import load_artifact

    async with running_devchain() as chain:
        expiration = int(time.time()) + 2 * DAY
        channel_id = await open_to_relay(chain, 10**18, expiration)
        w3 = AsyncWeb3(AsyncHTTPProvider(chain.url))
        key = sender_key(chain)
        async with evm_node(chain, tmp_path) as (node, rpc, url):
            params = claim_params(channel_id, 10**15, 1, key=key)
            assert (await rpc.call("payment.verifyPaymentClaim", params))["result"]["valid"]
            # Behind the node's back: three days pass on chain and the sender expires it.
            await chain_rpc(w3, "evm_increaseTime", 3 * DAY)
            factory = w3.eth.contract(
                address=chain.factory_address, abi=load_artifact("ChannelFactory").abi
            )
            sender = chain.accounts[1][0]
            tx = await factory.functions.expireChannel(bytes.fromhex(channel_id[2:])).transact(
                {"from": sender}
            )
            assert (await w3.eth.wait_for_transaction_receipt(tx))["status"] == 1

            refused = await rpc.call("settlement.settleChannel", {"channelId": channel_id})
            assert refused["error"]["code"] == -32000
            message = refused["error"]["message"]
            assert message.endswith("LOCAL refused the transaction: ChannelIsClosed()"), message
            async with aiohttp.ClientSession() as http, http.get(url + "/health") as response:
                body = await response.json()
            assert body["status"] == "healthy"
            assert body["checks"]["chains"]["LOCAL"]["status"] == "ok"
            # The node looked the channel up again: no more claims on it.
            later = claim_params(channel_id, 2 * 10**15, 2, key=key)
            answer = await rpc.call("payment.verifyPaymentClaim", later)
            assert answer["result"] == {"valid": False, "reason": "channel-closed"}
            assert node.store.settlements == {}
        await w3.provider.disconnect()


async def send_tx(w3: AsyncWeb3[Any], key: str, call: Any) -> Any:
    """Sign and send a contract call from ``key``; returns the mined receipt."""
    from eth_account import Account

    sender = Account.from_key(key)
    tx = await call.build_transaction(
        {
            "from": sender.address,
            "nonce": await w3.eth.get_transaction_count(sender.address, "pending"),
            "chainId": await w3.eth.chain_id,
        }
    )
    signed = sender.sign_transaction(tx)
    tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=0.05)
    assert receipt["status"] == 1
    return receipt


async def open_token_channel(
    w3: AsyncWeb3[Any], chain: DevchainHandle, deposit: int, expiration: int
) -> tuple[str, Any]:
    """Deploy the test ERC-20 (symbol ``TEST``), fund the sender and open a channel in it
    to the relay; returns the channel id and the token contract."""
    from payment_channel.artifacts import load_artifact

    artifact = load_artifact("TestToken")
    deployer = chain.accounts[0][1]
    receipt = await send_tx(
        w3, deployer, w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode).constructor()
    )
    token = w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)
    sender_addr, sender = chain.accounts[1]
    factory = w3.eth.contract(
        address=AsyncWeb3.to_checksum_address(chain.factory_address),
        abi=load_artifact("ChannelFactory").abi,
    )
    await send_tx(w3, deployer, token.functions.mint(sender_addr, deposit))
    await send_tx(w3, sender, token.functions.approve(factory.address, deposit))
    receipt = await send_tx(
        w3,
        sender,
        factory.functions.openChannel(token.address, chain.accounts[2][0], deposit, expiration),
    )
    (event,) = factory.events.ChannelOpened().process_receipt(receipt, errors=DISCARD)
    return "0x" + bytes(event["args"]["channelId"]).hex(), token


async def test_a_token_channel_pays_out_in_the_token_and_gas_in_eth(tmp_path: Path) -> None:
    async with running_devchain() as chain:
        w3 = AsyncWeb3(AsyncHTTPProvider(chain.url))
        channel_id, token = await open_token_channel(w3, chain, 10**18, int(time.time()) + DAY * 2)
        relay_addr = chain.accounts[2][0]
        key = sender_key(chain)
        assets = f"ETH,TEST={token.address}"
        async with evm_node(chain, tmp_path, SETTLEMENT_LOCAL_ASSETS=assets) as (node, rpc, _):
            for nonce, amount in enumerate([4 * 10**15, 9 * 10**15], 1):
                params = claim_params(channel_id, amount, nonce, key=key, currency="TEST")
                answer = await rpc.call("payment.verifyPaymentClaim", params)
                assert answer["result"]["valid"] is True, answer
            settled = await rpc.call("settlement.settleChannel", {"channelId": channel_id})
            assert node.settlement is not None
            record = await node.settlement.wait_booked(settled["result"]["txHash"])
            assert record.status == "mined" and record.gas_cost
            gas = record.gas_cost
            assert await token.functions.balanceOf(relay_addr).call() == 9 * 10**15

            accounts = {a.path: (a.asset, a.balance) for a in node.store.accounts()}
            assert accounts == {
                f"assets/channel/LOCAL/{channel_id}": ("LOCAL/TEST", 0),
                "revenue/relay/LOCAL/TEST": ("LOCAL/TEST", -9 * 10**15),
                "assets/onchain/LOCAL/TEST": ("LOCAL/TEST", 9 * 10**15),  # the payout
                "assets/onchain/LOCAL/ETH": ("LOCAL/ETH", -gas),  # gas, out of the coin
                "expenses/gas/LOCAL": ("LOCAL/ETH", gas),
            }
            node.store.ledger.check_invariant()
        await w3.provider.disconnect()


async def test_probe_checks_the_chain_id_first_and_after_a_failure() -> None:
    async with running_devchain() as chain:
        env = {
            "RPC_AUTH_TOKEN": TOKEN,
            "SETTLEMENT_LOCAL_ENABLED": "true",
            "SETTLEMENT_LOCAL_RPC_URL": chain.url,
            "SETTLEMENT_LOCAL_FACTORY_ADDRESS": chain.factory_address,
            "SETTLEMENT_LOCAL_RELAY_PRIVATE_KEY": chain.accounts[2][1],
        }
        wrong = EvmChain(load_config({**env, "SETTLEMENT_LOCAL_CHAIN_ID": "1"}).chains[0])
        try:
            await wrong.probe()
        except ChainUnavailable as exc:
            assert "expected 1" in str(exc)
        else:
            raise AssertionError("a probe of the wrong chain must fail")
        assert wrong.status == "unreachable"

        right = EvmChain(load_config(env).chains[0])
        asked: list[str] = []
        make_request = right.w3.provider.make_request

        async def counting(method: Any, params: Any) -> Any:
            asked.append(str(method))
            return await make_request(method, params)

        right.w3.provider.make_request = counting  # type: ignore[method-assign]
        await right.probe()
        await right.probe()
        assert asked.count("eth_chainId") == 1 and asked.count("eth_blockNumber") == 2
        right._failed(ConnectionError("went away"))  # as a failed call records it
        await right.probe()
        assert asked.count("eth_chainId") == 2 and right.status == "ok"
        for source in (wrong, right):
            await source.w3.provider.disconnect()
