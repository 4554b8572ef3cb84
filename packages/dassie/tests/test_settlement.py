"""Settlement end to end on the dev chain (in process)."""

import time
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web
from web3 import AsyncHTTPProvider, AsyncWeb3

from dassie.app import build_app
from dassie.config import load_config
from dassie.node import Node
from dassie.testing import TOKEN, claim_params, open_channel
from devchain.testing import running_devchain

AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_settle_channel_pays_the_relay(tmp_path: Path) -> None:
    async with running_devchain() as chain:
        sender_addr, sender_key = chain.accounts[1]
        relay_addr, relay_key = chain.accounts[2]
        deposit = 10**18
        channel_id = await open_channel(
            chain.url,
            chain.factory_address,
            sender_key,
            relay_addr,
            deposit,
            int(time.time()) + 2 * 86400,
        )
        config = load_config(
            {
                "RPC_AUTH_TOKEN": TOKEN,
                "LEDGER_DB_PATH": str(tmp_path / "ledger.db"),
                "SETTLEMENT_LOCAL_ENABLED": "true",
                "SETTLEMENT_LOCAL_RPC_URL": chain.url,
                "SETTLEMENT_LOCAL_FACTORY_ADDRESS": chain.factory_address,
                "SETTLEMENT_LOCAL_RELAY_PRIVATE_KEY": relay_key,
                "SETTLEMENT_POLL_INTERVAL": "1",
            }
        )
        node = Node(config)
        runner = web.AppRunner(build_app(node))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        w3 = AsyncWeb3(AsyncHTTPProvider(chain.url))
        key = bytes.fromhex(sender_key.removeprefix("0x"))
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(url + "/trpc", headers=AUTH) as ws,
            ):

                async def call(method: str, params: dict) -> dict:
                    await ws.send_str(
                        orjson.dumps(
                            {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
                        ).decode()
                    )
                    return orjson.loads((await ws.receive()).data)

                amounts = [10**15, 3 * 10**15, 7 * 10**15]
                for nonce, amount in enumerate(amounts, 1):
                    answer = await call(
                        "payment.verifyPaymentClaim",
                        claim_params(channel_id, amount, nonce, key=key),
                    )
                    assert answer["result"]["valid"] is True, answer
                state = await call("payment.getChannelState", {"channelId": channel_id})
                assert state["result"]["channel"]["sender"] == sender_addr
                assert state["result"]["channel"]["status"] == "open"

                before = await w3.eth.get_balance(relay_addr)
                settled = await call("settlement.settleChannel", {"channelId": channel_id})
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
                assert balances["assets/onchain/LOCAL"] == amounts[-1] - gas
                assert balances["expenses/gas/LOCAL"] == gas
                assert balances["revenue/relay"] == -amounts[-1]
                node.store.ledger.check_invariant()

                late = await call(
                    "payment.verifyPaymentClaim", claim_params(channel_id, 8 * 10**15, 4, key=key)
                )
                assert late["result"] == {"valid": False, "reason": "channel-closed"}
                async with http.get(url + "/health") as response:
                    body = await response.json()
                    assert body["checks"]["chains"]["LOCAL"]["status"] == "ok"
        finally:
            await runner.cleanup()


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
        chain = node.sources[0]
        from dassie.claims.channels import ChainUnavailable
        from dassie.claims.service import VerificationUnavailable

        try:
            await chain.get_channel("0x" + "ab" * 32)
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
    finally:
        await node.stop()
