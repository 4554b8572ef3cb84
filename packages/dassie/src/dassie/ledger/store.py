"""The ledger on SQLite (WAL, ``synchronous=FULL``) with group commit.

The in-memory :class:`~dassie.ledger.model.Ledger` decides every operation on the
event loop. The operations of one loop iteration form a batch: at the end of the
iteration the rows they changed are snapshotted once (an account changed by a
thousand operations is one row) and handed to one writer thread, which writes
everything queued since its last commit in ONE transaction and fsyncs once. An
operation's coroutine returns only after its rows are durable. Rows of one
operation (e.g. a claim and the transfer that credits it) are never split
across transactions.

If a commit fails the store stops accepting work (:attr:`LedgerStore.error`,
shown in ``/health``); a restart reloads the last durable state.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .migrations import LegacyAssets, upgrade
from .model import Account, Changes, Ledger, Transfer, TransferState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    path TEXT PRIMARY KEY,
    debits_posted TEXT NOT NULL, credits_posted TEXT NOT NULL,
    debits_pending TEXT NOT NULL, credits_pending TEXT NOT NULL,
    min_balance TEXT, max_balance TEXT,
    asset TEXT
);
CREATE TABLE IF NOT EXISTS transfers (
    id INTEGER PRIMARY KEY,
    debit TEXT NOT NULL, credit TEXT NOT NULL, amount TEXT NOT NULL,
    state TEXT NOT NULL, updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS transfers_pending ON transfers(state) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS claims (
    seq INTEGER PRIMARY KEY,
    channel_id TEXT NOT NULL, chain TEXT NOT NULL,
    claim_amount TEXT NOT NULL, nonce TEXT NOT NULL, signature TEXT NOT NULL,
    delta TEXT NOT NULL, transfer_id INTEGER, accepted_at REAL NOT NULL,
    event_id TEXT
);
CREATE TABLE IF NOT EXISTS settlements (
    tx_hash TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL, chain TEXT NOT NULL,
    claim_amount TEXT NOT NULL, nonce TEXT NOT NULL,
    status TEXT NOT NULL, gas_cost TEXT, updated_at REAL NOT NULL
);
"""

_CLAIM_HEADS = (
    """
CREATE TABLE IF NOT EXISTS claim_heads (
    channel_id TEXT PRIMARY KEY, nonce TEXT NOT NULL, seq INTEGER NOT NULL
) WITHOUT ROWID
""",
    """
CREATE TRIGGER IF NOT EXISTS claims_head AFTER INSERT ON claims BEGIN
    SELECT RAISE(ABORT, 'claim nonce not above the last recorded on its channel')
    FROM claim_heads h WHERE h.channel_id = NEW.channel_id AND (
        length(NEW.nonce) < length(h.nonce)
        OR (length(NEW.nonce) = length(h.nonce) AND NEW.nonce <= h.nonce));
    INSERT INTO claim_heads VALUES (NEW.channel_id, NEW.nonce, NEW.seq)
    ON CONFLICT (channel_id) DO UPDATE SET nonce = excluded.nonce, seq = excluded.seq;
END
""",
)
"""Each channel's last recorded claim, kept by a trigger that also refuses a claim whose
nonce is not above it (so ``(channel_id, nonce)`` is unique, and more). Nonces are
canonical decimals, compared by length, then as text. One row per channel: a commit
touches a few of its pages, where the unique index over every claim that older ledgers
have touched about one page per claim, so that each commit's WAL write grew with the
ledger."""

_CLAIM_COLUMNS = (
    "seq, channel_id, chain, claim_amount, nonce, signature, delta, transfer_id, accepted_at,"
    " event_id"
)


def _upgrade_claims(conn: sqlite3.Connection) -> None:
    """Give a ledger the claim heads, in one transaction; a no-op once they exist.

    A ledger from before them has ``UNIQUE (channel_id, nonce)`` on ``claims``, which
    SQLite can only drop by copying the table; the copy keeps every row and its ``seq``.
    """
    unique = any(row[3] == "u" for row in conn.execute("PRAGMA index_list(claims)"))
    heads = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'claims_head'").fetchone()
    if heads is not None and not unique:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if unique:
            conn.execute("DROP TRIGGER IF EXISTS claims_head")
            conn.execute(
                "CREATE TABLE claims_copy (seq INTEGER PRIMARY KEY, channel_id TEXT NOT NULL,"
                " chain TEXT NOT NULL, claim_amount TEXT NOT NULL, nonce TEXT NOT NULL,"
                " signature TEXT NOT NULL, delta TEXT NOT NULL, transfer_id INTEGER,"
                " accepted_at REAL NOT NULL, event_id TEXT)"
            )
            conn.execute(
                f"INSERT INTO claims_copy ({_CLAIM_COLUMNS}) SELECT {_CLAIM_COLUMNS} FROM claims"
            )
            conn.execute("DROP TABLE claims")
            conn.execute("ALTER TABLE claims_copy RENAME TO claims")
        for statement in _CLAIM_HEADS:
            conn.execute(statement)
        conn.execute("DELETE FROM claim_heads")
        conn.execute(
            "INSERT INTO claim_heads SELECT channel_id, nonce, seq FROM claims"
            " WHERE seq IN (SELECT MAX(seq) FROM claims GROUP BY channel_id)"
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class LedgerUnavailable(RuntimeError):
    """The ledger could not commit; it refuses further work until restarted."""


@dataclass(frozen=True, slots=True)
class ClaimRecord:
    """An accepted claim as recorded in the ledger."""

    channel_id: str
    chain: str
    claim_amount: int
    nonce: int
    signature: str
    delta: int
    transfer_id: int | None = None
    accepted_at: float = 0.0
    event_id: str | None = None
    """The Nostr event the claim paid for, when the relay said (a retry of that same
    event with that same claim is answered again instead of refused)."""

    def to_json(self) -> dict[str, str]:
        return {
            "claimAmount": str(self.claim_amount),
            "nonce": str(self.nonce),
            "signature": self.signature,
        }


@dataclass(frozen=True, slots=True)
class SettlementRecord:
    tx_hash: str
    channel_id: str
    chain: str
    claim_amount: int
    nonce: int
    status: str
    """``pending``, ``mined`` or ``failed``."""
    gas_cost: int | None = None


def _opt(value: int | None) -> str | None:
    return None if value is None else str(value)


def _account_row(a: Account) -> tuple[Any, ...]:
    return (
        a.path,
        str(a.debits_posted),
        str(a.credits_posted),
        str(a.debits_pending),
        str(a.credits_pending),
        _opt(a.min_balance),
        _opt(a.max_balance),
        a.asset,
    )


def _transfer_row(t: Transfer, now: float) -> tuple[Any, ...]:
    return (t.id, t.debit, t.credit, str(t.amount), t.state.value, now)


def _claim_row(c: ClaimRecord, now: float) -> tuple[Any, ...]:
    return (
        c.channel_id,
        c.chain,
        str(c.claim_amount),
        str(c.nonce),
        c.signature,
        str(c.delta),
        c.transfer_id,
        c.accepted_at or now,
        c.event_id,
    )


def _settlement_row(s: SettlementRecord, now: float) -> tuple[Any, ...]:
    return (
        s.tx_hash,
        s.channel_id,
        s.chain,
        str(s.claim_amount),
        str(s.nonce),
        s.status,
        _opt(s.gas_cost),
        now,
    )


@dataclass(slots=True)
class _Batch:
    """The operations of one loop iteration: committed together."""

    durable: asyncio.Future[None]
    """Shared by the batch's operations; resolved when its transaction committed."""
    accounts: dict[str, Account] = field(default_factory=dict)
    transfers: dict[int, Transfer] = field(default_factory=dict)
    claims: list[ClaimRecord] = field(default_factory=list)
    settlements: list[SettlementRecord] = field(default_factory=list)
    futures: list[asyncio.Future[None]] = field(default_factory=list)
    """One per :meth:`LedgerStore.commit` call (each caller may cancel its own)."""


@dataclass(slots=True)
class _Job:
    """A batch as rows, snapshotted on the loop, for the writer thread."""

    accounts: list[tuple[Any, ...]]
    transfers: list[tuple[Any, ...]]
    claims: list[tuple[Any, ...]]
    settlements: list[tuple[Any, ...]]
    batch: _Batch


class LedgerStore:
    """The durable ledger. Open with :meth:`open`; close with :meth:`close`."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.ledger = Ledger()
        self.best_claims: dict[str, ClaimRecord] = {}
        self.settlements: dict[str, SettlementRecord] = {}
        self.error: BaseException | None = None
        self.commits = 0
        self._queue: queue.SimpleQueue[list[_Job] | None] = queue.SimpleQueue()
        self._batch: _Batch | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ------------------------------------------------------

    @classmethod
    async def open(cls, path: Path | str, legacy: LegacyAssets | None = None) -> LedgerStore:
        """Open (creating) the ledger; an older one is upgraded first, which needs
        ``legacy`` (see :mod:`.migrations`)."""
        store = cls(path)
        await asyncio.to_thread(store._load, legacy)
        store._loop = asyncio.get_running_loop()
        store._thread = threading.Thread(target=store._writer, name="ledger-writer", daemon=True)
        store._thread.start()
        return store

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def _load(self, legacy: LegacyAssets | None = None) -> None:
        conn = self._connect()
        try:
            conn.executescript(_SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(claims)")}
            if "event_id" not in columns:  # a ledger written before claims named their event
                conn.execute("ALTER TABLE claims ADD COLUMN event_id TEXT")
            _upgrade_claims(conn)  # one row per channel instead of a unique index
            upgrade(conn, legacy)  # accounts of one asset each (adds the asset column)
            for row in conn.execute("SELECT * FROM accounts"):
                path, dpo, cpo, dpe, cpe, lo, hi, asset = row
                self.ledger.accounts[path] = Account(
                    path,
                    asset,
                    int(dpo),
                    int(cpo),
                    int(dpe),
                    int(cpe),
                    None if lo is None else int(lo),
                    None if hi is None else int(hi),
                )
            for tid, debit, credit, amount in conn.execute(
                "SELECT id, debit, credit, amount FROM transfers WHERE state = 'pending'"
            ):
                self.ledger.pending[tid] = Transfer(
                    tid, debit, credit, int(amount), TransferState.PENDING
                )
            (max_id,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM transfers").fetchone()
            self.ledger.next_transfer_id = max_id + 1
            for row in conn.execute(
                "SELECT channel_id, chain, claim_amount, nonce, signature, delta, transfer_id,"
                " accepted_at, event_id FROM claims WHERE seq IN (SELECT seq FROM claim_heads)"
            ):
                record = ClaimRecord(
                    row[0], row[1], int(row[2]), int(row[3]), row[4], int(row[5]), row[6], row[7],
                    row[8],
                )  # fmt: skip
                self.best_claims[record.channel_id] = record
            for row in conn.execute(
                "SELECT tx_hash, channel_id, chain, claim_amount, nonce, status, gas_cost"
                " FROM settlements"
            ):
                self.settlements[row[0]] = SettlementRecord(
                    row[0],
                    row[1],
                    row[2],
                    int(row[3]),
                    int(row[4]),
                    row[5],
                    None if row[6] is None else int(row[6]),
                )
        finally:
            conn.close()

    async def close(self) -> None:
        """Finish queued commits and stop the writer."""
        if self._thread is not None:
            self._hand_over()
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    # -- the writer thread ----------------------------------------------

    def _writer(self) -> None:
        conn = self._connect()
        try:
            stop = False
            while not stop:
                first = self._queue.get()
                if first is None:
                    break
                batch = first
                while True:
                    try:
                        jobs = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if jobs is None:
                        stop = True
                        break
                    batch += jobs
                error = self._write(conn, batch)
                assert self._loop is not None
                with contextlib.suppress(RuntimeError):  # loop already closed
                    self._loop.call_soon_threadsafe(self._done, batch, error)
        finally:
            conn.close()

    def _write(self, conn: sqlite3.Connection, batch: list[_Job]) -> BaseException | None:
        accounts: dict[str, tuple[Any, ...]] = {}
        transfers: dict[int, tuple[Any, ...]] = {}
        claims: list[tuple[Any, ...]] = []
        settlements: list[tuple[Any, ...]] = []
        for job in batch:  # later rows of the same account/transfer supersede earlier ones
            for row in job.accounts:
                accounts[row[0]] = row
            for row in job.transfers:
                transfers[row[0]] = row
            claims += job.claims
            settlements += job.settlements
        try:
            conn.execute("BEGIN IMMEDIATE")
            if accounts:
                conn.executemany(
                    "INSERT OR REPLACE INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    accounts.values(),
                )
            if transfers:
                conn.executemany(
                    "INSERT OR REPLACE INTO transfers VALUES (?, ?, ?, ?, ?, ?)",
                    transfers.values(),
                )
            if claims:
                conn.executemany(
                    "INSERT INTO claims (channel_id, chain, claim_amount, nonce, signature, delta,"
                    " transfer_id, accepted_at, event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    claims,
                )
            if settlements:
                conn.executemany(
                    "INSERT OR REPLACE INTO settlements VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    settlements,
                )
            conn.execute("COMMIT")
            return None
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return exc

    def _done(self, jobs: list[_Job], error: BaseException | None) -> None:
        self.commits += 1
        if error is not None and self.error is None:
            self.error = error
        for job in jobs:
            for future in (job.batch.durable, *job.batch.futures):
                if future.done():
                    continue
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(LedgerUnavailable(f"ledger commit failed: {error}"))
            if error is not None and not job.batch.durable.cancelled():
                job.batch.durable.exception()  # retrieved: callers hold their own futures

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the store was opened on (its futures belong to it)."""
        if self._loop is None:
            raise LedgerUnavailable("ledger is not open")
        return self._loop

    # -- committing -----------------------------------------------------

    def check_available(self) -> None:
        """Raise LedgerUnavailable if a commit failed or the store is closed."""
        if self.error is not None:
            raise LedgerUnavailable(f"ledger commit failed: {self.error}")
        if self._thread is None:
            raise LedgerUnavailable("ledger is closed")

    def commit(
        self,
        changes: Changes,
        claims: Iterable[ClaimRecord] = (),
        settlements: Iterable[SettlementRecord] = (),
    ) -> asyncio.Future[None]:
        """Queue one atomic write of ``changes`` and records; await it to know it is durable.

        The rows are written with the state at the end of this loop iteration, in the
        same transaction as every other operation of the iteration.
        """
        self.enqueue(changes, claims, settlements)
        assert self._loop is not None and self._batch is not None
        future: asyncio.Future[None] = self._loop.create_future()
        self._batch.futures.append(future)
        return future

    def enqueue(
        self,
        changes: Changes,
        claims: Iterable[ClaimRecord] = (),
        settlements: Iterable[SettlementRecord] = (),
    ) -> asyncio.Future[None]:
        """:meth:`commit` without a future of its own: returns the future the whole
        batch shares. Add callbacks to it; never cancel it (use :meth:`commit` to await)."""
        self.check_available()
        batch = self._batch
        if batch is None:
            assert self._loop is not None
            batch = self._batch = _Batch(self._loop.create_future())
            self._loop.call_soon(self._hand_over)
        if changes.accounts:
            batch.accounts.update(changes.accounts)
        if changes.transfers:
            batch.transfers.update(changes.transfers)
        for c in claims:
            batch.claims.append(c)
            self.best_claims[c.channel_id] = c
        for s in settlements:
            batch.settlements.append(s)
            self.settlements[s.tx_hash] = s
        return batch.durable

    def _hand_over(self) -> None:
        """Snapshot this loop iteration's batch and pass it to the writer (one wake-up)."""
        batch, self._batch = self._batch, None
        if batch is None:
            return
        now = time.time()
        self._queue.put(
            [
                _Job(
                    [_account_row(a) for a in batch.accounts.values()],
                    [_transfer_row(t, now) for t in batch.transfers.values()],
                    [_claim_row(c, now) for c in batch.claims],
                    [_settlement_row(s, now) for s in batch.settlements],
                    batch,
                )
            ]
        )

    # -- the public API (each call is atomic and durable when it returns) --

    async def create_account(
        self,
        path: str,
        asset: str,
        *,
        min_balance: int | None = None,
        max_balance: int | None = None,
    ) -> None:
        self.check_available()
        await self.commit(
            self.ledger.create_account(
                path, asset, min_balance=min_balance, max_balance=max_balance
            )
        )

    async def ensure_account(self, path: str, asset: str) -> None:
        self.check_available()
        changes = self.ledger.ensure_account(path, asset)
        if changes.accounts:
            await self.commit(changes)

    async def create_pending(self, debit: str, credit: str, amount: int) -> int:
        self.check_available()
        transfer_id, changes = self.ledger.create_pending(debit, credit, amount)
        await self.commit(changes)
        return transfer_id

    async def post(self, transfer_id: int) -> None:
        self.check_available()
        await self.commit(self.ledger.post(transfer_id))

    async def void(self, transfer_id: int) -> None:
        self.check_available()
        await self.commit(self.ledger.void(transfer_id))

    async def transfer(self, debit: str, credit: str, amount: int) -> int:
        self.check_available()
        transfer_id, changes = self.ledger.transfer(debit, credit, amount)
        await self.commit(changes)
        return transfer_id

    def balance(self, path: str) -> Account:
        """The account's current balances (raises UnknownAccount)."""
        return self.ledger.account(path)

    def accounts(self) -> list[Account]:
        return sorted(self.ledger.accounts.values(), key=lambda a: a.path)

    async def ping(self) -> None:
        """Check the database answers (for /health)."""
        self.check_available()

        def query() -> None:
            conn = sqlite3.connect(self.path, timeout=2)
            try:
                conn.execute("SELECT 1 FROM accounts LIMIT 1").fetchall()
            finally:
                conn.close()

        await asyncio.to_thread(query)
