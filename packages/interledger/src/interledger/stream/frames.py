"""STREAM frames (RFC 29 section 5.3): one dataclass per frame type."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from interledger.address import validate_address
from interledger.errors import EncodeError
from interledger.oer import UINT64_MAX, Reader, encode_var_octets, encode_var_uint


class FrameType(enum.IntEnum):
    CONNECTION_CLOSE = 0x01
    CONNECTION_NEW_ADDRESS = 0x02
    CONNECTION_MAX_DATA = 0x03
    CONNECTION_DATA_BLOCKED = 0x04
    CONNECTION_MAX_STREAM_ID = 0x05
    CONNECTION_STREAM_ID_BLOCKED = 0x06
    CONNECTION_ASSET_DETAILS = 0x07
    STREAM_CLOSE = 0x10
    STREAM_MONEY = 0x11
    STREAM_MAX_MONEY = 0x12
    STREAM_MONEY_BLOCKED = 0x13
    STREAM_DATA = 0x14
    STREAM_MAX_DATA = 0x15
    STREAM_DATA_BLOCKED = 0x16
    STREAM_RECEIPT = 0x17


class ErrorCode(enum.IntEnum):
    """STREAM close error codes."""

    NO_ERROR = 0x01
    INTERNAL_ERROR = 0x02
    ENDPOINT_BUSY = 0x03
    FLOW_CONTROL_ERROR = 0x04
    STREAM_ID_ERROR = 0x05
    STREAM_STATE_ERROR = 0x06
    FRAME_FORMAT_ERROR = 0x07
    PROTOCOL_VIOLATION = 0x08
    APPLICATION_ERROR = 0x09


@dataclass(frozen=True, slots=True)
class ConnectionClose:
    error_code: int
    error_message: str


@dataclass(frozen=True, slots=True)
class ConnectionNewAddress:
    source_account: str


@dataclass(frozen=True, slots=True)
class ConnectionMaxData:
    max_offset: int


@dataclass(frozen=True, slots=True)
class ConnectionDataBlocked:
    max_offset: int


@dataclass(frozen=True, slots=True)
class ConnectionMaxStreamId:
    max_stream_id: int


@dataclass(frozen=True, slots=True)
class ConnectionStreamIdBlocked:
    max_stream_id: int


@dataclass(frozen=True, slots=True)
class ConnectionAssetDetails:
    source_asset_code: str
    source_asset_scale: int


@dataclass(frozen=True, slots=True)
class StreamClose:
    stream_id: int
    error_code: int
    error_message: str


@dataclass(frozen=True, slots=True)
class StreamMoney:
    stream_id: int
    shares: int


@dataclass(frozen=True, slots=True)
class StreamMaxMoney:
    stream_id: int
    receive_max: int
    total_received: int


@dataclass(frozen=True, slots=True)
class StreamMoneyBlocked:
    stream_id: int
    send_max: int
    total_sent: int


@dataclass(frozen=True, slots=True)
class StreamData:
    stream_id: int
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamMaxData:
    stream_id: int
    max_offset: int


@dataclass(frozen=True, slots=True)
class StreamDataBlocked:
    stream_id: int
    max_offset: int


@dataclass(frozen=True, slots=True)
class StreamReceipt:
    stream_id: int
    receipt: bytes


@dataclass(frozen=True, slots=True)
class UnknownFrame:
    """A frame of a type this version does not know; kept so it re-encodes unchanged."""

    frame_type: int
    body: bytes


Frame = (
    ConnectionClose
    | ConnectionNewAddress
    | ConnectionMaxData
    | ConnectionDataBlocked
    | ConnectionMaxStreamId
    | ConnectionStreamIdBlocked
    | ConnectionAssetDetails
    | StreamClose
    | StreamMoney
    | StreamMaxMoney
    | StreamMoneyBlocked
    | StreamData
    | StreamMaxData
    | StreamDataBlocked
    | StreamReceipt
    | UnknownFrame
)


def _u64(value: int) -> bytes:
    if not 0 <= value <= UINT64_MAX:
        raise EncodeError(f"{value} out of uint64 range")
    return encode_var_uint(value)


def _u8(value: int) -> bytes:
    if not 0 <= value <= 255:
        raise EncodeError(f"{value} out of uint8 range")
    return bytes((value,))


def _text(value: str) -> bytes:
    return encode_var_octets(value.encode())


def encode_frame(frame: Frame) -> bytes:
    """Encode one frame: type byte plus its body as a var octet string."""
    match frame:
        case ConnectionClose(code, message):
            kind, body = FrameType.CONNECTION_CLOSE, _u8(code) + _text(message)
        case ConnectionNewAddress(account):
            kind, body = FrameType.CONNECTION_NEW_ADDRESS, _text(account)
        case ConnectionMaxData(offset):
            kind, body = FrameType.CONNECTION_MAX_DATA, _u64(offset)
        case ConnectionDataBlocked(offset):
            kind, body = FrameType.CONNECTION_DATA_BLOCKED, _u64(offset)
        case ConnectionMaxStreamId(sid):
            kind, body = FrameType.CONNECTION_MAX_STREAM_ID, _u64(sid)
        case ConnectionStreamIdBlocked(sid):
            kind, body = FrameType.CONNECTION_STREAM_ID_BLOCKED, _u64(sid)
        case ConnectionAssetDetails(code, scale):
            kind, body = FrameType.CONNECTION_ASSET_DETAILS, _text(code) + _u8(scale)
        case StreamClose(sid, code, message):
            kind, body = FrameType.STREAM_CLOSE, _u64(sid) + _u8(code) + _text(message)
        case StreamMoney(sid, shares):
            kind, body = FrameType.STREAM_MONEY, _u64(sid) + _u64(shares)
        case StreamMaxMoney(sid, receive_max, total):
            kind, body = FrameType.STREAM_MAX_MONEY, _u64(sid) + _u64(receive_max) + _u64(total)
        case StreamMoneyBlocked(sid, send_max, total):
            kind, body = FrameType.STREAM_MONEY_BLOCKED, _u64(sid) + _u64(send_max) + _u64(total)
        case StreamData(sid, offset, data):
            kind, body = FrameType.STREAM_DATA, _u64(sid) + _u64(offset) + encode_var_octets(data)
        case StreamMaxData(sid, offset):
            kind, body = FrameType.STREAM_MAX_DATA, _u64(sid) + _u64(offset)
        case StreamDataBlocked(sid, offset):
            kind, body = FrameType.STREAM_DATA_BLOCKED, _u64(sid) + _u64(offset)
        case StreamReceipt(sid, receipt):
            kind, body = FrameType.STREAM_RECEIPT, _u64(sid) + encode_var_octets(receipt)
        case UnknownFrame(frame_type, raw):
            if frame_type in FrameType.__members__.values():
                raise EncodeError(f"frame type {frame_type} is known; use its class")
            return _u8(frame_type) + encode_var_octets(raw)
    return bytes((kind,)) + encode_var_octets(body)


def decode_frame(kind: int, body: bytes) -> Frame:
    """Decode one frame body of type ``kind``; extra trailing bytes are ignored."""
    r = Reader(body)
    frame: Frame
    if kind == FrameType.CONNECTION_CLOSE:
        frame = ConnectionClose(r.read_uint8(), r.read_var_utf8())
    elif kind == FrameType.CONNECTION_NEW_ADDRESS:
        frame = ConnectionNewAddress(validate_address(r.read_var_ascii()))
    elif kind == FrameType.CONNECTION_MAX_DATA:
        frame = ConnectionMaxData(r.read_var_uint(saturate=True))
    elif kind == FrameType.CONNECTION_DATA_BLOCKED:
        frame = ConnectionDataBlocked(r.read_var_uint(saturate=True))
    elif kind == FrameType.CONNECTION_MAX_STREAM_ID:
        frame = ConnectionMaxStreamId(r.read_var_uint(saturate=True))
    elif kind == FrameType.CONNECTION_STREAM_ID_BLOCKED:
        frame = ConnectionStreamIdBlocked(r.read_var_uint(saturate=True))
    elif kind == FrameType.CONNECTION_ASSET_DETAILS:
        frame = ConnectionAssetDetails(r.read_var_utf8(), r.read_uint8())
    elif kind == FrameType.STREAM_CLOSE:
        frame = StreamClose(r.read_var_uint(), r.read_uint8(), r.read_var_utf8())
    elif kind == FrameType.STREAM_MONEY:
        frame = StreamMoney(r.read_var_uint(), r.read_var_uint())
    elif kind == FrameType.STREAM_MAX_MONEY:
        frame = StreamMaxMoney(
            r.read_var_uint(), r.read_var_uint(saturate=True), r.read_var_uint(saturate=True)
        )
    elif kind == FrameType.STREAM_MONEY_BLOCKED:
        frame = StreamMoneyBlocked(
            r.read_var_uint(), r.read_var_uint(saturate=True), r.read_var_uint(saturate=True)
        )
    elif kind == FrameType.STREAM_DATA:
        frame = StreamData(r.read_var_uint(), r.read_var_uint(), r.read_var_octets())
    elif kind == FrameType.STREAM_MAX_DATA:
        frame = StreamMaxData(r.read_var_uint(), r.read_var_uint(saturate=True))
    elif kind == FrameType.STREAM_DATA_BLOCKED:
        frame = StreamDataBlocked(r.read_var_uint(), r.read_var_uint(saturate=True))
    elif kind == FrameType.STREAM_RECEIPT:
        frame = StreamReceipt(r.read_var_uint(), r.read_var_octets())
    else:
        return UnknownFrame(kind, body)
    return frame


def read_frame(r: Reader) -> Frame:
    kind = r.read_uint8()
    return decode_frame(kind, r.read_var_octets())
