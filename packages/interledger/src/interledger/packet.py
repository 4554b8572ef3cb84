"""ILPv4 packets: Prepare, Fulfill and Reject (RFC 27)."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from interledger.address import ADDRESS_PATTERN, is_valid_address, validate_address
from interledger.errors import DecodeError, EncodeError
from interledger.oer import (
    UINT64_MAX,
    Reader,
    encode_uint,
    encode_var_octets,
    read_length_at,
)

MAX_DATA_LENGTH = 32767


class PacketType(enum.IntEnum):
    PREPARE = 12
    FULFILL = 13
    REJECT = 14


class ErrorCode(enum.StrEnum):
    """The registered ILP error codes (F: final, T: temporary, R: relative)."""

    F00_BAD_REQUEST = "F00"
    F01_INVALID_PACKET = "F01"
    F02_UNREACHABLE = "F02"
    F03_INVALID_AMOUNT = "F03"
    F04_INSUFFICIENT_DESTINATION_AMOUNT = "F04"
    F05_WRONG_CONDITION = "F05"
    F06_UNEXPECTED_PAYMENT = "F06"
    F07_CANNOT_RECEIVE = "F07"
    F08_AMOUNT_TOO_LARGE = "F08"
    F99_APPLICATION_ERROR = "F99"
    T00_INTERNAL_ERROR = "T00"
    T01_PEER_UNREACHABLE = "T01"
    T02_PEER_BUSY = "T02"
    T03_CONNECTOR_BUSY = "T03"
    T04_INSUFFICIENT_LIQUIDITY = "T04"
    T05_RATE_LIMITED = "T05"
    T99_APPLICATION_ERROR = "T99"
    R00_TRANSFER_TIMED_OUT = "R00"
    R01_INSUFFICIENT_SOURCE_AMOUNT = "R01"
    R02_INSUFFICIENT_TIMEOUT = "R02"
    R99_APPLICATION_ERROR = "R99"


ERROR_NAMES: dict[str, str] = {
    code.value: code.name[4:].replace("_", " ").title() for code in ErrorCode
}
_CODE = re.compile(r"[FTR][0-9A-Z]{2}", re.ASCII)


def is_valid_error_code(code: str) -> bool:
    """True for a three-character code with an F, T or R class letter."""
    return _CODE.fullmatch(code) is not None


# -- timestamps ---------------------------------------------------------------

_TIMESTAMP = re.compile(r"[0-9]{17}", re.ASCII)


def format_timestamp(moment: datetime) -> str:
    """Format as the fixed 17-character ``YYYYMMDDHHmmssfff`` (UTC)."""
    if moment.tzinfo is None:
        raise EncodeError("timestamp must be timezone-aware")
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    return "%04d%02d%02d%02d%02d%02d%03d" % (  # noqa: UP031 (faster than an f-string here)
        utc.year,
        utc.month,
        utc.day,
        utc.hour,
        utc.minute,
        utc.second,
        utc.microsecond // 1000,
    )


def parse_timestamp(text: str) -> datetime:
    """Parse the fixed 17-character ``YYYYMMDDHHmmssfff`` form (UTC)."""
    if _TIMESTAMP.fullmatch(text) is None:
        raise DecodeError(f"invalid ILP timestamp {text[:40]!r}")
    try:
        return datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[8:10]),
            int(text[10:12]),
            int(text[12:14]),
            int(text[14:17]) * 1000,
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise DecodeError(f"invalid ILP timestamp {text!r}") from exc


_GENERALIZED = re.compile(r"([0-9]{14})(?:\.([0-9]{1,3}))?Z", re.ASCII)


def parse_generalized_time(text: str) -> datetime:
    """Parse RFC 30 GeneralizedTime (``YYYYMMDDHHmmss[.fff]Z``), zero millis allowed."""
    match = _GENERALIZED.fullmatch(text)
    if match is None:
        raise DecodeError(f"invalid GeneralizedTime {text[:40]!r}")
    millis = (match.group(2) or "").ljust(3, "0")
    return parse_timestamp(match.group(1) + millis)


def format_generalized_time(moment: datetime) -> str:
    """Format as RFC 30 GeneralizedTime, omitting zero fractional digits."""
    stamp = format_timestamp(moment)
    fraction = stamp[14:].rstrip("0")
    return stamp[:14] + (f".{fraction}" if fraction else "") + "Z"


# -- packets -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepare:
    amount: int
    expires_at: datetime
    execution_condition: bytes
    destination: str
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Fulfill:
    fulfillment: bytes
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Reject:
    code: str
    triggered_by: str
    message: str
    data: bytes = b""


Packet = Prepare | Fulfill | Reject


def _check_data(data: bytes) -> None:
    if len(data) > MAX_DATA_LENGTH:
        raise EncodeError(f"data longer than {MAX_DATA_LENGTH} bytes")


def encode_prepare(p: Prepare) -> bytes:
    if not 0 <= p.amount <= UINT64_MAX:
        raise EncodeError("amount out of uint64 range")
    if len(p.execution_condition) != 32:
        raise EncodeError("execution condition must be 32 bytes")
    try:
        validate_address(p.destination)
    except DecodeError as exc:
        raise EncodeError(str(exc)) from None
    _check_data(p.data)
    body = (
        encode_uint(p.amount, 8)
        + format_timestamp(p.expires_at).encode()
        + p.execution_condition
        + encode_var_octets(p.destination.encode())
        + encode_var_octets(p.data)
    )
    return bytes((PacketType.PREPARE,)) + encode_var_octets(body)


def encode_fulfill(f: Fulfill) -> bytes:
    if len(f.fulfillment) != 32:
        raise EncodeError("fulfillment must be 32 bytes")
    _check_data(f.data)
    body = f.fulfillment + encode_var_octets(f.data)
    return bytes((PacketType.FULFILL,)) + encode_var_octets(body)


def encode_reject(r: Reject) -> bytes:
    if not is_valid_error_code(r.code):
        raise EncodeError(f"invalid error code {r.code!r}")
    if r.triggered_by and not is_valid_address(r.triggered_by):
        raise EncodeError(f"invalid triggeredBy address {r.triggered_by!r}")
    _check_data(r.data)
    body = (
        r.code.encode()
        + encode_var_octets(r.triggered_by.encode())
        + encode_var_octets(r.message.encode())
        + encode_var_octets(r.data)
    )
    return bytes((PacketType.REJECT,)) + encode_var_octets(body)


def encode_packet(packet: Packet) -> bytes:
    """Encode any ILPv4 packet."""
    if isinstance(packet, Prepare):
        return encode_prepare(packet)
    if isinstance(packet, Fulfill):
        return encode_fulfill(packet)
    return encode_reject(packet)


def _read_data(r: Reader) -> bytes:
    data = r.read_var_octets()
    if len(data) > MAX_DATA_LENGTH:
        raise DecodeError(f"data longer than {MAX_DATA_LENGTH} bytes")
    return data


def decode_packet(raw: bytes) -> Packet:
    """Decode any ILPv4 packet; raises :class:`DecodeError` on malformed bytes."""
    buf = raw if type(raw) is bytes else bytes(raw)
    packet = _decode_common(buf)
    if packet is not None:
        return packet
    return _decode_general(buf)


_ADDRESS_BYTES = re.compile(ADDRESS_PATTERN.encode(), re.ASCII)
_last_stamp: tuple[bytes, datetime] = (b"", datetime(1970, 1, 1, tzinfo=UTC))


def _stamp(raw: bytes) -> datetime | None:
    """Parse 17 ASCII digits as a timestamp, or None (a one-entry memo: stamps repeat)."""
    global _last_stamp
    last_raw, last_value = _last_stamp
    if raw == last_raw:
        return last_value
    if not raw.isdigit():
        return None
    try:
        value = datetime(
            int(raw[0:4]),
            int(raw[4:6]),
            int(raw[6:8]),
            int(raw[8:10]),
            int(raw[10:12]),
            int(raw[12:14]),
            int(raw[14:17]) * 1000,
            tzinfo=UTC,
        )
    except ValueError:
        return None
    _last_stamp = (raw, value)
    return value


def _decode_common(buf: bytes) -> Packet | None:
    """The fast path for well-formed Prepares and Fulfills; None sends the packet down
    the general path (other shapes, and every error with its message)."""
    size = len(buf)
    if size < 2:
        return None
    length, pos = read_length_at(buf, 1)
    if pos + length != size:
        return None
    kind = buf[0]
    if kind == 12:  # Prepare: amount, expiry, condition, destination, data
        if size < pos + 59:
            return None
        dest_len = buf[pos + 57]
        dest_start = pos + 58
        dest_end = dest_start + dest_len
        if dest_len >= 0x80 or dest_end >= size:
            return None
        destination = buf[dest_start:dest_end]
        if _ADDRESS_BYTES.fullmatch(destination) is None:
            return None
        data_len, data_start = read_length_at(buf, dest_end)
        if data_start + data_len != size or data_len > MAX_DATA_LENGTH:
            return None
        expires_at = _stamp(buf[pos + 8 : pos + 25])
        if expires_at is None:
            return None
        return Prepare(
            int.from_bytes(buf[pos : pos + 8], "big"),
            expires_at,
            buf[pos + 25 : pos + 57],
            destination.decode("ascii"),
            buf[data_start:],
        )
    if kind == 13:  # Fulfill: fulfillment, data
        if size < pos + 33:
            return None
        data_len, data_start = read_length_at(buf, pos + 32)
        if data_start + data_len != size or data_len > MAX_DATA_LENGTH:
            return None
        return Fulfill(buf[pos : pos + 32], buf[data_start:])
    return None


def _decode_general(raw: bytes) -> Packet:
    outer = Reader(raw)
    kind = outer.read_uint8()
    body = Reader(outer.read_var_octets())
    outer.expect_end()
    packet: Packet
    if kind == PacketType.PREPARE:
        amount = body.read_uint(8)
        expires_at = parse_timestamp(body.read_ascii(17))
        condition = body.read(32)
        destination = validate_address(body.read_var_ascii())
        packet = Prepare(amount, expires_at, condition, destination, _read_data(body))
    elif kind == PacketType.FULFILL:
        packet = Fulfill(body.read(32), _read_data(body))
    elif kind == PacketType.REJECT:
        code = body.read_ascii(3)
        if not is_valid_error_code(code):
            raise DecodeError(f"invalid error code {code!r}")
        triggered_by = body.read_var_ascii()
        if triggered_by and not is_valid_address(triggered_by):
            raise DecodeError(f"invalid triggeredBy address {triggered_by[:80]!r}")
        message = body.read_var_utf8()
        packet = Reject(code, triggered_by, message, _read_data(body))
    else:
        raise DecodeError(f"unknown ILP packet type {kind}")
    body.expect_end()
    return packet


def prepare_with_expiry(raw: bytes, expires_at: datetime) -> bytes:
    """The encoded Prepare ``raw`` with its expiry replaced (same length, so a splice).

    ``raw`` must be a valid encoded Prepare (e.g. one :func:`decode_packet` accepted).
    """
    if not raw or raw[0] != PacketType.PREPARE:
        raise EncodeError("not an encoded ILP Prepare")
    first = raw[1]
    start = 2 + 8 if first < 0x80 else 2 + (first & 0x7F) + 8
    return raw[:start] + format_timestamp(expires_at).encode() + raw[start + 17 :]


def decode_prepare(raw: bytes) -> Prepare:
    packet = decode_packet(raw)
    if not isinstance(packet, Prepare):
        raise DecodeError("expected an ILP Prepare")
    return packet


def decode_response(raw: bytes) -> Fulfill | Reject:
    """Decode a Fulfill or Reject (what answers a Prepare)."""
    packet = decode_packet(raw)
    if isinstance(packet, Prepare):
        raise DecodeError("expected an ILP Fulfill or Reject")
    return packet


# -- F08 Amount Too Large data ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class AmountTooLarge:
    """The data of an F08 reject: what arrived and the most the hop accepts."""

    amount_received: int
    maximum_amount: int


def encode_amount_too_large(value: AmountTooLarge) -> bytes:
    return encode_uint(value.amount_received, 8) + encode_uint(value.maximum_amount, 8)


def decode_amount_too_large(data: bytes) -> AmountTooLarge:
    r = Reader(data)
    value = AmountTooLarge(r.read_uint(8), r.read_uint(8))
    r.expect_end()
    return value
