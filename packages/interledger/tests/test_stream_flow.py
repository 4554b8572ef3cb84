"""A STREAM sender and receiver talking directly (no network)."""

from __future__ import annotations

from datetime import UTC, datetime

from interledger.packet import (
    AmountTooLarge,
    Fulfill,
    Prepare,
    Reject,
    decode_packet,
    encode_amount_too_large,
    encode_packet,
)
from interledger.stream.receiver import Received, StreamReceiver
from interledger.stream.sender import StreamSender

NOW = datetime(2030, 1, 1, tzinfo=UTC)
SECRET = bytes(range(32))


def deliver(receiver: StreamReceiver, prepare: Prepare) -> Fulfill | Reject:
    # Through the wire format both ways, as a real link would.
    got = decode_packet(encode_packet(prepare))
    assert isinstance(got, Prepare)
    result = receiver.handle(got)
    return result.fulfill if isinstance(result, Received) else result


def test_payment_splits_into_packets_and_completes() -> None:
    receiver = StreamReceiver("g.node", SECRET, "ETH", 9)
    dest, secret = receiver.connection("alice")
    sender = StreamSender(dest, secret, 1000, "g.sender", max_packet_amount=300)
    credited = 0
    while (p := sender.next_prepare(NOW)) is not None:
        result = receiver.handle(p)
        assert isinstance(result, Received) and result.account == "alice"
        credited += result.amount
        sender.on_response(p, result.fulfill)
    assert sender.done and sender.failure is None
    assert sender.delivered == credited == 1000
    assert sender.sequence == 4  # 300 + 300 + 300 + 100


def test_f08_shrinks_packets() -> None:
    receiver = StreamReceiver("g.node", SECRET, "ETH", 9)
    dest, secret = receiver.connection("bob")
    sender = StreamSender(dest, secret, 100, "g.sender")
    p = sender.next_prepare(NOW)
    assert p is not None and p.amount == 100
    f08 = Reject("F08", "g.hop", "", encode_amount_too_large(AmountTooLarge(100, 40)))
    sender.on_response(p, f08)
    sizes = []
    while (p := sender.next_prepare(NOW)) is not None:
        sizes.append(p.amount)
        sender.on_response(p, deliver(receiver, p))
    assert sizes == [40, 40, 20] and sender.delivered == 100 and sender.done


def test_wrong_secret_is_refused_and_sender_fails() -> None:
    receiver = StreamReceiver("g.node", SECRET, "ETH", 9)
    dest, _ = receiver.connection("alice")
    sender = StreamSender(dest, b"\x01" * 32, 10, "g.sender")
    p = sender.next_prepare(NOW)
    assert p is not None
    response = deliver(receiver, p)
    assert isinstance(response, Reject) and response.code == "F06"
    sender.on_response(p, response)
    assert sender.done and sender.failure is not None and sender.delivered == 0


def test_tampered_condition_rejected_with_encrypted_reply() -> None:
    receiver = StreamReceiver("g.node", SECRET, "ETH", 9)
    dest, secret = receiver.connection("alice")
    sender = StreamSender(dest, secret, 10, "g.sender")
    p = sender.next_prepare(NOW)
    assert p is not None
    bad = Prepare(p.amount, p.expires_at, bytes(32), p.destination, p.data)
    response = deliver(receiver, bad)
    assert isinstance(response, Reject) and response.code == "F99" and response.data
    sender.on_response(p, response)
    assert sender.failure is not None and "refused" in sender.failure


def test_bad_addresses() -> None:
    receiver = StreamReceiver("g.node", SECRET, "ETH", 9)
    for dest in ["g.other.a.b", "g.node.a", "g.node.a.b.c", "g.node.a.!!!"]:
        p = Prepare(1, NOW, bytes(32), "g.node.x" if "!" in dest else dest, b"")
        result = receiver.handle(p)
        assert isinstance(result, Reject), dest
    result = receiver.handle(Prepare(1, NOW, bytes(32), "g.node.a.b", b"junk"))
    assert isinstance(result, Reject) and result.code == "F06"


def test_temporary_failures_retry_then_give_up() -> None:
    receiver = StreamReceiver("g.node", SECRET, "ETH", 9)
    dest, secret = receiver.connection("alice")
    sender = StreamSender(dest, secret, 10, "g.sender")
    for _ in range(6):
        p = sender.next_prepare(NOW)
        assert p is not None
        sender.on_response(p, Reject("T04", "g.hop", "busy", b""))
    assert sender.failure is not None and sender.failure.startswith("T04")
    assert sender.next_prepare(NOW) is None
