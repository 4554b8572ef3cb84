"""The connector core's rules, driven directly (no I/O)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interledger.address import has_prefix
from interledger.connector import (
    LOCAL,
    Connector,
    ConnectorSettings,
    Forward,
    LimitError,
    MemoryLedger,
    Peer,
    RoutingTable,
)
from interledger.packet import ErrorCode, Fulfill, Prepare, Reject, decode_amount_too_large

NOW = datetime(2030, 1, 1, tzinfo=UTC)
FULFILLMENT = b"\x07" * 32
CONDITION = hashlib.sha256(FULFILLMENT).digest()


def make() -> Connector:
    c = Connector(
        ConnectorSettings("g.hub", timedelta(seconds=1), timedelta(seconds=30)),
        local_account="local",
    )
    c.add_peer(Peer("alice", "peer/alice", max_packet_amount=1000), ("g.alice",))
    c.add_peer(Peer("bob", "peer/bob"), ("g.bob",))
    c.add_peer(Peer("bobsub", "peer/bobsub", max_packet_amount=50), ("g.bob.sub",))
    return c


def prepare(dest: str = "g.bob.x", amount: int = 100, ttl: float = 10) -> Prepare:
    return Prepare(amount, NOW + timedelta(seconds=ttl), CONDITION, dest, b"data")


def test_routing_longest_prefix() -> None:
    t = RoutingTable()
    t.add("g.bob", "b")
    t.add("g.bob.sub", "s")
    t.add("g", "default")
    assert t.lookup("g.bob.sub.x") == "s"
    assert t.lookup("g.bob.subway") == "b"
    assert t.lookup("g.bob") == "b"
    assert t.lookup("g.carol") == "default"
    assert t.lookup("test.x") is None
    t.remove("g")
    assert t.lookup("g.carol") is None


def test_forward_shortens_expiry_and_names_accounts() -> None:
    fwd = make().route_prepare("alice", prepare(), NOW)
    assert isinstance(fwd, Forward)
    got = (fwd.next_hop, fwd.debit, fwd.credit, fwd.amount)
    assert got == ("bob", "peer/alice", "peer/bob", 100)
    assert fwd.prepare.expires_at == NOW + timedelta(seconds=9)
    assert fwd.prepare.execution_condition == CONDITION and fwd.prepare.data == b"data"


def test_max_hold_time_caps_expiry() -> None:
    fwd = make().route_prepare("alice", prepare(ttl=3600), NOW)
    assert isinstance(fwd, Forward)
    assert fwd.prepare.expires_at == NOW + timedelta(seconds=30)


def test_local_destination() -> None:
    fwd = make().route_prepare("alice", prepare("g.hub.acct.tok"), NOW)
    assert isinstance(fwd, Forward)
    assert fwd.next_hop == LOCAL and fwd.credit == "local"


@pytest.mark.parametrize(
    ("source", "packet", "code"),
    [
        ("mallory", prepare(), "F00"),
        ("alice", prepare(amount=1001), "F08"),
        ("alice", prepare("g.bob.sub.x", amount=51), "F08"),
        ("alice", prepare(ttl=0), "R00"),
        ("alice", prepare(ttl=0.5), "R02"),
        ("alice", prepare(ttl=1), "R02"),
        ("alice", prepare("g.nowhere"), "F02"),
        ("alice", prepare("g.alice.loop"), "F02"),
    ],
)
def test_rejections(source: str, packet: Prepare, code: str) -> None:
    result = make().route_prepare(source, packet, NOW)
    assert isinstance(result, Reject)
    assert result.code == code and result.triggered_by == "g.hub"


def test_f08_data() -> None:
    result = make().route_prepare("alice", prepare(amount=5000), NOW)
    assert isinstance(result, Reject)
    info = decode_amount_too_large(result.data)
    assert (info.amount_received, info.maximum_amount) == (5000, 1000)


def test_settle_rules() -> None:
    c = make()
    fwd = c.route_prepare("alice", prepare(), NOW)
    assert isinstance(fwd, Forward)
    good = c.settle(fwd, Fulfill(FULFILLMENT), NOW + timedelta(seconds=1))
    assert good.post and good.response == Fulfill(FULFILLMENT)
    wrong = c.settle(fwd, Fulfill(b"\x08" * 32), NOW)
    assert not wrong.post and isinstance(wrong.response, Reject)
    assert wrong.response.code == ErrorCode.F05_WRONG_CONDITION
    late = c.settle(fwd, Fulfill(FULFILLMENT), fwd.prepare.expires_at)
    assert not late.post and isinstance(late.response, Reject) and late.response.code == "R00"
    rej = Reject("F99", "g.bob", "no", b"x")
    assert c.settle(fwd, rej, NOW) == type(good)(False, rej)
    assert c.expired(fwd).code == "R00"
    assert c.unreachable(fwd, "gone").code == "T01"
    assert c.limit_reject(fwd).code == "T04"


async def test_memory_ledger_limits_and_phases() -> None:
    ledger = MemoryLedger({"peer/alice": 150})
    t1 = await ledger.hold("peer/alice", "peer/bob", 100)
    with pytest.raises(LimitError):
        await ledger.hold("peer/alice", "peer/bob", 100)
    await ledger.release(t1)
    t2 = await ledger.hold("peer/alice", "peer/bob", 100)
    await ledger.commit(t2)
    assert ledger.balances == {"peer/alice": 100, "peer/bob": -100}
    assert sum(ledger.balances.values()) == 0 and not ledger.pending
    with pytest.raises(LimitError):
        await ledger.hold("peer/alice", "peer/bob", 51)


@given(
    routes=st.lists(st.from_regex(r"\A(g|test)(\.[ab]{1,2}){0,3}\.?\Z"), max_size=8),
    destination=st.from_regex(r"\A(g|test)(\.[ab]{1,2}){1,4}\Z"),
)
def test_route_lookup_is_the_longest_whole_segment_prefix(
    routes: list[str], destination: str
) -> None:
    table = RoutingTable()
    for index, prefix in enumerate(routes):
        table.add(prefix, f"hop{index}")
    matching = [p for p in table._routes if has_prefix(destination, p)]
    expected = table._routes[max(matching, key=len)] if matching else None
    assert table.lookup(destination) == expected
