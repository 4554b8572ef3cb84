"""The package's error classes."""

from __future__ import annotations


class InterledgerError(Exception):
    """Base class of every error raised by this package."""


class DecodeError(InterledgerError, ValueError):
    """Bytes (or text) that do not decode to a valid value."""


class EncodeError(InterledgerError, ValueError):
    """A value that cannot be encoded (out of range, too long, invalid field)."""
