"""The paid flow with the relay on PostgreSQL and Redis (real servers from the root fixtures)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from devchain.accounts import ACCOUNTS
from nostr_pay.chain import Chain
from nostr_pay.devstack import DevStack, StackConfig, unlimited_settings
from nostr_pay.relay import RelayConnection
from nostr_protocol.keys import generate_secret_key, public_key_hex, sign_event
from payment_channel.claim import Claim, sign_claim
from payment_channel.tag import PaymentClaim
from tests.support import free_port

PRICE = 10**12

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def backend_env(postgres_dsn: str, redis_url: str) -> dict[str, str]:
    pg = urlsplit(postgres_dsn)
    rd = urlsplit(redis_url)
    env = {
        "DB_HOST": pg.hostname or "127.0.0.1",
        "DB_PORT": str(pg.port or 5432),
        "DB_USER": unquote(pg.username or "postgres"),
        "DB_PASSWORD": unquote(pg.password or ""),
        "DB_NAME": pg.path.lstrip("/"),
        "REDIS_HOST": rd.hostname or "127.0.0.1",
        "REDIS_PORT": str(rd.port or 6379),
    }
    if rd.password:
        env["REDIS_PASSWORD"] = unquote(rd.password)
    return env


async def test_paid_flow_on_postgres_and_redis(
    postgres_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    config = StackConfig(
        root=tmp_path / "stack",
        chain_port=free_port(),
        node_port=free_port(),
        relay_port=free_port(),
        relay_settings=unlimited_settings(),
        relay_env={
            **backend_env(postgres_dsn, redis_url),
            "PRICING_STORE_EVENT": str(PRICE),
            "PRICING_FREE_TIER_EVENTS": "1",
        },
    )
    stack = DevStack(config)
    await asyncio.to_thread(stack.start)
    try:
        code, health = stack.relay_health()
        assert code == 200 and health["status"] == "healthy"
        assert health["checks"]["database"]["backend"] == "postgres"
        assert health["checks"]["redis"]["status"] == "ok"
        key = bytes.fromhex(ACCOUNTS[8][1][2:])
        chain = Chain(config.chain_url, stack.factory)
        channel_hex = await asyncio.to_thread(
            chain.open_channel, key, stack.relay_address, 10**16, int(time.time()) + 86400
        )
        channel = bytes.fromhex(channel_hex[2:])
        author = generate_secret_key()

        def paid(amount: int, nonce: int) -> list[list[str]]:
            signature = sign_claim(key, channel, amount, nonce)
            return [PaymentClaim(Claim(channel, amount, nonce, signature), "ETH").to_tag()]

        async with (
            RelayConnection(config.relay_url) as relay,
            RelayConnection(config.relay_url) as subscriber,
        ):
            sub = await subscriber.subscribe({"authors": [public_key_hex(author)]})
            assert await subscriber.next_event(sub) is None
            # The free tier (1 event per pubkey, counted in PostgreSQL) ...
            free = sign_event(author, kind=1, content="free one")
            assert (await relay.publish(free)).accepted
            unpaid = sign_event(author, kind=1, content="free two")
            ok = await relay.publish(unpaid)
            assert not ok.accepted and ok.message.startswith("restricted: payment required")
            # ... then paid events.
            events = [
                sign_event(author, kind=1, content=f"paid {n}", tags=paid(PRICE * n, n))
                for n in (1, 2)
            ]
            for event in events:
                ok = await relay.publish(event)
                assert ok.accepted, ok.message
            replay = sign_event(author, kind=1, content="replay", tags=paid(PRICE * 3, 2))
            ok = await relay.publish(replay)
            assert ok.message.startswith("restricted: invalid payment nonce")
            received = [await subscriber.next_event(sub) for _ in range(3)]
            assert [e["id"] for e in received if e] == [free.id, *(e.id for e in events)]
            found = await relay.query({"authors": [public_key_hex(author)]})
            assert {e["id"] for e in found} == {free.id, *(e.id for e in events)}
    finally:
        await asyncio.to_thread(stack.stop)
