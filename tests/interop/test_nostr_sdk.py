"""Interop: the rust-nostr client library (PyPI ``nostr-sdk``) against a live relay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import orjson
import pytest
from nostr_sdk import (
    Client,
    EventBuilder,
    Filter,
    Keys,
    Kind,
    PublicKey,
    RelayUrl,
    ReqExitPolicy,
    ReqTarget,
)

from nostr_protocol.keys import public_key_hex, sign_event
from nostr_protocol.validate import validate_event
from nostream.bus.base import LocalBus
from nostream.config import settings_from
from nostream.payments.gate import FreePublishing
from nostream.ratelimit.base import MemoryRateLimiter
from nostream.relay import Relay
from nostream.server.app import RelayServer
from nostream.storage.sqlite import SqliteEventStore


@pytest.fixture
async def relay_url(tmp_path: Path) -> AsyncIterator[str]:
    settings = settings_from({}, {"RELAY_HOST": "127.0.0.1", "RELAY_PORT": "0"})
    server = RelayServer(
        Relay(
            settings,
            SqliteEventStore(tmp_path / "db.sqlite3"),
            LocalBus(),
            MemoryRateLimiter(),
            FreePublishing(),
        )
    )
    await server.start()
    try:
        yield f"ws://127.0.0.1:{server.port}"
    finally:
        await server.stop()


async def connected_client(url: str) -> Client:
    client = Client()
    await client.add_relay(RelayUrl.parse(url))
    await client.connect(timedelta(seconds=10))
    return client


async def raw_req(url: str, filt: dict) -> list[dict]:
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_str(orjson.dumps(["REQ", "q", filt]).decode())
        events = []
        while True:
            msg = orjson.loads((await ws.receive(timeout=10)).data)
            if msg[0] == "EOSE":
                return events
            if msg[0] == "EVENT":
                events.append(msg[2])


async def test_nostr_sdk_publishes_and_our_relay_verifies_it(relay_url: str) -> None:
    keys = Keys.generate()
    client = await connected_client(relay_url)
    try:
        event = EventBuilder(Kind(1), 'hello from rust-nostr \u2603 \n"quoted"').finalize(keys)
        output = await client.send_event(event)
        assert [str(u).rstrip("/") for u in output.success] == [relay_url]
        assert not output.failed
    finally:
        await client.shutdown()
    stored = await raw_req(relay_url, {"authors": [keys.public_key().to_hex()]})
    assert len(stored) == 1
    ours = validate_event(stored[0])  # our id and signature checks accept their event
    assert ours.id == event.id().to_hex()
    assert ours.content == 'hello from rust-nostr \u2603 \n"quoted"'


async def test_nostr_sdk_fetches_and_verifies_our_events(relay_url: str) -> None:
    sk = bytes.fromhex("5e" * 32)
    ours = [
        sign_event(sk, kind=1, content=f"note {i} \t\u00e9", tags=[["t", "interop"]])
        for i in range(3)
    ]
    async with aiohttp.ClientSession() as http, http.ws_connect(relay_url) as ws:
        for e in ours:
            await ws.send_str(orjson.dumps(["EVENT", e.to_dict()]).decode())
        oks = 0
        while oks < 3:
            msg = orjson.loads((await ws.receive(timeout=10)).data)
            if msg[0] == "OK":
                assert msg[2] is True
                oks += 1
    client = await connected_client(relay_url)
    try:
        author = PublicKey.parse(public_key_hex(sk))
        events = await client.fetch_events(
            ReqTarget.auto([Filter().author(author).hashtag("interop")]), timedelta(seconds=10)
        )
        got = {e.id().to_hex(): e for e in events}
        assert set(got) == {e.id for e in ours}
        assert all(e.verify() for e in got.values())
    finally:
        await client.shutdown()


async def test_nostr_sdk_receives_live_events(relay_url: str) -> None:
    keys = Keys.generate()
    client = await connected_client(relay_url)
    try:
        stream = await client.stream_events(
            ReqTarget.auto([Filter().kind(Kind(1)).author(keys.public_key())]),
            timeout=timedelta(seconds=10),
            policy=ReqExitPolicy.WAIT_FOR_EVENTS_AFTER_EOSE(1),
        )
        # The relay handles one connection's messages in order: once this OK is back,
        # the REQ above has been answered (EOSE) and the subscription is live.
        unrelated = EventBuilder(Kind(7), "+").finalize(keys)
        assert (await client.send_event(unrelated)).success
        late = EventBuilder(Kind(1), "live").finalize(keys)
        publisher = await connected_client(relay_url)
        try:
            await publisher.send_event(late)
        finally:
            await publisher.shutdown()
        item = await asyncio.wait_for(stream.next(), 10)
        assert item is not None and item.event is not None
        assert item.event.id().to_hex() == late.id().to_hex()
    finally:
        await client.shutdown()
