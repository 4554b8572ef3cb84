"""SIGKILL the node mid-stream of claims: nothing acknowledged is lost, nothing is half-written."""

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson

from dassie.testing import TOKEN, claim_params, open_channel
from devchain.testing import devchain_process

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_node(env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dassie.cli",
        "serve",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    async with aiohttp.ClientSession() as http:
        for _ in range(300):  # until it listens (readiness, not synchronisation of results)
            assert process.returncode is None, "dassie exited"
            try:
                async with http.get(f"http://127.0.0.1:{port}/health") as response:
                    if response.status == 200:
                        return process
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    raise AssertionError("dassie did not start")


async def test_sigkill_mid_stream_loses_nothing_acknowledged(tmp_path: Path) -> None:
    with devchain_process() as chain:
        _, sender_key = chain.accounts[1]
        relay_addr, relay_key = chain.accounts[3]
        expiration = int(time.time()) + 2 * 86400
        channels = [
            await open_channel(
                chain.url, chain.factory_address, sender_key, relay_addr, 10**18, expiration
            )
            for _ in range(3)
        ]
        port = free_port()
        ledger = tmp_path / "ledger.db"
        env = {
            **os.environ,
            "RPC_AUTH_TOKEN": TOKEN,
            "LEDGER_DB_PATH": str(ledger),
            "DASSIE_HOST": "127.0.0.1",
            "DASSIE_PORT": str(port),
            "SETTLEMENT_LOCAL_ENABLED": "true",
            "SETTLEMENT_LOCAL_RPC_URL": chain.url,
            "SETTLEMENT_LOCAL_FACTORY_ADDRESS": chain.factory_address,
            "SETTLEMENT_LOCAL_RELAY_PRIVATE_KEY": relay_key,
        }
        key = bytes.fromhex(sender_key.removeprefix("0x"))
        # Enough claims that the node, which decides and commits them in batches of
        # hundreds, is still working through them when it is killed.
        stream = ((c, n) for n in range(1, 1001) for c in channels)
        claims = dict(enumerate(stream, 1))
        process = await start_node(env, port)
        acknowledged: set[tuple[str, int]] = set()
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(f"http://127.0.0.1:{port}/trpc", headers=AUTH) as ws,
            ):
                for rid, (channel, n) in claims.items():
                    params = claim_params(channel, n * 1000, n, key=key)
                    frame = {
                        "jsonrpc": "2.0",
                        "id": rid,
                        "method": "payment.verifyPaymentClaim",
                        "params": params,
                    }
                    await ws.send_str(orjson.dumps(frame).decode())
                while True:
                    message = await ws.receive()
                    if message.type != aiohttp.WSMsgType.TEXT:
                        break
                    answer = orjson.loads(message.data)
                    assert answer["result"]["valid"] is True, answer
                    acknowledged.add(claims[answer["id"]])
                    if len(acknowledged) == 250:
                        process.send_signal(signal.SIGKILL)
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()
        assert len(acknowledged) >= 250

        process = await start_node(env, port)
        try:
            db = sqlite3.connect(ledger)
            recorded = {
                (c, int(n)): int(d)
                for c, n, d in db.execute("SELECT channel_id, nonce, delta FROM claims")
            }
            db.close()
            assert acknowledged <= set(recorded)
            assert len(recorded) < len(claims)  # the kill really cut the stream
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(f"http://127.0.0.1:{port}/rpc", headers=AUTH) as ws,
            ):
                await ws.send_str(
                    orjson.dumps(
                        {
                            "jsonrpc": "2.0",
                            "id": 1,
                            "method": "ledger.getBalance",
                            "params": {"account": "revenue/relay/LOCAL/ETH"},
                        }
                    ).decode()
                )
                revenue = orjson.loads((await ws.receive()).data)["result"]["balance"]
                assert int(revenue) == -sum(recorded.values())
                # the stream resumes where the durable state ends
                channel = channels[0]
                last = max(n for c, n in recorded if c == channel)
                params = claim_params(channel, (last + 1) * 1000, last + 1, key=key)
                await ws.send_str(
                    orjson.dumps(
                        {
                            "jsonrpc": "2.0",
                            "id": 2,
                            "method": "payment.verifyPaymentClaim",
                            "params": params,
                        }
                    ).decode()
                )
                answer = orjson.loads((await ws.receive()).data)
                assert answer["result"]["valid"] is True and answer["result"]["credited"] == "1000"
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), 20)
