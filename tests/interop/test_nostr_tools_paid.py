"""Interop: a paying client written in JavaScript (npm nostr-tools + noble) against the stack.

``js/paid_publish.mjs`` signs claims and events with its own code and publishes
through nostr-tools' ``Relay``. Its claim signatures must equal ours byte for
byte (both sign deterministically, RFC 6979), and the relay, asking a real node
on a real dev chain, must accept, store and serve what it pays for and refuse
what it does not.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devchain.accounts import ACCOUNTS
from nostr_pay.chain import Chain
from nostr_pay.devstack import DevStack, StackConfig, unlimited_settings
from nostream.payments.rpc_client import DassieRpcClient
from payment_channel.claim import sign_claim
from tests.support import free_port

JS = Path(__file__).parent / "js"
PRICE = 10**12
SENDER, SENDER_KEY = ACCOUNTS[6]

pytestmark = pytest.mark.slow


def node_command() -> list[str]:
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "nostr-tools").is_dir():
        pytest.fail("node and tests/interop/js/node_modules are needed: run scripts/bootstrap")
    return [node, "--experimental-websocket", str(JS / "paid_publish.mjs")]


def run_js(tmp_path: Path, **request: str) -> dict[str, Any]:
    path = tmp_path / f"request-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(request))
    proc = subprocess.run(
        [*node_command(), str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    answer: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return answer


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    config = StackConfig(
        root=tmp_path_factory.mktemp("js-paid-stack"),
        chain_port=free_port(),
        node_port=free_port(),
        relay_port=free_port(),
        relay_settings=unlimited_settings(),
        relay_env={"PRICING_STORE_EVENT": str(PRICE)},
    )
    with DevStack(config) as devstack:
        yield devstack


def test_claim_signatures_match_ours_byte_for_byte(tmp_path: Path) -> None:
    for channel, amount, nonce in [(1, 1000, 1), (2**255 + 7, 2**200, 2**64), (0, 0, 0)]:
        channel_id = channel.to_bytes(32, "big")
        js = run_js(
            tmp_path,
            channelId="0x" + channel_id.hex(),
            claimAmount=str(amount),
            nonce=str(nonce),
            evmKey=SENDER_KEY,
            currency="ETH",
        )
        ours = sign_claim(bytes.fromhex(SENDER_KEY[2:]), channel_id, amount, nonce)
        assert js["signature"] == "0x" + ours.hex()


async def test_a_javascript_client_pays_publishes_and_is_refused_a_replay(
    stack: DevStack, tmp_path: Path
) -> None:
    chain = Chain(stack.config.chain_url, stack.factory)
    channel_id = chain.open_channel(
        bytes.fromhex(SENDER_KEY[2:]), stack.relay_address, 100 * PRICE, int(time.time()) + 86400
    )
    request = {
        "relay": stack.config.relay_url,
        "channelId": channel_id,
        "evmKey": SENDER_KEY,
        "currency": "ETH",
    }

    paid = run_js(tmp_path, **request, claimAmount=str(PRICE), nonce="1", content="paid in js")
    assert (paid["accepted"], paid["fetched"]) == (True, [paid["id"]]), paid

    replay = run_js(tmp_path, **request, claimAmount=str(PRICE), nonce="1", content="again")
    assert replay["accepted"] is False
    assert replay["message"].startswith("restricted: invalid payment nonce"), replay
    assert replay["fetched"] == []

    short = run_js(tmp_path, **request, claimAmount=str(PRICE + 1), nonce="2", content="cheap")
    assert short["message"].startswith("restricted: insufficient payment"), short
    assert short["fetched"] == []

    second = run_js(tmp_path, **request, claimAmount=str(2 * PRICE), nonce="3", content="two")
    assert (second["accepted"], second["fetched"]) == (True, [second["id"]]), second

    rpc = DassieRpcClient(stack.config.node_rpc_url, stack.rpc_token, timeout=30)
    await rpc.start()
    try:
        async with asyncio.timeout(10):
            await rpc.wait_connected()
        state = await rpc.call("payment.getChannelState", {"channelId": channel_id})
    finally:
        await rpc.close()
    assert state["channel"]["sender"] == SENDER
    assert (state["bestClaim"]["claimAmount"], state["bestClaim"]["nonce"]) == (str(2 * PRICE), "3")
