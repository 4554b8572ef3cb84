"""SQLite event storage (WAL): one writer thread batching commits, a pool of readers."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, TypeVar

import orjson

from nostr_protocol.event import Event, KindClass, kind_class
from nostr_protocol.filters import Filter
from nostr_protocol.nips import deletion_targets

from ..threadname import name_native_thread
from .base import SaveOutcome, StorageError, effective_limit, expiration_of

T = TypeVar("T")

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        id TEXT PRIMARY KEY,
        pubkey TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        tags TEXT NOT NULL,
        content TEXT NOT NULL,
        sig TEXT NOT NULL,
        d_tag TEXT,
        expires_at INTEGER
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX events_address ON events (pubkey, kind, d_tag) WHERE d_tag IS NOT NULL;
    CREATE INDEX events_created ON events (created_at DESC, id);
    CREATE INDEX events_pubkey ON events (pubkey, created_at DESC);
    CREATE INDEX events_kind ON events (kind, created_at DESC);
    CREATE INDEX events_expires ON events (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE event_tags (
        event_id TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX event_tags_value ON event_tags (name, value, created_at DESC);
    CREATE INDEX event_tags_event ON event_tags (event_id);
    CREATE TABLE deletions (
        pubkey TEXT NOT NULL,
        target TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (pubkey, target)
    ) WITHOUT ROWID;
    CREATE TABLE counters (
        name TEXT NOT NULL,
        key TEXT NOT NULL,
        value INTEGER NOT NULL,
        PRIMARY KEY (name, key)
    ) WITHOUT ROWID;
    """,
    """
    CREATE INDEX events_pubkey_kind ON events (pubkey, kind, created_at DESC);
    DROP INDEX events_pubkey;
    CREATE INDEX events_pubkey ON events (pubkey, created_at DESC, id);
    """,
    # A rowid table (rows appended in arrival order, the id in its own small index)
    # instead of one keyed by the random id: an insert dirties far fewer pages.
    """
    CREATE TABLE events_v3 (
        id TEXT PRIMARY KEY,
        pubkey TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        tags TEXT NOT NULL,
        content TEXT NOT NULL,
        sig TEXT NOT NULL,
        d_tag TEXT,
        expires_at INTEGER
    );
    INSERT INTO events_v3 (id, pubkey, created_at, kind, tags, content, sig, d_tag, expires_at)
        SELECT id, pubkey, created_at, kind, tags, content, sig, d_tag, expires_at
        FROM events ORDER BY created_at;
    DROP TABLE events;
    ALTER TABLE events_v3 RENAME TO events;
    CREATE UNIQUE INDEX events_address ON events (pubkey, kind, d_tag) WHERE d_tag IS NOT NULL;
    CREATE INDEX events_created ON events (created_at DESC, id);
    CREATE INDEX events_pubkey ON events (pubkey, created_at DESC, id);
    CREATE INDEX events_pubkey_kind ON events (pubkey, kind, created_at DESC);
    CREATE INDEX events_kind ON events (kind, created_at DESC);
    CREATE INDEX events_expires ON events (expires_at) WHERE expires_at IS NOT NULL;
    """,
    # Tag rows are found for removal through (name, value, created_at) and the
    # event's own tags, so no index keyed by the random event id: an insert
    # dirties one random page fewer (see _remove_event).
    """
    DROP INDEX event_tags_event;
    """,
    # Inserts touch fewer pages. The time-ordered indexes end in the rowid (arrival
    # order), not the random id: events of the same second append instead of landing
    # on a random page each (a query sorts only the ties of its last second by id),
    # and ascending keys put new events at the right end (SQLite's cheap split). An
    # author's events of some kinds are found through events_pubkey (skipping other
    # kinds), replaceable and addressable ones through events_address: the index on
    # (pubkey, kind) cost every insert one more random page.
    """
    DROP INDEX events_pubkey_kind;
    DROP INDEX events_created;
    CREATE INDEX events_created ON events (created_at);
    DROP INDEX events_pubkey;
    CREATE INDEX events_pubkey ON events (pubkey, created_at);
    DROP INDEX events_kind;
    CREATE INDEX events_kind ON events (kind, created_at);
    """,
)

_COLUMNS = "id, pubkey, created_at, kind, tags, content, sig"
_MAX_BATCH = 512
"""The writer stops gathering once a transaction holds this many operations (it
takes what one event-loop step handed over whole, so a batch may pass it)."""


def _address_d(event: Event) -> str | None:
    """The ``d_tag`` column: '' for replaceable, the d value for addressable, else NULL."""
    cls = event.kind_class
    if cls is KindClass.REPLACEABLE:
        return ""
    if cls is KindClass.ADDRESSABLE:
        return event.d_tag()
    return None


def _check_one(event: Event, now: int, conn: sqlite3.Connection) -> SaveOutcome | None:
    """What :meth:`SqliteEventStore.save` would refuse ``event`` for, if anything."""
    d_tag = _address_d(event)
    address = f"{event.kind}:{event.pubkey}:{d_tag}" if d_tag is not None else event.id
    dup, deleted, shadowed = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM events WHERE id = :id"
        " AND (expires_at IS NULL OR expires_at > :now)),"
        " EXISTS (SELECT 1 FROM deletions WHERE pubkey = :pubkey AND (target = :id"
        " OR (target = :address AND created_at >= :created))),"
        " :d IS NOT NULL AND EXISTS (SELECT 1 FROM events WHERE pubkey = :pubkey"
        " AND kind = :kind AND d_tag = :d AND (expires_at IS NULL OR expires_at > :now)"
        " AND (created_at > :created OR (created_at = :created AND id < :id)))",
        {
            "id": event.id,
            "now": now,
            "pubkey": event.pubkey,
            "address": address,
            "created": event.created_at,
            "d": d_tag,
            "kind": event.kind,
        },
    ).fetchone()
    if dup:
        return SaveOutcome.DUPLICATE
    if deleted:
        return SaveOutcome.DELETED
    if shadowed:
        return SaveOutcome.SHADOWED
    return None


def _deleted_by_author(conn: sqlite3.Connection, events: Sequence[Event]) -> set[str]:
    """The ids among ``events`` that a deletion by the event's own author names (for a
    regular event, which has no address, the only deletion that applies)."""
    keys = orjson.dumps([(e.pubkey, e.id) for e in events]).decode()
    return {
        target
        for (target,) in conn.execute(
            "SELECT d.target FROM json_each(?) AS j JOIN deletions AS d"
            " ON d.pubkey = json_extract(j.value, '$[0]')"
            " AND d.target = json_extract(j.value, '$[1]')",
            (keys,),
        )
    }


def _check_regular(
    conn: sqlite3.Connection, events: Sequence[Event], now: int
) -> dict[str, SaveOutcome]:
    """:func:`_check_one` for many regular events at once: each refused one's id -> why
    (a duplicate before a deletion, as there)."""
    ids = orjson.dumps([e.id for e in events]).decode()
    found = dict.fromkeys(_deleted_by_author(conn, events), SaveOutcome.DELETED)
    for (event_id,) in conn.execute(
        "SELECT e.id FROM json_each(?) AS j JOIN events AS e ON e.id = j.value"
        " WHERE e.expires_at IS NULL OR e.expires_at > ?",
        (ids, now),
    ):
        found[event_id] = SaveOutcome.DUPLICATE
    return found


def _chain(future: asyncio.Future[T], done: asyncio.Future[T]) -> None:
    """Settle ``future`` as ``done`` ended."""
    if future.done():
        return
    if done.cancelled():
        future.cancel()
    elif (exc := done.exception()) is not None:
        future.set_exception(exc)
    else:
        future.set_result(done.result())


def _fail_all(checks: Sequence[tuple[Event, asyncio.Future[Any]]], exc: BaseException) -> None:
    for _, future in checks:
        if not future.done():
            future.set_exception(exc)


def _row_to_event(row: Sequence[Any]) -> Event:
    tags = tuple(tuple(t) for t in orjson.loads(row[4]))
    return Event(row[0], row[1], row[2], row[3], tags, row[5], row[6])


_INLINE_VALUES = 200
"""Lists up to this long become ``IN (?, ...)`` (the planner sees them); longer
ones are passed as one JSON parameter, keeping under SQLite's variable limit."""


def _in_list(column: str, values: Iterable[Any], params: list[Any]) -> str:
    ordered = sorted(values)
    if len(ordered) <= _INLINE_VALUES:
        params.extend(ordered)
        return f"{column} IN ({', '.join('?' * len(ordered))})"
    params.append(orjson.dumps(ordered).decode())
    return f"{column} IN (SELECT value FROM json_each(?))"


_ADDRESSED = (KindClass.REPLACEABLE, KindClass.ADDRESSABLE)


def _addressed_only(f: Filter) -> bool:
    """An author's replaceable/addressable events only: all found in events_address."""
    return (
        f.authors is not None
        and bool(f.kinds)
        and all(kind_class(k) in _ADDRESSED for k in f.kinds or ())
    )


def index_hint(f: Filter) -> str:
    """``INDEXED BY`` for a filter naming authors: without statistics the planner may
    walk every event of a kind instead of the authors' few. With tags it is left to
    choose (a rare tag may be the narrower way in)."""
    if f.ids is not None or f.authors is None:
        return ""
    if _addressed_only(f):
        return "INDEXED BY events_address"
    return "" if f.tags else "INDEXED BY events_pubkey"


def filter_sql(f: Filter, now: int) -> tuple[str, list[Any]]:
    """A WHERE clause (without ``WHERE``) and its parameters for one filter."""
    clauses = ["(expires_at IS NULL OR expires_at > ?)"]
    params: list[Any] = [now]
    if f.ids is not None:
        clauses.append(_in_list("id", f.ids, params))
    if f.authors is not None:
        clauses.append(_in_list("pubkey", f.authors, params))
    if f.kinds is not None:
        if _addressed_only(f):
            clauses.append(_in_list("kind", f.kinds, params))
            clauses.append("d_tag IS NOT NULL")  # lets events_address serve the filter
        elif f.authors is not None:  # "+kind": not through events_kind (see index_hint)
            clauses.append(_in_list("+kind", f.kinds, params))
        else:
            clauses.append(_in_list("kind", f.kinds, params))
    if f.since is not None:
        clauses.append("created_at >= ?")
        params.append(f.since)
    if f.until is not None:
        clauses.append("created_at <= ?")
        params.append(f.until)
    for letter, values in sorted(f.tags.items()):
        params.append(letter)
        inner = _in_list("value", values, params)
        clauses.append(f"id IN (SELECT event_id FROM event_tags WHERE name = ? AND {inner})")
    return " AND ".join(clauses), params


def _connect(path: Path, cache_kib: int = 16384) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk (WAL fsynced) before `OK true`, even across a power
    # loss; NORMAL would only survive a crash of this process. Batched commits keep
    # the fsyncs few (measured: no ingest difference on the relay bench).
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute(f"PRAGMA cache_size=-{cache_kib}")
    return conn


WRITER_CACHE_KIB = 32768
"""Page cache of the writer: the indexes' hot pages stay in memory between batches."""
WAL_CHECKPOINT_PAGES = 4096
"""WAL frames (pages) after which the writer itself checkpoints right after a commit
(SQLite's ``wal_autocheckpoint``). The checkpointer thread has copied most of them
already, so this only catches up; what it buys is that the next transaction starts
the WAL over from its beginning, overwriting blocks the file already has (cheaper
than growing it) instead of appending forever while the checkpointer lags behind."""
WAL_SIZE_LIMIT = 64 * 1024 * 1024
"""Bytes: the WAL file is cut back to this when it starts over (``journal_size_limit``),
and a WAL past it (a reader held the old one) gets a TRUNCATE checkpoint from the
checkpointer thread, which waits for readers and writer (nothing is lost: every
committed frame is copied into the database and synced before the WAL is cut)."""
INLINE_BUSY_MS = 20
"""How long the event loop's own reader may wait on a lock before the lookup is
handed to the reader pool instead (WAL readers wait only in rare recovery cases)."""
CHECKPOINT_INTERVAL = 0.5
"""Seconds between the checkpointer thread's passive checkpoints."""


class _Op:
    __slots__ = ("event", "fn", "future", "loop")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        event: Event | None = None,
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.future = future
        self.event = event
        """Set for the save of a regular event: the writer stores runs of these together."""


_EVENTS_HEAD = f"INSERT INTO events ({_COLUMNS}, d_tag, expires_at) VALUES "
_TAGS_HEAD = "INSERT INTO event_tags (event_id, name, value, created_at) VALUES "
_INSERT_EVENT = _EVENTS_HEAD + "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_TAG = _TAGS_HEAD + "(?, ?, ?, ?)"
_ROWS_PER_INSERT = (64, 16, 4, 1)
"""Rows per INSERT statement, largest first (few distinct texts, so all stay cached)."""


@lru_cache(maxsize=16)
def _multi_row_insert(head: str, width: int, rows: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return head + ", ".join([one] * rows)


def _insert_rows(conn: sqlite3.Connection, head: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert ``rows`` with a few multi-row INSERTs instead of one step per row: the
    writer then lets go of the GIL and takes it back once per statement, not per row,
    and binds one flat parameter list."""
    if not rows:
        return
    width = len(rows[0])
    done = 0
    for size in _ROWS_PER_INSERT:
        if len(rows) - done < size:
            continue
        sql = _multi_row_insert(head, width, size)
        while len(rows) - done >= size:
            conn.execute(sql, [value for row in rows[done : done + size] for value in row])
            done += size


def _event_row(event: Event, d_tag: str | None) -> tuple[Any, ...]:
    return (
        event.id,
        event.pubkey,
        event.created_at,
        event.kind,
        orjson.dumps(event.tags).decode(),
        event.content,
        event.sig,
        d_tag,
        expiration_of(event),
    )


def _tag_rows(event: Event) -> list[tuple[str, str, str, int]]:
    return [
        (event.id, t[0], t[1], event.created_at)
        for t in event.tags
        if len(t) > 1 and len(t[0]) == 1
    ]


_DELETE_TAG_ROWS = (
    "DELETE FROM event_tags WHERE rowid IN ("
    " SELECT t.rowid FROM events AS e, json_each(e.tags) AS j,"
    " event_tags AS t INDEXED BY event_tags_value"
    " WHERE e.id = ? AND t.name = j.value ->> 0 AND t.value = j.value ->> 1"
    " AND t.created_at = e.created_at AND t.event_id = e.id)"
)


def _remove_event(conn: sqlite3.Connection, event_id: str) -> int:
    """Delete a stored event and its tag rows (found from its own tags); returns 0 or 1."""
    conn.execute(_DELETE_TAG_ROWS, (event_id,))
    return conn.execute("DELETE FROM events WHERE id = ?", (event_id,)).rowcount


def _save_regular(conn: sqlite3.Connection, events: list[Event]) -> list[SaveOutcome]:
    """Store many regular events with two lookups and two ``executemany`` in all."""
    ids = orjson.dumps([e.id for e in events]).decode()
    present = {
        row[0]
        for row in conn.execute(
            "SELECT id FROM events WHERE id IN (SELECT value FROM json_each(?))", (ids,)
        )
    }
    deleted = _deleted_by_author(conn, events)
    outcomes: list[SaveOutcome] = []
    rows: list[tuple[Any, ...]] = []
    tag_rows: list[tuple[str, str, str, int]] = []
    for event in events:
        if event.id in present:
            outcomes.append(SaveOutcome.DUPLICATE)
        elif event.id in deleted:
            outcomes.append(SaveOutcome.DELETED)
        else:
            present.add(event.id)
            outcomes.append(SaveOutcome.STORED)
            rows.append(_event_row(event, None))
            tag_rows.extend(_tag_rows(event))
    _insert_rows(conn, _EVENTS_HEAD, rows)
    _insert_rows(conn, _TAGS_HEAD, tag_rows)
    return outcomes


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _name_reader() -> None:
    name_native_thread("sqlite-read")


def _resolve_all(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class SqliteEventStore:
    """:class:`~nostream.storage.base.EventStore` on a local SQLite file in WAL mode.

    All writes go through one thread that groups whatever is queued (up to
    512 operations) into one transaction and one commit; each operation runs
    in its own savepoint so one failure does not spoil the others. Reads run on
    a small pool of reader connections.
    """

    def __init__(
        self,
        path: str | Path,
        readers: int = 4,
        *,
        wal_checkpoint_pages: int = WAL_CHECKPOINT_PAGES,
        wal_size_limit: int = WAL_SIZE_LIMIT,
    ) -> None:
        self.path = Path(path)
        self._readers = readers
        self._wal_checkpoint_pages = wal_checkpoint_pages
        self._wal_size_limit = wal_size_limit
        self._ops: queue.SimpleQueue[list[_Op] | None] = queue.SimpleQueue()
        self._outgoing: dict[asyncio.AbstractEventLoop, list[_Op]] = {}
        """Operations submitted during the current event-loop step, handed to the
        writer together at its end (one queue put and one thread wake-up per step)."""
        self._stopping = False
        self._writer: threading.Thread | None = None
        self._pool: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all: list[sqlite3.Connection] = []
        self._executor: ThreadPoolExecutor | None = None
        self._inline: sqlite3.Connection | None = None
        """A reader used on the event loop itself, for point lookups (see _read_inline)."""
        self._checks: list[tuple[Event, asyncio.Future[SaveOutcome | None]]] = []
        """Regular events whose :meth:`check_new` waits for the end of this loop step."""
        self._checkpointer: threading.Thread | None = None
        self._closing = threading.Event()
        self.commits = 0
        """How many write transactions were committed (batching makes it < saves)."""

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            writer = await asyncio.to_thread(self._open_writer)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open {self.path}: {exc}") from exc
        for _ in range(self._readers):
            conn = _connect(self.path)
            conn.execute("PRAGMA query_only=ON")
            self._all.append(conn)
            self._pool.put(conn)
        self._executor = ThreadPoolExecutor(
            self._readers, thread_name_prefix="sqlite-read", initializer=_name_reader
        )
        self._inline = _connect(self.path)
        self._inline.execute("PRAGMA query_only=ON")
        self._inline.execute(f"PRAGMA busy_timeout={INLINE_BUSY_MS}")
        self._all.append(self._inline)
        self._stopping = False
        self._writer = threading.Thread(
            target=self._write_loop, args=(writer,), name="sqlite-writer", daemon=True
        )
        self._writer.start()
        self._closing.clear()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, args=(_connect(self.path),), name="sqlite-checkpoint"
        )
        self._checkpointer.daemon = True
        self._checkpointer.start()

    def _checkpoint_loop(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL back into the database beside the writer (a passive checkpoint
        waits for nobody), so the writer's commits are not held up by it; cut back a
        WAL that has grown past the size limit anyway."""
        name_native_thread("sqlite-ckpt")
        wal = Path(f"{self.path}-wal")
        try:
            while not self._closing.wait(CHECKPOINT_INTERVAL):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    if _file_size(wal) > self._wal_size_limit:
                        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                except sqlite3.Error:
                    continue  # busy or failing: the writer's own checkpoint is the backstop
        finally:
            conn.close()

    def _open_writer(self) -> sqlite3.Connection:
        conn = _connect(self.path, WRITER_CACHE_KIB)
        conn.execute(f"PRAGMA wal_autocheckpoint={self._wal_checkpoint_pages}")
        conn.execute(f"PRAGMA journal_size_limit={self._wal_size_limit}")
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = row[0] or 0
        for version, script in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return conn

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._closing.set()
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None
        if self._writer is not None:
            for loop in list(self._outgoing):
                self._hand_over(loop)
            self._stopping = True
            self._ops.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        for conn in self._all:
            conn.close()
        self._all.clear()
        self._inline = None
        self._pool = queue.SimpleQueue()

    # -- the writer --------------------------------------------------------------------

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        name_native_thread("sqlite-writer")
        try:
            while True:
                first = self._ops.get()
                if first is None:
                    return
                batch = list(first)
                stop = False
                while len(batch) < _MAX_BATCH:
                    try:
                        ops = self._ops.get_nowait()
                    except queue.Empty:
                        break
                    if ops is None:
                        stop = True
                        break
                    batch.extend(ops)
                self._run_batch(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        """Run ``batch`` in one transaction; if any operation fails, roll back and
        run each one in its own transaction, so one failure spoils no other."""
        results: list[tuple[Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            start = 0
            while start < len(batch):
                stop = start
                while stop < len(batch) and batch[stop].event is not None:
                    stop += 1
                if stop > start:  # a run of regular-event saves: stored together
                    run = [op.event for op in batch[start:stop] if op.event is not None]
                    results.extend((outcome, None) for outcome in _save_regular(conn, run))
                    start = stop
                else:
                    results.append((batch[start].fn(conn), None))
                    start += 1
            conn.execute("COMMIT")
            self.commits += 1
        except Exception:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            results = [self._run_alone(conn, op) for op in batch]
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, Any]]] = {}
        for op, (result, error) in zip(batch, results, strict=True):
            by_loop.setdefault(op.loop, []).append((op.future, result, error))
        for loop, outcomes in by_loop.items():  # one wake-up per loop, not per operation
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(_resolve_all, outcomes)

    def _run_alone(self, conn: sqlite3.Connection, op: _Op) -> tuple[Any, BaseException | None]:
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = op.fn(conn)
            conn.execute("COMMIT")
            self.commits += 1
            return result, None
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return None, StorageError(str(exc)) if isinstance(exc, sqlite3.Error) else exc

    async def _write(self, fn: Callable[[sqlite3.Connection], T], event: Event | None = None) -> T:
        if self._writer is None:
            raise StorageError("store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        outgoing = self._outgoing.get(loop)
        if outgoing is None:
            outgoing = self._outgoing[loop] = []
            loop.call_soon(self._hand_over, loop)
        outgoing.append(_Op(fn, loop, future, event))
        return await future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """Give the writer what this loop submitted in the step that just ran."""
        ops = self._outgoing.pop(loop, None)
        if not ops:
            return
        if self._stopping:  # the writer has been told to stop: it would never answer
            for op in ops:
                if not op.future.done():
                    op.future.set_exception(StorageError("store is closed"))
            return
        self._ops.put(ops)

    async def _read_inline(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a point lookup on the event loop itself: a handful of index probes cost
        less than handing them to a reader thread and back (WAL readers do not wait
        for the writer). If SQLite is busy anyway it goes to the reader pool."""
        conn = self._inline
        if conn is None:
            raise StorageError("store is not open")
        try:
            return fn(conn)
        except sqlite3.OperationalError as exc:
            # The primary result code (the low byte of an extended one) says busy/locked.
            code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
            if code not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise StorageError(str(exc)) from exc
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc
        return await self._read(fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None:
            raise StorageError("store is not open")

        def run() -> T:
            conn = self._pool.get()
            try:
                return fn(conn)
            finally:
                self._pool.put(conn)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, run)
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    # -- writes ------------------------------------------------------------------------

    async def save(self, event: Event) -> SaveOutcome:
        regular = event.kind_class is KindClass.REGULAR
        return await self._write(lambda conn: self._save(conn, event), event if regular else None)

    @staticmethod
    def _save(conn: sqlite3.Connection, event: Event) -> SaveOutcome:
        if conn.execute("SELECT 1 FROM events WHERE id = ?", (event.id,)).fetchone():
            return SaveOutcome.DUPLICATE
        d_tag = _address_d(event)
        address = f"{event.kind}:{event.pubkey}:{d_tag}" if d_tag is not None else event.id
        for target, deleted_at in conn.execute(
            "SELECT target, created_at FROM deletions WHERE pubkey = ? AND target IN (?, ?)",
            (event.pubkey, event.id, address),
        ):
            if target == event.id or deleted_at >= event.created_at:
                return SaveOutcome.DELETED
        if d_tag is not None:
            row = conn.execute(
                "SELECT id, created_at FROM events WHERE pubkey = ? AND kind = ? AND d_tag = ?",
                (event.pubkey, event.kind, d_tag),
            ).fetchone()
            if row is not None:
                old_id, old_created = row
                if old_created > event.created_at or (
                    old_created == event.created_at and old_id < event.id
                ):
                    return SaveOutcome.SHADOWED
                _remove_event(conn, old_id)
        conn.execute(_INSERT_EVENT, _event_row(event, d_tag))
        rows = _tag_rows(event)
        if rows:
            conn.executemany(_INSERT_TAG, rows)
        return SaveOutcome.STORED

    async def delete(self, deletion: Event) -> int:
        return await self._write(lambda conn: self._delete(conn, deletion))

    @staticmethod
    def _delete(conn: sqlite3.Connection, deletion: Event) -> int:
        ids, addresses = deletion_targets(deletion)
        removed = 0
        for event_id in ids:
            conn.execute(
                "INSERT INTO deletions (pubkey, target, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (deletion.pubkey, event_id, deletion.created_at),
            )
            owned = conn.execute(
                "SELECT 1 FROM events WHERE id = ? AND pubkey = ? AND kind != 5",
                (event_id, deletion.pubkey),
            ).fetchone()
            if owned:
                removed += _remove_event(conn, event_id)
        for kind, pubkey, d_tag in addresses:
            conn.execute(
                "INSERT INTO deletions (pubkey, target, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT DO UPDATE SET created_at = MAX(created_at, excluded.created_at)",
                (pubkey, f"{kind}:{pubkey}:{d_tag}", deletion.created_at),
            )
            victims = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM events WHERE pubkey = ? AND kind = ? AND d_tag = ? "
                    "AND created_at <= ?",
                    (pubkey, kind, d_tag, deletion.created_at),
                )
            ]
            for victim in victims:
                removed += _remove_event(conn, victim)
        return removed

    async def bump_counter(self, name: str, key: str, limit: int) -> bool:
        def bump(conn: sqlite3.Connection) -> bool:
            conn.execute(
                "INSERT INTO counters (name, key, value) VALUES (?, ?, 0) ON CONFLICT DO NOTHING",
                (name, key),
            )
            cur = conn.execute(
                "UPDATE counters SET value = value + 1 WHERE name = ? AND key = ? AND value < ?",
                (name, key, limit),
            )
            return cur.rowcount == 1

        return await self._write(bump)

    async def purge_expired(self) -> int:
        """Remove events whose NIP-40 expiration has passed; returns how many."""

        def purge(conn: sqlite3.Connection) -> int:
            now = int(time.time())
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM events WHERE expires_at IS NOT NULL AND expires_at <= ?",
                    (now,),
                )
            ]
            return sum(_remove_event(conn, event_id) for event_id in ids)

        return await self._write(purge)

    # -- reads -------------------------------------------------------------------------

    async def query(
        self, filters: Sequence[Filter], default_limit: int, max_limit: int
    ) -> list[Event]:
        now = int(time.time())
        plans: list[tuple[str, list[Any]]] = []
        for f in filters:
            limit = effective_limit(f, default_limit, max_limit)
            if limit == 0 or f.is_empty_result():
                continue
            where, params = filter_sql(f, now)
            plans.append(
                (
                    f"SELECT {_COLUMNS} FROM events {index_hint(f)} WHERE {where} "
                    "ORDER BY created_at DESC, id ASC LIMIT ?",
                    [*params, limit],
                )
            )
        if not plans:
            return []

        def run(conn: sqlite3.Connection) -> list[Event]:
            seen: dict[str, Event] = {}
            for sql, params in plans:
                for row in conn.execute(sql, params):
                    if row[0] not in seen:
                        seen[row[0]] = _row_to_event(row)
            return sorted(seen.values(), key=lambda e: (-e.created_at, e.id))

        return await self._read(run)

    async def count(self, filters: Sequence[Filter]) -> int:
        now = int(time.time())
        parts: list[str] = []
        params: list[Any] = []
        for f in filters:
            if f.is_empty_result():
                continue
            where, p = filter_sql(f, now)
            parts.append(f"({where})")
            params.extend(p)
        if not parts:
            return 0
        sql = "SELECT COUNT(*) FROM events WHERE " + " OR ".join(parts)
        return await self._read(lambda conn: int(conn.execute(sql, params).fetchone()[0]))

    async def exists(self, event_id: str) -> bool:
        now = int(time.time())

        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM events WHERE id = ? AND (expires_at IS NULL OR expires_at > ?)",
                (event_id, now),
            ).fetchone()
            return row is not None

        return await self._read(run)

    async def check_new(self, event: Event) -> SaveOutcome | None:
        if _address_d(event) is not None:  # replaceable/addressable: its own lookup
            return await self._read_inline(partial(_check_one, event, int(time.time())))
        # Regular events (the paid path's every event) asked for in one event-loop step
        # are looked up together at its end: two statements (stored? deleted?) for all of them.
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SaveOutcome | None] = loop.create_future()
        if not self._checks:
            loop.call_soon(self._check_batch)
        self._checks.append((event, future))
        return await future

    def _check_batch(self) -> None:
        checks, self._checks = self._checks, []
        events = [event for event, _ in checks]
        conn = self._inline
        try:
            if conn is None:
                raise StorageError("store is not open")
            found = _check_regular(conn, events, int(time.time()))
        except sqlite3.OperationalError as exc:
            code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
            if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                # Busy anyway: each goes to the reader pool, as _read_inline does.
                for event, future in checks:
                    task = asyncio.ensure_future(
                        self._read(partial(_check_one, event, int(time.time())))
                    )
                    task.add_done_callback(partial(_chain, future))
                return
            _fail_all(checks, StorageError(str(exc)))
            return
        except (sqlite3.Error, StorageError) as exc:
            _fail_all(checks, exc if isinstance(exc, StorageError) else StorageError(str(exc)))
            return
        for event, future in checks:
            if not future.done():
                future.set_result(found.get(event.id))

    async def ping(self) -> bool:
        try:
            return await self._read(lambda conn: conn.execute("SELECT 1").fetchone() == (1,))
        except StorageError:
            return False
