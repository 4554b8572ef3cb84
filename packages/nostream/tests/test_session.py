"""The per-connection session driven directly, without sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from nostr_protocol.keys import sign_event
from nostream.bus.base import LocalBus
from nostream.payments.gate import FreePublishing
from nostream.ratelimit.base import MemoryRateLimiter
from nostream.relay import Relay
from nostream.session import Session
from nostream.storage.sqlite import SqliteEventStore

from .conftest import relay_settings


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    store = SqliteEventStore(tmp_path / "db.sqlite3")
    await store.open()
    yield Relay(relay_settings(), store, LocalBus(), MemoryRateLimiter(), FreePublishing())
    await store.close()


def frames(sent: list[bytes]) -> list[list]:
    return [orjson.loads(f) for f in sent]


async def test_session_replies_through_send(relay: Relay) -> None:
    sent: list[bytes] = []
    session = Session(relay, "10.0.0.1", sent.append)
    session.start()
    assert frames(sent)[0][0] == "AUTH"
    e = sign_event(b"\x0e" * 32, kind=1, content="direct")
    await session.handle(orjson.dumps(["EVENT", e.to_dict()]))
    await session.drain()
    await session.handle(b'["REQ","s",{"kinds":[1]}]')
    await session.handle(b'["CLOSE","s"]')
    await session.handle(b"[")
    assert frames(sent)[1:] == [
        ["OK", e.id, True, ""],
        ["EVENT", "s", e.to_dict()],
        ["EOSE", "s"],
        ["NOTICE", "invalid: message is not valid JSON"],
    ]
    assert session.subscriptions == {}
    session.stop()
    assert session not in relay.sessions


async def test_live_events_during_the_stored_phase_are_sent_after_eose_once(
    relay: Relay,
) -> None:
    stored = sign_event(b"\x0f" * 32, kind=1, content="stored")
    await relay.store.save(stored)
    live = sign_event(b"\x0f" * 32, kind=1, content="live")
    sent: list[bytes] = []
    gate = asyncio.Event()

    async def slow_flush() -> None:
        # while the REQ is sending stored events, a live event and a copy of the stored arrive
        if not gate.is_set():
            gate.set()
            session.deliver(live, live.to_json())
            session.deliver(stored, stored.to_json())

    session = Session(relay, "10.0.0.2", sent.append, slow_flush)
    await session.handle(b'["REQ","s",{}]')
    assert frames(sent) == [
        ["EVENT", "s", stored.to_dict()],
        ["EOSE", "s"],
        ["EVENT", "s", live.to_dict()],
    ]
