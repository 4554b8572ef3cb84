import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dassie.ledger import (
    Changes,
    ClaimRecord,
    Ledger,
    LedgerError,
    LedgerStore,
    LedgerUnavailable,
    LimitExceeded,
    TransferNotPending,
    UnknownAccount,
    UnknownTransfer,
)
from dassie.testing import LEDGER_SCHEMA_V0

PATHS = ["a/one", "a/two", "b/three", "peer/x/settlement"]
ASSETS = {"a/one": "X", "a/two": "X", "b/three": "Y", "peer/x/settlement": "Y"}
"""Two assets: a transfer between them must be refused like any other bad operation."""

operation = st.one_of(
    st.tuples(
        st.just("pending"), st.sampled_from(PATHS), st.sampled_from(PATHS), st.integers(-5, 1000)
    ),
    st.tuples(
        st.just("transfer"), st.sampled_from(PATHS), st.sampled_from(PATHS), st.integers(-5, 1000)
    ),
    st.tuples(st.just("post"), st.integers(0, 40)),
    st.tuples(st.just("void"), st.integers(0, 40)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(operation, max_size=60))
def test_random_operations_keep_the_ledger_balanced(ops: list[tuple]) -> None:
    ledger = Ledger()
    for path in PATHS:
        ledger.create_account(path, ASSETS[path])
    ledger.create_account("limited", "X", min_balance=-500)
    finished: set[int] = set()
    for op in ops:
        kind = op[0]
        before = {p: (a.balance, a.pending) for p, a in ledger.accounts.items()}
        try:
            if kind == "pending":
                ledger.create_pending(op[1], op[2], op[3])
            elif kind == "transfer":
                ledger.transfer(op[1], "limited" if op[3] % 3 == 0 else op[2], op[3])
            elif kind in ("post", "void"):
                (ledger.post if kind == "post" else ledger.void)(op[1])
                assert op[1] not in finished, "a transfer left the pending state twice"
                finished.add(op[1])
        except LedgerError:
            # refused: nothing changed
            assert before == {p: (a.balance, a.pending) for p, a in ledger.accounts.items()}
        ledger.check_invariant()
        assert ledger.accounts["limited"].balance >= -500


def test_two_phase_and_errors() -> None:
    ledger = Ledger()
    ledger.create_account("x", "X")
    ledger.create_account("y", "X", min_balance=-10)
    tid, _ = ledger.create_pending("x", "y", 7)
    assert ledger.accounts["y"].pending == -7 and ledger.accounts["y"].balance == 0
    with pytest.raises(LimitExceeded):
        ledger.create_pending("x", "y", 4)  # 7 pending + 4 > 10
    ledger.post(tid)
    assert ledger.accounts["x"].balance == 7 and ledger.accounts["x"].pending == 0
    with pytest.raises(TransferNotPending):
        ledger.post(tid)
    with pytest.raises(TransferNotPending):
        ledger.void(tid)
    with pytest.raises(UnknownTransfer):
        ledger.post(999)
    with pytest.raises(UnknownAccount):
        ledger.transfer("x", "nope", 1)
    with pytest.raises(LedgerError):
        ledger.transfer("x", "x", 1)
    with pytest.raises(LedgerError):
        ledger.create_account("bad path!", "X")
    ledger.check_invariant()


async def test_store_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store = await LedgerStore.open(path)
    await store.create_account("a", "X")
    await store.create_account("b", "X", min_balance=-100)
    pending = await store.create_pending("a", "b", 30)
    done = await store.create_pending("a", "b", 20)
    await store.post(done)
    voided = await store.create_pending("a", "b", 5)
    await store.void(voided)
    await store.transfer("b", "a", 3)
    await store.close()
    journal = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"

    again = await LedgerStore.open(path)
    try:
        assert again.balance("a").balance == 17
        assert again.balance("b").pending == -30
        assert again.balance("b").min_balance == -100
        assert set(again.ledger.pending) == {pending}
        again.ledger.check_invariant()
        await again.post(pending)
        with pytest.raises(TransferNotPending):
            await again.post(done)
        new = await again.transfer("a", "b", 1)
        assert new > voided  # ids continue after a restart
    finally:
        await again.close()


async def test_many_concurrent_operations_are_group_committed(tmp_path: Path) -> None:
    import asyncio

    store = await LedgerStore.open(tmp_path / "ledger.db")
    await store.create_account("a", "X")
    await store.create_account("b", "X")
    before = store.commits
    await asyncio.gather(*(store.transfer("a", "b", 1) for _ in range(500)))
    assert store.commits - before < 500  # batched
    await store.close()
    reopened = await LedgerStore.open(tmp_path / "ledger.db")
    assert reopened.balance("a").balance == 500
    await reopened.close()


async def test_a_ledger_from_before_event_ids_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE claims (
            seq INTEGER PRIMARY KEY,
            channel_id TEXT NOT NULL, chain TEXT NOT NULL,
            claim_amount TEXT NOT NULL, nonce TEXT NOT NULL, signature TEXT NOT NULL,
            delta TEXT NOT NULL, transfer_id INTEGER, accepted_at REAL NOT NULL,
            UNIQUE (channel_id, nonce)
        );
        INSERT INTO claims VALUES (1, '0xaa', 'TEST', '10', '1', '0xsig', '10', NULL, 1.0);
        """
    )
    conn.close()
    store = await LedgerStore.open(path)
    try:
        old = store.best_claims["0xaa"]
        assert (old.nonce, old.claim_amount, old.event_id) == (1, 10, None)
        new = ClaimRecord("0xaa", "TEST", 20, 2, "0xsig2", 10, None, 2.0, "ef" * 32)
        await store.commit(Changes(), claims=[new])
    finally:
        await store.close()
    reopened = await LedgerStore.open(path)
    try:
        assert reopened.best_claims["0xaa"].event_id == "ef" * 32
    finally:
        await reopened.close()


async def test_claim_heads_replace_the_unique_index_of_an_older_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        LEDGER_SCHEMA_V0
        + """
        INSERT INTO claims VALUES (1, '0xaa', 'TEST', '10', '1', '0xs1', '10', NULL, 1.0, NULL);
        INSERT INTO claims VALUES (2, '0xbb', 'TEST', '5', '9', '0xs2', '5', NULL, 2.0, 'e1');
        INSERT INTO claims VALUES (3, '0xaa', 'TEST', '30', '10', '0xs3', '20', NULL, 3.0, NULL);
        """
    )
    conn.close()
    rows_before = sqlite3.connect(path).execute("SELECT * FROM claims ORDER BY seq").fetchall()
    store = await LedgerStore.open(path)
    await store.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT * FROM claims ORDER BY seq").fetchall() == rows_before
        assert not [r for r in db.execute("PRAGMA index_list(claims)") if r[3] == "u"]
        heads = db.execute("SELECT * FROM claim_heads ORDER BY channel_id").fetchall()
        assert heads == [("0xaa", "10", 3), ("0xbb", "9", 2)]
    finally:
        db.close()

    store = await LedgerStore.open(path)  # a second open changes nothing
    try:
        assert store.best_claims["0xaa"].nonce == 10
        assert store.best_claims["0xbb"].event_id == "e1"
        # Nonce 10 is not above 9 as text ("10" < "9"), but is as a number: accepted.
        await store.commit(Changes(), claims=[ClaimRecord("0xbb", "TEST", 8, 10, "0xs4", 3)])
        # The database itself refuses a nonce that is not above the channel's last.
        with pytest.raises(LedgerUnavailable) as refused:
            await store.commit(Changes(), claims=[ClaimRecord("0xaa", "TEST", 40, 10, "0xs5", 10)])
        assert "not above" in str(refused.value)
    finally:
        await store.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone() == (4,)
        heads = db.execute("SELECT * FROM claim_heads ORDER BY channel_id").fetchall()
        assert heads == [("0xaa", "10", 3), ("0xbb", "10", 4)]
    finally:
        db.close()
