"""PostgreSQL event storage (asyncpg): one writer task batching saves into one statement.

Schema and the batch-save function live in ``migrations/postgres/*.sql``; they
are applied in file-name order by :meth:`PostgresEventStore.open` under an
advisory lock, so several relay processes may start against one database.

Every save queued while the previous batch commits is sent as one call of
``nostream_save_events`` (one round trip, one transaction). Replaceable and
addressable events serialise on a per-address advisory lock inside it, so
relays sharing the database keep exactly one version. A lost connection
raises :class:`~nostream.storage.base.StorageError`; the pool opens fresh
connections once the server is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import orjson

from nostr_protocol.event import Event, KindClass
from nostr_protocol.filters import Filter
from nostr_protocol.nips import deletion_targets

from .base import SaveOutcome, StorageError, effective_limit, expiration_of

T = TypeVar("T")

_COLUMNS = "id, pubkey, created_at, kind, tags, content, sig"
_MAX_BATCH = 512
_MIGRATION_LOCK = 0x6E6F737472656D  # "nostrem": serialises migrations across processes
_RETRYABLE = ("40001", "40P01")  # serialization_failure, deadlock_detected
_OUTCOMES = {o.value: o for o in SaveOutcome}


def _address_d(event: Event) -> bytes | None:
    """The ``d_tag`` column: b'' replaceable, the d value addressable, else NULL."""
    cls = event.kind_class
    if cls is KindClass.REPLACEABLE:
        return b""
    if cls is KindClass.ADDRESSABLE:
        return event.d_tag().encode()
    return None


def _indexed(name: str) -> bool:
    """Tags with a single-character name (filters use letters) go into ``event_tags``."""
    return len(name) == 1 and name != "\x00"


def _row_to_event(row: Sequence[Any]) -> Event:
    tags = tuple(tuple(t) for t in orjson.loads(row[4]))
    return Event(
        row[0].hex(), row[1].hex(), row[2], row[3], tags, bytes(row[5]).decode(), row[6].hex()
    )


def migrations() -> list[tuple[int, str]]:
    """The PostgreSQL migrations as ``(version, sql)``, version = the file's number prefix."""
    folder = importlib.resources.files("nostream.storage.migrations.postgres")
    out = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            out.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(out)


class _Params:
    """Collects query parameters and hands out ``$n`` placeholders."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _in(column: str, values: list[Any], sql_type: str, params: _Params) -> str:
    """``column = $n`` for one value (so an index can also deliver the order), else ``= ANY``."""
    if len(values) == 1:
        return f"{column} = {params.add(values[0])}::{sql_type}"
    return f"{column} = ANY({params.add(values)}::{sql_type}[])"


def filter_where(f: Filter, now: int, params: _Params) -> str:
    """A WHERE condition (without ``WHERE``) for one filter, adding its parameters."""
    clauses = [f"(expires_at IS NULL OR expires_at > {params.add(now)})"]
    if f.ids is not None:
        clauses.append(_in("id", [bytes.fromhex(i) for i in sorted(f.ids)], "bytea", params))
    if f.authors is not None:
        authors = [bytes.fromhex(a) for a in sorted(f.authors)]
        clauses.append(_in("pubkey", authors, "bytea", params))
    if f.kinds is not None:
        clauses.append(_in("kind", sorted(f.kinds), "integer", params))
    if f.since is not None:
        clauses.append(f"created_at >= {params.add(f.since)}")
    if f.until is not None:
        clauses.append(f"created_at <= {params.add(f.until)}")
    for letter, values in sorted(f.tags.items()):
        sub = [
            f"name = {params.add(letter)}",
            _in("value", [v.encode() for v in sorted(values)], "bytea", params),
        ]
        if f.kinds is not None:
            sub.append(_in("kind", sorted(f.kinds), "integer", params))
        if f.since is not None:
            sub.append(f"created_at >= {params.add(f.since)}")
        if f.until is not None:
            sub.append(f"created_at <= {params.add(f.until)}")
        clauses.append(f"id IN (SELECT event_id FROM event_tags WHERE {' AND '.join(sub)})")
    return " AND ".join(clauses)


def build_query(
    filters: Sequence[Filter], default_limit: int, max_limit: int, now: int
) -> tuple[str, list[Any]] | None:
    """One SQL statement answering ``query`` (None when no filter can match)."""
    params = _Params()
    parts = []
    for f in filters:
        limit = effective_limit(f, default_limit, max_limit)
        if limit == 0 or f.is_empty_result():
            continue
        where = filter_where(f, now, params)
        parts.append(
            f"(SELECT {_COLUMNS} FROM events WHERE {where} "
            f"ORDER BY created_at DESC, id LIMIT {params.add(limit)})"
        )
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0][1:-1], params.values
    union = " UNION ".join(parts)
    return f"SELECT * FROM ({union}) AS u ORDER BY created_at DESC, id", params.values


def build_count(filters: Sequence[Filter], now: int) -> tuple[str, list[Any]] | None:
    """One SQL statement answering ``count`` (None when no filter can match)."""
    params = _Params()
    parts = [f"({filter_where(f, now, params)})" for f in filters if not f.is_empty_result()]
    if not parts:
        return None
    return "SELECT count(*) FROM events WHERE " + " OR ".join(parts), params.values


def _event_row(event: Event) -> tuple[Any, ...]:
    """The ``events`` columns of ``event``: id, pubkey, created_at, kind, tags, content,
    sig, d_tag, expires_at."""
    return (
        bytes.fromhex(event.id),
        bytes.fromhex(event.pubkey),
        event.created_at,
        event.kind,
        orjson.dumps([list(t) for t in event.tags]).decode(),
        event.content.encode(),
        bytes.fromhex(event.sig),
        _address_d(event),
        expiration_of(event),
    )


@dataclass(slots=True)
class _Batch:
    """Column arrays for one call of ``nostream_save_events``."""

    columns: list[list[Any]] = field(default_factory=lambda: [[] for _ in range(13)])

    def add(self, event: Event) -> None:
        """Append ``event``; on a conversion error nothing is appended."""
        c = self.columns
        tags = [(t[0], t[1].encode()) for t in event.tags if len(t) > 1 and _indexed(t[0])]
        row = (*_event_row(event), len(c[11]) + 1, len(tags))
        for column, value in zip(c, row, strict=False):
            column.append(value)
        for name, value in tags:
            c[11].append(name)
            c[12].append(value)


_SAVE_SQL = (
    "SELECT nostream_save_events($1::bytea[], $2::bytea[], $3::bigint[], $4::integer[], "
    "$5::text[], $6::bytea[], $7::bytea[], $8::bytea[], $9::bigint[], $10::integer[], "
    "$11::integer[], $12::text[], $13::bytea[])"
)


_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a session killed under asyncpg's feet
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)
"""Errors after which the connection is dropped and the operation may be retried."""


def _storage_error(exc: BaseException) -> StorageError:
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, _CONNECTION_ERRORS):
        return StorageError(f"database unavailable: {exc}")
    return StorageError(f"database error: {exc}")


_ERRORS = (*_CONNECTION_ERRORS, asyncpg.PostgresError)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset hook: nothing to undo (no session state is ever set), so no RESET
    round trip on every release; an open transaction is still rolled back by asyncpg."""


class PostgresEventStore:
    """:class:`~nostream.storage.base.EventStore` on PostgreSQL via an asyncpg pool."""

    def __init__(
        self,
        dsn: str,
        *,
        min_connections: int = 1,
        max_connections: int = 10,
        command_timeout: float = 30.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self._min = min_connections
        self._max = max_connections
        self._timeout = command_timeout
        self._connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None
        self._queue: asyncio.Queue[tuple[Event, asyncio.Future[SaveOutcome]] | None] = (
            asyncio.Queue()
        )
        self._writer: asyncio.Task[None] | None = None
        self.commits = 0
        """How many batch transactions were committed (batching makes it < saves)."""

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self._min,
                max_size=self._max,
                command_timeout=self._timeout,
                timeout=self._connect_timeout,
                reset=_keep_session,
            )
            async with self._pool.acquire() as conn:
                await self._migrate(conn)
        except _ERRORS as exc:
            if self._pool is not None:
                self._pool.terminate()
                self._pool = None
            raise _storage_error(exc) from exc
        self._writer = asyncio.create_task(self._write_loop(), name="postgres-writer")

    @staticmethod
    async def _migrate(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
            for version, sql in migrations():
                if version > current:
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)

    async def close(self) -> None:
        if self._writer is not None:
            await self._queue.put(None)
            await self._writer
            self._writer = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageError("store is not open")
        return self._pool

    async def _run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]], retry: bool) -> T:
        """Run ``fn`` on a pooled connection; a read is retried once on a fresh connection."""
        pool = self._require_pool()
        attempts = 2 if retry else 1
        for attempt in range(attempts):
            try:
                async with pool.acquire() as conn:
                    try:
                        return await fn(conn)
                    except _CONNECTION_ERRORS:
                        conn.terminate()  # never hand this session out again
                        raise
            except _CONNECTION_ERRORS as exc:
                if attempt + 1 == attempts:
                    raise _storage_error(exc) from exc
            except _ERRORS as exc:
                raise _storage_error(exc) from exc
        raise AssertionError("unreachable")

    # -- the writer --------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < _MAX_BATCH and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            try:
                await self._save_batch(batch)
            except Exception as exc:  # a bug must not leave callers waiting forever
                for _, future in batch:
                    if not future.done():
                        future.set_exception(StorageError(f"save failed: {exc!r}"))
            if stop:
                return

    async def _save_batch(self, batch: list[tuple[Event, asyncio.Future[SaveOutcome]]]) -> None:
        columns = _Batch()
        ready = []
        for event, future in batch:
            try:
                columns.add(event)
            except (ValueError, TypeError, UnicodeError) as exc:  # e.g. a lone surrogate
                # Columns are appended only after every conversion succeeded.
                if not future.done():
                    future.set_exception(StorageError(f"event cannot be stored: {exc}"))
                continue
            ready.append((event, future))
        if not ready:
            return
        batch = ready
        try:
            outcomes = await self._call_save(columns)
        except StorageError as exc:
            if len(batch) > 1 and not _is_connection_error(exc.__cause__):
                # A data error: save one by one so only the offending event fails.
                for one in batch:
                    await self._save_batch([one])
                return
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)

    async def _call_save(self, columns: _Batch) -> list[SaveOutcome]:
        async def call(conn: asyncpg.Connection) -> list[str]:
            for attempt in range(5):
                try:
                    result: list[str] = await conn.fetchval(_SAVE_SQL, *columns.columns)
                    return result
                except asyncpg.PostgresError as exc:
                    if exc.sqlstate not in _RETRYABLE or attempt == 4:
                        raise
            raise AssertionError("unreachable")

        result = await self._run(call, retry=True)
        self.commits += 1
        return [_OUTCOMES[r] for r in result]

    # -- writes ------------------------------------------------------------------------

    async def save(self, event: Event) -> SaveOutcome:
        if self._writer is None or self._writer.done():
            raise StorageError("store is not open")
        future: asyncio.Future[SaveOutcome] = asyncio.get_running_loop().create_future()
        await self._queue.put((event, future))
        return await future

    async def delete(self, deletion: Event) -> int:
        ids, addresses = deletion_targets(deletion)
        author = bytes.fromhex(deletion.pubkey)

        async def run(conn: asyncpg.Connection) -> int:
            removed = 0
            async with conn.transaction():
                if ids:
                    await conn.execute(
                        "INSERT INTO deletions (pubkey, target, created_at) "
                        "SELECT $1, t, $3 FROM unnest($2::bytea[]) AS t ON CONFLICT DO NOTHING",
                        author,
                        [i.encode() for i in ids],
                        deletion.created_at,
                    )
                    gone = await conn.fetch(
                        "DELETE FROM events WHERE id = ANY($1::bytea[]) AND pubkey = $2 "
                        "AND kind <> 5 RETURNING 1",
                        [bytes.fromhex(i) for i in ids],
                        author,
                    )
                    removed += len(gone)
                for kind, pubkey, d_tag in addresses:
                    target = f"{kind}:{pubkey}:{d_tag}".encode()
                    await conn.execute(
                        "INSERT INTO deletions (pubkey, target, created_at) VALUES ($1, $2, $3) "
                        "ON CONFLICT (pubkey, target) DO UPDATE SET created_at = "
                        "greatest(deletions.created_at, excluded.created_at)",
                        bytes.fromhex(pubkey),
                        target,
                        deletion.created_at,
                    )
                    gone = await conn.fetch(
                        "DELETE FROM events WHERE pubkey = $1 AND kind = $2 AND d_tag = $3 "
                        "AND created_at <= $4 RETURNING 1",
                        bytes.fromhex(pubkey),
                        kind,
                        d_tag.encode(),
                        deletion.created_at,
                    )
                    removed += len(gone)
            return removed

        return await self._run(run, retry=True)

    async def bump_counter(self, name: str, key: str, limit: int) -> bool:
        if limit <= 0:
            return False

        async def run(conn: asyncpg.Connection) -> bool:
            row = await conn.fetchrow(
                "INSERT INTO counters (name, key, value) VALUES ($1, $2, 1) "
                "ON CONFLICT (name, key) DO UPDATE SET value = counters.value + 1 "
                "WHERE counters.value < $3 RETURNING value",
                name,
                key,
                limit,
            )
            return row is not None

        return await self._run(run, retry=False)

    async def purge_expired(self) -> int:
        """Remove events whose NIP-40 expiration has passed; returns how many."""

        async def run(conn: asyncpg.Connection) -> int:
            rows = await conn.fetch(
                "DELETE FROM events WHERE expires_at IS NOT NULL AND expires_at <= $1 RETURNING 1",
                int(time.time()),
            )
            return len(rows)

        return await self._run(run, retry=True)

    # -- reads -------------------------------------------------------------------------

    async def query(
        self, filters: Sequence[Filter], default_limit: int, max_limit: int
    ) -> list[Event]:
        plan = build_query(filters, default_limit, max_limit, int(time.time()))
        if plan is None:
            return []
        sql, params = plan

        async def run(conn: asyncpg.Connection) -> list[Event]:
            return [_row_to_event(row) for row in await conn.fetch(sql, *params)]

        return await self._run(run, retry=True)

    async def count(self, filters: Sequence[Filter]) -> int:
        plan = build_count(filters, int(time.time()))
        if plan is None:
            return 0
        sql, params = plan

        async def run(conn: asyncpg.Connection) -> int:
            return int(await conn.fetchval(sql, *params))

        return await self._run(run, retry=True)

    async def exists(self, event_id: str) -> bool:
        try:
            key = bytes.fromhex(event_id)
        except ValueError:
            return False

        async def run(conn: asyncpg.Connection) -> bool:
            row = await conn.fetchrow(
                "SELECT 1 FROM events WHERE id = $1 AND (expires_at IS NULL OR expires_at > $2)",
                key,
                int(time.time()),
            )
            return row is not None

        return await self._run(run, retry=True)

    async def check_new(self, event: Event) -> SaveOutcome | None:
        try:
            key = bytes.fromhex(event.id)
            author = bytes.fromhex(event.pubkey)
        except ValueError:
            return None
        d_tag = _address_d(event)
        address = f"{event.kind}:{event.pubkey}:".encode() + d_tag if d_tag is not None else None

        async def run(conn: asyncpg.Connection) -> SaveOutcome | None:
            row = await conn.fetchrow(
                "SELECT EXISTS (SELECT 1 FROM events WHERE id = $1"
                " AND (expires_at IS NULL OR expires_at > $2)),"
                " EXISTS (SELECT 1 FROM deletions WHERE pubkey = $3 AND (target = $4"
                " OR (target = $5::bytea AND created_at >= $6))),"
                " $7::bytea IS NOT NULL AND EXISTS (SELECT 1 FROM events WHERE pubkey = $3"
                " AND kind = $8 AND d_tag = $7::bytea"
                " AND (expires_at IS NULL OR expires_at > $2)"
                " AND (created_at > $6 OR (created_at = $6 AND id < $1)))",
                key,
                int(time.time()),
                author,
                event.id.encode(),
                address,
                event.created_at,
                d_tag,
                event.kind,
            )
            assert row is not None
            if row[0]:
                return SaveOutcome.DUPLICATE
            if row[1]:
                return SaveOutcome.DELETED
            if row[2]:
                return SaveOutcome.SHADOWED
            return None

        return await self._run(run, retry=True)

    async def ping(self) -> bool:
        if self._pool is None:
            return False
        with contextlib.suppress(StorageError):
            return bool(await self._run(lambda conn: conn.fetchval("SELECT 1"), retry=True))
        return False

    async def bulk_load(self, events: Sequence[Event]) -> None:
        """Append regular events with COPY, skipping all replaceable/deletion logic.

        For seeding benchmarks and imports of already-consistent data; the ids
        must be new.
        """
        rows = []
        tag_rows = []
        for event in events:
            row = _event_row(event)
            key = row[0]
            rows.append(row)
            for tag in event.tags:
                if len(tag) > 1 and _indexed(tag[0]):
                    tag_rows.append((key, tag[0], tag[1].encode(), event.kind, event.created_at))

        async def run(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "events",
                    records=rows,
                    columns=[
                        "id",
                        "pubkey",
                        "created_at",
                        "kind",
                        "tags",
                        "content",
                        "sig",
                        "d_tag",
                        "expires_at",
                    ],
                )
                if tag_rows:
                    await conn.copy_records_to_table(
                        "event_tags",
                        records=tag_rows,
                        columns=["event_id", "name", "value", "kind", "created_at"],
                    )

        await self._run(run, retry=False)


def _is_connection_error(exc: BaseException | None) -> bool:
    return isinstance(exc, _CONNECTION_ERRORS)
