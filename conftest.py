"""Root pytest fixtures: real PostgreSQL and Redis servers, free ports.

- ``postgres_dsn``: an empty database per test on a real PostgreSQL server
  (``TEST_POSTGRES_DSN`` if set, else a throwaway PostgreSQL 15 cluster started
  once per session from ``/usr/lib/postgresql/15/bin``, fsync off). After the
  test its sessions are terminated and every schema is dropped, and the
  database is reused by a later test (much faster than CREATE DATABASE).
- ``postgres_server``: the throwaway server (``stop()``/``start()`` simulate a
  restart), or None when ``TEST_POSTGRES_DSN`` is set.
- ``redis_url``: a real Redis (``TEST_REDIS_URL`` if set, else a throwaway
  ``redis-server``); each test gets a logical DB index (cycling 0..15) that is
  flushed before it is handed out. Pub/sub channels are NOT scoped by DB index:
  tests that publish must use channel names unique to the test.
- ``free_port``: an ephemeral TCP port (also ``tests.support.free_port()``).

Missing server binaries fail the tests with an install hint; they never skip.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import sys
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest

_ROOT = Path(__file__).resolve().parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.support import (  # noqa: E402
    PostgresServer,
    RedisServer,
    ServerUnavailable,
)
from tests.support import free_port as _free_port  # noqa: E402

T = TypeVar("T")


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a private event loop in another thread (safe inside async tests)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | None]:
    """The throwaway PostgreSQL server, or None when ``TEST_POSTGRES_DSN`` is used."""
    if os.environ.get("TEST_POSTGRES_DSN"):
        yield None
        return
    try:
        server = PostgresServer()
        server.start()
    except ServerUnavailable as exc:
        pytest.fail(f"cannot start a throwaway PostgreSQL server: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_admin_dsn(postgres_server: PostgresServer | None) -> str:
    """DSN of a database on the test server from which databases can be created."""
    if postgres_server is None:
        return os.environ["TEST_POSTGRES_DSN"]
    return postgres_server.admin_dsn


_RESET_SQL = """
DO $$
DECLARE s name;
BEGIN
    FOR s IN SELECT nspname FROM pg_namespace
             WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
    LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', s);
    END LOOP;
END $$;
CREATE SCHEMA public;
GRANT ALL ON SCHEMA public TO PUBLIC;
"""


class _Databases:
    """Hands out empty databases; a used one is emptied (every schema dropped) and reused.

    Emptying takes a few milliseconds where CREATE DATABASE takes a few hundred.
    """

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.free: list[str] = []

    def acquire(self) -> str:
        if self.free:
            return self.free.pop()
        name = "t_" + secrets.token_hex(6)
        _run_async(self._create(name))
        return name

    def release(self, name: str) -> None:
        import asyncpg

        try:
            _run_async(self._reset(name))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return  # the test may have stopped the server; the name is simply not reused
        self.free.append(name)

    def close(self) -> None:
        import asyncpg

        for name in self.free:
            try:
                _run_async(self._drop(name))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pass
        self.free.clear()

    async def _create(self, name: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def _drop(self, name: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    async def _reset(self, name: str) -> None:
        import asyncpg

        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
        finally:
            await admin.close()
        conn = await asyncpg.connect(_with_database(self.admin_dsn, name))
        try:
            await conn.execute(_RESET_SQL)
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def _postgres_databases(postgres_admin_dsn: str) -> Iterator[_Databases]:
    databases = _Databases(postgres_admin_dsn)
    try:
        yield databases
    finally:
        databases.close()


@pytest.fixture
def postgres_dsn(_postgres_databases: _Databases) -> Iterator[str]:
    """DSN of an empty database (no tables, functions or schemas but ``public``) for this test.

    The database is emptied after the test (its sessions are terminated).
    """
    name = _postgres_databases.acquire()
    try:
        yield _with_database(_postgres_databases.admin_dsn, name)
    finally:
        _postgres_databases.release(name)


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """Base URL of the test Redis server (no DB index)."""
    external = os.environ.get("TEST_REDIS_URL")
    if external:
        yield external
        return
    try:
        server = RedisServer()
        server.start()
    except ServerUnavailable as exc:
        pytest.fail(f"cannot start a throwaway Redis server: {exc}", pytrace=False)
    try:
        yield server.url
    finally:
        server.close()


_redis_db_index = itertools.cycle(range(16))


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """URL of a flushed logical Redis database for this test."""
    import redis

    parts = urlsplit(redis_server_url)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{next(_redis_db_index)}", parts.query, ""))
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url


@pytest.fixture
def free_port() -> int:
    """An ephemeral TCP port on 127.0.0.1 that was free a moment ago."""
    return _free_port()
