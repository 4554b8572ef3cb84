"""The root ``postgres_dsn``/``redis_url`` fixtures hand out really empty databases."""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis


async def _objects(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
            "AND nspname <> 'information_schema' "
            "UNION ALL SELECT relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
            "UNION ALL SELECT proname FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
        )
    finally:
        await conn.close()
    return sorted(r[0] for r in rows)


async def test_a_reused_database_comes_back_empty(_postgres_databases: object) -> None:
    databases = _postgres_databases
    name = databases.acquire()  # type: ignore[attr-defined]
    dsn = databases.admin_dsn.rsplit("/", 1)[0] + "/" + name  # type: ignore[attr-defined]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE SCHEMA extra; CREATE TABLE t (x int); CREATE TABLE extra.u (y int);"
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';"
        )
    finally:
        await conn.close()
    lingering = await asyncpg.connect(dsn)  # a session the test forgot to close
    databases.release(name)  # type: ignore[attr-defined]
    assert lingering.is_closed() or not await _is_alive(lingering)
    again = databases.acquire()  # type: ignore[attr-defined]
    try:
        assert again == name
        assert await _objects(dsn) == ["public"]
    finally:
        databases.release(again)  # type: ignore[attr-defined]


async def _is_alive(conn: asyncpg.Connection) -> bool:
    try:
        await conn.fetchval("SELECT 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        return False
    finally:
        conn.terminate()
    return True


async def test_redis_url_is_a_flushed_database(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.dbsize() == 0
        await client.set("left-behind", 1)  # the next test using this index must not see it
    finally:
        await client.aclose()


def test_free_port_is_bindable(free_port: int) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port))
        assert sock.getsockname()[1] == free_port
