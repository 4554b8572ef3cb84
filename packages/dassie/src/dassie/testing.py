"""Helpers for tests and benchmarks: fixed keys, channels, signed claims, a running node.

Not used by the node itself."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from dassie.app import build_app
from dassie.claims.channels import ChannelState, InMemoryChannelSource
from dassie.config import ZERO_ADDRESS, Config
from dassie.node import Node
from payment_channel.claim import address_of, sign_claim

TOKEN = "t" * 40
RELAY_KEY = bytes.fromhex("11" * 32)
SENDER_KEY = bytes.fromhex("22" * 32)
RELAY = address_of(RELAY_KEY)
SENDER = address_of(SENDER_KEY)


LEDGER_SCHEMA_V0 = """
CREATE TABLE accounts (
    path TEXT PRIMARY KEY,
    debits_posted TEXT NOT NULL, credits_posted TEXT NOT NULL,
    debits_pending TEXT NOT NULL, credits_pending TEXT NOT NULL,
    min_balance TEXT, max_balance TEXT
);
CREATE TABLE transfers (
    id INTEGER PRIMARY KEY,
    debit TEXT NOT NULL, credit TEXT NOT NULL, amount TEXT NOT NULL,
    state TEXT NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE claims (
    seq INTEGER PRIMARY KEY,
    channel_id TEXT NOT NULL, chain TEXT NOT NULL,
    claim_amount TEXT NOT NULL, nonce TEXT NOT NULL, signature TEXT NOT NULL,
    delta TEXT NOT NULL, transfer_id INTEGER, accepted_at REAL NOT NULL,
    event_id TEXT,
    UNIQUE (channel_id, nonce)
);
CREATE TABLE settlements (
    tx_hash TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL, chain TEXT NOT NULL,
    claim_amount TEXT NOT NULL, nonce TEXT NOT NULL,
    status TEXT NOT NULL, gas_cost TEXT, updated_at REAL NOT NULL
);
"""
"""The ledger's tables as the version before accounts had assets (``user_version`` 0)
and before claim heads created them: for tests that open an older ledger.
"""


def make_config(ledger: Path, **overrides: object) -> Config:
    values: dict[str, object] = dict(
        node_env="test",
        rpc_auth_token=TOKEN,
        ledger_db_path=ledger,
        host="127.0.0.1",
        port=0,
        expiry_margin=3600,
        ilp_address="test.dassie",
        chains=(),
    )
    values.update(overrides)
    return Config(**values)  # type: ignore[arg-type]


def make_channel(
    *,
    deposit: int = 10**6,
    expiration: int | None = None,
    closed: bool = False,
    recipient: str = RELAY,
    sender: str = SENDER,
    chain: str = "TEST",
) -> ChannelState:
    return ChannelState(
        chain=chain,
        channel_id="0x" + os.urandom(32).hex(),
        sender=sender,
        recipient=recipient,
        token=ZERO_ADDRESS,
        currency="ETH",
        deposit=deposit,
        highest_nonce=0,
        expiration=int(time.time()) + 86400 if expiration is None else expiration,
        closed=closed,
    )


def claim_params(
    channel_id: str,
    amount: int,
    nonce: int,
    *,
    key: bytes = SENDER_KEY,
    min_amount: int = 1,
    currency: str = "ETH",
) -> dict[str, str]:
    signature = sign_claim(key, bytes.fromhex(channel_id[2:]), amount, nonce)
    return {
        "channelId": channel_id,
        "claimAmount": str(amount),
        "nonce": str(nonce),
        "signature": "0x" + signature.hex(),
        "currency": currency,
        "minAmount": str(min_amount),
    }


@dataclass
class Running:
    node: Node
    url: str
    source: InMemoryChannelSource


@asynccontextmanager
async def running_node(ledger: Path) -> AsyncIterator[Running]:
    """A node with an in-memory chain ``TEST``, serving HTTP on an ephemeral port."""
    source = InMemoryChannelSource("TEST", RELAY)
    node = Node(make_config(ledger), sources=[source])
    runner = web.AppRunner(build_app(node))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Running(node, f"http://127.0.0.1:{port}", source)
    finally:
        await runner.cleanup()


async def open_channel(
    rpc_url: str,
    factory: str,
    sender_key: str,
    recipient: str,
    amount: int,
    expiration: int,
) -> str:
    """Open a native-coin channel on an EVM chain (the dev chain); returns its id."""
    from eth_account import Account
    from web3 import AsyncHTTPProvider, AsyncWeb3

    from payment_channel.artifacts import load_artifact

    w3 = AsyncWeb3(AsyncHTTPProvider(rpc_url))
    contract = w3.eth.contract(
        address=AsyncWeb3.to_checksum_address(factory), abi=load_artifact("ChannelFactory").abi
    )
    sender = Account.from_key(sender_key)
    try:
        tx = await contract.functions.openChannel(
            ZERO_ADDRESS, AsyncWeb3.to_checksum_address(recipient), amount, expiration
        ).build_transaction(
            {  # type: ignore[arg-type]
                "from": sender.address,
                "value": amount,
                "nonce": await w3.eth.get_transaction_count(sender.address, "pending"),
                "chainId": await w3.eth.chain_id,
            }
        )
        signed = sender.sign_transaction(tx)
        tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=0.05)
    finally:
        await w3.provider.disconnect()
    assert receipt["status"] == 1, "openChannel failed"
    (event,) = contract.events.ChannelOpened().process_receipt(receipt)
    return "0x" + bytes(event["args"]["channelId"]).hex()
