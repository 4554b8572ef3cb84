"""The Interledger prepaid path end to end.

Processes: a dev chain, node A (``dassie serve``, the relay's node, settling on
the chain) and the relay (``nostream serve``, SQLite, payments on), started by
:class:`~nostr_pay.devstack.DevStack`; node B (the payer's node) runs in this
process and dials node A over BTP. Node B pays node A's SPSP pointer for a Nostr
pubkey; that pubkey then publishes events without a payment tag, paid from its
prepaid balance on node A until the balance no longer covers the price.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dassie.ilp import service_of
from dassie.ilp.accounts import NODE, ilp_asset, peer_account, prepaid_account, revenue_account
from nostr_pay.devstack import DevStack, StackConfig, unlimited_settings
from nostr_pay.relay import RelayConnection
from nostr_protocol.event import Event
from nostr_protocol.keys import generate_secret_key, public_key_hex, sign_event
from tests.support import free_port
from tests.test_ilp_two_nodes import LINK_TOKEN, assert_consistent, balances, node, rpc
from tests.test_paid_flow import node_call, stored

PRICE = 10**12  # wei per event
LONG_PRICE = 3 * 10**12  # kind 30023
FUNDED = 2 * PRICE + LONG_PRICE + PRICE // 2  # three events, then half an event short
MAX_PACKET = 2 * PRICE  # node A's packets from B: the payment goes in several
RELAY_NODE_ADDRESS = "test.relaynode"

pytestmark = pytest.mark.slow

ILP_ASSET = ilp_asset("ETH")
REVENUE = revenue_account(ILP_ASSET)  # where spent prepaid balances go


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[DevStack]:
    payer = {"name": "payer", "token": LINK_TOKEN, "routes": ["test.payer"]}
    config = StackConfig(
        root=tmp_path / "stack",
        chain_port=free_port(),
        node_port=free_port(),
        relay_port=free_port(),
        relay_settings={**unlimited_settings(), "payments": {"default_price": {"ETH": PRICE}}},
        relay_env={"PRICING_KIND_OVERRIDES": f"30023:{LONG_PRICE}"},
        node_env={
            "DASSIE_ILP_ADDRESS": RELAY_NODE_ADDRESS,
            "ILP_ASSET_CODE": "ETH",  # what the relay spends prepaid balances in
            "ILP_ASSET_SCALE": "18",
            "ILP_PEERS": json.dumps([payer]),
        },
    )
    with DevStack(config) as devstack:
        yield devstack


async def ledger_of(stack: DevStack) -> dict[str, dict[str, Any]]:
    answer = await node_call(stack, "ledger.getAccounts", {})
    return {a["account"]: a for a in answer["accounts"]}


async def prepaid_balance(stack: DevStack, pubkey: str) -> int:
    answer = await node_call(stack, "payment.getPrepaidBalance", {"pubkey": pubkey})
    assert answer["currency"] == "ETH"
    return int(answer["balance"])


def unpaid_event(key: bytes, kind: int, content: str) -> Event:
    tags = [["d", content]] if kind == 30023 else []
    return sign_event(key, kind=kind, content=content, tags=tags)


async def test_interledger_payment_funds_publishing_until_spent(
    stack: DevStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    author = generate_secret_key()
    pubkey = public_key_hex(author)
    relay_node = {
        "name": "relaynode",
        "token": LINK_TOKEN,
        "routes": [RELAY_NODE_ADDRESS],
        "url": stack.config.node_http.replace("http", "ws") + "/btp",
        "maxPacketAmount": str(MAX_PACKET),
    }
    before = await ledger_of(stack)
    revenue_before = int(before.get(REVENUE, {}).get("balance", "0"))
    assert await prepaid_balance(stack, pubkey) == 0

    async with node(tmp_path, "payer", [relay_node], monkeypatch) as payer:
        async with asyncio.timeout(10):
            await service_of(payer.node).link_up["relaynode"].wait()
        pointer = f"{stack.config.node_http}/pay/{pubkey}"
        paid = await rpc(payer.url, "ilp.pay", {"paymentPointer": pointer, "amount": str(FUNDED)})
        assert paid["result"] == {
            "success": True,
            "amount": str(FUNDED),
            "delivered": str(FUNDED),
            "packets": 3,  # 2 + 2 + 0.5 prices: node A's maximum packet
        }
        assert balances(payer.node) == {NODE: FUNDED, peer_account("relaynode"): -FUNDED}
        assert_consistent(payer.node)
        assert await prepaid_balance(stack, pubkey) == FUNDED

        # No payment tag: each event is paid from the prepaid balance at its kind's price.
        spend = [(1, PRICE), (30023, LONG_PRICE), (1, PRICE)]
        accepted: list[Event] = []
        refused: list[Event] = []
        left = FUNDED
        async with (
            RelayConnection(stack.config.relay_url) as relay,
            RelayConnection(stack.config.relay_url) as other,
        ):
            for n, (kind, price) in enumerate(spend):
                event = unpaid_event(author, kind, f"prepaid {n}")
                ok = await relay.publish(event)
                assert ok.accepted, ok.message
                accepted.append(event)
                left -= price
                assert await prepaid_balance(stack, pubkey) == left
            assert left == PRICE // 2
            again = await other.publish(accepted[0])  # clients re-send: no second charge
            assert again.accepted and again.message.startswith("duplicate:"), again.message
            assert await prepaid_balance(stack, pubkey) == left
            short = unpaid_event(author, 1, "one too many")
            ok = await relay.publish(short)
            assert not ok.accepted
            assert ok.message.startswith("restricted: payment required"), ok.message
            refused.append(short)
            assert await prepaid_balance(stack, pubkey) == left  # a refusal spends nothing

            # A top-up, then five events at once on two connections: the balance covers
            # exactly three of them, whichever they are.
            top_up = 3 * PRICE
            paid = await rpc(
                payer.url, "ilp.pay", {"paymentPointer": pointer, "amount": str(top_up)}
            )
            assert paid["result"]["success"] is True, paid
            assert await prepaid_balance(stack, pubkey) == left + top_up
            burst = [unpaid_event(author, 1, f"burst {n}") for n in range(5)]
            oks = await asyncio.gather(
                *((relay if n % 2 else other).publish(e) for n, e in enumerate(burst))
            )
            assert sum(ok.accepted for ok in oks) == 3
            for event, ok in zip(burst, oks, strict=True):
                if ok.accepted:
                    accepted.append(event)
                else:
                    assert ok.message.startswith("restricted: payment required"), ok.message
                    refused.append(event)
            assert await prepaid_balance(stack, pubkey) == left  # the same half price

            ids = [e.id for e in accepted]
            assert sorted(await stored(relay, *ids, *(e.id for e in refused))) == sorted(ids)
            by_author = await relay.query({"authors": [pubkey]})
            assert sorted(e["id"] for e in by_author) == sorted(ids)
        funded = FUNDED + top_up
        assert balances(payer.node) == {NODE: funded, peer_account("relaynode"): -funded}
        assert_consistent(payer.node)

    after = await ledger_of(stack)
    for asset in {a["asset"] for a in after.values()}:  # each asset sums to zero
        assert sum(int(a["balance"]) for a in after.values() if a["asset"] == asset) == 0
    assert after[REVENUE]["asset"] == ILP_ASSET  # prepaid spend is revenue in the ILP asset
    assert all(int(a["pending"]) == 0 for a in after.values())
    spent = funded - left
    assert spent == 5 * PRICE + LONG_PRICE
    assert revenue_before - int(after[REVENUE]["balance"]) == spent  # credit-normal
    assert int(after[peer_account("payer")]["balance"]) == funded  # what node B owes
    assert int(after[prepaid_account(pubkey)]["balance"]) == -left
