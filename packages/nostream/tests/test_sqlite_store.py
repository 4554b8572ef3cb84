"""SQLite specifics: WAL, migrations on reopen, durability across restarts, batched commits."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from nostr_protocol.filters import Filter
from nostr_protocol.keys import sign_event
from nostream.storage.base import SaveOutcome, StorageError
from nostream.storage.sqlite import MIGRATIONS, SqliteEventStore, _connect

SK = b"\x0d" * 32
VERSIONS = [(1,), (2,), (3,), (4,), (5,)]


def file_size(path: Path) -> int:
    return path.stat().st_size


def versions(conn: sqlite3.Connection) -> list[tuple[int]]:
    return conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()


async def test_events_survive_a_restart_and_migrations_run_once(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "relay.sqlite3"
    store = SqliteEventStore(path)
    await store.open()
    e = sign_event(SK, kind=1, content="durable")
    assert await store.save(e) is SaveOutcome.STORED
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert versions(conn) == VERSIONS
    again = SqliteEventStore(path)
    await again.open()
    try:
        assert await again.exists(e.id)
        assert await again.save(e) is SaveOutcome.DUPLICATE
    finally:
        await again.close()
    with sqlite3.connect(path) as conn:
        assert versions(conn) == VERSIONS


async def test_upgrade_to_the_rowid_events_table_keeps_every_event(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    kept = [
        sign_event(SK, kind=1, content="old", tags=[["t", "x"]]),
        sign_event(SK, kind=30000, content="address", tags=[["d", "a"]]),
    ]
    with sqlite3.connect(path) as conn:  # a database at schema version 2, with rows
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for version, script in enumerate(MIGRATIONS[:2], start=1):
            conn.executescript(script)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        for e, d_tag in zip(kept, (None, "a"), strict=True):
            conn.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    e.id,
                    e.pubkey,
                    e.created_at,
                    e.kind,
                    json.dumps(e.to_dict()["tags"]),
                    e.content,
                    e.sig,
                    d_tag,
                ),
            )
        conn.execute(
            "INSERT INTO event_tags VALUES (?, 't', 'x', ?)", (kept[0].id, kept[0].created_at)
        )
    store = SqliteEventStore(path)
    await store.open()
    try:
        assert {e.id for e in await store.query([Filter()], 10, 10)} == {e.id for e in kept}
        assert await store.query([Filter(tags={"t": frozenset({"x"})})], 10, 10) == [kept[0]]
        assert await store.save(kept[1]) is SaveOutcome.DUPLICATE
        newer = sign_event(
            SK, kind=30000, content="newer", tags=[["d", "a"]], created_at=kept[1].created_at + 1
        )
        assert await store.save(newer) is SaveOutcome.STORED
        assert await store.query([Filter(kinds=frozenset({30000}))], 10, 10) == [newer]
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert versions(conn) == VERSIONS


async def test_concurrent_saves_share_commits(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "db.sqlite3")
    await store.open()
    try:
        events = [sign_event(SK, kind=1, content=str(i)) for i in range(300)]
        before = store.commits
        await asyncio.gather(*(store.save(e) for e in events))
        assert store.commits - before < 300
        assert await store.count([Filter()]) == 300
    finally:
        await store.close()


async def test_one_failing_operation_does_not_spoil_its_batch(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "db.sqlite3")
    await store.open()
    try:

        def boom(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO no_such_table VALUES (1)")

        good = [sign_event(SK, kind=1, content=str(i)) for i in range(5)]
        results = await asyncio.gather(
            store._write(boom), *(store.save(e) for e in good), return_exceptions=True
        )
        assert isinstance(results[0], StorageError)
        assert results[1:] == [SaveOutcome.STORED] * 5
    finally:
        await store.close()


async def test_unopened_or_closed_store_raises_a_storage_error(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "db.sqlite3")
    with pytest.raises(StorageError):
        await store.save(sign_event(SK, kind=1))
    await store.open()
    await store.close()
    with pytest.raises(StorageError):
        await store.query([Filter()], 10, 10)
    assert not await store.ping()


async def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SqliteEventStore(blocker / "db.sqlite3")
    with pytest.raises(StorageError, match="cannot open"):
        await store.open()


async def test_purge_expired(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "db.sqlite3")
    await store.open()
    try:
        await store.save(sign_event(SK, kind=1, tags=[["expiration", "1"]]))
        await store.save(sign_event(SK, kind=1, content="keeps"))
        assert await store.purge_expired() == 1
        assert await store.purge_expired() == 0
    finally:
        await store.close()


async def test_removed_events_leave_no_tag_rows(tmp_path: Path) -> None:
    """Replacing, deleting (NIP-09) and purging (NIP-40) remove the event's tag rows too,
    found through its own tags (there is no index on the tag rows' event id)."""
    path = tmp_path / "db.sqlite3"
    store = SqliteEventStore(path)
    await store.open()
    pk = sign_event(SK, kind=1).pubkey
    note = sign_event(SK, kind=1, tags=[["t", "x"], ["t", "x"], ["p", pk], ["alt", "a"]])
    old = sign_event(SK, kind=30000, tags=[["d", "a"], ["t", "x"]], created_at=1000)
    new = sign_event(SK, kind=30000, tags=[["d", "a"], ["t", "y"]], created_at=2000)
    gone = sign_event(SK, kind=1, tags=[["t", "x"], ["expiration", "1"]])
    deletion = sign_event(SK, kind=5, tags=[["e", note.id]])
    try:
        for e in (note, old, new, gone, deletion):
            assert await store.save(e) is SaveOutcome.STORED
        assert await store.delete(deletion) == 1
        assert await store.purge_expired() == 1
        x = Filter(tags={"t": frozenset({"x"})})
        assert await store.query([x], 10, 10) == []
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT event_id, name, value FROM event_tags ORDER BY name").fetchall()
    assert sorted(rows) == sorted(
        [(new.id, "d", "a"), (new.id, "t", "y"), (deletion.id, "e", note.id)]
    )


async def test_close_stores_what_was_submitted_in_the_same_step(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = SqliteEventStore(path)
    await store.open()
    events = [sign_event(SK, kind=1, content=f"last {i}") for i in range(20)]
    saves = [asyncio.ensure_future(store.save(e)) for e in events]
    await asyncio.sleep(0)  # every save is submitted; none has been handed over yet
    await store.close()
    assert [await s for s in saves] == [SaveOutcome.STORED] * 20
    again = SqliteEventStore(path)
    await again.open()
    try:
        assert await again.count([Filter()]) == 20
    finally:
        await again.close()


def test_connections_commit_to_disk_before_answering(tmp_path: Path) -> None:
    """WAL with synchronous=FULL: a commit (and so `OK true`) survives a power loss."""
    conn = _connect(tmp_path / "db.sqlite3")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        conn.close()


async def test_point_lookups_on_the_loop_fall_back_to_the_pool_when_busy(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "db.sqlite3")
    await store.open()
    try:
        event = sign_event(bytes(31) + b"\x07", kind=1, content="x")
        assert await store.check_new(event) is None
        await store.save(event)
        assert await store.check_new(event) is SaveOutcome.DUPLICATE

        inline = store._inline
        seen: list[bool] = []

        def lookup(conn: sqlite3.Connection) -> int:
            seen.append(conn is inline)
            if conn is inline:
                busy = sqlite3.OperationalError("database is locked")
                busy.sqlite_errorcode = sqlite3.SQLITE_BUSY  # as SQLite itself sets it
                raise busy
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])

        assert await store._read_inline(lookup) == 1
        assert seen == [True, False]  # tried on the loop, then answered by a reader thread

        def broken(conn: sqlite3.Connection) -> int:
            raise sqlite3.OperationalError("no such table: nothing")

        with pytest.raises(StorageError, match="no such table"):
            await store._read_inline(broken)
    finally:
        await store.close()


async def test_the_wal_stays_bounded_under_sustained_writes(tmp_path: Path) -> None:
    limit = 256 * 1024
    path = tmp_path / "db.sqlite3"
    store = SqliteEventStore(path, wal_checkpoint_pages=32, wal_size_limit=limit)
    await store.open()
    wal = Path(f"{path}-wal")
    largest = 0
    try:
        for round_ in range(40):  # about 8 MB of content, so an unbounded WAL passes 8 MB
            events = [
                sign_event(SK, kind=1, content=f"{round_}:{i}:" + "x" * 4000) for i in range(50)
            ]
            outcomes = await asyncio.gather(*(store.save(e) for e in events))
            assert outcomes == [SaveOutcome.STORED] * 50
            largest = max(largest, file_size(wal))
        assert await store.count([Filter()]) == 2000
    finally:
        await store.close()
    # The bound, plus what one batch of 50 events (about 300 KB) adds before the
    # writer's checkpoint lets the WAL start over.
    assert largest < limit + 512 * 1024, largest
    again = SqliteEventStore(path)
    await again.open()
    try:
        assert await again.count([Filter()]) == 2000  # nothing lost on the way
    finally:
        await again.close()


async def test_upgrade_from_version_4_drops_the_pubkey_kind_index(tmp_path: Path) -> None:
    path = tmp_path / "v4.sqlite3"
    old = SqliteEventStore(path)
    await old.open()  # today's schema, then turned back into a version-4 database
    kept = [
        sign_event(SK, kind=1, content="note", created_at=1000),
        sign_event(SK, kind=7, content="+", created_at=1001),
        sign_event(SK, kind=0, content="{}", created_at=1002),
    ]
    for e in kept:
        assert await old.save(e) is SaveOutcome.STORED
    await old.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM schema_version WHERE version = 5")
        conn.execute("CREATE INDEX events_pubkey_kind ON events (pubkey, kind, created_at DESC)")
    store = SqliteEventStore(path)
    await store.open()
    try:
        author = frozenset({kept[0].pubkey})
        for e in kept:
            found = await store.query([Filter(authors=author, kinds=frozenset({e.kind}))], 10, 10)
            assert found == [e]
        assert await store.query([Filter(authors=author)], 10, 10) == kept[::-1]
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert versions(conn) == VERSIONS
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert "events_pubkey_kind" not in names
        assert {"events_pubkey", "events_address", "events_created"} <= names


async def test_lookups_of_one_loop_step_are_answered_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The paid path's duplicate/deleted lookups asked for in one event-loop step go to
    SQLite together (one batch lookup), and each gets the answer it would get alone."""
    import time
    from collections.abc import Sequence

    from nostr_protocol.event import Event
    from nostream.storage import sqlite as sqlite_module

    alice, bob = bytes(31) + b"\x01", bytes(31) + b"\x02"
    now = int(time.time())
    store = SqliteEventStore(tmp_path / "db.sqlite3")
    await store.open()
    try:
        stored = sign_event(alice, kind=1, content="stored")
        expired = sign_event(alice, kind=1, content="gone", tags=[["expiration", str(now - 1)]])
        deleted = sign_event(alice, kind=1, content="deleted")
        bobs_copy = sign_event(bob, kind=1, content="deleted")  # Alice's deletion is not his
        fresh = sign_event(alice, kind=1, content="fresh")
        newer = sign_event(alice, kind=30000, tags=[["d", "x"]], created_at=now)
        older = sign_event(alice, kind=30000, tags=[["d", "x"]], created_at=now - 5)
        for event in (stored, expired, newer):
            await store.save(event)
        await store.delete(sign_event(alice, kind=5, tags=[["e", deleted.id], ["e", bobs_copy.id]]))

        statements: list[int] = []
        batched = sqlite_module._check_regular

        def counting(
            conn: sqlite3.Connection, events: Sequence[Event], now: int
        ) -> dict[str, SaveOutcome]:
            statements.append(len(events))
            return batched(conn, events, now)

        monkeypatch.setattr(sqlite_module, "_check_regular", counting)
        asked = [stored, expired, deleted, bobs_copy, fresh, stored, older]
        answers = await asyncio.gather(*(store.check_new(e) for e in asked))
        assert answers == [
            SaveOutcome.DUPLICATE,
            None,  # stored, but expired: not a duplicate
            SaveOutcome.DELETED,
            None,
            None,
            SaveOutcome.DUPLICATE,
            SaveOutcome.SHADOWED,  # addressable: its own lookup
        ]
        assert statements == [6]  # the six regular events, in one batch lookup

        def busy(
            conn: sqlite3.Connection, events: Sequence[Event], now: int
        ) -> dict[str, SaveOutcome]:
            error = sqlite3.OperationalError("database is locked")
            error.sqlite_errorcode = sqlite3.SQLITE_BUSY
            raise error

        monkeypatch.setattr(sqlite_module, "_check_regular", busy)
        again = await asyncio.gather(*(store.check_new(e) for e in (stored, deleted, fresh)))
        assert again == [SaveOutcome.DUPLICATE, SaveOutcome.DELETED, None]  # by the pool

        def broken(
            conn: sqlite3.Connection, events: Sequence[Event], now: int
        ) -> dict[str, SaveOutcome]:
            raise sqlite3.DatabaseError("database disk image is malformed")

        monkeypatch.setattr(sqlite_module, "_check_regular", broken)
        with pytest.raises(StorageError, match="malformed"):
            await store.check_new(fresh)
    finally:
        await store.close()
