"""Execution conditions and fulfillments (SHA-256 hash-locks)."""

from __future__ import annotations

import hashlib
import hmac


def condition_of(fulfillment: bytes) -> bytes:
    """The condition a fulfillment satisfies: its SHA-256."""
    return hashlib.sha256(fulfillment).digest()


def fulfills(fulfillment: bytes, condition: bytes) -> bool:
    """True if ``fulfillment`` is 32 bytes and hashes to ``condition``."""
    return len(fulfillment) == 32 and hmac.compare_digest(condition_of(fulfillment), condition)
