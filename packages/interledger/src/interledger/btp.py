"""Bilateral Transfer Protocol 2.0 packets (RFC 23) and its auth sub-protocol."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from interledger.errors import DecodeError, EncodeError
from interledger.oer import (
    Reader,
    encode_length,
    encode_uint,
    encode_var_octets,
)
from interledger.packet import parse_generalized_time

UINT32_MAX = (1 << 32) - 1


class BtpType(enum.IntEnum):
    RESPONSE = 1
    ERROR = 2
    MESSAGE = 6
    TRANSFER = 7


class ContentType(enum.IntEnum):
    OCTET_STREAM = 0
    TEXT_PLAIN_UTF8 = 1
    APPLICATION_JSON = 2


@dataclass(frozen=True, slots=True)
class ProtocolData:
    """One named entry of a BTP packet's protocol data."""

    protocol_name: str
    content_type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class BtpResponse:
    request_id: int
    protocol_data: tuple[ProtocolData, ...] = ()


@dataclass(frozen=True, slots=True)
class BtpError:
    """A BTP error; ``triggered_at`` is kept as the GeneralizedTime text it came in."""

    request_id: int
    code: str
    name: str
    triggered_at: str
    data: bytes = b""
    protocol_data: tuple[ProtocolData, ...] = ()


@dataclass(frozen=True, slots=True)
class BtpMessage:
    request_id: int
    protocol_data: tuple[ProtocolData, ...] = ()


@dataclass(frozen=True, slots=True)
class BtpTransfer:
    request_id: int
    amount: int
    protocol_data: tuple[ProtocolData, ...] = field(default=())


BtpPacket = BtpResponse | BtpError | BtpMessage | BtpTransfer


def _encode_protocol_data(entries: tuple[ProtocolData, ...]) -> bytes:
    count = len(entries)
    count_bytes = count.to_bytes(max(1, (count.bit_length() + 7) // 8), "big")
    out = [encode_length(len(count_bytes)), count_bytes]
    for entry in entries:
        if not 0 <= entry.content_type <= 255:
            raise EncodeError("content type must be 0..255")
        try:
            name = entry.protocol_name.encode("ascii")
        except UnicodeEncodeError:
            raise EncodeError("protocol name must be ASCII") from None
        out += [encode_var_octets(name), bytes((entry.content_type,))]
        out.append(encode_var_octets(entry.data))
    return b"".join(out)


def _read_protocol_data(r: Reader) -> tuple[ProtocolData, ...]:
    count = r.read_var_uint(limit=None)
    if count > r.remaining:  # each entry takes at least three bytes
        raise DecodeError("protocol data count larger than the packet")
    entries = []
    for _ in range(count):
        name = r.read_var_ascii()
        content_type = r.read_uint8()
        entries.append(ProtocolData(name, content_type, r.read_var_octets()))
    return tuple(entries)


def encode_btp(packet: BtpPacket) -> bytes:
    """Encode a BTP packet."""
    if not 0 <= packet.request_id <= UINT32_MAX:
        raise EncodeError("request id out of uint32 range")
    kind: BtpType
    if isinstance(packet, BtpResponse):
        kind, body = BtpType.RESPONSE, b""
    elif isinstance(packet, BtpMessage):
        kind, body = BtpType.MESSAGE, b""
    elif isinstance(packet, BtpTransfer):
        kind, body = BtpType.TRANSFER, encode_uint(packet.amount, 8)
    else:
        if len(packet.code.encode()) != 3 or not packet.code.isascii():
            raise EncodeError(f"invalid error code {packet.code!r}")
        try:
            parse_generalized_time(packet.triggered_at)
        except DecodeError as exc:
            raise EncodeError(str(exc)) from None
        kind = BtpType.ERROR
        body = (
            packet.code.encode()
            + encode_var_octets(packet.name.encode())
            + encode_var_octets(packet.triggered_at.encode())
            + encode_var_octets(packet.data)
        )
    body += _encode_protocol_data(packet.protocol_data)
    return bytes((kind,)) + encode_uint(packet.request_id, 4) + encode_var_octets(body)


def decode_btp(raw: bytes) -> BtpPacket:
    """Decode a BTP packet; raises :class:`DecodeError` on malformed bytes."""
    outer = Reader(raw)
    kind = outer.read_uint8()
    request_id = outer.read_uint(4)
    r = Reader(outer.read_var_octets())
    outer.expect_end()
    packet: BtpPacket
    if kind == BtpType.RESPONSE:
        packet = BtpResponse(request_id, _read_protocol_data(r))
    elif kind == BtpType.MESSAGE:
        packet = BtpMessage(request_id, _read_protocol_data(r))
    elif kind == BtpType.TRANSFER:
        amount = r.read_uint(8)
        packet = BtpTransfer(request_id, amount, _read_protocol_data(r))
    elif kind == BtpType.ERROR:
        code = r.read_ascii(3)
        name = r.read_var_utf8()
        triggered_at = r.read_var_ascii()
        parse_generalized_time(triggered_at)
        data = r.read_var_octets()
        packet = BtpError(request_id, code, name, triggered_at, data, _read_protocol_data(r))
    else:
        raise DecodeError(f"unknown BTP packet type {kind}")
    r.expect_end()
    return packet


def find_protocol(entries: tuple[ProtocolData, ...], name: str) -> ProtocolData | None:
    """The first entry named ``name``, if any."""
    for entry in entries:
        if entry.protocol_name == name:
            return entry
    return None


# -- auth sub-protocol -----------------------------------------------------------


def auth_message(request_id: int, token: str, username: str = "") -> BtpMessage:
    """The first message a BTP client sends: ``auth``, ``auth_username``, ``auth_token``."""
    return BtpMessage(
        request_id,
        (
            ProtocolData("auth", ContentType.OCTET_STREAM, b""),
            ProtocolData("auth_username", ContentType.TEXT_PLAIN_UTF8, username.encode()),
            ProtocolData("auth_token", ContentType.TEXT_PLAIN_UTF8, token.encode()),
        ),
    )


@dataclass(frozen=True, slots=True)
class AuthRequest:
    username: str
    token: str


def parse_auth(packet: BtpPacket) -> AuthRequest:
    """Read an auth message; raises :class:`DecodeError` if it is not one."""
    if not isinstance(packet, BtpMessage) or not packet.protocol_data:
        raise DecodeError("expected a BTP auth message")
    if packet.protocol_data[0].protocol_name != "auth":
        raise DecodeError("first protocol data entry must be 'auth'")
    token = find_protocol(packet.protocol_data, "auth_token")
    if token is None:
        raise DecodeError("auth message without auth_token")
    user = find_protocol(packet.protocol_data, "auth_username")
    try:
        return AuthRequest(user.data.decode() if user else "", token.data.decode())
    except UnicodeDecodeError:
        raise DecodeError("auth fields must be UTF-8") from None
