"""ILP addresses (RFC 15)."""

from __future__ import annotations

import re

from interledger.errors import DecodeError

SCHEMES = ("g", "private", "example", "peer", "self", "test", "test1", "test2", "test3", "local")
MAX_LENGTH = 1023

ADDRESS_PATTERN = r"(?:g|private|example|peer|self|test[1-3]?|local)(?:\.[a-zA-Z0-9_~-]+)+"
"""What a valid address matches in full (its length is checked apart: at most MAX_LENGTH)."""
_ADDRESS = re.compile(ADDRESS_PATTERN, re.ASCII)
_SEGMENT = re.compile(r"[a-zA-Z0-9_~-]+", re.ASCII)


class InvalidAddress(DecodeError):
    """Text that is not a valid ILP address."""


def is_valid_address(address: str) -> bool:
    """True if ``address`` is a valid ILP address (scheme plus at least one segment)."""
    return len(address) <= MAX_LENGTH and _ADDRESS.fullmatch(address) is not None


def validate_address(address: str) -> str:
    """Return ``address`` unchanged, or raise :class:`InvalidAddress`."""
    if not is_valid_address(address):
        raise InvalidAddress(f"invalid ILP address: {address[:80]!r}")
    return address


def is_valid_segment(segment: str) -> bool:
    """True if ``segment`` may be appended to an address as one segment."""
    return _SEGMENT.fullmatch(segment) is not None


def child_address(parent: str, segment: str) -> str:
    """Append one segment to an address."""
    if not is_valid_segment(segment):
        raise InvalidAddress(f"invalid ILP address segment: {segment[:80]!r}")
    return validate_address(f"{parent}.{segment}")


def has_prefix(address: str, prefix: str) -> bool:
    """True if ``prefix`` is ``address`` or a whole-segment prefix of it."""
    return address == prefix or address.startswith(prefix + ".")
