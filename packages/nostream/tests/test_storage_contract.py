"""The storage contract: these tests run unchanged on every EventStore backend."""

from __future__ import annotations

import asyncio
import time

import pytest

from nostr_protocol.event import Event
from nostr_protocol.filters import Filter, parse_filter
from nostr_protocol.keys import generate_secret_key, public_key_hex, sign_event
from nostream.storage.base import EventStore, SaveOutcome

ALICE = bytes.fromhex("11" * 32)
BOB = bytes.fromhex("22" * 32)
NOW = int(time.time())


def ev(sk: bytes = ALICE, kind: int = 1, content: str = "hi", tags=(), created_at: int = NOW):
    return sign_event(sk, kind=kind, content=content, tags=tags, created_at=created_at)


async def q(store: EventStore, *filters: dict, default_limit: int = 100, max_limit: int = 500):
    return await store.query([parse_filter(f) for f in filters], default_limit, max_limit)


async def test_save_then_query_round_trips_the_event(store: EventStore) -> None:
    e = ev(tags=[["t", "nostr"], ["p", "ab" * 32, "wss://r"]], content="héllo \u2603 \n")
    assert await store.save(e) is SaveOutcome.STORED
    assert await q(store, {"ids": [e.id]}) == [e]
    assert await store.exists(e.id)
    assert not await store.exists("00" * 32)


async def test_duplicate_is_reported_and_not_stored_twice(store: EventStore) -> None:
    e = ev()
    assert await store.save(e) is SaveOutcome.STORED
    assert await store.save(e) is SaveOutcome.DUPLICATE
    assert await store.count([Filter()]) == 1


async def test_order_is_newest_first_then_lowest_id(store: EventStore) -> None:
    events = [ev(content=str(i), created_at=NOW - (i // 2)) for i in range(6)]
    for e in events:
        await store.save(e)
    got = await q(store, {})
    assert got == sorted(events, key=lambda e: (-e.created_at, e.id))


async def test_filters_on_every_field(store: EventStore) -> None:
    a1 = ev(ALICE, kind=1, tags=[["t", "x"]], created_at=NOW - 10)
    a7 = ev(ALICE, kind=7, tags=[["e", "cd" * 32]], created_at=NOW - 5)
    b1 = ev(BOB, kind=1, tags=[["t", "y"], ["t", "x"]], created_at=NOW)
    for e in (a1, a7, b1):
        await store.save(e)
    alice = public_key_hex(ALICE)
    assert {e.id for e in await q(store, {"authors": [alice]})} == {a1.id, a7.id}
    assert {e.id for e in await q(store, {"kinds": [1]})} == {a1.id, b1.id}
    assert {e.id for e in await q(store, {"#t": ["x"]})} == {a1.id, b1.id}
    assert {e.id for e in await q(store, {"#t": ["y"], "kinds": [1]})} == {b1.id}
    assert {e.id for e in await q(store, {"#e": ["cd" * 32]})} == {a7.id}
    assert {e.id for e in await q(store, {"since": NOW - 5})} == {a7.id, b1.id}
    assert {e.id for e in await q(store, {"until": NOW - 5})} == {a1.id, a7.id}
    assert await q(store, {"ids": []}) == []
    assert await q(store, {"#t": ["nope"]}) == []
    # a tag that is not single-letter is not indexed and cannot be queried by "#xx"
    assert await q(store, {"authors": [alice], "kinds": [7], "until": NOW - 6}) == []


async def test_limits_apply_per_filter_and_the_union_has_no_duplicates(store: EventStore) -> None:
    events = [ev(kind=1, content=str(i), created_at=NOW - i) for i in range(10)]
    for e in events:
        await store.save(e)
    assert await q(store, {"limit": 3}) == events[:3]
    assert await q(store, {"limit": 0}) == []
    assert await q(store, {}, default_limit=4) == events[:4]
    assert await q(store, {"limit": 1000}, max_limit=5) == events[:5]
    got = await q(store, {"limit": 2}, {"kinds": [1], "limit": 3}, {"ids": [events[9].id]})
    assert got == [*events[:3], events[9]]


async def test_count_counts_distinct_matches_ignoring_limits(store: EventStore) -> None:
    for i in range(5):
        await store.save(ev(kind=1 if i % 2 else 7, content=str(i)))
    assert await store.count([parse_filter({"kinds": [1]})]) == 2
    f = [parse_filter({"kinds": [1], "limit": 1}), parse_filter({"kinds": [1, 7]})]
    assert await store.count(f) == 5
    assert await store.count([]) == 0


async def test_replaceable_keeps_only_the_newest(store: EventStore) -> None:
    old = ev(kind=0, content="old", created_at=NOW - 10)
    new = ev(kind=0, content="new", created_at=NOW)
    assert await store.save(old) is SaveOutcome.STORED
    assert await store.save(new) is SaveOutcome.STORED
    assert not await store.exists(old.id)
    assert await q(store, {"kinds": [0]}) == [new]
    older = ev(kind=0, content="older", created_at=NOW - 20)
    assert await store.save(older) is SaveOutcome.SHADOWED
    assert await q(store, {"kinds": [0]}) == [new]
    # another author's replaceable event is independent
    assert await store.save(ev(BOB, kind=0)) is SaveOutcome.STORED
    assert await store.count([parse_filter({"kinds": [0]})]) == 2


async def test_replaceable_tie_keeps_the_lowest_id(store: EventStore) -> None:
    a, b = ev(kind=10002, content="a"), ev(kind=10002, content="b")
    low, high = sorted([a, b], key=lambda e: e.id)
    assert await store.save(high) is SaveOutcome.STORED
    assert await store.save(low) is SaveOutcome.STORED
    assert await q(store, {"kinds": [10002]}) == [low]
    assert not await store.exists(high.id)


async def test_tie_with_higher_id_is_shadowed(store: EventStore) -> None:
    a, b = ev(kind=3, content="a"), ev(kind=3, content="b")
    low, high = sorted([a, b], key=lambda e: e.id)
    assert await store.save(low) is SaveOutcome.STORED
    assert await store.save(high) is SaveOutcome.SHADOWED
    assert await q(store, {"kinds": [3]}) == [low]


async def test_addressable_is_keyed_by_d_tag(store: EventStore) -> None:
    x1 = ev(kind=30023, tags=[["d", "x"]], content="x1", created_at=NOW - 5)
    x2 = ev(kind=30023, tags=[["d", "x"]], content="x2", created_at=NOW)
    y1 = ev(kind=30023, tags=[["d", "y"]], content="y1", created_at=NOW - 5)
    nod = ev(kind=30023, content="no d", created_at=NOW - 5)
    for e in (x1, x2, y1, nod):
        assert await store.save(e) is SaveOutcome.STORED
    assert {e.id for e in await q(store, {"kinds": [30023]})} == {x2.id, y1.id, nod.id}
    assert {e.id for e in await q(store, {"#d": ["x"]})} == {x2.id}


async def test_delete_by_id_only_removes_the_authors_events(store: EventStore) -> None:
    mine, theirs = ev(ALICE, content="mine"), ev(BOB, content="theirs")
    await store.save(mine)
    await store.save(theirs)
    deletion = ev(ALICE, kind=5, tags=[["e", mine.id], ["e", theirs.id]])
    assert await store.save(deletion) is SaveOutcome.STORED
    assert await store.delete(deletion) == 1
    assert not await store.exists(mine.id)
    assert await store.exists(theirs.id)
    assert await store.exists(deletion.id)
    assert await store.save(mine) is SaveOutcome.DELETED
    assert await q(store, {"ids": [mine.id]}) == []


async def test_deletion_before_the_target_arrives_still_refuses_it(store: EventStore) -> None:
    late = ev(ALICE, content="late")
    deletion = ev(ALICE, kind=5, tags=[["e", late.id]])
    await store.save(deletion)
    assert await store.delete(deletion) == 0
    assert await store.save(late) is SaveOutcome.DELETED
    # another author publishing the same id is impossible; Bob's own events are unaffected
    assert await store.save(ev(BOB, content="late")) is SaveOutcome.STORED


async def test_kind5_events_cannot_be_deleted(store: EventStore) -> None:
    d1 = ev(ALICE, kind=5, tags=[["e", "ab" * 32]])
    await store.save(d1)
    d2 = ev(ALICE, kind=5, tags=[["e", d1.id]])
    await store.save(d2)
    assert await store.delete(d2) == 0
    assert await store.exists(d1.id)


async def test_delete_by_address_removes_versions_up_to_the_deletion(store: EventStore) -> None:
    alice = public_key_hex(ALICE)
    art = ev(ALICE, kind=30023, tags=[["d", "post"]], created_at=NOW - 10)
    other = ev(ALICE, kind=30023, tags=[["d", "other"]], created_at=NOW - 10)
    await store.save(art)
    await store.save(other)
    deletion = ev(ALICE, kind=5, tags=[["a", f"30023:{alice}:post"]], created_at=NOW - 5)
    await store.save(deletion)
    assert await store.delete(deletion) == 1
    assert await q(store, {"kinds": [30023]}) == [other]
    again = ev(ALICE, kind=30023, tags=[["d", "post"]], content="again", created_at=NOW - 7)
    assert await store.save(again) is SaveOutcome.DELETED
    newer = ev(ALICE, kind=30023, tags=[["d", "post"]], content="newer", created_at=NOW)
    assert await store.save(newer) is SaveOutcome.STORED


async def test_address_of_someone_else_is_ignored(store: EventStore) -> None:
    bob = public_key_hex(BOB)
    art = ev(BOB, kind=30023, tags=[["d", "post"]])
    await store.save(art)
    deletion = ev(ALICE, kind=5, tags=[["a", f"30023:{bob}:post"]])
    await store.save(deletion)
    assert await store.delete(deletion) == 0
    assert await store.exists(art.id)


async def test_expired_events_are_not_returned(store: EventStore) -> None:
    gone = ev(tags=[["expiration", str(NOW - 1)]], content="gone")
    stays = ev(tags=[["expiration", str(NOW + 3600)]], content="stays")
    await store.save(gone)
    await store.save(stays)
    assert await q(store, {}) == [stays]
    assert await store.count([Filter()]) == 1
    assert not await store.exists(gone.id)


async def test_concurrent_saves_all_land(store: EventStore) -> None:
    events = [ev(content=str(i)) for i in range(200)]
    outcomes = await asyncio.gather(*(store.save(e) for e in events))
    assert all(o is SaveOutcome.STORED for o in outcomes)
    assert await store.count([Filter()]) == 200


async def test_concurrent_replaceable_versions_leave_exactly_the_winner(store: EventStore) -> None:
    versions = [ev(kind=0, content=str(i), created_at=NOW - i % 7) for i in range(40)]
    await asyncio.gather(*(store.save(e) for e in versions))
    winner = min(versions, key=lambda e: (-e.created_at, e.id))
    assert await q(store, {"kinds": [0]}) == [winner]


async def test_bump_counter_stops_at_the_limit(store: EventStore) -> None:
    results = await asyncio.gather(*(store.bump_counter("free", "k1", 3) for _ in range(10)))
    assert sum(results) == 3
    assert await store.bump_counter("free", "k2", 3)
    assert not await store.bump_counter("free", "k1", 3)
    assert await store.bump_counter("other", "k1", 3)


async def test_ping(store: EventStore) -> None:
    assert await store.ping()


async def test_large_filters_work(store: EventStore) -> None:
    events = [ev(content=str(i)) for i in range(5)]
    for e in events:
        await store.save(e)
    ids = [e.id for e in events] + [f"{i:064x}" for i in range(995)]
    assert len(await q(store, {"ids": ids})) == 5
    authors = [public_key_hex(generate_secret_key()) for _ in range(50)]
    assert await q(store, {"authors": authors}) == []


@pytest.mark.parametrize("content", ["", "'; DROP TABLE events; --", "\x00nul", "\U0001f600"])
async def test_awkward_content_round_trips(store: EventStore, content: str) -> None:
    e: Event = ev(content=content, tags=[["x", content], ["alt", content]])
    await store.save(e)
    assert await q(store, {"ids": [e.id]}) == [e]


@pytest.mark.parametrize("value", ["", "'; DROP TABLE events; --", "\U0001f600", "%", "_"])
async def test_awkward_tag_values_are_queryable(store: EventStore, value: str) -> None:
    e = ev(tags=[["t", value]])
    await store.save(e)
    await store.save(ev(tags=[["t", "other"]]))
    assert [x.id for x in await q(store, {"#t": [value]})] == [e.id]


async def test_check_new_answers_what_save_would_refuse(store: EventStore) -> None:
    note = ev(content="note")
    assert await store.check_new(note) is None
    await store.save(note)
    assert await store.check_new(note) is SaveOutcome.DUPLICATE

    gone = ev(content="to be deleted")
    await store.save(ev(kind=5, tags=[["e", gone.id]], created_at=NOW))
    await store.delete(ev(kind=5, tags=[["e", gone.id]], created_at=NOW))
    assert await store.check_new(gone) is SaveOutcome.DELETED
    assert await store.check_new(ev(BOB, content="to be deleted")) is None  # not Bob's deletion

    newer = ev(kind=30000, tags=[["d", "x"]], created_at=NOW)
    await store.save(newer)
    older = ev(kind=30000, tags=[["d", "x"]], created_at=NOW - 5)
    assert await store.check_new(older) is SaveOutcome.SHADOWED
    assert await store.check_new(ev(kind=30000, tags=[["d", "y"]], created_at=NOW - 5)) is None
    assert await store.check_new(ev(kind=30000, tags=[["d", "x"]], created_at=NOW + 1)) is None

    address = f"30001:{public_key_hex(ALICE)}:z"
    await store.delete(ev(kind=5, tags=[["a", address]], created_at=NOW))
    assert await store.check_new(ev(kind=30001, tags=[["d", "z"]], created_at=NOW)) is (
        SaveOutcome.DELETED
    )
    assert await store.check_new(ev(kind=30001, tags=[["d", "z"]], created_at=NOW + 1)) is None


async def test_concurrent_saves_with_repeats_and_deleted_ids(store: EventStore) -> None:
    events = [ev(content=f"batch {i}", tags=[["t", "b"]]) for i in range(50)]
    deleted = events[7]
    await store.delete(ev(kind=5, tags=[["e", deleted.id]]))
    outcomes = await asyncio.gather(*(store.save(e) for e in [*events, events[3], events[3]]))
    assert outcomes[7] is SaveOutcome.DELETED
    assert outcomes[-2:].count(SaveOutcome.DUPLICATE) + (outcomes[3] is SaveOutcome.DUPLICATE) == 2
    assert outcomes.count(SaveOutcome.STORED) == 49
    assert {e.id for e in await q(store, {"#t": ["b"]})} == {e.id for e in events} - {deleted.id}
