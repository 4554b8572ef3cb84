"""The codecs' fast paths agree with the general decoders on valid and near-miss bytes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interledger import btp, packet
from interledger.errors import DecodeError, EncodeError

from .test_fuzz import _mutations, btp_packets, fulfills, millis, prepares, rejects


def outcome(decode: Callable[[bytes], Any], raw: bytes) -> Any:
    try:
        return decode(raw)
    except DecodeError:
        return DecodeError


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_ilp_fast_path_matches_general_decoder(data: st.DataObject) -> None:
    raw = packet.encode_packet(data.draw(st.one_of(prepares, fulfills, rejects)))
    for candidate in (raw, data.draw(_mutations(raw))):
        general = outcome(packet._decode_general, candidate)
        assert outcome(packet.decode_packet, candidate) == general
        assert packet._decode_common(candidate) in (None, general)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_btp_fast_path_matches_general_decoder(data: st.DataObject) -> None:
    raw = btp.encode_btp(data.draw(btp_packets))
    for candidate in (raw, data.draw(_mutations(raw))):
        general = outcome(btp._decode_general, candidate)
        assert outcome(btp.decode_btp, candidate) == general
        assert btp._decode_common(candidate) in (None, general)


def test_fast_paths_take_the_common_packets() -> None:
    """The packets a connector forwards all the time decode without the general path."""
    expires = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    prepare = packet.Prepare(10, expires, bytes(range(32)), "test.bob.x", b"d" * 200)
    fulfill = packet.Fulfill(bytes(32), b"x" * 300)
    for value in (prepare, fulfill, packet.Prepare(1, expires, bytes(32), "g.a")):
        raw = packet.encode_packet(value)
        assert packet._decode_common(raw) == value
        assert packet.decode_packet(memoryview(raw)) == value
        message = btp.encode_ilp_message(7, raw)
        assert message == btp.encode_btp(btp.BtpMessage(7, (btp.ProtocolData("ilp", 0, raw),)))
        assert btp._decode_common(message) == btp.decode_btp(message)
        response = btp.encode_ilp_response(btp.UINT32_MAX, raw)
        assert response == btp.encode_btp(
            btp.BtpResponse(btp.UINT32_MAX, (btp.ProtocolData("ilp", 0, raw),))
        )
        assert btp._decode_common(response) is not None


def test_fast_paths_leave_errors_to_the_general_decoder() -> None:
    expires = datetime(2030, 1, 2, tzinfo=UTC)
    raw = bytearray(packet.encode_packet(packet.Prepare(1, expires, bytes(32), "g.a")))
    raw[10] = ord("x")  # a letter in the timestamp
    with pytest.raises(DecodeError, match="invalid ILP timestamp"):
        packet.decode_packet(bytes(raw))
    month_13 = packet.encode_packet(packet.Prepare(1, expires, bytes(32), "g.a"))
    month_13 = month_13[:14] + b"13" + month_13[16:]
    with pytest.raises(DecodeError, match="invalid ILP timestamp"):
        packet.decode_packet(month_13)
    with pytest.raises(DecodeError):
        btp.decode_btp(b"\x06\x00\x00\x00\x01\x02\x01\x01")  # an entry cut short
    with pytest.raises(EncodeError):
        btp.encode_ilp_message(1 << 32, b"")


@settings(max_examples=100, deadline=None)
@given(p=prepares, later=millis)
def test_prepare_with_expiry_is_a_re_encode(p: packet.Prepare, later: datetime) -> None:
    raw = packet.encode_packet(p)
    patched = packet.prepare_with_expiry(raw, later)
    assert patched == packet.encode_packet(
        packet.Prepare(p.amount, later, p.execution_condition, p.destination, p.data)
    )


def test_prepare_with_expiry_refuses_other_packets() -> None:
    with pytest.raises(EncodeError):
        packet.prepare_with_expiry(
            packet.encode_packet(packet.Fulfill(bytes(32))), datetime.now(UTC)
        )
    moment = datetime(2030, 1, 1, 12, tzinfo=UTC)
    local = moment.astimezone(UTC).astimezone(datetime.now().astimezone().tzinfo)
    assert packet.format_timestamp(local) == packet.format_timestamp(moment)
    assert packet.format_timestamp(moment + timedelta(microseconds=999)) == "20300101120000000"


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_read_ilp_agrees_with_decode_btp(data: st.DataObject) -> None:
    ilp = data.draw(st.binary(max_size=400))
    request_id = data.draw(st.integers(0, btp.UINT32_MAX))
    raw = data.draw(
        st.one_of(
            st.just(btp.encode_ilp_message(request_id, ilp)),
            st.just(btp.encode_ilp_response(request_id, ilp)),
            btp_packets.map(btp.encode_btp),
        )
    )
    for candidate in (raw, data.draw(_mutations(raw))):
        found = btp.read_ilp(candidate)
        if found is None:
            continue
        packet = btp.decode_btp(candidate)
        assert isinstance(packet, btp.BtpMessage | btp.BtpResponse)
        assert len(packet.protocol_data) == 1 and packet.protocol_data[0].protocol_name == "ilp"
        assert found[1:] == (packet.request_id, packet.protocol_data[0].data)
        assert found[0] == (6 if isinstance(packet, btp.BtpMessage) else 1)
    assert btp.read_ilp(btp.encode_ilp_message(request_id, ilp)) == (6, request_id, ilp)
