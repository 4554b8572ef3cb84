"""Two dassie nodes peered over BTP: STREAM payments, prepaid balances, limits, dropped peers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from dassie.app import build_app
from dassie.config import ConfigError
from dassie.ilp import service_of
from dassie.ilp.accounts import NODE, ilp_asset, peer_account, prepaid_account, revenue_account
from dassie.ilp.btp import FrameWriter
from dassie.ilp.config import load_ilp_config
from dassie.ledger import LedgerStore
from dassie.node import Node
from dassie.testing import TOKEN, make_config
from interledger import btp, ildcp, spsp
from interledger.connector import LOCAL
from interledger.packet import Fulfill, Prepare, Reject, decode_packet, encode_packet

LINK_TOKEN = "link-token-0123456789abcdef"
PUBKEY = "ab" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Running:
    node: Node
    url: str


@asynccontextmanager
async def node(
    tmp: Path, name: str, peers: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Running]:
    monkeypatch.setenv("ILP_PEERS", json.dumps(peers))
    monkeypatch.setenv("ILP_ASSET_CODE", "ETH")
    n = Node(make_config(tmp / f"{name}.db", ilp_address=f"test.{name}"), sources=[])
    runner = web.AppRunner(build_app(n))  # reads ILP_* now
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Running(n, f"http://127.0.0.1:{runner.addresses[0][1]}")
    finally:
        await runner.cleanup()


async def rpc(url: str, method: str, params: dict[str, Any]) -> Any:
    async with aiohttp.ClientSession() as http, http.ws_connect(url + "/trpc", headers=AUTH) as ws:
        await ws.send_str(
            orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).decode()
        )
        return orjson.loads((await ws.receive()).data)


def balances(n: Node) -> dict[str, int]:
    return {a.path: a.balance for a in n.store.accounts()}


def assert_consistent(n: Node) -> None:
    n.store.ledger.check_invariant()
    assert n.store.ledger.pending == {}
    assert sum(balances(n).values()) == 0


@asynccontextmanager
async def pair(
    tmp: Path, monkeypatch: pytest.MonkeyPatch, credit_limit: int = 10**6, transport: str = "btp"
) -> AsyncIterator[tuple[Running, Running]]:
    peer1 = {
        "name": "node1",
        "token": LINK_TOKEN,
        "routes": ["test.node1"],
        "creditLimit": str(credit_limit),
    }
    async with node(tmp, "node2", [peer1], monkeypatch) as n2:
        peer2 = {
            "name": "node2",
            "token": LINK_TOKEN,
            "routes": ["test.node2"],
            "url": n2.url.replace("http", "ws") + "/btp" if transport == "btp" else n2.url + "/ilp",
            "maxPacketAmount": "400",
        }
        async with node(tmp, "node1", [peer2], monkeypatch) as n1:
            await service_of(n1.node).link_up["node2"].wait()
            if transport == "btp":
                await service_of(n2.node).link_up["node1"].wait()
            service_of(n1.node).retry_delay = 0.001  # keep retries of temporary failures quick
            yield n1, n2


@pytest.mark.parametrize("transport", ["btp", "http"])
async def test_stream_payment_credits_prepaid_balance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    async with pair(tmp_path, monkeypatch, transport=transport) as (n1, n2):
        pointer = f"{n2.url}/.well-known/pay/{PUBKEY}"
        paid = await rpc(n1.url, "ilp.pay", {"paymentPointer": pointer, "amount": "1000"})
        # Over HTTP no BTP link exists: the answers came back in the HTTP responses.
        assert service_of(n2.node).link_up["node1"].is_set() == (transport == "btp")
        assert paid["result"] == {
            "success": True,
            "amount": "1000",
            "delivered": "1000",
            "packets": 3,
        }  # 400 + 400 + 200: node2's max packet
        assert balances(n1.node) == {NODE: 1000, peer_account("node2"): -1000}
        assert balances(n2.node) == {peer_account("node1"): 1000, prepaid_account(PUBKEY): -1000}
        assert_consistent(n1.node)
        assert_consistent(n2.node)

        got = await rpc(n2.url, "payment.getPrepaidBalance", {"pubkey": PUBKEY})
        assert got["result"]["balance"] == "1000"
        spent = await rpc(
            n2.url, "payment.spendPrepaid", {"pubkey": PUBKEY, "amount": "600", "currency": "ETH"}
        )
        assert spent["result"] == {"valid": True, "credited": "600", "balance": "400"}
        short = await rpc(
            n2.url, "payment.spendPrepaid", {"pubkey": PUBKEY, "amount": "401", "currency": "ETH"}
        )
        assert short["result"] == {
            "valid": False,
            "reason": "insufficient-payment",
            "balance": "400",
        }
        other = await rpc(
            n2.url, "payment.spendPrepaid", {"pubkey": PUBKEY, "amount": "1", "currency": "CRO"}
        )
        assert other["result"] == {"valid": False, "reason": "unsupported-currency"}
        stranger = await rpc(
            n2.url, "payment.spendPrepaid", {"pubkey": "cd" * 32, "amount": "1", "currency": "ETH"}
        )
        assert stranger["result"]["valid"] is False
        for bad in (
            {"pubkey": "xyz", "amount": "1"},
            {"pubkey": PUBKEY, "amount": "-1"},
            {"pubkey": PUBKEY, "amount": "0"},
        ):
            assert (await rpc(n2.url, "payment.spendPrepaid", bad))["error"]["code"] == -32602
        assert balances(n2.node)[revenue_account(ilp_asset("ETH"))] == -600
        assert_consistent(n2.node)

        # The SPSP answer itself: a fresh connection under node2's address.
        async with aiohttp.ClientSession() as http, http.get(pointer) as resp:
            assert resp.headers["Content-Type"].startswith(spsp.CONTENT_TYPE)
            details = spsp.decode_response(await resp.read())
        assert details.destination_account.startswith(f"test.node2.{PUBKEY}.")


async def test_credit_limit_stops_payment_with_t04(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pair(tmp_path, monkeypatch, credit_limit=500) as (n1, n2):
        pointer = f"{n2.url}/pay/{PUBKEY}"
        paid = await rpc(n1.url, "ilp.pay", {"paymentPointer": pointer, "amount": "1000"})
        result = paid["result"]
        assert result["success"] is False and result["delivered"] == "400"
        assert result["error"].startswith("T04")
        assert balances(n2.node)[prepaid_account(PUBKEY)] == -400
        assert balances(n1.node)[NODE] == 400
        assert_consistent(n1.node)
        assert_consistent(n2.node)


async def test_bad_payment_requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with pair(tmp_path, monkeypatch) as (n1, n2):
        for params in (
            {"paymentPointer": "", "amount": "1"},
            {"paymentPointer": "$x", "amount": "one"},
        ):
            assert (await rpc(n1.url, "ilp.pay", params))["error"]["code"] == -32602
        missing = await rpc(
            n1.url, "ilp.pay", {"paymentPointer": n2.url + "/nothing-here", "amount": "5"}
        )
        assert "HTTP 404" in missing["error"]["message"]
        assert all(v == 0 for v in balances(n1.node).values())


async def test_btp_auth_and_malformed_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pair(tmp_path, monkeypatch) as (_, n2), aiohttp.ClientSession() as http:
        ws_url = n2.url.replace("http", "ws") + "/btp"
        async with http.ws_connect(ws_url) as ws:
            await ws.send_bytes(btp.encode_btp(btp.auth_message(1, "wrong-token-xxxxxxxxx")))
            answer = btp.decode_btp((await ws.receive()).data)
            assert isinstance(answer, btp.BtpError) and answer.name == "invalid auth token"
            assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
        async with http.ws_connect(ws_url) as ws:
            await ws.send_bytes(btp.encode_btp(btp.auth_message(7, LINK_TOKEN)))
            assert btp.decode_btp((await ws.receive()).data) == btp.BtpResponse(7)
            await ws.send_bytes(b"\x06\x00")  # truncated BTP
            err = btp.decode_btp((await ws.receive()).data)
            assert isinstance(err, btp.BtpError) and err.code == "F00"
            # The link survives: a Prepare to nowhere gets an ILP Reject back.
            prepare = Prepare(
                5, datetime.now(UTC) + timedelta(seconds=5), bytes(32), "test.nowhere.x", b""
            )
            msg = btp.BtpMessage(8, (btp.ProtocolData("ilp", 0, encode_packet(prepare)),))
            await ws.send_bytes(btp.encode_btp(msg))
            reply = btp.decode_btp((await ws.receive()).data)
            assert isinstance(reply, btp.BtpResponse) and reply.request_id == 8
            reject = decode_packet(reply.protocol_data[0].data)
            assert isinstance(reject, Reject) and reject.code == "F02"
        # IL-DCP over the same link: the peer learns its address and the asset.
        async with http.ws_connect(ws_url) as ws:
            await ws.send_bytes(btp.encode_btp(btp.auth_message(1, LINK_TOKEN)))
            await ws.receive()
            query = ildcp.request(datetime.now(UTC))
            msg = btp.BtpMessage(2, (btp.ProtocolData("ilp", 0, encode_packet(query)),))
            await ws.send_bytes(btp.encode_btp(msg))
            reply = btp.decode_btp((await ws.receive()).data)
            assert isinstance(reply, btp.BtpResponse)
            config = decode_packet(reply.protocol_data[0].data)
            assert isinstance(config, Fulfill)
            assert ildcp.decode_response(config.data) == ildcp.IldcpResponse(
                "test.node2.node1", 18, "ETH"
            )
        # ILP over HTTP with the same peer token.
        good = {"Authorization": f"Bearer {LINK_TOKEN}"}
        async with http.post(n2.url + "/ilp", data=encode_packet(prepare)) as resp:
            assert resp.status == 401
        async with http.post(n2.url + "/ilp", data=b"\x0c\x05", headers=good) as resp:
            assert resp.status == 400 and "malformed" in await resp.text()
        async with http.post(n2.url + "/ilp", data=encode_packet(prepare), headers=good) as resp:
            answer_packet = decode_packet(await resp.read())
            assert isinstance(answer_packet, Reject) and answer_packet.code == "F02"
        assert_consistent(n2.node)


async def test_peer_dropping_mid_payment_posts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer that takes the Prepare and hangs up: every hold is voided, nothing posted."""
    prepares_seen = 0
    silent = False

    async def flaky_btp(request: web.Request) -> web.WebSocketResponse:
        nonlocal prepares_seen
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        auth = btp.decode_btp((await ws.receive()).data)
        await ws.send_bytes(btp.encode_btp(btp.BtpResponse(auth.request_id)))
        msg = await ws.receive()
        if msg.type == aiohttp.WSMsgType.BINARY:
            prepares_seen += 1
        if silent:
            await ws.receive()  # hold the Prepare without answering until the node hangs up
        await ws.close()  # drop in the middle: no answer
        return ws

    async def flaky_spsp(request: web.Request) -> web.Response:
        return web.Response(
            body=spsp.encode_response(spsp.SpspResponse("test.flaky.bob", bytes(32))),
            content_type=spsp.CONTENT_TYPE,
        )

    app = web.Application()
    app.router.add_get("/btp", flaky_btp)
    app.router.add_get("/.well-known/pay", flaky_spsp)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    flaky_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        peer = {
            "name": "flaky",
            "token": LINK_TOKEN,
            "routes": ["test.flaky"],
            "url": flaky_url.replace("http", "ws") + "/btp",
        }
        async with node(tmp_path, "node1", [peer], monkeypatch) as n1:
            await service_of(n1.node).link_up["flaky"].wait()
            service_of(n1.node).retry_delay = 0.001
            paid = await rpc(
                n1.url,
                "ilp.pay",
                {"paymentPointer": flaky_url + "/.well-known/pay", "amount": "50"},
            )
            result = paid["result"]
            assert result["success"] is False and result["delivered"] == "0"
            assert result["error"].startswith("T01")
            assert prepares_seen >= 1
            assert_consistent(n1.node)
            assert all(v == 0 for v in balances(n1.node).values())
            # Each Prepare was held (pending) and then voided in the durable ledger.
            with sqlite3.connect(n1.node.store.path) as db:
                states = [row[0] for row in db.execute("SELECT state FROM transfers")]
            assert len(states) >= prepares_seen and set(states) == {"voided"}

            # A peer that keeps the Prepare and never answers: R00 at the outgoing expiry.
            silent = True
            service = service_of(n1.node)
            await service.link_up["flaky"].wait()
            before = len(states)
            prepare = Prepare(
                7, datetime.now(UTC) + timedelta(milliseconds=1300), bytes(32), "test.flaky.z"
            )
            answer = await service.handle_prepare(LOCAL, prepare)
            assert isinstance(answer, Reject) and answer.code == "R00"
            assert_consistent(n1.node)
            with sqlite3.connect(n1.node.store.path) as db:
                rows = list(
                    db.execute("SELECT amount, state FROM transfers WHERE id > ?", (before,))
                )
            assert rows == [("7", "voided")]
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ILP_PEERS": "{"}, "ILP_PEERS: not valid JSON"),
        ({"ILP_PEERS": "{}"}, "ILP_PEERS: expected a JSON array"),
        ({"ILP_PEERS": '[{"name": "a b", "token": "x"}]'}, "ILP_PEERS[0].name"),
        ({"ILP_PEERS": '[{"name": "a", "token": "short"}]'}, "ILP_PEERS[a].token"),
        (
            {"ILP_PEERS": '[{"name": "a", "token": "0123456789abcdef", "url": "ftp://x"}]'},
            "ILP_PEERS[a].url",
        ),
        (
            {"ILP_PEERS": '[{"name": "a", "token": "0123456789abcdef", "routes": ["nope"]}]'},
            "ILP_PEERS[a].routes",
        ),
        (
            {"ILP_PEERS": '[{"name": "a", "token": "0123456789abcdef", "creditLimit": "-1"}]'},
            "ILP_PEERS[a].creditLimit",
        ),
        (
            {"ILP_PEERS": '[{"name": "a", "token": "0123456789abcdef", "extra": 1}]'},
            "unknown field 'extra'",
        ),
        (
            {
                "ILP_PEERS": '[{"name": "a", "token": "0123456789abcdef"},'
                ' {"name": "a", "token": "0123456789abcdeg"}]'
            },
            "used twice",
        ),
        ({"ILP_ASSET_SCALE": "300"}, "ILP_ASSET_SCALE"),
        ({"ILP_ASSET_CODE": "E T H"}, "ILP_ASSET_CODE"),
        ({"ILP_STREAM_SECRET": "abc"}, "ILP_STREAM_SECRET"),
        ({"ILP_MAX_HOLD_MS": "0"}, "ILP_MAX_HOLD_MS"),
    ],
)
def test_bad_ilp_configuration_is_one_clear_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_ilp_config(env, "test.node", TOKEN)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_ilp_configuration_defaults() -> None:
    config = load_ilp_config({}, "test.node", TOKEN)
    assert (config.asset_code, config.asset_scale, config.peers) == ("ETH", 18, ())
    assert config.stream_secret == load_ilp_config({}, "test.node", TOKEN).stream_secret
    assert config.stream_secret != load_ilp_config({}, "test.node", "u" * 40).stream_secret


async def test_holds_left_by_a_crash_are_voided_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await LedgerStore.open(tmp_path / "node1.db")
    for path in (NODE, peer_account("node2")):
        await store.ensure_account(path, ilp_asset("ETH"))
    for path in ("revenue/relay/LOCAL/ETH", "assets/other"):
        await store.ensure_account(path, "LOCAL/ETH")
    stale = await store.create_pending(NODE, peer_account("node2"), 5)
    unrelated = await store.create_pending("assets/other", "revenue/relay/LOCAL/ETH", 3)
    await store.close()
    peer = {"name": "node2", "token": LINK_TOKEN, "routes": ["test.node2"]}
    async with node(tmp_path, "node1", [peer], monkeypatch) as n1:
        assert set(n1.node.store.ledger.pending) == {unrelated}  # only ILP holds are touched
    with sqlite3.connect(tmp_path / "node1.db") as db:
        (state,) = db.execute("SELECT state FROM transfers WHERE id = ?", (stale,)).fetchone()
    assert state == "voided"


async def test_burst_through_one_node_matches_answers_and_books_each_packet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many Prepares in flight at once, answered out of order: each gets its own answer,
    and only the valid Fulfills are posted (the rest voided) in the durable ledger."""
    alice_token, bob_token = "alice-token-0123456789ab", "bob-token-0123456789abcd"
    peers = [
        {"name": "alice", "token": alice_token, "routes": ["test.alice"]},
        {"name": "bob", "token": bob_token, "routes": ["test.bob"]},
    ]
    good = bytes(range(32))
    condition = hashlib.sha256(good).digest()
    count = 60

    def bob_answer(amount: int) -> bytes:
        """Fulfill amounts divisible by 3 correctly, by 3 + 1 wrongly; reject the rest."""
        if amount % 3 == 0:
            return encode_packet(Fulfill(good, b"ok"))
        if amount % 3 == 1:
            return encode_packet(Fulfill(bytes(32)))
        return encode_packet(Reject("F99", "test.bob", "no thanks"))

    async with node(tmp_path, "hub", peers, monkeypatch) as hub, aiohttp.ClientSession() as http:
        ws_url = hub.url.replace("http", "ws") + "/btp"
        bob = await http.ws_connect(ws_url)
        await bob.send_bytes(btp.encode_btp(btp.auth_message(1, bob_token)))
        assert isinstance(btp.decode_btp((await bob.receive()).data), btp.BtpResponse)
        await service_of(hub.node).link_up["bob"].wait()
        alice = await http.ws_connect(ws_url)
        await alice.send_bytes(btp.encode_btp(btp.auth_message(1, alice_token)))
        assert isinstance(btp.decode_btp((await alice.receive()).data), btp.BtpResponse)

        expires = datetime.now(UTC) + timedelta(seconds=20)
        for amount in range(1, count + 1):
            prepare = Prepare(amount, expires, condition, "test.bob.shop", b"hi")
            await alice.send_bytes(btp.encode_ilp_message(1000 + amount, encode_packet(prepare)))

        seen: list[btp.BtpMessage] = []
        while len(seen) < count:  # bob reads them all before answering any
            packet = btp.decode_btp((await bob.receive()).data)
            assert isinstance(packet, btp.BtpMessage)
            seen.append(packet)
        for packet in reversed(seen):
            forwarded = decode_packet(packet.protocol_data[0].data)
            assert isinstance(forwarded, Prepare)
            assert forwarded.destination == "test.bob.shop" and forwarded.data == b"hi"
            assert forwarded.expires_at < expires  # shortened by the node
            await bob.send_bytes(
                btp.encode_ilp_response(packet.request_id, bob_answer(forwarded.amount))
            )

        answers: dict[int, Fulfill | Reject] = {}
        while len(answers) < count:
            reply = btp.decode_btp((await alice.receive()).data)
            assert isinstance(reply, btp.BtpResponse)
            answer = decode_packet(reply.protocol_data[0].data)
            assert not isinstance(answer, Prepare)
            answers[reply.request_id - 1000] = answer
        for amount, answer in answers.items():
            if amount % 3 == 0:
                assert answer == Fulfill(good, b"ok")
            elif amount % 3 == 1:
                assert isinstance(answer, Reject) and answer.code == "F05"
            else:
                assert answer == Reject("F99", "test.bob", "no thanks")
        paid = sum(a for a in range(1, count + 1) if a % 3 == 0)
        assert balances(hub.node) == {peer_account("alice"): paid, peer_account("bob"): -paid}
        assert_consistent(hub.node)
        await alice.close()
        await bob.close()
    with sqlite3.connect(tmp_path / "hub.db") as db:
        rows = list(db.execute("SELECT amount, state FROM transfers"))
    assert sorted((int(a), s) for a, s in rows) == [
        (a, "posted" if a % 3 == 0 else "voided") for a in range(1, count + 1)
    ]


async def test_a_peer_that_stops_reading_loses_its_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames for a peer that never reads pile up only to a bound; then the link drops and
    every Prepare waiting on it is rejected (T01) with its hold voided."""
    monkeypatch.setattr(FrameWriter, "max_buffered", 256 * 1024)
    alice_token, bob_token = "alice-token-0123456789ab", "bob-token-0123456789abcd"
    peers = [
        {"name": "alice", "token": alice_token, "routes": ["test.alice"]},
        {"name": "bob", "token": bob_token, "routes": ["test.bob"]},
    ]
    count = 400
    async with node(tmp_path, "hub", peers, monkeypatch) as hub, aiohttp.ClientSession() as http:
        ws_url = hub.url.replace("http", "ws") + "/btp"
        deaf_bob = await http.ws_connect(ws_url)
        await deaf_bob.send_bytes(btp.encode_btp(btp.auth_message(1, bob_token)))
        assert isinstance(btp.decode_btp((await deaf_bob.receive()).data), btp.BtpResponse)
        service = service_of(hub.node)
        await service.link_up["bob"].wait()
        alice = await http.ws_connect(ws_url)
        await alice.send_bytes(btp.encode_btp(btp.auth_message(1, alice_token)))
        assert isinstance(btp.decode_btp((await alice.receive()).data), btp.BtpResponse)

        async def send_all() -> None:
            expires = datetime.now(UTC) + timedelta(seconds=20)
            for n in range(count):
                prepare = Prepare(1, expires, bytes(32), "test.bob.x", bytes(30_000))
                await alice.send_bytes(btp.encode_ilp_message(10 + n, encode_packet(prepare)))

        sending = asyncio.create_task(send_all())
        codes = set()
        for _ in range(count):
            reply = btp.decode_btp((await alice.receive()).data)
            assert isinstance(reply, btp.BtpResponse)
            answer = decode_packet(reply.protocol_data[0].data)
            assert isinstance(answer, Reject)
            codes.add(answer.code)
        await sending
        assert codes == {"T01"}  # the link closed under them, or was already gone
        assert not service.link_up["bob"].is_set()
        assert_consistent(hub.node)
        assert all(v == 0 for v in balances(hub.node).values())
        await alice.close()
        await deaf_bob.close()
