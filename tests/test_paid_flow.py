"""Paid publishing end to end: real dev chain, real Dassie node, real relay (SQLite).

One stack (three processes on free ports) is shared by the whole module.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devchain.accounts import ACCOUNTS
from nostr_pay.chain import Chain
from nostr_pay.cli import main
from nostr_pay.devstack import DevStack, StackConfig, unlimited_settings
from nostr_pay.relay import RelayConnection, fetch_nip11
from nostr_protocol.event import Event
from nostr_protocol.keys import generate_secret_key, public_key_hex, sign_event
from nostream.payments.rpc_client import DassieRpcClient
from payment_channel.claim import Claim, sign_claim
from payment_channel.tag import PaymentClaim, parse_payment_tag
from tests.support import free_port

PRICE = 10**12  # wei per event
LONG_PRICE = 5 * 10**12  # kind 30023
DEPOSIT = 10**16
WEEK = 7 * 24 * 3600

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    config = StackConfig(
        root=tmp_path_factory.mktemp("paid-stack"),
        chain_port=free_port(),
        node_port=free_port(),
        relay_port=free_port(),
        relay_settings={
            **unlimited_settings(),
            # USDC is priced, so a USDC claim on an ETH channel goes to the node to refuse.
            "payments": {"default_price": {"ETH": PRICE, "USDC": 5}},
        },
        relay_env={
            "PRICING_STORE_EVENT": str(PRICE),
            "PRICING_KIND_OVERRIDES": f"30023:{LONG_PRICE}",
            "DASSIE_RPC_TIMEOUT_MS": "3000",
        },
    )
    with DevStack(config) as devstack:
        yield devstack


def evm_key(index: int) -> bytes:
    return bytes.fromhex(ACCOUNTS[index][1][2:])


def open_channel(
    stack: DevStack, account: int, deposit: int = DEPOSIT, expires_in: int = WEEK
) -> bytes:
    chain = Chain(stack.config.chain_url, stack.factory)
    expiration = int(time.time()) + expires_in
    channel_id = chain.open_channel(evm_key(account), stack.relay_address, deposit, expiration)
    return bytes.fromhex(channel_id[2:])


def paid_event(
    nostr_key: bytes,
    signer: bytes,
    channel: bytes,
    amount: int,
    nonce: int,
    *,
    currency: str = "ETH",
    kind: int = 1,
    content: str = "paid note",
) -> Event:
    claim = Claim(channel, amount, nonce, sign_claim(signer, channel, amount, nonce))
    tags: list[list[str]] = [PaymentClaim(claim, currency).to_tag()]
    if kind == 30023:
        tags.append(["d", content])
    return sign_event(nostr_key, kind=kind, content=content, tags=tags)


async def stored(relay: RelayConnection, *event_ids: str) -> list[str]:
    return [e["id"] for e in await relay.query({"ids": list(event_ids)})]


async def node_call(stack: DevStack, method: str, params: dict[str, Any]) -> Any:
    rpc = DassieRpcClient(stack.config.node_rpc_url, stack.rpc_token, timeout=30)
    await rpc.start()
    try:
        async with asyncio.timeout(10):
            await rpc.wait_connected()
        return await rpc.call(method, params)
    finally:
        await rpc.close()


def wait_for_health(stack: DevStack, status: str, limit: float = 40.0) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while True:
        code, body = stack.relay_health()
        if code == 200 and isinstance(body, dict) and body.get("status") == status:
            return body
        assert time.monotonic() < deadline, f"relay health stayed {body!r}, wanted {status}"
        time.sleep(0.1)


async def test_nip11_announces_prices(stack: DevStack) -> None:
    doc = await fetch_nip11(stack.config.relay_url)
    assert doc["limitation"]["payment_required"] is True
    assert {"kinds": [30023], "amount": LONG_PRICE, "unit": "ETH"} in doc["fees"]["publication"]
    assert {"amount": PRICE, "unit": "ETH"} in doc["fees"]["publication"]
    assert {"amount": 5, "unit": "USDC"} in doc["fees"]["publication"]
    # Where to pay: the node's chains, as the relay learnt them from node.getInfo.
    (local,) = [c for c in doc["payments"]["chains"] if c["chainId"] == 31337]
    assert local["recipient"] == stack.relay_address
    assert local["factory"].lower() == "0x5fbdb2315678afecb367f032d93f642f64180aa3"


async def test_a_paid_note_is_accepted_stored_and_delivered(stack: DevStack) -> None:
    channel = await asyncio.to_thread(open_channel, stack, 2)
    author = generate_secret_key()
    async with (
        RelayConnection(stack.config.relay_url) as publisher,
        RelayConnection(stack.config.relay_url) as subscriber,
    ):
        sub = await subscriber.subscribe({"authors": [public_key_hex(author)]})
        assert await subscriber.next_event(sub) is None  # EOSE: nothing stored yet
        first = paid_event(author, evm_key(2), channel, PRICE, 1, content="first")
        ok = await publisher.publish(first)
        assert ok.accepted, ok.message
        assert (await subscriber.next_event(sub) or {}).get("id") == first.id
        # Cumulative: the second event pays the difference, here a long-form kind's price.
        second = paid_event(
            author, evm_key(2), channel, PRICE + LONG_PRICE, 2, kind=30023, content="long"
        )
        ok = await publisher.publish(second)
        assert ok.accepted, ok.message
        assert (await subscriber.next_event(sub) or {}).get("id") == second.id
        assert sorted(await stored(publisher, first.id, second.id)) == sorted([first.id, second.id])
    state = await node_call(stack, "payment.getChannelState", {"channelId": "0x" + channel.hex()})
    assert state["bestClaim"]["claimAmount"] == str(PRICE + LONG_PRICE)
    assert state["bestClaim"]["nonce"] == "2"


async def test_each_rejection_gets_its_message_and_stores_nothing(stack: DevStack) -> None:
    channel = await asyncio.to_thread(open_channel, stack, 3)
    small = await asyncio.to_thread(open_channel, stack, 3, PRICE + PRICE // 2)
    expiring = await asyncio.to_thread(open_channel, stack, 3, DEPOSIT, 600)
    author = generate_secret_key()
    key = evm_key(3)
    async with RelayConnection(stack.config.relay_url) as relay:
        # The channel gets one good payment so that nonces and amounts have a floor.
        base = paid_event(author, key, channel, PRICE, 5, content="floor")
        assert (await relay.publish(base)).accepted
        cases: list[tuple[Event, str]] = [
            (sign_event(author, kind=1, content="no tag"), "restricted: payment required"),
            (
                sign_event(author, kind=1, content="bad", tags=[["payment", "ilp", "0x12"]]),
                "invalid: malformed payment claim",
            ),
            (
                sign_event(
                    author,
                    kind=1,
                    tags=[
                        ["payment", "ilp", "0x" + channel.hex(), "-1", "6", "0x" + "00" * 65, "ETH"]
                    ],
                ),
                "invalid: malformed payment claim",
            ),
            (
                paid_event(author, key, channel, PRICE + PRICE - 1, 6),
                "restricted: insufficient payment",
            ),
            (
                paid_event(author, key, channel, PRICE + LONG_PRICE - 1, 6, kind=30023),
                "restricted: insufficient payment",
            ),
            (
                paid_event(author, evm_key(4), channel, 2 * PRICE, 6),
                "restricted: invalid payment signature",
            ),
            (paid_event(author, key, channel, 2 * PRICE, 5), "restricted: invalid payment nonce"),
            (paid_event(author, key, channel, 2 * PRICE, 4), "restricted: invalid payment nonce"),
            (
                paid_event(author, key, os.urandom(32), PRICE, 1),
                "restricted: payment channel not found",
            ),
            (paid_event(author, key, expiring, PRICE, 1), "restricted: payment channel expired"),
            (
                paid_event(author, key, small, 2 * PRICE, 1),
                "restricted: insufficient channel balance",
            ),
            (
                paid_event(author, key, channel, 2 * PRICE, 6, currency="DAI"),
                "restricted: unsupported payment currency",
            ),
            (
                paid_event(author, key, channel, 2 * PRICE, 6, currency="USDC"),
                "restricted: unsupported payment currency",
            ),
        ]
        for event, prefix in cases:
            ok = await relay.publish(event)
            assert not ok.accepted, (prefix, event.tags)
            assert ok.message.startswith(prefix), (prefix, ok.message)
        assert await stored(relay, *(e.id for e, _ in cases)) == []
        # Nothing was recorded: the very next claim after the floor still works.
        nxt = paid_event(author, key, channel, 2 * PRICE, 6, content="after refusals")
        ok = await relay.publish(nxt)
        assert ok.accepted, ok.message
    state = await node_call(stack, "payment.getChannelState", {"channelId": "0x" + channel.hex()})
    assert state["bestClaim"]["claimAmount"] == str(2 * PRICE)


async def test_two_clients_racing_on_one_channel(stack: DevStack) -> None:
    channel = await asyncio.to_thread(open_channel, stack, 5)
    key = evm_key(5)
    author = generate_secret_key()
    async with (
        RelayConnection(stack.config.relay_url) as one,
        RelayConnection(stack.config.relay_url) as two,
    ):
        # The same claim on two events at once: exactly one is paid for.
        a = paid_event(author, key, channel, PRICE, 1, content="a")
        b = paid_event(author, key, channel, PRICE, 1, content="b")
        oks = await asyncio.gather(one.publish(a), two.publish(b))
        assert sorted(ok.accepted for ok in oks) == [False, True]
        loser = next(ok for ok in oks if not ok.accepted)
        assert loser.message.startswith(
            ("restricted: invalid payment nonce", "restricted: insufficient payment")
        )
        # Then 30 increasing claims split across both connections, all in flight together.
        events = [
            paid_event(author, key, channel, PRICE * n, n, content=f"race {n}")
            for n in range(2, 32)
        ]
        oks = await asyncio.gather(
            *((one if n % 2 else two).publish(e) for n, e in enumerate(events))
        )
        accepted = [e for e, ok in zip(events, oks, strict=True) if ok.accepted]
        refused = [(e, ok) for e, ok in zip(events, oks, strict=True) if not ok.accepted]
        assert accepted, "at least one of the racing claims is accepted"
        for _, ok in refused:
            assert ok.message.startswith(
                ("restricted: invalid payment nonce", "restricted: insufficient payment")
            ), ok.message
        stored_ids = set(await stored(one, *(e.id for e in events), a.id, b.id))
        assert len(stored_ids & {a.id, b.id}) == 1
        assert stored_ids - {a.id, b.id} == {e.id for e in accepted}
        assert not stored_ids & {e.id for e, _ in refused}
    state = await node_call(stack, "payment.getChannelState", {"channelId": "0x" + channel.hex()})
    best = max(accepted, key=lambda e: int(e.tags[0][4]))
    assert state["bestClaim"]["nonce"] == best.tags[0][4]
    assert state["bestClaim"]["claimAmount"] == best.tags[0][3]


async def test_a_retried_event_is_not_charged_twice(stack: DevStack) -> None:
    """The relay gave up waiting, but the node had credited the claim: the same event
    sent again is accepted on that same claim, and the channel pays one price."""
    channel = await asyncio.to_thread(open_channel, stack, 8)
    channel_id = "0x" + channel.hex()
    author = generate_secret_key()
    event = paid_event(author, evm_key(8), channel, PRICE, 1, content="retried")
    # What the relay asked the first time, whose answer it never saw.
    first = {**parse_payment_tag(event.tags[0]).to_rpc_params(), "minAmount": str(PRICE)}
    credited = await node_call(stack, "payment.verifyPaymentClaim", {**first, "eventId": event.id})
    assert credited["valid"] is True and credited["credited"] == str(PRICE)
    async with RelayConnection(stack.config.relay_url) as relay:
        ok = await relay.publish(event)  # the client's retry of the same event
        assert ok.accepted, ok.message
        assert await stored(relay, event.id) == [event.id]
        # Another event on that claim is still a reused nonce.
        other = paid_event(author, evm_key(8), channel, PRICE, 1, content="other")
        ok = await relay.publish(other)
        assert ok.message.startswith("restricted: invalid payment nonce"), ok.message
    balance = await node_call(
        stack, "ledger.getBalance", {"account": f"assets/channel/LOCAL/{channel_id}"}
    )
    assert int(balance["balance"]) == PRICE  # one price, not two


async def test_settlement_pays_the_relay_on_chain_and_closes_the_channel(stack: DevStack) -> None:
    channel = await asyncio.to_thread(open_channel, stack, 6)
    key = evm_key(6)
    author = generate_secret_key()
    async with RelayConnection(stack.config.relay_url) as relay:
        for n in range(1, 4):
            ok = await relay.publish(paid_event(author, key, channel, PRICE * n, n, content=str(n)))
            assert ok.accepted, ok.message
        chain = Chain(stack.config.chain_url, stack.factory)
        before = chain.balance(stack.relay_address)
        answer = await node_call(
            stack, "settlement.settleChannel", {"channelId": "0x" + channel.hex()}
        )
        receipt = chain.w3.eth.wait_for_transaction_receipt(answer["txHash"], timeout=30)
        assert receipt["status"] == 1
        gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
        after = chain.balance(stack.relay_address)
        assert after - before == 3 * PRICE - gas
        assert after - before + gas > 0
        on_chain = chain.get_channel("0x" + channel.hex())
        assert on_chain.is_closed
        # A claim on a settled channel is refused and not stored.
        late = paid_event(author, key, channel, PRICE * 4, 4, content="late")
        ok = await relay.publish(late)
        assert not ok.accepted and ok.message.startswith("restricted: payment channel closed")
        assert await stored(relay, late.id) == []


async def test_nostr_pay_command_opens_a_channel_and_counts_up(
    stack: DevStack, tmp_path: Path
) -> None:
    base = [
        sys.executable, "-m", "nostr_pay.cli", "--home", str(tmp_path), "--dev",
        "--relay", stack.config.relay_url, "--rpc-url", stack.config.chain_url,
        "--deposit", str(10 * PRICE),
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *base, "publish", "hello", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    outputs = [out.decode()]
    # The second run in-process (same code path, without paying web3's import again).
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = await asyncio.to_thread(main, [*base[3:], "publish", "again"])
    assert code == 0
    outputs.append(buffer.getvalue())
    assert "opened channel" in outputs[0] and "opened channel" not in outputs[1]
    assert "true" in outputs[1] and f"total {2 * PRICE}, nonce 2" in outputs[1]
    import json

    state = json.loads((tmp_path / "channels.json").read_text())
    [channel] = state["channels"].values()
    assert (channel["claim_amount"], channel["nonce"]) == (2 * PRICE, 2)
    # Once the relay settles (closes) that channel, the next run opens a fresh one.
    await node_call(stack, "settlement.settleChannel", {"channelId": channel["channel_id"]})
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = await asyncio.to_thread(main, [*base[3:], "publish", "third"])
    assert code == 0, buffer.getvalue()
    assert "opened channel" in buffer.getvalue() and "nonce 1," in buffer.getvalue()


async def test_node_down_degrades_and_refuses_then_recovers(stack: DevStack) -> None:
    channel = await asyncio.to_thread(open_channel, stack, 7)
    key = evm_key(7)
    author = generate_secret_key()
    stack.node.kill()
    try:
        health = await asyncio.to_thread(wait_for_health, stack, "degraded")
        assert health["checks"]["dassie_rpc"]["status"] == "disconnected"
        async with RelayConnection(stack.config.relay_url) as relay:
            refused = paid_event(author, key, channel, PRICE, 1, content="while down")
            ok = await relay.publish(refused)
            assert not ok.accepted
            assert ok.message.startswith("error: payment verification temporarily unavailable")
            assert await stored(relay, refused.id) == []
    finally:
        await asyncio.to_thread(stack.start_node)
    await asyncio.to_thread(wait_for_health, stack, "healthy")
    async with RelayConnection(stack.config.relay_url) as relay:
        again = paid_event(author, key, channel, PRICE, 1, content="after restart")
        ok = await relay.publish(again)
        assert ok.accepted, ok.message
        assert await stored(relay, again.id) == [again.id]
    log = stack.relay.log.read_text()
    assert log.count("Connected to Dassie RPC") >= 2
