"""Random bytes decode to a value or DecodeError (never another exception); values round-trip."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interledger import btp, ildcp, oer, packet, spsp
from interledger.errors import DecodeError, EncodeError
from interledger.stream import crypto
from interledger.stream import frames as f
from interledger.stream.packet import StreamPacket, decode_stream_packet, encode_stream_packet

DECODERS: list[Callable[[bytes], Any]] = [
    packet.decode_packet,
    packet.decode_amount_too_large,
    btp.decode_btp,
    decode_stream_packet,
    ildcp.decode_response,
    spsp.decode_response,
]


@pytest.mark.parametrize("decode", DECODERS, ids=lambda d: f"{d.__module__}.{d.__name__}")
@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_value_or_decode_error(decode: Callable[[bytes], Any], data: bytes) -> None:
    try:
        decode(data)
    except DecodeError:
        pass


def _mutations(raw: bytes) -> st.SearchStrategy[bytes]:
    """Valid packets with one byte changed or the tail cut off: near-misses reach deep code."""
    flips = st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)).map(
        lambda t: raw[: t[0]] + bytes((t[1],)) + raw[t[0] + 1 :]
    )
    cuts = st.integers(0, len(raw)).map(lambda n: raw[:n])
    return st.one_of(flips, cuts)


u64 = st.integers(0, oer.UINT64_MAX)
address = st.from_regex(r"\A(g|test|example|private)(\.[a-zA-Z0-9_~-]{1,8}){1,4}\Z")
millis = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2999, 12, 31), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
codes = st.sampled_from(list(packet.ErrorCode))

prepares = st.builds(
    packet.Prepare,
    u64,
    millis,
    st.binary(min_size=32, max_size=32),
    address,
    st.binary(max_size=300),
)
fulfills = st.builds(packet.Fulfill, st.binary(min_size=32, max_size=32), st.binary(max_size=300))
rejects = st.builds(
    packet.Reject,
    codes.map(str),
    st.one_of(st.just(""), address),
    st.text(max_size=50),
    st.binary(max_size=300),
)


@settings(max_examples=100, deadline=None)
@given(p=st.one_of(prepares, fulfills, rejects))
def test_ilp_round_trip(p: packet.Packet) -> None:
    raw = packet.encode_packet(p)
    assert packet.decode_packet(raw) == p
    assert packet.encode_packet(packet.decode_packet(raw)) == raw


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_ilp_near_misses(data: st.DataObject) -> None:
    raw = packet.encode_packet(data.draw(st.one_of(prepares, fulfills, rejects)))
    try:
        packet.decode_packet(data.draw(_mutations(raw)))
    except DecodeError:
        pass


proto_data = st.lists(
    st.builds(
        btp.ProtocolData,
        st.text(alphabet="abcdefghij_", max_size=10),
        st.integers(0, 255),
        st.binary(max_size=40),
    ),
    max_size=5,
).map(tuple)
req_id = st.integers(0, btp.UINT32_MAX)
btp_packets = st.one_of(
    st.builds(btp.BtpResponse, req_id, proto_data),
    st.builds(btp.BtpMessage, req_id, proto_data),
    st.builds(btp.BtpTransfer, req_id, u64, proto_data),
    st.builds(
        btp.BtpError,
        req_id,
        codes.map(str),
        st.text(max_size=20),
        millis.map(packet.format_generalized_time),
        st.binary(max_size=40),
        proto_data,
    ),
)


@settings(max_examples=100, deadline=None)
@given(p=btp_packets)
def test_btp_round_trip(p: btp.BtpPacket) -> None:
    raw = btp.encode_btp(p)
    assert btp.decode_btp(raw) == p
    assert btp.encode_btp(btp.decode_btp(raw)) == raw


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_btp_near_misses(data: st.DataObject) -> None:
    raw = btp.encode_btp(data.draw(btp_packets))
    try:
        btp.decode_btp(data.draw(_mutations(raw)))
    except DecodeError:
        pass


small = st.integers(0, 255)
frame_strategies: list[st.SearchStrategy[f.Frame]] = [
    st.builds(f.ConnectionClose, small, st.text(max_size=20)),
    st.builds(f.ConnectionNewAddress, address),
    st.builds(f.ConnectionMaxData, u64),
    st.builds(f.ConnectionDataBlocked, u64),
    st.builds(f.ConnectionMaxStreamId, u64),
    st.builds(f.ConnectionStreamIdBlocked, u64),
    st.builds(f.ConnectionAssetDetails, st.text(max_size=5), small),
    st.builds(f.StreamClose, u64, small, st.text(max_size=20)),
    st.builds(f.StreamMoney, u64, u64),
    st.builds(f.StreamMaxMoney, u64, u64, u64),
    st.builds(f.StreamMoneyBlocked, u64, u64, u64),
    st.builds(f.StreamData, u64, u64, st.binary(max_size=40)),
    st.builds(f.StreamMaxData, u64, u64),
    st.builds(f.StreamDataBlocked, u64, u64),
    st.builds(f.StreamReceipt, u64, st.binary(max_size=58)),
    st.builds(f.UnknownFrame, st.integers(0x30, 0xFF), st.binary(max_size=20)),
]
stream_packets = st.builds(
    StreamPacket,
    u64,
    st.sampled_from(list(packet.PacketType)),
    u64,
    st.lists(st.one_of(*frame_strategies), max_size=6).map(tuple),
)


@settings(max_examples=150, deadline=None)
@given(p=stream_packets)
def test_stream_round_trip(p: StreamPacket) -> None:
    raw = encode_stream_packet(p)
    assert decode_stream_packet(raw) == p
    assert encode_stream_packet(decode_stream_packet(raw)) == raw


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_stream_near_misses(data: st.DataObject) -> None:
    raw = encode_stream_packet(data.draw(stream_packets))
    try:
        decode_stream_packet(data.draw(_mutations(raw)))
    except DecodeError:
        pass


@settings(max_examples=100, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32), plain=st.binary(max_size=200))
def test_stream_encryption_round_trip_and_tamper(secret: bytes, plain: bytes) -> None:
    sealed = crypto.encrypt(secret, plain)
    assert len(sealed) == len(plain) + 28
    assert crypto.decrypt(secret, sealed) == plain
    tampered = sealed[:-1] + bytes((sealed[-1] ^ 1,)) if plain else sealed[:12] + bytes(16)
    with pytest.raises(DecodeError):
        crypto.decrypt(secret, tampered)
    with pytest.raises(DecodeError):
        crypto.decrypt(bytes(32), sealed) if secret != bytes(32) else crypto.decrypt(b"x", sealed)


@settings(deadline=None)
@given(code=st.text(max_size=4), name=st.text(max_size=5))
def test_encode_rejects_bad_values_with_encode_error(code: str, name: str) -> None:
    bad = packet.Reject(code, "not an address!", name, b"")
    with pytest.raises(EncodeError):
        packet.encode_packet(bad)
