"""PostgreSQL-specific behaviour of PostgresEventStore (the shared contract is in
``test_storage_contract.py``): migrations, several processes on one database,
batching, awkward bytes, and a database that goes away and comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from nostr_protocol.event import Event
from nostr_protocol.filters import parse_filter
from nostr_protocol.keys import sign_event
from nostream.storage.base import SaveOutcome, StorageError
from nostream.storage.postgres import PostgresEventStore, migrations
from tests.support import PostgresServer, free_port

ALICE = bytes.fromhex("31" * 32)
BOB = bytes.fromhex("32" * 32)
NOW = int(time.time())


def ev(sk: bytes = ALICE, kind: int = 1, content: str = "hi", tags=(), created_at: int = NOW):
    return sign_event(sk, kind=kind, content=content, tags=tags, created_at=created_at)


@pytest.fixture
async def pg(postgres_dsn: str) -> AsyncIterator[PostgresEventStore]:
    store = PostgresEventStore(postgres_dsn)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_migrations_run_once_even_when_two_processes_start_together(
    postgres_dsn: str,
) -> None:
    first, second = PostgresEventStore(postgres_dsn), PostgresEventStore(postgres_dsn)
    await asyncio.gather(first.open(), second.open())
    await first.close()
    await second.close()
    third = PostgresEventStore(postgres_dsn)
    await third.open()  # a restart against an up-to-date schema changes nothing
    await third.close()
    conn = await asyncpg.connect(postgres_dsn)
    try:
        versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_version")]
    finally:
        await conn.close()
    assert versions == [v for v, _ in migrations()]
    assert versions and versions[0] == 1


async def test_two_stores_on_one_database_keep_one_replaceable_winner(postgres_dsn: str) -> None:
    a, b = PostgresEventStore(postgres_dsn), PostgresEventStore(postgres_dsn)
    await a.open()
    await b.open()
    try:
        versions = [ev(kind=10002, content=str(i), created_at=NOW + i % 7) for i in range(40)]
        stores = [a, b]
        outcomes = await asyncio.gather(*(stores[i % 2].save(e) for i, e in enumerate(versions)))
        winner = min(versions, key=lambda e: (-e.created_at, e.id))
        assert outcomes[versions.index(winner)] is SaveOutcome.STORED
        assert set(outcomes) <= {SaveOutcome.STORED, SaveOutcome.SHADOWED}
        for store in stores:
            assert await store.query([parse_filter({"kinds": [10002]})], 100, 100) == [winner]
    finally:
        await a.close()
        await b.close()


async def test_concurrent_saves_are_batched_into_few_commits(pg: PostgresEventStore) -> None:
    events = [ev(content=f"n{i}") for i in range(300)]
    outcomes = await asyncio.gather(*(pg.save(e) for e in events))
    assert outcomes == [SaveOutcome.STORED] * 300
    assert pg.commits < 300
    assert await pg.count([parse_filter({})]) == 300


async def test_an_unstorable_event_fails_alone_and_its_batch_mates_are_stored(
    pg: PostgresEventStore,
) -> None:
    good = [ev(content=f"ok{i}") for i in range(5)]
    bad = Event("ab" * 32, "cd" * 32, NOW, 1, (), "lone \ud800 surrogate", "ef" * 64)
    results = await asyncio.gather(
        *(pg.save(e) for e in [*good[:3], bad, *good[3:]]), return_exceptions=True
    )
    assert isinstance(results[3], StorageError)
    assert "cannot be stored" in str(results[3])
    assert [r for i, r in enumerate(results) if i != 3] == [SaveOutcome.STORED] * 5
    assert {e.id for e in await pg.query([parse_filter({})], 100, 100)} == {e.id for e in good}


async def test_nul_bytes_in_content_tags_and_d_tags_round_trip(pg: PostgresEventStore) -> None:
    e = ev(kind=30023, content="a\x00b", tags=[["d", "x\x00y"], ["t", "p\x00q"]])
    assert await pg.save(e) is SaveOutcome.STORED
    assert await pg.query([parse_filter({"#t": ["p\x00q"]})], 10, 10) == [e]
    newer = ev(kind=30023, content="v2", tags=[["d", "x\x00y"]], created_at=NOW + 1)
    assert await pg.save(newer) is SaveOutcome.STORED
    assert await pg.query([parse_filter({"kinds": [30023]})], 10, 10) == [newer]


async def test_free_tier_counter_is_exact_across_two_stores(postgres_dsn: str) -> None:
    a, b = PostgresEventStore(postgres_dsn), PostgresEventStore(postgres_dsn)
    await a.open()
    await b.open()
    try:
        results = await asyncio.gather(
            *((a if i % 2 else b).bump_counter("free", "pk1", 7) for i in range(30))
        )
        assert results.count(True) == 7
        assert not await a.bump_counter("free", "pk1", 7)
        assert await b.bump_counter("free", "pk2", 7)
        assert not await a.bump_counter("free", "pk3", 0)
    finally:
        await a.close()
        await b.close()


async def test_unreachable_server_gives_a_clear_storage_error() -> None:
    store = PostgresEventStore(f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    with pytest.raises(StorageError, match="database unavailable"):
        await store.open()
    assert not await store.ping()
    with pytest.raises(StorageError, match="not open"):
        await store.save(ev())


async def test_store_survives_its_connections_being_killed(
    pg: PostgresEventStore, postgres_dsn: str
) -> None:
    first = ev(content="before")
    assert await pg.save(first) is SaveOutcome.STORED
    admin = await asyncpg.connect(postgres_dsn)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    assert killed >= 1
    assert await pg.query([parse_filter({"ids": [first.id]})], 10, 10) == [first]
    second = ev(content="after")
    assert await pg.save(second) is SaveOutcome.STORED
    assert await pg.ping()


async def test_store_errors_while_the_server_is_down_and_recovers_after_restart(
    postgres_dsn: str, postgres_server: PostgresServer | None
) -> None:
    if postgres_server is None:
        # An external server (TEST_POSTGRES_DSN) cannot be restarted: use a private one.
        postgres_server = PostgresServer()
        postgres_server.start()
        own = True
        dsn = postgres_server.admin_dsn
    else:
        own = False
        dsn = postgres_dsn
    store = PostgresEventStore(dsn, connect_timeout=2)
    try:
        await store.open()
        before = ev(content="before restart")
        assert await store.save(before) is SaveOutcome.STORED
        postgres_server.stop()
        try:
            with pytest.raises(StorageError, match="database unavailable"):
                await store.save(ev(content="while down"))
            with pytest.raises(StorageError, match="database unavailable"):
                await store.query([parse_filter({})], 10, 10)
            assert not await store.ping()
        finally:
            postgres_server.start()
        after = ev(content="after restart")
        assert await store.save(after) is SaveOutcome.STORED
        got = await store.query([parse_filter({})], 10, 10)
        assert {e.id for e in got} == {before.id, after.id}
        assert await store.ping()
    finally:
        await store.close()
        if own:
            postgres_server.close()
