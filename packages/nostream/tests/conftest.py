"""Fixtures shared by nostream's tests.

``store`` is an opened :class:`~nostream.storage.base.EventStore`, parametrized
over every backend so the same tests run on each: ``sqlite`` (a file in a
temporary directory) and ``postgres`` (``PostgresEventStore`` on the root
``postgres_dsn`` fixture's fresh database).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from nostream.bus.base import LocalBus
from nostream.config import Settings, settings_from
from nostream.payments.gate import FreePublishing, PaymentGate
from nostream.ratelimit.base import MemoryRateLimiter
from nostream.relay import Relay
from nostream.server.app import RelayServer
from nostream.storage.base import EventStore
from nostream.storage.sqlite import SqliteEventStore

STORE_BACKENDS = ["sqlite", "postgres"]


def make_store(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> EventStore:
    """An unopened store of ``backend`` ."""
    if backend == "sqlite":
        return SqliteEventStore(tmp_path / "nostream.sqlite3")
    module = importlib.import_module("nostream.storage.postgres")
    dsn = request.getfixturevalue("postgres_dsn")
    store: EventStore = module.PostgresEventStore(dsn)
    return store


@pytest.fixture(params=STORE_BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    s = make_store(request, request.param, tmp_path)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


# -- a live relay over real WebSockets -------------------------------------------------


RECV_TIMEOUT = 10.0


def relay_settings(tree: Mapping[str, Any] | None = None, **env: str) -> Settings:
    """Test settings: 127.0.0.1 on an ephemeral port, no rate limits unless given."""
    return settings_from(tree or {}, {"RELAY_HOST": "127.0.0.1", "RELAY_PORT": "0", **env})


class WsClient:
    """A minimal Nostr client over a real aiohttp WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.challenge: str | None = None

    async def send(self, *message: Any) -> None:
        await self.ws.send_str(orjson.dumps(list(message)).decode())

    async def send_raw(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data)

    async def recv(self) -> list[Any]:
        """The next message, skipping the AUTH challenge (remembered in ``challenge``)."""
        while True:
            msg = await self.ws.receive(timeout=RECV_TIMEOUT)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"expected a text frame, got {msg.type!r} {msg.data!r}")
            data = orjson.loads(msg.data)
            if data[0] == "AUTH":
                self.challenge = data[1]
                continue
            return list(data)

    async def publish(self, event: Any) -> list[Any]:
        """Send EVENT and return its OK message."""
        await self.send("EVENT", event.to_dict() if hasattr(event, "to_dict") else event)
        while True:
            reply = await self.recv()
            if reply[0] == "OK":
                return reply

    async def req(self, sub_id: str, *filters: dict[str, Any]) -> list[dict[str, Any]]:
        """Send REQ and collect stored events until EOSE."""
        await self.send("REQ", sub_id, *filters)
        events = []
        while True:
            reply = await self.recv()
            if reply[0] == "EOSE" and reply[1] == sub_id:
                return events
            if reply[0] == "CLOSED" and reply[1] == sub_id:
                raise AssertionError(f"subscription closed: {reply}")
            assert reply[0] == "EVENT" and reply[1] == sub_id, reply
            events.append(reply[2])


@dataclass
class LiveRelay:
    server: RelayServer
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def connect(self, **kwargs: Any) -> WsClient:
        ws = await self.http.ws_connect(self.url, autoping=True, **kwargs)
        return WsClient(ws)


RelayFactory = Callable[..., Any]


@pytest.fixture
async def start_relay(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[RelayFactory]:
    """``await start_relay(settings=None, gate=None, backend="sqlite")`` -> LiveRelay."""
    started: list[LiveRelay] = []

    async def start(
        settings: Settings | None = None,
        gate: PaymentGate | None = None,
        backend: str = "sqlite",
    ) -> LiveRelay:
        store = make_store(request, backend, tmp_path / f"r{len(started)}")
        server = RelayServer(
            Relay(
                settings or relay_settings(),
                store,
                LocalBus(),
                MemoryRateLimiter(),
                gate or FreePublishing(),
            )
        )
        await server.start()
        live = LiveRelay(server, aiohttp.ClientSession())
        started.append(live)
        return live

    yield start
    for live in started:
        await live.http.close()
        await live.server.stop()


@pytest.fixture(params=STORE_BACKENDS)
async def relay(request: pytest.FixtureRequest, start_relay: RelayFactory) -> LiveRelay:
    """A live relay with default test settings on each storage backend."""
    live: LiveRelay = await start_relay(backend=request.param)
    return live
