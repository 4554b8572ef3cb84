"""Operator limits from settings.yaml, enforced by a live relay (SQLite backend)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from typing import Any

from nostr_protocol.event import Event, compute_id
from nostr_protocol.keys import public_key_hex, sign_event
from nostr_protocol.nips import leading_zero_bits

from .conftest import relay_settings

ALICE = bytes.fromhex("a1" * 32)
BOB = bytes.fromhex("b2" * 32)


def note(sk: bytes = ALICE, kind: int = 1, content: str = "x", tags=(), **kw: Any) -> Event:
    return sign_event(sk, kind=kind, content=content, tags=tags, **kw)


def mine(sk: bytes, bits: int) -> Event:
    """An event whose id has at least ``bits`` leading zero bits (NIP-13)."""
    pubkey = public_key_hex(sk)
    nonce = 0
    while True:
        tags = [["nonce", str(nonce), str(bits)]]
        if leading_zero_bits(compute_id(pubkey, 1700000000, 1, tags, "pow")) >= bits:
            return sign_event(sk, kind=1, content="pow", tags=tags, created_at=1700000000)
        nonce += 1


def tree(**event_limits: Any) -> dict[str, Any]:
    return {"limits": {"event": event_limits}}


async def test_min_pow(start_relay) -> None:
    relay = await start_relay(relay_settings(tree(eventId={"minLeadingZeroBits": 8})))
    client = await relay.connect()
    weak = note()
    while leading_zero_bits(weak.id) >= 8:
        weak = note(content=weak.content + "x")
    ok = await client.publish(weak)
    assert ok[2] is False and ok[3].startswith("pow:")
    assert (await client.publish(mine(ALICE, 8)))[2] is True


async def test_event_rate_limit_per_kind(start_relay) -> None:
    limits = tree(rateLimits=[{"kinds": [7], "period": 60000, "rate": 2}])
    relay = await start_relay(relay_settings(limits))
    client = await relay.connect()
    assert (await client.publish(note(kind=7, content="1")))[2] is True
    assert (await client.publish(note(kind=7, content="2")))[2] is True
    ok = await client.publish(note(kind=7, content="3"))
    assert ok[2] is False and ok[3].startswith("rate-limited:")
    assert (await client.publish(note(kind=1)))[2] is True


async def test_message_rate_limit(start_relay) -> None:
    rules = [{"period": 60000, "rate": 3}]
    settings = relay_settings({"limits": {"message": {"rateLimits": rules}}})
    relay = await start_relay(settings)
    client = await relay.connect()
    for i in range(3):
        await client.req(f"s{i}", {"ids": ["00" * 32]})
    await client.send("REQ", "s3", {})
    reply = await client.recv()
    assert reply[:2] == ["CLOSED", "s3"] and reply[2].startswith("rate-limited:")


async def test_kind_and_pubkey_lists(start_relay) -> None:
    alice = public_key_hex(ALICE)
    limits = tree(kind={"blacklist": [[4, 6]]}, pubkey={"whitelist": [alice]})
    relay = await start_relay(relay_settings(limits))
    client = await relay.connect()
    assert (await client.publish(note(kind=1)))[2] is True
    ok = await client.publish(note(kind=5))
    assert ok[2] is False and ok[3].startswith("blocked:")
    ok = await client.publish(note(BOB))
    assert ok[2] is False and ok[3].startswith("blocked:")


async def test_content_length_and_past_window(start_relay) -> None:
    limits = tree(content={"maxLength": 10}, createdAt={"maxNegativeDelta": 60})
    relay = await start_relay(relay_settings(limits))
    client = await relay.connect()
    ok = await client.publish(note(content="x" * 11))
    assert ok[2] is False and ok[3].startswith("invalid:")
    ok = await client.publish(note(created_at=1700000000))
    assert ok[2] is False and ok[3].startswith("invalid:")
    assert (await client.publish(note(content="x" * 10)))[2] is True


async def test_auth_required_setting(start_relay) -> None:
    relay = await start_relay(relay_settings({"nip42": {"authRequired": True}}))
    client = await relay.connect()
    e = note()
    ok = await client.publish(e)
    assert ok[2] is False and ok[3].startswith("auth-required:")
    auth = sign_event(
        ALICE,
        kind=22242,
        tags=[["relay", "ws://localhost:8008/"], ["challenge", client.challenge or ""]],
    )
    await client.send("AUTH", auth.to_dict())
    assert (await client.recv())[2] is True
    assert (await client.publish(e))[2] is True


async def raw_ws_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket handshake over a bare TCP stream, so the test controls reading."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


def masked_text_frame(payload: bytes) -> bytes:
    assert len(payload) < 126
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


async def test_slow_consumer_is_disconnected(start_relay) -> None:
    relay = await start_relay(relay_settings({"network": {"maxOutgoingQueue": 5}}))
    _, slow = await raw_ws_client(relay.server.port)
    slow.write(masked_text_frame(b'["REQ","all",{}]'))
    await slow.drain()
    writer = await relay.connect()
    # wait until the relay has answered the REQ (EOSE) by completing a round trip
    await writer.req("sync", {"ids": ["00" * 32]})
    big = "y" * 60_000
    metrics = relay.server.relay.metrics
    for i in range(300):
        assert (await writer.publish(note(content=f"{i}{big}")))[2] is True
        if metrics.connections == 1:
            break
    assert metrics.connections == 1
    assert (await writer.publish(note(content="still serving")))[2] is True
    slow.close()


async def test_large_req_is_not_cut_off_by_the_queue_bound(start_relay) -> None:
    settings = relay_settings({"network": {"maxOutgoingQueue": 20}})
    relay = await start_relay(settings)
    client = await relay.connect()
    for i in range(250):
        await client.publish(note(content=str(i)))
    got = await client.req("all", {"limit": 1000})
    assert len(got) == 250
