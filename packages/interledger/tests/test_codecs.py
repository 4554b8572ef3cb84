"""Targeted codec checks: OER edges, timestamps, addresses, IL-DCP, SPSP, STREAM crypto."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from interledger import address, btp, ildcp, oer, packet, spsp
from interledger.condition import condition_of, fulfills
from interledger.errors import DecodeError, EncodeError
from interledger.stream import crypto


@pytest.mark.parametrize(
    ("length", "encoded"),
    [(0, "00"), (127, "7f"), (128, "8180"), (255, "81ff"), (256, "820100"), (65535, "82ffff")],
)
def test_length_determinant(length: int, encoded: str) -> None:
    assert oer.encode_length(length) == bytes.fromhex(encoded)
    assert oer.Reader(bytes.fromhex(encoded)).read_length() == length


@pytest.mark.parametrize("raw", ["8100", "817f", "80", "820080", "89" + "00" * 9])
def test_non_canonical_lengths_rejected(raw: str) -> None:
    with pytest.raises(DecodeError):
        oer.Reader(bytes.fromhex(raw)).read_length()


def test_var_uint() -> None:
    assert oer.encode_var_uint(0) == b"\x01\x00"
    assert oer.encode_var_uint(256) == b"\x02\x01\x00"
    assert oer.Reader(b"\x02\x00\x05").read_var_uint() == 5  # leading zeros tolerated
    with pytest.raises(DecodeError):
        oer.Reader(b"\x00").read_var_uint()
    with pytest.raises(DecodeError):
        oer.Reader(b"\x09\x01" + bytes(8)).read_var_uint()
    assert oer.Reader(b"\x09\x01" + bytes(8)).read_var_uint(saturate=True) == oer.UINT64_MAX
    with pytest.raises(EncodeError):
        oer.encode_var_uint(-1)


def test_timestamps() -> None:
    moment = datetime(2017, 12, 23, 1, 21, 40, 549000, tzinfo=UTC)
    assert packet.format_timestamp(moment) == "20171223012140549"
    assert packet.parse_timestamp("20171223012140549") == moment
    for bad in ["2017122301214054", "2017122301214054x", "20171323012140549", "+0171223012140549"]:
        with pytest.raises(DecodeError):
            packet.parse_timestamp(bad)
    assert packet.format_generalized_time(moment) == "20171223012140.549Z"
    assert packet.format_generalized_time(moment.replace(microsecond=0)) == "20171223012140Z"
    assert packet.parse_generalized_time("20171223012140.000Z") == moment.replace(microsecond=0)
    assert packet.parse_generalized_time("20171223012140.5Z") == moment.replace(microsecond=500000)
    with pytest.raises(DecodeError):
        packet.parse_generalized_time("20171223012140")
    with pytest.raises(EncodeError):
        packet.format_timestamp(datetime(2020, 1, 1))


@pytest.mark.parametrize(
    "text",
    ["g.alice", "test.a.b-c_d~e", "private.x", "peer.config", "test3.z", "local.abc"],
)
def test_valid_addresses(text: str) -> None:
    assert address.is_valid_address(text)


@pytest.mark.parametrize(
    "text",
    ["g", "g.", "x.alice", "g..a", "g.a b", "G.alice", "test4.a", "g.a/b", "g." + "a" * 1022],
)
def test_invalid_addresses(text: str) -> None:
    assert not address.is_valid_address(text)
    with pytest.raises(DecodeError):
        address.validate_address(text)


def test_address_helpers() -> None:
    assert address.child_address("g.node", "alice") == "g.node.alice"
    with pytest.raises(DecodeError):
        address.child_address("g.node", "a.b")
    assert address.has_prefix("g.node.alice", "g.node")
    assert not address.has_prefix("g.nodes", "g.node")


def test_prepare_with_bad_destination_is_decode_error() -> None:
    good = packet.Prepare(1, datetime.now(UTC), bytes(32), "g.x", b"")
    raw = bytearray(packet.encode_packet(good))
    raw[raw.index(b"g.x")] = ord("z")
    with pytest.raises(DecodeError, match="invalid ILP address"):
        packet.decode_packet(bytes(raw))


def test_encoding_limits() -> None:
    now = datetime.now(UTC)
    with pytest.raises(EncodeError):
        packet.encode_packet(packet.Prepare(-1, now, bytes(32), "g.x"))
    with pytest.raises(EncodeError):
        packet.encode_packet(packet.Prepare(1, now, bytes(31), "g.x"))
    with pytest.raises(EncodeError):
        packet.encode_packet(packet.Prepare(1, now, bytes(32), "g.x", bytes(32768)))
    with pytest.raises(EncodeError):
        packet.encode_packet(packet.Fulfill(bytes(33)))


def test_trailing_bytes_rejected() -> None:
    raw = packet.encode_packet(packet.Fulfill(bytes(32), b"hi"))
    with pytest.raises(DecodeError, match="trailing"):
        packet.decode_packet(raw + b"\x00")


def test_amount_too_large_data() -> None:
    value = packet.AmountTooLarge(1000, 500)
    raw = packet.encode_amount_too_large(value)
    assert raw == (1000).to_bytes(8, "big") + (500).to_bytes(8, "big")
    assert packet.decode_amount_too_large(raw) == value
    with pytest.raises(DecodeError):
        packet.decode_amount_too_large(raw[:-1])


def test_ildcp() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    req = ildcp.request(now)
    assert req.destination == "peer.config" and ildcp.is_request(req)
    assert req.expires_at == now + timedelta(seconds=60)
    assert req.execution_condition == hashlib.sha256(bytes(32)).digest()
    response = ildcp.IldcpResponse("g.node.child", 9, "ETH")
    ful = ildcp.fulfill(response)
    assert fulfills(ful.fulfillment, req.execution_condition)
    assert ildcp.decode_response(ful.data) == response
    assert ful.data == b"\x0cg.node.child\x09\x03ETH"
    with pytest.raises(DecodeError):
        ildcp.decode_response(ful.data + b"!")


def test_conditions() -> None:
    assert condition_of(bytes(32)) == hashlib.sha256(bytes(32)).digest()
    assert fulfills(bytes(32), condition_of(bytes(32)))
    assert not fulfills(bytes(31), condition_of(bytes(31)))
    assert not fulfills(b"\x01" * 32, condition_of(bytes(32)))


def test_btp_auth() -> None:
    msg = btp.auth_message(7, "s3cret", "alice")
    decoded = btp.decode_btp(btp.encode_btp(msg))
    assert btp.parse_auth(decoded) == btp.AuthRequest("alice", "s3cret")
    with pytest.raises(DecodeError):
        btp.parse_auth(btp.BtpMessage(1, (btp.ProtocolData("ilp", 0, b""),)))
    with pytest.raises(DecodeError):
        btp.parse_auth(btp.BtpMessage(1, (btp.ProtocolData("auth", 0, b""),)))
    with pytest.raises(DecodeError):
        btp.parse_auth(btp.BtpResponse(1))


def test_spsp() -> None:
    resp = spsp.SpspResponse("g.node.alice.abc", bytes(range(32)))
    assert spsp.decode_response(spsp.encode_response(resp)) == resp
    for bad in [
        b"[]",
        b"{",
        b'{"destination_account": "g.x"}',
        b"\xff",
        b'{"destination_account": "nope", "shared_secret": "AA=="}',
        b'{"destination_account": "g.x", "shared_secret": "AA=="}',
    ]:
        with pytest.raises(DecodeError):
            spsp.decode_response(bad)
    assert spsp.resolve_payment_pointer("$example.com") == "https://example.com/.well-known/pay"
    assert spsp.resolve_payment_pointer("$example.com/alice") == "https://example.com/alice"
    assert (
        spsp.resolve_payment_pointer("$127.0.0.1:8080/x", scheme="http")
        == "http://127.0.0.1:8080/x"
    )
    for bad_pointer in ["example.com", "$", "$a.com?x=1", "$u@a.com"]:
        with pytest.raises(DecodeError):
            spsp.resolve_payment_pointer(bad_pointer)


def test_stream_crypto_derivations() -> None:
    secret = bytes(range(32))
    data = b"stream packet bytes"
    ful = crypto.fulfillment_for(secret, data)
    assert crypto.condition_for(secret, data) == hashlib.sha256(ful).digest()
    assert fulfills(ful, crypto.condition_for(secret, data))
    assert crypto.fulfillment_for(secret, data + b"x") != ful
    # Fixed nonce makes the layout checkable: nonce, then 16-byte tag, then ciphertext.
    sealed = crypto.encrypt(secret, b"hello", nonce=bytes(12))
    assert sealed[:12] == bytes(12) and len(sealed) == 12 + 16 + 5
    token = crypto.generate_token()
    assert crypto.decode_token(crypto.encode_token(token)) == token
    derive = crypto.shared_secret_from_token
    assert derive(b"k", token) != derive(b"j", token)
    assert derive(b"k", token) == derive(b"k", token)
    with pytest.raises(DecodeError):
        crypto.decrypt(secret, b"short")
