import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from dassie.rpc.jsonrpc import MAX_BATCH
from dassie.testing import TOKEN, claim_params, make_channel, running_node

AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def call(ws: aiohttp.ClientWebSocketResponse, method: str, params: Any, rid: int = 1) -> Any:
    await ws.send_str(
        orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).decode()
    )
    return orjson.loads((await ws.receive()).data)


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer " + "x" * 40}, {"Authorization": TOKEN}]
)
async def test_auth_is_checked_before_the_upgrade(tmp_path: Path, headers: dict[str, str]) -> None:
    async with running_node(tmp_path / "l.db") as node, aiohttp.ClientSession() as http:
        for path in ("/trpc", "/rpc"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(node.url + path, headers=headers)
            assert info.value.status == 401


async def test_methods_and_errors_keep_the_connection(tmp_path: Path) -> None:
    async with running_node(tmp_path / "l.db") as node, aiohttp.ClientSession() as http:
        channel = make_channel()
        node.source.add(channel)
        async with http.ws_connect(node.url + "/trpc", headers=AUTH) as ws:
            info = await call(ws, "node.getInfo", {})
            assert info["result"]["ilpAddress"] == "test.dassie"
            assert info["result"]["chains"][0]["name"] == "TEST"

            await ws.send_str("{not json")
            assert orjson.loads((await ws.receive()).data)["error"]["code"] == -32700
            await ws.send_str('{"jsonrpc": "2.0", "id": 3}')
            assert orjson.loads((await ws.receive()).data)["error"]["code"] == -32600
            assert (await call(ws, "no.such", {}))["error"]["code"] == -32601
            bad = await call(ws, "payment.verifyPaymentClaim", {"channelId": channel.channel_id})
            assert bad["error"]["code"] == -32602
            bad = await call(
                ws,
                "payment.verifyPaymentClaim",
                {**claim_params(channel.channel_id, 5, 1), "minAmount": "x"},
            )
            assert bad["error"]["code"] == -32602
            for event_id in ("AB" * 32, "ab" * 31, 7):
                bad = await call(
                    ws,
                    "payment.verifyPaymentClaim",
                    {**claim_params(channel.channel_id, 5, 1), "eventId": event_id},
                )
                assert bad["error"]["code"] == -32602, event_id
            assert (await call(ws, "ledger.getBalance", {"account": 5}))["error"]["code"] == -32602
            assert (await call(ws, "payment.getChannelState", {"channelId": "0x12"}))["error"][
                "code"
            ] == -32602

            ok = await call(
                ws, "payment.verifyPaymentClaim", claim_params(channel.channel_id, 5, 1)
            )
            assert ok["result"] == {**ok["result"], "valid": True, "credited": "5"}
            state = await call(ws, "payment.getChannelState", {"channelId": channel.channel_id})
            assert state["result"]["bestClaim"]["nonce"] == "1"
            assert state["result"]["channel"]["deposit"] == str(channel.deposit)
            balance = await call(ws, "ledger.getBalance", {"account": "revenue/relay/TEST/ETH"})
            assert balance["result"]["balance"] == "-5"
            assert balance["result"]["asset"] == "TEST/ETH"
            accounts = await call(ws, "ledger.getAccounts", {})
            assert {(a["account"], a["asset"]) for a in accounts["result"]["accounts"]} == {
                ("revenue/relay/TEST/ETH", "TEST/ETH"),
                (f"assets/channel/TEST/{channel.channel_id}", "TEST/ETH"),
            }
            only = await call(ws, "ledger.getAccounts", {"asset": "TEST/ETH", "prefix": "rev"})
            assert [a["account"] for a in only["result"]["accounts"]] == ["revenue/relay/TEST/ETH"]
            none = await call(ws, "ledger.getAccounts", {"asset": "TEST/USDC"})
            assert none["result"]["accounts"] == []
            bad = await call(ws, "ledger.getAccounts", {"asset": 5})
            assert bad["error"]["code"] == -32602
            settle = await call(ws, "settlement.settleChannel", {"channelId": channel.channel_id})
            assert settle["error"]["code"] == -32000  # no EVM chain here

            batch = [
                {"jsonrpc": "2.0", "id": 10, "method": "node.getInfo"},
                {"jsonrpc": "2.0", "method": "node.getInfo"},  # notification: no answer
                {"jsonrpc": "2.0", "id": 11, "method": "nope"},
                5,
            ]
            await ws.send_str(orjson.dumps(batch).decode())
            answers = orjson.loads((await ws.receive()).data)
            assert [a.get("id") for a in answers] == [10, 11, None]
            assert "result" in answers[0] and answers[1]["error"]["code"] == -32601
            assert answers[2]["error"]["code"] == -32600


async def test_many_requests_in_flight_answered_by_id(tmp_path: Path) -> None:
    async with running_node(tmp_path / "l.db") as node, aiohttp.ClientSession() as http:
        channels = [make_channel() for _ in range(10)]
        for c in channels:
            node.source.add(c)
        async with http.ws_connect(node.url + "/rpc", headers=AUTH) as ws:
            rid = 0
            expected: dict[int, str] = {}
            for n in range(1, 21):
                for c in channels:
                    rid += 1
                    expected[rid] = c.channel_id
                    frame = {
                        "jsonrpc": "2.0",
                        "id": rid,
                        "method": "payment.verifyPaymentClaim",
                        "params": claim_params(c.channel_id, n * 3, n),
                    }
                    await ws.send_str(orjson.dumps(frame).decode())
            answers = {}
            while len(answers) < rid:
                message = orjson.loads((await ws.receive()).data)
                answers[message["id"]] = message
            assert all(a["result"]["valid"] for a in answers.values())
            assert all(
                a["result"]["channel"]["channelId"] == expected[i] for i, a in answers.items()
            )
        assert node.node.store.balance("revenue/relay/TEST/ETH").balance == -60 * len(channels)


async def test_health(tmp_path: Path) -> None:
    async with running_node(tmp_path / "l.db") as node, aiohttp.ClientSession() as http:
        async with http.get(node.url + "/health") as response:
            body = await response.json()
            assert response.status == 200
            assert body["status"] == "healthy" and body["checks"]["ledger"]["status"] == "ok"
        node.node.store.error = OSError("disk full")
        async with http.get(node.url + "/health") as response:
            assert response.status == 503
            assert (await response.json())["status"] == "unhealthy"
        async with http.ws_connect(node.url + "/rpc", headers=AUTH) as ws:
            channel = make_channel()
            node.source.add(channel)
            answer = await call(
                ws, "payment.verifyPaymentClaim", claim_params(channel.channel_id, 5, 1)
            )
            assert answer["error"]["code"] == -32000
        node.node.store.error = None


async def test_a_batch_answers_each_entry_in_one_array(tmp_path: Path) -> None:
    verify = "payment.verifyPaymentClaim"

    def entry(rid: object, method: str, params: Any, version: str = "2.0") -> dict[str, Any]:
        return {"jsonrpc": version, "id": rid, "method": method, "params": params}

    async with running_node(tmp_path / "l.db") as node, aiohttp.ClientSession() as http:
        channels = [make_channel() for _ in range(3)]
        for c in channels:
            node.source.add(c)
        async with http.ws_connect(node.url + "/trpc", headers=AUTH) as ws:
            valid = [
                entry(n, verify, claim_params(c.channel_id, 7, 1)) for n, c in enumerate(channels)
            ]
            await ws.send_str(orjson.dumps(valid).decode())
            first = orjson.loads((await ws.receive()).data)
            assert isinstance(first, list) and sorted(a["id"] for a in first) == [0, 1, 2]
            assert all(a["result"]["valid"] and a["result"]["credited"] == "7" for a in first)

            mixed = [
                entry("params", verify, {"channelId": channels[0].channel_id}),
                entry("method", "no.such", {}),
                "not an object",
                entry("nonce", verify, claim_params(channels[0].channel_id, 9, 1)),
                entry("version", "node.getInfo", {}, version="1.0"),
                entry("ok", verify, claim_params(channels[1].channel_id, 10, 2)),
            ]
            await ws.send_str(orjson.dumps(mixed).decode())
            answers = orjson.loads((await ws.receive()).data)
            assert isinstance(answers, list) and len(answers) == len(mixed)
            by_id = {a["id"]: a for a in answers}
            assert by_id["params"]["error"]["code"] == -32602
            assert by_id["method"]["error"]["code"] == -32601
            assert by_id[None]["error"]["code"] == -32600
            assert by_id["nonce"]["result"]["valid"] is False
            assert by_id["nonce"]["result"]["reason"] == "invalid-nonce"
            assert by_id["version"]["error"]["code"] == -32600
            assert by_id["ok"]["result"]["credited"] == "3"
            # The three first claims and the last one were credited, nothing else.
            assert node.node.store.balance("revenue/relay/TEST/ETH").balance == -(3 * 7 + 3)
            # The connection still serves single requests.
            info = await call(ws, "node.getInfo", {}, rid=99)
            assert info["id"] == 99 and "result" in info


@pytest.mark.parametrize("size", [0, MAX_BATCH + 1])
async def test_empty_and_oversized_batches_are_refused_whole(tmp_path: Path, size: int) -> None:
    async with running_node(tmp_path / "l.db") as node, aiohttp.ClientSession() as http:
        channel = make_channel()
        node.source.add(channel)
        async with http.ws_connect(node.url + "/trpc", headers=AUTH) as ws:
            entry = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "payment.verifyPaymentClaim",
                "params": claim_params(channel.channel_id, 5, 1),
            }
            await ws.send_str(orjson.dumps([entry] * size).decode())
            answer = orjson.loads((await ws.receive()).data)
            assert isinstance(answer, dict)  # one error, not a batch
            assert answer["id"] is None and answer["error"]["code"] == -32600
            # Nothing in the refused batch ran: the same claim is still acceptable.
            ok = await call(ws, "payment.verifyPaymentClaim", entry["params"], rid=2)
            assert ok["result"]["valid"] is True and ok["result"]["credited"] == "5"


async def test_endpoint_answers_each_way_a_call_can_end() -> None:
    """A coroutine, a handler handing back a future, a failure, a notification-only batch."""
    from aiohttp import web

    from dassie.rpc.jsonrpc import RpcFailure
    from dassie.rpc.server import rpc_handler

    loop = asyncio.get_running_loop()
    seen: list[str] = []

    async def echo(params: dict[str, Any]) -> Any:
        seen.append("echo")
        return params

    def later(params: dict[str, Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = loop.create_future()
        loop.call_soon(future.set_result, {"later": params.get("n")})
        return future

    async def refuse(params: dict[str, Any]) -> Any:
        raise RpcFailure(-32001, "refused", {"why": "test"})

    async def crash(params: dict[str, Any]) -> Any:
        raise KeyError("bug")

    handlers: dict[str, Any] = {"echo": echo, "later": later, "refuse": refuse, "crash": crash}
    app = web.Application()
    app.router.add_get("/trpc", rpc_handler(TOKEN, handlers))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"http://127.0.0.1:{port}/trpc", headers=AUTH) as ws,
        ):
            assert (await call(ws, "echo", {"a": 1}))["result"] == {"a": 1}
            assert (await call(ws, "later", {"n": 2}))["result"] == {"later": 2}
            refused = await call(ws, "refuse", {})
            assert refused["error"] == {
                "code": -32001,
                "message": "refused",
                "data": {"why": "test"},
            }
            crashed = await call(ws, "crash", {})
            assert crashed["error"]["code"] == -32603 and crashed["id"] == 1
            # A batch of notifications only runs them and answers nothing at all.
            only = [{"jsonrpc": "2.0", "method": "echo", "params": {}}] * 3
            await ws.send_str(orjson.dumps(only).decode())
            after = await call(ws, "echo", {"b": 2}, rid=7)
            assert after == {"jsonrpc": "2.0", "id": 7, "result": {"b": 2}}
            assert seen.count("echo") == 5
            batch = [
                {"jsonrpc": "2.0", "id": i, "method": m, "params": {"n": i}}
                for i, m in enumerate(["later", "crash", "echo", "refuse"])
            ]
            await ws.send_str(orjson.dumps(batch).decode())
            answers = orjson.loads((await ws.receive()).data)
            assert [a["id"] for a in answers] == [0, 1, 2, 3]
            assert answers[0]["result"] == {"later": 0} and answers[2]["result"] == {"n": 2}
            assert answers[1]["error"]["code"] == -32603
            assert answers[3]["error"]["code"] == -32001
    finally:
        await runner.cleanup()
