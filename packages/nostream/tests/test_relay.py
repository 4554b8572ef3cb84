"""The relay over real WebSocket connections, on every storage backend."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from nostr_protocol.event import Event
from nostr_protocol.filters import parse_filter
from nostr_protocol.keys import public_key_hex, sign_event
from nostream.payments.gate import Charge

ALICE = bytes.fromhex("a1" * 32)
BOB = bytes.fromhex("b2" * 32)


def note(sk: bytes = ALICE, kind: int = 1, content: str = "hello", tags=(), **kw: Any) -> Event:
    return sign_event(sk, kind=kind, content=content, tags=tags, **kw)


async def test_publish_then_req_returns_it_then_eose(relay) -> None:
    client = await relay.connect()
    e = note(tags=[["t", "x"]])
    assert await client.publish(e) == ["OK", e.id, True, ""]
    assert await client.req("s", {"ids": [e.id]}) == [e.to_dict()]
    assert await client.req("s2", {"#t": ["x"]}) == [e.to_dict()]
    assert await client.req("s3", {"#t": ["y"]}) == []


async def test_live_events_follow_eose(relay) -> None:
    reader, writer = await relay.connect(), await relay.connect()
    old = note(content="old")
    await writer.publish(old)
    assert await reader.req("live", {"kinds": [1]}) == [old.to_dict()]
    new = note(content="new")
    await writer.publish(new)
    assert await reader.recv() == ["EVENT", "live", new.to_dict()]
    other_kind = note(kind=7)
    await writer.publish(other_kind)
    last = note(content="last")
    await writer.publish(last)
    assert await reader.recv() == ["EVENT", "live", last.to_dict()]


async def test_close_stops_live_delivery_and_req_replaces(relay) -> None:
    reader, writer = await relay.connect(), await relay.connect()
    await reader.req("a", {"kinds": [1]})
    await reader.req("a", {"kinds": [7]})  # replaces: now only kind 7
    await reader.req("b", {"kinds": [1]})
    await reader.send("CLOSE", "b")
    await writer.publish(note(kind=1))
    seven = note(kind=7)
    await writer.publish(seven)
    assert await reader.recv() == ["EVENT", "a", seven.to_dict()]
    await reader.send("CLOSE", "a")
    await writer.publish(note(kind=7, content="after close"))
    assert await reader.req("probe", {"ids": ["00" * 32]}) == []


async def test_duplicate_is_ok_true_with_prefix(relay) -> None:
    client = await relay.connect()
    e = note()
    await client.publish(e)
    ok = await client.publish(e)
    assert ok[:3] == ["OK", e.id, True] and ok[3].startswith("duplicate:")


async def test_bad_signature_and_bad_id_are_invalid(relay) -> None:
    client = await relay.connect()
    e = note()
    forged = {**e.to_dict(), "sig": "00" * 64}
    ok = await client.publish(forged)
    assert ok[:3] == ["OK", e.id, False] and ok[3].startswith("invalid:")
    tampered = {**e.to_dict(), "content": "changed"}
    ok = await client.publish(tampered)
    assert ok[2] is False and ok[3].startswith("invalid:") and "id" in ok[3]
    assert await client.req("s", {}) == []


@pytest.mark.parametrize(
    "mutation",
    [
        {"kind": 70000},
        {"kind": -1},
        {"created_at": "now"},
        {"created_at": 1.5},
        {"tags": [["p", 1]]},
        {"tags": "x"},
        {"content": None},
        {"pubkey": "AB" * 32},
        {"sig": "zz"},
    ],
)
async def test_malformed_events_get_ok_false_invalid(relay, mutation: dict[str, Any]) -> None:
    client = await relay.connect()
    e = note()
    ok = await client.publish({**e.to_dict(), **mutation})
    assert ok[:3] == ["OK", e.id, False] and ok[3].startswith("invalid:")


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "{}",
        "[]",
        '["NOPE", 1]',
        "[1, 2]",
        '["EVENT"]',
        '["EVENT", "not an object"]',
        '["REQ"]',
        '["CLOSE"]',
        '"just a string"',
        '["\\ud800"]',
        b"\xff\xfe not utf-8",
    ],
)
async def test_garbage_gets_a_notice_and_the_relay_serves_on(relay, frame) -> None:
    client = await relay.connect()
    await client.send_raw(frame)
    reply = await client.recv()
    assert reply[0] in ("NOTICE", "OK") and reply[-1] is not True
    e = note(content="still works")
    assert (await client.publish(e))[2] is True


async def test_bad_filters_get_closed(relay) -> None:
    client = await relay.connect()
    await client.send("REQ", "s", {"ids": ["abc"]})
    assert (await client.recv())[:2] == ["CLOSED", "s"]
    await client.send("REQ", "s", {"kinds": ["1"]})
    reply = await client.recv()
    assert reply[:2] == ["CLOSED", "s"] and reply[2].startswith("invalid:")
    await client.send("REQ", "s", *([{}] * 11))
    assert (await client.recv())[:2] == ["CLOSED", "s"]
    await client.send("REQ", "x" * 65, {})
    assert (await client.recv())[0] == "NOTICE"
    await client.send("REQ", "s", {"authors": ["ab" * 32] * 1001})
    assert (await client.recv())[:2] == ["CLOSED", "s"]


async def test_too_many_subscriptions_are_closed(relay) -> None:
    client = await relay.connect()
    for i in range(20):
        await client.req(f"s{i}", {"ids": ["00" * 32]})
    await client.send("REQ", "one-too-many", {})
    reply = await client.recv()
    assert reply[:2] == ["CLOSED", "one-too-many"] and reply[2].startswith("blocked:")
    await client.req("s0", {"kinds": [1]})  # replacing an existing id is fine


async def test_count(relay) -> None:
    client = await relay.connect()
    for i in range(3):
        await client.publish(note(content=str(i)))
    await client.publish(note(kind=7))
    await client.send("COUNT", "c", {"kinds": [1]})
    assert await client.recv() == ["COUNT", "c", {"count": 3}]
    await client.send("COUNT", "c", {"kinds": [1]}, {"kinds": [7]})
    assert await client.recv() == ["COUNT", "c", {"count": 4}]


async def test_nip09_deletion(relay) -> None:
    client = await relay.connect()
    mine, theirs = note(content="mine"), note(BOB, content="theirs")
    await client.publish(mine)
    await client.publish(theirs)
    deletion = note(kind=5, tags=[["e", mine.id], ["e", theirs.id]])
    assert (await client.publish(deletion))[2] is True
    ids = {e["id"] for e in await client.req("s", {"kinds": [1]})}
    assert ids == {theirs.id}
    ok = await client.publish(mine)
    assert ok[2] is False and ok[3].startswith("blocked:")


async def test_nip09_address_deletion(relay) -> None:
    client = await relay.connect()
    now = int(time.time())
    alice = public_key_hex(ALICE)
    art = note(kind=30023, tags=[["d", "post"]], created_at=now - 10)
    await client.publish(art)
    deletion = note(kind=5, tags=[["a", f"30023:{alice}:post"]], created_at=now - 5)
    await client.publish(deletion)
    assert await client.req("s", {"kinds": [30023]}) == []
    older = note(kind=30023, tags=[["d", "post"]], content="older", created_at=now - 8)
    ok = await client.publish(older)
    assert ok[2] is False and ok[3].startswith("blocked:")


async def test_replaceable_older_version_is_refused(relay) -> None:
    client = await relay.connect()
    now = int(time.time())
    new, old = note(kind=0, content="new", created_at=now), note(kind=0, created_at=now - 5)
    assert (await client.publish(new))[2] is True
    ok = await client.publish(old)
    assert ok[2] is False and ok[3].startswith("duplicate:")
    assert await client.req("s", {"kinds": [0]}) == [new.to_dict()]


async def test_ephemeral_events_are_broadcast_not_stored(relay) -> None:
    reader, writer = await relay.connect(), await relay.connect()
    await reader.req("s", {"kinds": [20001]})
    e = note(kind=20001)
    assert (await writer.publish(e))[2] is True
    assert await reader.recv() == ["EVENT", "s", e.to_dict()]
    assert await writer.req("q", {"kinds": [20001]}) == []


async def test_expired_event_is_refused(relay) -> None:
    client = await relay.connect()
    e = note(tags=[["expiration", str(int(time.time()) - 1)]])
    ok = await client.publish(e)
    assert ok[2] is False and ok[3].startswith("invalid:")


async def test_created_at_too_far_in_future(relay) -> None:
    client = await relay.connect()
    e = note(created_at=int(time.time()) + 3600)
    ok = await client.publish(e)
    assert ok[2] is False and ok[3].startswith("invalid:")


async def test_oversize_frame_closes_with_1009(relay) -> None:
    client = await relay.connect()
    await client.send("EVENT", note(content="x" * 200_000).to_dict())
    msg = await client.ws.receive(timeout=10)
    while msg.type is aiohttp.WSMsgType.TEXT:
        msg = await client.ws.receive(timeout=10)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1009
    again = await relay.connect()
    assert (await again.publish(note()))[2] is True


def auth_event(sk: bytes, challenge: str, relay_url: str, **kw: Any) -> Event:
    tags = [["relay", relay_url], ["challenge", challenge]]
    return sign_event(sk, kind=22242, tags=tags, **kw)


async def test_nip42_auth_and_nip70_protected_events(relay) -> None:
    client = await relay.connect()
    protected = note(tags=[["-"]])
    ok = await client.publish(protected)
    assert ok[2] is False and ok[3].startswith("auth-required:")
    assert client.challenge
    relay_url = relay.server.settings.info.relay_url
    bad = auth_event(ALICE, "wrong", relay_url)
    await client.send("AUTH", bad.to_dict())
    assert (await client.recv())[:3] == ["OK", bad.id, False]
    good = auth_event(ALICE, client.challenge, relay_url)
    await client.send("AUTH", good.to_dict())
    assert await client.recv() == ["OK", good.id, True, ""]
    assert (await client.publish(protected))[2] is True
    bobs = note(BOB, tags=[["-"]])
    assert (await client.publish(bobs))[3].startswith("auth-required:")


class RefusingGate:
    """A gate that refuses everything except kind 7, and counts charges."""

    def __init__(self) -> None:
        self.charged: list[str] = []

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def charge(self, event: Event) -> Charge:
        self.charged.append(event.id)
        if event.kind == 7:
            return Charge(accepted=True)
        return Charge(accepted=False, message="restricted: payment required")

    def health(self) -> tuple[str, dict[str, Any]]:
        return "disconnected", {"url": "ws://nowhere"}

    def nip11_fees(self) -> dict[str, Any] | None:
        return {"publication": [{"kinds": [1], "amount": 10, "unit": "ETH"}]}

    def nip11_payments(self) -> dict[str, Any] | None:
        return None


async def test_payment_gate_refusal_stores_and_broadcasts_nothing(start_relay) -> None:
    gate = RefusingGate()
    relay = await start_relay(gate=gate)
    reader, writer = await relay.connect(), await relay.connect()
    await reader.req("s", {})
    refused = note(content="unpaid")
    ok = await writer.publish(refused)
    assert ok == ["OK", refused.id, False, "restricted: payment required"]
    paid = note(kind=7)
    assert (await writer.publish(paid))[2] is True
    assert await reader.recv() == ["EVENT", "s", paid.to_dict()]
    assert [e["id"] for e in await writer.req("q", {})] == [paid.id]
    invalid = {**note().to_dict(), "sig": "00" * 64}
    await writer.publish(invalid)
    assert gate.charged == [refused.id, paid.id]  # invalid events are never charged
    await writer.publish(paid)
    assert gate.charged == [refused.id, paid.id]  # nor duplicates


async def test_nip11_health_and_metrics(start_relay) -> None:
    relay = await start_relay(gate=RefusingGate())
    http = relay.http
    async with http.get(relay.http_url + "/", headers={"Accept": "application/nostr+json"}) as r:
        assert r.status == 200
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        doc = await r.json(content_type=None)
    assert doc["supported_nips"] == [1, 9, 11, 13, 40, 42, 45, 70]
    assert doc["limitation"]["payment_required"] is True
    assert doc["fees"]["publication"][0]["amount"] == 10
    async with http.get(relay.http_url + "/health") as r:
        assert r.status == 200
        body = await r.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["dassie_rpc"]["status"] == "disconnected"
    client = await relay.connect()
    await client.publish(note())
    await client.publish(note(kind=7))
    async with http.get(relay.http_url + "/metrics") as r:
        text = await r.text()
    assert "nostream_connections 1" in text
    assert "nostream_events_accepted_total 1" in text
    assert 'nostream_events_rejected_total{reason="restricted"} 1' in text
    assert "nostream_query_duration_seconds_count" in text


async def test_health_is_unhealthy_when_the_database_is_down(start_relay) -> None:
    relay = await start_relay()
    async with relay.http.get(relay.http_url + "/health") as r:
        assert r.status == 200 and (await r.json())["status"] == "healthy"
    await relay.server.relay.store.close()
    async with relay.http.get(relay.http_url + "/health") as r:
        assert r.status == 503
        body = await r.json()
    assert body["status"] == "unhealthy" and body["checks"]["database"]["status"] == "down"
    await relay.server.relay.store.open()


async def test_many_concurrent_publishers(relay) -> None:
    clients = await asyncio.gather(*(relay.connect() for _ in range(10)))
    events = [[note(content=f"{i}-{j}") for j in range(10)] for i in range(10)]

    async def run(client, batch) -> list[bool]:
        return [(await client.publish(e))[2] for e in batch]

    results = await asyncio.gather(*(run(c, b) for c, b in zip(clients, events, strict=True)))
    assert all(all(r) for r in results)
    await clients[0].send("COUNT", "c", {})
    assert await clients[0].recv() == ["COUNT", "c", {"count": 100}]


async def test_nip11_is_plain_text_without_the_accept_header(relay) -> None:
    async with relay.http.get(relay.http_url + "/") as r:
        assert r.status == 200 and "Nostr" in await r.text()
    async with relay.http.options(relay.http_url + "/") as r:
        assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "*"


async def test_pipelined_events_all_get_an_ok(relay) -> None:
    client = await relay.connect()
    events = [note(content=f"pipelined {i}") for i in range(50)]
    for e in events:
        await client.send("EVENT", e.to_dict())
    oks = {}
    while len(oks) < len(events):
        reply = await client.recv()
        assert reply[0] == "OK"
        oks[reply[1]] = reply[2]
    assert oks == {e.id: True for e in events}
    assert len(await client.req("all", {"limit": 100})) == 50


async def test_events_in_flight_are_stored_when_the_client_leaves(start_relay) -> None:
    relay = await start_relay()
    client = await relay.connect()
    events = [note(content=f"fire and forget {i}") for i in range(20)]
    for e in events:
        await client.send("EVENT", e.to_dict())
    await client.send("REQ", "sync", {"ids": ["00" * 32]})
    while (await client.recv())[0] != "EOSE":
        pass  # every EVENT above has been read by the relay
    await client.ws.close()
    await relay.server.stop()  # waits for connections to finish their work
    store = relay.server.relay.store
    await store.open()
    assert await store.count([parse_filter({"ids": [e.id for e in events]})]) == 20


class HeldGate(RefusingGate):
    """Accepts everything, but only once ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    async def charge(self, event: Event) -> Charge:
        self.charged.append(event.id)
        self.entered.set()
        await self.release.wait()
        return Charge(accepted=True)


async def test_a_copy_arriving_while_the_first_is_charged_is_not_charged_again(
    start_relay,
) -> None:
    gate = HeldGate()
    relay = await start_relay(gate=gate)
    first, second = await relay.connect(), await relay.connect()
    e = note(content="paid once")
    await first.send("EVENT", e.to_dict())
    await gate.entered.wait()
    ok = await second.publish(e)
    assert ok[:3] == ["OK", e.id, False] and ok[3].startswith("duplicate:")
    gate.release.set()
    assert await first.recv() == ["OK", e.id, True, ""]
    assert gate.charged == [e.id]
