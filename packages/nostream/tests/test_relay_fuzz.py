"""Random frames thrown at a live relay never stop it from serving a valid REQ."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nostr_protocol.keys import sign_event
from nostream.bus.base import LocalBus
from nostream.payments.gate import FreePublishing
from nostream.ratelimit.base import MemoryRateLimiter
from nostream.relay import Relay
from nostream.server.app import RelayServer
from nostream.storage.sqlite import SqliteEventStore

from .conftest import relay_settings


class ThreadedRelay:
    """A relay on its own event loop in a background thread (for synchronous hypothesis)."""

    def __init__(self, path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = RelayServer(
            Relay(
                relay_settings({"network": {"maxPayloadSize": 65536}}),
                SqliteEventStore(path),
                LocalBus(),
                MemoryRateLimiter(),
                FreePublishing(),
            )
        )

    def __enter__(self) -> ThreadedRelay:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture(scope="module")
def threaded_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedRelay]:
    with ThreadedRelay(tmp_path_factory.mktemp("fuzz") / "db.sqlite3") as relay:
        yield relay


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
verbs = st.sampled_from(["EVENT", "REQ", "CLOSE", "COUNT", "AUTH", "NOTICE", "OK", "req", ""])
filters = st.dictionaries(
    st.sampled_from(["ids", "authors", "kinds", "#e", "#p", "since", "until", "limit", "x"]),
    json_values,
    max_size=4,
)
EVENT = sign_event(b"\x0c" * 32, kind=1, content="seed").to_dict()
events = st.builds(
    lambda changes: {**EVENT, **changes},
    st.dictionaries(st.sampled_from(list(EVENT)), json_values, max_size=3),
)
structured = st.one_of(
    st.tuples(verbs, json_values).map(list),
    st.tuples(st.just("REQ"), st.text(max_size=70), filters, filters).map(list),
    st.tuples(st.just("COUNT"), json_values, filters).map(list),
    st.tuples(st.just("EVENT"), events).map(list),
    st.tuples(st.just("AUTH"), events).map(list),
    json_values,
)
frames = st.one_of(
    structured.map(lambda v: json.dumps(v, ensure_ascii=False)),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=200),
    st.binary(max_size=200),
)


async def _throw(url: str, batch: list[str | bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url)
        for frame in batch:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
        if ws.closed:
            ws = await http.ws_connect(url)
        await ws.send_str(orjson.dumps(["REQ", "probe", {"ids": [EVENT["id"]]}]).decode())
        while True:
            msg = await ws.receive(timeout=10)
            if msg.type is aiohttp.WSMsgType.CLOSE:
                # the relay may close a connection that broke the WebSocket rules; a new one works
                ws = await http.ws_connect(url)
                await ws.send_str(orjson.dumps(["REQ", "probe", {"ids": [EVENT["id"]]}]).decode())
                continue
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            reply: list[Any] = orjson.loads(msg.data)
            assert reply[0] in ("AUTH", "NOTICE", "OK", "CLOSED", "EVENT", "EOSE", "COUNT")
            if reply == ["EOSE", "probe"]:
                break
        await ws.close()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(frames, min_size=1, max_size=6))
def test_random_frames_then_a_valid_req_still_works(
    threaded_relay: ThreadedRelay, batch: list[str | bytes]
) -> None:
    url = f"ws://127.0.0.1:{threaded_relay.server.port}/"
    asyncio.run(_throw(url, batch))
    # and the relay is still healthy
    assert threaded_relay.server.relay.metrics.connections <= 1
