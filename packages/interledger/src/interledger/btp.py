"""Bilateral Transfer Protocol 2.0 packets (RFC 23) and its auth sub-protocol."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from interledger.errors import DecodeError, EncodeError
from interledger.oer import (
    Reader,
    encode_length,
    encode_uint,
    encode_var_octets,
    read_length_at,
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
    buf = raw if type(raw) is bytes else bytes(raw)
    packet = _decode_common(buf)
    if packet is not None:
        return packet
    return _decode_general(buf)


_NAMES: dict[bytes, str] = {}
"""Protocol names already checked (printable ASCII): a handful in practice, capped."""
_PRINTABLE = re.compile(rb"[\x20-\x7e]*")


def _name(raw: bytes) -> str | None:
    name = _NAMES.get(raw)
    if name is None and _PRINTABLE.fullmatch(raw) is not None:
        name = raw.decode("ascii")
        if len(_NAMES) < 64:
            _NAMES[raw] = name
    return name


def _decode_common(buf: bytes) -> BtpPacket | None:
    """The fast path for well-formed Messages and Responses; None sends the packet down
    the general path (other shapes, and every error with its message)."""
    size = len(buf)
    kind = buf[0] if size >= 8 else 0
    if kind != BtpType.MESSAGE and kind != BtpType.RESPONSE:
        return None
    length, pos = read_length_at(buf, 5)
    if length < 2 or pos + length != size or buf[pos] != 1:  # a one-byte count
        return None
    count = buf[pos + 1]
    pos += 2
    entries = []
    for _ in range(count):
        if pos >= size:
            return None
        name_len = buf[pos]
        end = pos + 1 + name_len
        if name_len >= 0x80 or end + 1 >= size:
            return None
        name = _name(buf[pos + 1 : end])
        if name is None:
            return None
        content_type = buf[end]
        data_len, pos = read_length_at(buf, end + 1)
        end = pos + data_len
        if data_len < 0 or end > size:
            return None
        entries.append(ProtocolData(name, content_type, buf[pos:end]))
        pos = end
    if pos != size:
        return None
    request_id = int.from_bytes(buf[1:5], "big")
    if kind == BtpType.MESSAGE:
        return BtpMessage(request_id, tuple(entries))
    return BtpResponse(request_id, tuple(entries))


def _decode_general(raw: bytes) -> BtpPacket:
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


# -- one ILP packet per BTP packet (what links carry) ----------------------------

_ILP_ENTRY = b"\x01\x01\x03ilp\x00"
"""Protocol data of one entry ``ilp`` (octet stream), up to its data's length prefix."""


def _ilp_packet(kind: int, request_id: int, ilp: bytes) -> bytes:
    if not 0 <= request_id <= UINT32_MAX:
        raise EncodeError("request id out of uint32 range")
    body = _ILP_ENTRY + encode_length(len(ilp)) + ilp
    return bytes((kind,)) + request_id.to_bytes(4, "big") + encode_length(len(body)) + body


def read_ilp(raw: bytes) -> tuple[int, int, bytes] | None:
    """``(BtpType value, request id, ILP packet)`` of a Message or Response whose protocol data
    is exactly one ``ilp`` entry (what links carry), else None: decode it with
    :func:`decode_btp` then. Cheaper than :func:`decode_btp` (no objects built)."""
    size = len(raw)
    if size < 14:
        return None
    kind = raw[0]
    if kind != BtpType.MESSAGE and kind != BtpType.RESPONSE:
        return None
    length, pos = read_length_at(raw, 5)
    if pos + length != size or raw[pos : pos + 6] != b"\x01\x01\x03ilp" or pos + 7 >= size:
        return None
    data_len, start = read_length_at(raw, pos + 7)
    if data_len < 0 or start + data_len != size:
        return None
    return kind, int.from_bytes(raw[1:5], "big"), raw[start:]


def encode_ilp_message(request_id: int, ilp: bytes) -> bytes:
    """``encode_btp(BtpMessage(request_id, (ProtocolData("ilp", 0, ilp),)))``, faster."""
    return _ilp_packet(BtpType.MESSAGE, request_id, ilp)


def encode_ilp_response(request_id: int, ilp: bytes) -> bytes:
    """``encode_btp(BtpResponse(request_id, (ProtocolData("ilp", 0, ilp),)))``, faster."""
    return _ilp_packet(BtpType.RESPONSE, request_id, ilp)


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
