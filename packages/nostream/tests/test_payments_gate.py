"""The paid gate and its RPC client against a fake Dassie node on a real local WebSocket."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import WSMsgType, web

from nostr_protocol.keys import sign_event
from nostream.payments import FreePublishing, NodePaidPublishing, PaymentConfigError, build_gate
from nostream.payments.jsonrpc import MAX_BATCH, Backoff
from nostream.payments.paid import REASON_MESSAGES, UNAVAILABLE
from nostream.payments.pricing import load_pricing
from nostream.payments.rpc_client import DassieRpcClient, RpcUnavailable
from payment_channel.claim import Claim, sign_claim
from payment_channel.tag import PaymentClaim

TOKEN = "t" * 40
NOSTR_KEY = bytes.fromhex("11" * 32)
EVM_KEY = bytes.fromhex("22" * 32)
CHANNEL = bytes.fromhex("ab" * 32)
INFO = {
    "ilpAddress": "g.dassie.test",
    "version": "0.1.0",
    "chains": [
        {
            "name": "local",
            "chainId": 31337,
            "factory": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            "relayAddress": "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
            "assets": ["ETH"],
        }
    ],
}
ILP_INFO = {"address": "test.dassie", "assetCode": "ETH", "assetScale": 18}

Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]


class FakeNode:
    """A JSON-RPC 2.0 WebSocket server at /trpc checking the bearer token."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.handler: Handler = self.default
        self.ilp_info: dict[str, Any] = ILP_INFO
        self.port = 0
        self.runner: web.AppRunner | None = None
        self.sockets: set[web.WebSocketResponse] = set()
        self.frames: list[int] = []
        """verifyPaymentClaim requests per frame that had any (n for a batch of n)."""

    async def default(self, method: str, params: dict[str, Any]) -> Any:
        if method == "node.getInfo":
            return INFO
        return {"valid": True, "credited": params["minAmount"], "channel": params["channelId"]}

    async def ws(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            raise web.HTTPUnauthorized()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.add(ws)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                asyncio.get_running_loop().create_task(self.serve(ws, orjson.loads(msg.data)))
        self.sockets.discard(ws)
        return ws

    async def serve(self, ws: web.WebSocketResponse, message: Any) -> None:
        """Answer a request, or a batch with one array once all its answers are ready."""
        batch = isinstance(message, list)
        items = message if batch else [message]
        if verify := sum(r["method"] == "payment.verifyPaymentClaim" for r in items):
            self.frames.append(verify)
        replies = await asyncio.gather(*(self.answer(r) for r in items))
        if not ws.closed:
            await ws.send_bytes(orjson.dumps(replies if batch else replies[0]))

    async def answer(self, req: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((req["method"], req["params"]))
        if req["method"] == "ilp.getInfo":  # asked on every connect, beside node.getInfo
            return {"jsonrpc": "2.0", "id": req["id"], "result": self.ilp_info}
        try:
            result = await self.handler(req["method"], req["params"])
            return {"jsonrpc": "2.0", "id": req["id"], "result": result}
        except LookupError as exc:
            return {
                "jsonrpc": "2.0",
                "id": req["id"],
                "error": {"code": -32602, "message": str(exc)},
            }

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/trpc", self.ws)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        assert self.runner is not None
        await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/trpc"

    def verify_calls(self) -> list[dict[str, Any]]:
        return [p for m, p in self.calls if m == "payment.verifyPaymentClaim"]


@pytest.fixture
async def node() -> AsyncIterator[FakeNode]:
    fake = FakeNode()
    await fake.start()
    yield fake
    await fake.stop()


class Counters:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    async def bump_counter(self, name: str, key: str, limit: int) -> bool:
        if self.counts.get((name, key), 0) >= limit:
            return False
        self.counts[(name, key)] = self.counts.get((name, key), 0) + 1
        return True


async def make_gate(
    node: FakeNode, env: dict[str, str] | None = None, settings: Any = None
) -> NodePaidPublishing:
    gate = build_gate(
        settings,
        Counters(),
        {
            "DASSIE_RPC_URL": node.url,
            "DASSIE_RPC_TOKEN": TOKEN,
            "PRICING_STORE_EVENT": "1000",
            "PRICING_KIND_OVERRIDES": "30023:5000",
            **(env or {}),
        },
    )
    assert isinstance(gate, NodePaidPublishing)
    await gate.start()
    assert isinstance(gate.rpc, DassieRpcClient)
    async with asyncio.timeout(5):
        await gate.rpc.wait_connected()
    return gate


def paid_tag(amount: int, nonce: int, currency: str = "ETH") -> list[str]:
    sig = sign_claim(EVM_KEY, CHANNEL, amount, nonce)
    return PaymentClaim(Claim(CHANNEL, amount, nonce, sig), currency).to_tag()


async def test_a_paid_event_is_verified_with_the_kind_price(node: FakeNode) -> None:
    gate = await make_gate(node)
    try:
        event = sign_event(
            NOSTR_KEY, kind=30023, content="long", tags=[["d", "x"], paid_tag(5000, 1)]
        )
        charge = await gate.charge(event)
        assert charge.accepted, charge.message
        [params] = node.verify_calls()
        assert params == {
            "channelId": "0x" + CHANNEL.hex(),
            "claimAmount": "5000",
            "nonce": "1",
            "signature": "0x" + sign_claim(EVM_KEY, CHANNEL, 5000, 1).hex(),
            "currency": "ETH",
            "minAmount": "5000",
            "eventId": event.id,  # so that a retry of this event is not charged again
        }
        assert charge.details["credited"] == "5000"
        assert gate.health() == ("ok", {"url": node.url})
        if gate.node_info is None:  # fetched by the on-connect hook
            await gate.refresh_node_info()
        payments = gate.nip11_payments()
        assert (
            payments is not None
            and payments["chains"][0]["recipient"] == INFO["chains"][0]["relayAddress"]
        )  # type: ignore[index]
        assert payments["chains"][0]["chainId"] == 31337
        assert gate.nip11_fees() == {
            "publication": [
                {"kinds": [30023], "amount": 5000, "unit": "ETH"},
                {"amount": 1000, "unit": "ETH"},
            ]
        }
    finally:
        await gate.close()


async def test_refusals_decided_by_the_relay_do_not_call_the_node(node: FakeNode) -> None:
    gate = await make_gate(node)
    try:
        cases = [
            ([], "restricted: payment required"),
            (
                [["payment", "ilp", "0x12", "1", "1", "0x00", "ETH"]],
                "invalid: malformed payment claim",
            ),
            ([["payment", "ilp", "0x" + "ab" * 32, "1"]], "invalid: malformed payment claim"),
            ([[*paid_tag(1000, 1)[:6], "E TH"]], "invalid: malformed payment claim"),
            ([paid_tag(1000, 1, "USDC")], "restricted: unsupported payment currency"),
        ]
        for tags, prefix in cases:
            charge = await gate.charge(sign_event(NOSTR_KEY, kind=1, tags=tags))
            assert not charge.accepted
            assert charge.message.startswith(prefix), (tags, charge.message)
        assert node.verify_calls() == []
    finally:
        await gate.close()


@pytest.mark.parametrize("reason", sorted(REASON_MESSAGES))
async def test_each_node_reason_maps_to_the_contract_message(node: FakeNode, reason: str) -> None:
    async def refuse(method: str, params: dict[str, Any]) -> Any:
        return INFO if method == "node.getInfo" else {"valid": False, "reason": reason}

    node.handler = refuse
    gate = await make_gate(node)
    try:
        charge = await gate.charge(sign_event(NOSTR_KEY, kind=1, tags=[paid_tag(1000, 1)]))
        assert not charge.accepted
        assert charge.message.startswith(REASON_MESSAGES[reason])
        assert charge.details["reason"] == reason
    finally:
        await gate.close()


async def test_node_invalid_params_is_malformed_and_unknown_reason_is_refused(
    node: FakeNode,
) -> None:
    answers: list[Any] = [
        LookupError("claimAmount is not a uint256"),
        {"valid": False, "reason": "odd"},
    ]

    async def handler(method: str, params: dict[str, Any]) -> Any:
        if method == "node.getInfo":
            return INFO
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    node.handler = handler
    gate = await make_gate(node)
    try:
        first = await gate.charge(sign_event(NOSTR_KEY, kind=1, tags=[paid_tag(1000, 1)]))
        assert first.message.startswith("invalid: malformed payment claim")
        second = await gate.charge(sign_event(NOSTR_KEY, kind=1, tags=[paid_tag(1000, 2)]))
        assert not second.accepted and second.message.startswith("restricted: payment rejected")
    finally:
        await gate.close()


async def test_free_kinds_allow_list_and_free_tier(node: FakeNode) -> None:
    other = bytes.fromhex("33" * 32)
    from nostr_protocol.keys import public_key_hex

    gate = await make_gate(
        node,
        {
            "PRICING_FREE_KINDS": "0",
            "PRICING_ALLOWED_PUBKEYS": public_key_hex(other),
            "PRICING_FREE_TIER_EVENTS": "2",
        },
    )
    try:
        assert (await gate.charge(sign_event(NOSTR_KEY, kind=0, content="{}"))).accepted
        assert (await gate.charge(sign_event(other, kind=1, content="vip"))).accepted
        tier = [await gate.charge(sign_event(NOSTR_KEY, kind=1, content=str(i))) for i in range(3)]
        assert [c.accepted for c in tier] == [True, True, False]
        assert tier[2].message.startswith("restricted: payment required")
        assert node.verify_calls() == []
    finally:
        await gate.close()


async def test_many_requests_in_flight_are_matched_by_id(node: FakeNode) -> None:
    async def slow_echo(method: str, params: dict[str, Any]) -> Any:
        if method == "node.getInfo":
            return INFO
        nonce = int(params["nonce"])
        await asyncio.sleep((50 - nonce) / 2000)  # later requests answer first
        return {
            "valid": nonce % 2 == 0,
            "reason": "invalid-nonce",
            "credited": params["claimAmount"],
        }

    node.handler = slow_echo
    gate = await make_gate(node)
    try:
        events = [
            sign_event(NOSTR_KEY, kind=1, content=str(n), tags=[paid_tag(1000 * n, n)])
            for n in range(1, 50)
        ]
        node.frames.clear()
        charges = await asyncio.gather(*(gate.charge(e) for e in events))
        for n, charge in enumerate(charges, start=1):
            assert charge.accepted == (n % 2 == 0)
            if charge.accepted:
                assert charge.details["credited"] == str(1000 * n)
        # Calls made together leave together: one batch frame, not one frame per call.
        assert sum(node.frames) == len(events) and len(node.frames) < len(events)
    finally:
        await gate.close()


async def test_calls_made_while_the_node_is_busy_leave_as_one_batch(node: FakeNode) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def gated(method: str, params: dict[str, Any]) -> Any:
        if params["nonce"] == "1":
            started.set()
            await release.wait()
        return {"valid": True, "credited": params["claimAmount"]}

    def params(n: int) -> dict[str, str]:
        tag = paid_tag(1000 * n, n)
        return {"channelId": tag[2], "claimAmount": tag[3], "nonce": tag[4], "minAmount": "1"}

    node.handler = gated
    rpc = DassieRpcClient(node.url, TOKEN, patience=60.0)
    await rpc.start()
    try:
        async with asyncio.timeout(5):
            await rpc.wait_connected()
        verify = "payment.verifyPaymentClaim"
        first = asyncio.create_task(rpc.call(verify, params(1)))
        await started.wait()
        later = []
        for n in range(2, 6):  # one at a time, in separate event-loop steps
            later.append(asyncio.create_task(rpc.call(verify, params(n))))
            await asyncio.sleep(0)
        release.set()
        answers = [await first] + [await t for t in later]
        assert [a["credited"] for a in answers] == [str(1000 * n) for n in range(1, 6)]
        # The four were held while the node worked on the first, then left together.
        assert node.frames == [1, 4]
    finally:
        await rpc.close()


async def test_a_burst_is_split_into_batches_the_node_accepts(node: FakeNode) -> None:
    rpc = DassieRpcClient(node.url, TOKEN)
    await rpc.start()
    try:
        async with asyncio.timeout(5):
            await rpc.wait_connected()
        params = [{"channelId": "0x01", "nonce": str(n), "minAmount": str(n)} for n in range(600)]
        answers = await asyncio.gather(*(rpc.call("payment.verifyPaymentClaim", p) for p in params))
        assert [a["credited"] for a in answers] == [str(n) for n in range(600)]
        assert sum(node.frames) == 600 and max(node.frames) <= MAX_BATCH < 600
    finally:
        await rpc.close()


async def test_a_slow_answer_does_not_hold_other_calls_back(node: FakeNode) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def one_hangs(method: str, params: dict[str, Any]) -> Any:
        if method == "node.getInfo":
            return INFO
        if params["nonce"] == "1":
            started.set()
            await release.wait()
        return {"valid": True, "credited": params["claimAmount"]}

    node.handler = one_hangs
    gate = await make_gate(node)
    try:
        node.frames.clear()
        hung = asyncio.create_task(
            gate.charge(sign_event(NOSTR_KEY, kind=1, tags=[paid_tag(1000, 1)]))
        )
        await started.wait()
        # Sent after the link's patience (10 ms) without waiting for the hung call.
        async with asyncio.timeout(2):
            charge = await gate.charge(sign_event(NOSTR_KEY, kind=1, tags=[paid_tag(2000, 2)]))
        assert charge.accepted and not hung.done()
        release.set()
        assert (await hung).accepted
    finally:
        await gate.close()


async def test_timeout_refuses_with_temporarily_unavailable(node: FakeNode) -> None:
    release = asyncio.Event()

    async def hang(method: str, params: dict[str, Any]) -> Any:
        if method == "node.getInfo":
            return INFO
        await release.wait()
        return {"valid": True}

    node.handler = hang
    gate = await make_gate(node, {"DASSIE_RPC_TIMEOUT_MS": "200"})
    try:
        charge = await gate.charge(sign_event(NOSTR_KEY, kind=1, tags=[paid_tag(1000, 1)]))
        assert not charge.accepted and charge.message == UNAVAILABLE
        release.set()
        assert gate.health()[0] == "ok"  # a slow answer does not drop the link
    finally:
        await gate.close()


async def test_each_late_frame_times_out_while_answered_ones_do_not(node: FakeNode) -> None:
    """Frames sent one after another: the calls left unanswered past the timeout fail,
    each frame on its own deadline, and the link keeps serving the others."""
    release = asyncio.Event()

    async def some_hang(method: str, params: dict[str, Any]) -> Any:
        if method == "node.getInfo":
            return INFO
        if params["nonce"] in ("2", "4"):
            await release.wait()
        return {"valid": True, "credited": params["minAmount"]}

    node.handler = some_hang
    gate = await make_gate(node, {"DASSIE_RPC_TIMEOUT_MS": "300"})
    try:
        loop = asyncio.get_running_loop()
        assert (await gate.charge(sign_event(NOSTR_KEY, kind=1, tags=[paid_tag(1000, 1)]))).accepted
        first = loop.create_task(
            gate.charge(sign_event(NOSTR_KEY, kind=1, tags=[paid_tag(2000, 2)]))
        )
        await asyncio.sleep(0.1)  # the next frame leaves later, with a later deadline
        second = loop.create_task(
            gate.charge(sign_event(NOSTR_KEY, kind=1, tags=[paid_tag(3000, 4)]))
        )
        assert (await first).message == UNAVAILABLE
        assert (await second).message == UNAVAILABLE
        ok = await gate.charge(sign_event(NOSTR_KEY, kind=1, tags=[paid_tag(4000, 5)]))
        assert ok.accepted and ok.details["credited"] == "1000"
        release.set()
    finally:
        await gate.close()


async def test_node_down_then_back_reconnects_by_itself(
    node: FakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nostream.payments.rpc")
    gate = await make_gate(node)
    rpc = gate.rpc
    assert isinstance(rpc, DassieRpcClient)
    rpc._backoff = Backoff(0.05, 0.2)
    try:
        await node.stop()
        async with asyncio.timeout(5):
            await rpc.wait_until(lambda r: not r.connected)
        charge = await gate.charge(sign_event(NOSTR_KEY, kind=1, tags=[paid_tag(1000, 1)]))
        assert charge.message == UNAVAILABLE
        status, details = gate.health()
        assert status == "disconnected" and details["error"]
        await node.start()  # same port
        async with asyncio.timeout(5):
            await rpc.wait_connected()
        assert (await gate.charge(sign_event(NOSTR_KEY, kind=1, tags=[paid_tag(1000, 1)]))).accepted
        assert sum("Connected to Dassie RPC" in r.getMessage() for r in caplog.records) == 2
    finally:
        await gate.close()


async def test_pending_calls_fail_fast_when_the_link_drops(node: FakeNode) -> None:
    started = asyncio.Event()

    async def hang(method: str, params: dict[str, Any]) -> Any:
        if method == "node.getInfo":
            return INFO
        started.set()
        await asyncio.Event().wait()

    node.handler = hang
    gate = await make_gate(node)
    try:
        pending = asyncio.create_task(
            gate.charge(sign_event(NOSTR_KEY, kind=1, tags=[paid_tag(1000, 1)]))
        )
        await started.wait()
        for ws in list(node.sockets):
            await ws.close()
        charge = await pending
        assert charge.message == UNAVAILABLE
    finally:
        await gate.close()


async def test_wrong_token_is_refused_and_reported(node: FakeNode) -> None:
    rpc = DassieRpcClient(node.url, "wrong", timeout=1, backoff=Backoff(0.05, 0.1))
    await rpc.start()
    try:
        async with asyncio.timeout(5):
            await rpc.wait_until(lambda r: r.last_error is not None)
        assert not rpc.connected and "401" in (rpc.last_error or "")
        with pytest.raises(RpcUnavailable):
            await rpc.call("node.getInfo")
    finally:
        await rpc.close()


def test_build_gate_configuration() -> None:
    assert isinstance(build_gate(None, None, {}), FreePublishing)
    url = {"DASSIE_RPC_URL": "ws://127.0.0.1:1/trpc"}
    assert isinstance(build_gate(None, None, {**url, "PAYMENTS_ENABLED": "false"}), FreePublishing)
    assert isinstance(
        build_gate(None, None, {**url, "PAYMENTS_ENABLED": "true"}), NodePaidPublishing
    )
    gate = build_gate({"payments": {"default_price": 7}}, None, url)
    assert isinstance(gate, NodePaidPublishing) and gate.pricing.price(1, "ETH") == 7
    for env, name in [
        ({**url, "PAYMENTS_ENABLED": "maybe"}, "PAYMENTS_ENABLED"),
        ({"DASSIE_RPC_URL": "http://x/trpc"}, "DASSIE_RPC_URL"),
        ({**url, "DASSIE_RPC_TIMEOUT_MS": "0"}, "DASSIE_RPC_TIMEOUT_MS"),
        ({**url, "PRICING_STORE_EVENT": "free"}, "PRICING_STORE_EVENT"),
    ]:
        with pytest.raises(PaymentConfigError, match=name):
            build_gate(None, None, env)
    assert load_pricing(None, {}).price(1, "ETH") is not None


def test_build_gate_from_the_relay_settings() -> None:
    from nostream.config import settings_from

    tree = {"payments": {"kind_prices": {1: 3}}}
    paid = settings_from(tree, {"DASSIE_RPC_URL": "ws://127.0.0.1:1/trpc"})
    gate = build_gate(paid, None, {"PRICING_STORE_EVENT": "9"})
    assert isinstance(gate, NodePaidPublishing)
    assert gate.pricing.price(1, "ETH") == 3 and gate.pricing.price(2, "ETH") == 9
    off = settings_from(tree, {"DASSIE_RPC_URL": "ws://127.0.0.1:1/trpc", "PAYMENTS_ENABLED": "no"})
    assert isinstance(build_gate(off, None, {}), FreePublishing)
    assert isinstance(build_gate(settings_from({}, {}), None, {}), FreePublishing)


async def test_an_event_without_a_tag_spends_the_prepaid_balance(node: FakeNode) -> None:
    """A pubkey funded over Interledger publishes without a payment tag while it lasts."""
    balances = {sign_event(NOSTR_KEY, kind=1).pubkey: 2500}

    async def prepaid(method: str, params: dict[str, Any]) -> Any:
        if method == "node.getInfo":
            return INFO
        assert method == "payment.spendPrepaid"
        assert params["currency"] == "ETH"
        amount = int(params["amount"])
        if balances.get(params["pubkey"], 0) < amount:
            return {"valid": False, "reason": "insufficient-payment"}
        balances[params["pubkey"]] -= amount
        return {"valid": True, "credited": params["amount"]}

    node.handler = prepaid
    gate = await make_gate(node)
    try:
        results = [await gate.charge(sign_event(NOSTR_KEY, kind=1)) for _ in range(3)]
        assert [r.accepted for r in results] == [True, True, False]
        assert results[0].details["prepaid"] is True
        assert results[2].message.startswith("restricted: payment required")
        assert sum(balances.values()) == 500
        spent = [p for m, p in node.calls if m == "payment.spendPrepaid"]
        assert [p["amount"] for p in spent] == ["1000", "1000", "1000"]
    finally:
        await gate.close()


async def test_a_kind_priced_zero_publishes_without_a_tag(node: FakeNode) -> None:
    """Price 0 means free with or without a payment tag; the node is not asked to spend 0."""

    async def empty_balance(method: str, params: dict[str, Any]) -> Any:
        if method == "node.getInfo":
            return INFO
        return {"valid": False, "reason": "insufficient-payment"}

    node.handler = empty_balance
    gate = await make_gate(node, {"PRICING_KIND_OVERRIDES": "7:0"})
    try:
        free = await gate.charge(sign_event(NOSTR_KEY, kind=7, content="+"))
        assert free.accepted and free.details == {"free": "price-zero"}
        assert [m for m, _ in node.calls if not m.endswith(".getInfo")] == []
        # Other kinds still cost their price.
        due = await gate.charge(sign_event(NOSTR_KEY, kind=1))
        assert not due.accepted and due.message.startswith("restricted: payment required")
        assert [p["amount"] for m, p in node.calls if m == "payment.spendPrepaid"] == ["1000"]
    finally:
        await gate.close()


async def test_prepaid_balances_are_spent_in_the_node_asset_only(node: FakeNode) -> None:
    """A node whose Interledger asset the relay does not price, or without Interledger, is
    never asked to spend a prepaid balance."""

    async def other_asset(method: str, params: dict[str, Any]) -> Any:
        if method == "node.getInfo":
            return INFO
        return {"valid": True, "credited": params.get("amount")}

    node.handler = other_asset
    node.ilp_info = {**ILP_INFO, "assetCode": "XRP"}
    gate = await make_gate(node)
    try:
        refused = await gate.charge(sign_event(NOSTR_KEY, kind=1))
        assert gate.prepaid_currency == "XRP"
        assert refused.message.startswith("restricted: payment required")
        assert [m for m, _ in node.calls if m == "payment.spendPrepaid"] == []
    finally:
        await gate.close()
