"""Octet Encoding Rules as Interledger uses them (RFC 30).

:class:`Reader` decodes from a buffer and raises :class:`DecodeError` on any
malformed or truncated input; the ``encode_*`` functions build bytes.
"""

from __future__ import annotations

import re

from interledger.errors import DecodeError, EncodeError

UINT64_MAX = (1 << 64) - 1


def encode_length(length: int) -> bytes:
    """Encode a length determinant (canonical: short form below 128)."""
    if length < 0:
        raise EncodeError("length must not be negative")
    if length < 0x80:
        return bytes((length,))
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    if len(body) > 0x7F:
        raise EncodeError("length too large")
    return bytes((0x80 | len(body),)) + body


def encode_uint(value: int, size: int) -> bytes:
    """Encode a fixed-size big-endian unsigned integer of ``size`` bytes."""
    if value < 0 or value >= 1 << (8 * size):
        raise EncodeError(f"{value} does not fit in {size} bytes")
    return value.to_bytes(size, "big")


def encode_var_octets(data: bytes) -> bytes:
    """Encode a variable-length octet string (length determinant + bytes)."""
    return encode_length(len(data)) + data


def encode_var_uint(value: int) -> bytes:
    """Encode a variable-length unsigned integer (minimal big-endian bytes, length-prefixed)."""
    if value < 0:
        raise EncodeError("unsigned integer must not be negative")
    body = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    return encode_var_octets(body)


def read_length_at(buf: bytes, pos: int) -> tuple[int, int]:
    """A fast path: the canonical length determinant at ``buf[pos]`` (``pos`` in range)
    when it takes at most two length bytes, as ``(length, position after it)``.

    Returns ``(-1, pos)`` for anything else; callers then use :class:`Reader`, which
    also explains what is wrong.
    """
    first = buf[pos]
    if first < 0x80:
        return first, pos + 1
    if first == 0x81 and pos + 1 < len(buf) and buf[pos + 1] >= 0x80:
        return buf[pos + 1], pos + 2
    if first == 0x82 and pos + 2 < len(buf) and buf[pos + 1] != 0:
        return (buf[pos + 1] << 8) | buf[pos + 2], pos + 3
    return -1, pos


class Reader:
    """A cursor over a byte buffer that decodes OER fields."""

    __slots__ = ("_buf", "_pos")

    def __init__(self, data: bytes) -> None:
        self._buf = bytes(data)
        self._pos = 0

    @property
    def remaining(self) -> int:
        """How many bytes are left unread."""
        return len(self._buf) - self._pos

    def read(self, size: int) -> bytes:
        """Read exactly ``size`` bytes."""
        pos = self._pos
        end = pos + size
        if size < 0 or end > len(self._buf):
            raise DecodeError(f"truncated: need {size} bytes, have {len(self._buf) - pos}")
        self._pos = end
        return self._buf[pos:end]

    def read_uint(self, size: int) -> int:
        """Read a fixed-size big-endian unsigned integer."""
        return int.from_bytes(self.read(size), "big")

    def read_uint8(self) -> int:
        pos = self._pos
        if pos >= len(self._buf):
            raise DecodeError("truncated: need 1 byte, have 0")
        self._pos = pos + 1
        return self._buf[pos]

    def read_length(self) -> int:
        """Read a canonical length determinant."""
        first = self.read_uint8()
        if first < 0x80:
            return first
        size = first & 0x7F
        if size == 0:
            raise DecodeError("length prefix with zero length-of-length")
        if size > 8:
            raise DecodeError("length prefix too large")
        length = self.read_uint(size)
        if length < 0x80 or length.bit_length() <= 8 * (size - 1):
            raise DecodeError("length prefix is not canonical")
        return length

    def read_var_octets(self) -> bytes:
        """Read a variable-length octet string."""
        return self.read(self.read_length())

    def read_var_uint(self, limit: int | None = UINT64_MAX, saturate: bool = False) -> int:
        """Read a variable-length unsigned integer.

        Values above ``limit`` raise :class:`DecodeError`, or become ``limit`` when
        ``saturate`` is true.
        """
        body = self.read_var_octets()
        if not body:
            raise DecodeError("variable-length integer with no bytes")
        value = int.from_bytes(body, "big")
        if limit is not None and value > limit:
            if saturate:
                return limit
            raise DecodeError(f"integer {value} above {limit}")
        return value

    def read_ascii(self, size: int) -> str:
        """Read ``size`` bytes of printable ASCII."""
        raw = self.read(size)
        return _ascii(raw)

    def read_var_ascii(self) -> str:
        return _ascii(self.read_var_octets())

    def read_var_utf8(self) -> str:
        raw = self.read_var_octets()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("invalid UTF-8") from exc

    def expect_end(self) -> None:
        """Raise :class:`DecodeError` if bytes are left over."""
        if self.remaining:
            raise DecodeError(f"{self.remaining} unexpected trailing bytes")


_PRINTABLE = re.compile(rb"[\x20-\x7e]*")


def _ascii(raw: bytes) -> str:
    if _PRINTABLE.fullmatch(raw) is None:
        raise DecodeError("expected printable ASCII")
    return raw.decode("ascii")
