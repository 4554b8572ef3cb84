"""Two ``nostream serve`` processes sharing one PostgreSQL database and one Redis.

A subscriber on one relay gets events published on the other (Redis bus),
what one stores the other serves (PostgreSQL), and a rate limit counts the
hits of both (Redis rate limiter).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import pytest
import redis.asyncio as aioredis

from nostr_protocol.event import Event
from nostr_protocol.keys import public_key_hex, sign_event

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ALICE = bytes.fromhex("51" * 32)
RATE_LIMITED_KIND = 7
RATE = 3

SETTINGS = f"""
limits:
  event:
    rateLimits:
      - description: {RATE} reactions per minute per client address
        kinds: [{RATE_LIMITED_KIND}]
        period: 60000
        rate: {RATE}
  message:
    rateLimits:
      - description: plenty
        period: 60000
        rate: 100000
"""

_LISTENING = re.compile(rb"nostream listening on [^:]+:(\d+)")


@dataclass
class Relay:
    proc: asyncio.subprocess.Process
    port: int = 0
    output: list[bytes] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"


async def _start_relay(env: dict[str, str]) -> Relay:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nostream.cli",
        "serve",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    relay = Relay(proc)
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise AssertionError(
                    "nostream serve exited before listening:\n"
                    + b"".join(relay.output).decode(errors="replace")
                )
            relay.output.append(line)
            match = _LISTENING.search(line)
            if match:
                relay.port = int(match.group(1))
                break

    async def drain() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            relay.output.append(line)

    asyncio.get_running_loop().create_task(drain())
    return relay


async def _stop_relay(relay: Relay) -> None:
    if relay.proc.returncode is None:
        relay.proc.terminate()
        try:
            async with asyncio.timeout(20):
                await relay.proc.wait()
        except TimeoutError:
            relay.proc.kill()
            await relay.proc.wait()


def _cluster_env(postgres_dsn: str, redis_server_url: str, config_dir: Path) -> dict[str, str]:
    pg = urlsplit(postgres_dsn)
    rd = urlsplit(redis_server_url)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DASSIE_", "DB_", "REDIS_", "RELAY_", "NOSTR_"))
    }
    env.update(
        RELAY_HOST="127.0.0.1",
        RELAY_PORT="0",
        NOSTR_CONFIG_DIR=str(config_dir),
        NOSTR_DATA_DIR=str(config_dir / "data"),
        DB_HOST=pg.hostname or "127.0.0.1",
        DB_PORT=str(pg.port or 5432),
        DB_USER=unquote(pg.username or "postgres"),
        DB_PASSWORD=unquote(pg.password or ""),
        DB_NAME=pg.path.lstrip("/"),
        REDIS_HOST=rd.hostname or "127.0.0.1",
        REDIS_PORT=str(rd.port or 6379),
        REDIS_PASSWORD=unquote(rd.password or ""),
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
async def cluster(
    postgres_dsn: str, redis_server_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Relay, Relay]]:
    # The relays use Redis DB 0 (the env vars name no index): start it empty.
    rd = urlsplit(redis_server_url)
    raw = aioredis.Redis(
        host=rd.hostname or "127.0.0.1",
        port=rd.port or 6379,
        password=unquote(rd.password) if rd.password else None,
        db=0,
    )
    try:
        await raw.flushdb()
    finally:
        await raw.aclose()
    (tmp_path / "settings.yaml").write_text(SETTINGS)
    env = _cluster_env(postgres_dsn, redis_server_url, tmp_path)
    # Both start at once: their migrations serialise on an advisory lock.
    started = await asyncio.gather(_start_relay(env), _start_relay(env), return_exceptions=True)
    relays = [r for r in started if isinstance(r, Relay)]
    try:
        for result in started:
            if isinstance(result, BaseException):
                raise result
        yield relays[0], relays[1]
    finally:
        for relay in relays:
            await _stop_relay(relay)


class Client:
    """A minimal Nostr client over one WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def receive(self) -> list[Any]:
        async with asyncio.timeout(10):
            message = await self.ws.receive_json()
        assert isinstance(message, list)
        return message

    async def publish(self, event: Event) -> tuple[bool, str]:
        await self.ws.send_json(["EVENT", event.to_dict()])
        while True:
            message = await self.receive()
            if message[0] == "OK" and message[1] == event.id:
                return bool(message[2]), str(message[3])

    async def subscribe(self, sub_id: str, filt: dict[str, Any]) -> list[dict[str, Any]]:
        """Send REQ and return the stored events up to EOSE."""
        await self.ws.send_json(["REQ", sub_id, filt])
        stored = []
        while True:
            message = await self.receive()
            if message[:2] == ["EOSE", sub_id]:
                return stored
            if message[:2] == ["EVENT", sub_id]:
                stored.append(message[2])


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_subscriber_on_one_relay_gets_events_published_on_the_other(
    cluster: tuple[Relay, Relay], http: aiohttp.ClientSession
) -> None:
    one, two = cluster
    for relay in cluster:
        async with http.get(f"http://127.0.0.1:{relay.port}/health") as resp:
            health = await resp.json()
        assert resp.status == 200, health
        assert health["checks"]["database"]["status"] == "ok"
        assert health["checks"]["redis"]["status"] == "ok"
    alice = public_key_hex(ALICE)
    async with http.ws_connect(one.url) as ws1, http.ws_connect(two.url) as ws2:
        listener, publisher = Client(ws1), Client(ws2)
        assert await listener.subscribe("live", {"authors": [alice], "kinds": [1]}) == []
        note = sign_event(ALICE, kind=1, content="hello from relay two")
        assert await publisher.publish(note) == (True, "")
        message = await listener.receive()
        assert message == ["EVENT", "live", note.to_dict()]
        # Stored once in the shared database: relay one serves it and knows it.
        again = await listener.subscribe("past", {"ids": [note.id]})
        assert again == [note.to_dict()]
        ok, reason = await listener.publish(note)
        assert ok and reason.startswith("duplicate:")
        # A replaceable event written through one relay replaces the other's version.
        old = sign_event(ALICE, kind=0, content='{"name":"old"}', created_at=int(time.time()) - 5)
        new = sign_event(ALICE, kind=0, content='{"name":"new"}')
        assert (await listener.publish(old))[0]
        assert (await publisher.publish(new))[0]
        assert await listener.subscribe("meta", {"authors": [alice], "kinds": [0]}) == [
            new.to_dict()
        ]


async def test_rate_limit_is_shared_by_both_relays(
    cluster: tuple[Relay, Relay], http: aiohttp.ClientSession
) -> None:
    one, two = cluster
    async with http.ws_connect(one.url) as ws1, http.ws_connect(two.url) as ws2:
        clients = [Client(ws1), Client(ws2)]
        verdicts = []
        for i in range(RATE + 2):
            reaction = sign_event(ALICE, kind=RATE_LIMITED_KIND, content=f"+{i}")
            verdicts.append(await clients[i % 2].publish(reaction))
        assert [ok for ok, _ in verdicts] == [True] * RATE + [False, False]
        assert all(reason.startswith("rate-limited:") for _, reason in verdicts[RATE:])
        # Other kinds are not limited by that rule.
        assert (await clients[0].publish(sign_event(ALICE, kind=1, content="fine")))[0]
