"""Nostr keys and signing (BIP-340), for clients and tests."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from coincurve import PrivateKey

from .event import Event, compute_id


def generate_secret_key() -> bytes:
    return os.urandom(32)


def public_key_hex(secret_key: bytes) -> str:
    """The x-only public key of ``secret_key``, as 64 lowercase hex."""
    return PrivateKey(secret_key).public_key_xonly.format().hex()


def sign_event(
    secret_key: bytes,
    *,
    kind: int,
    content: str = "",
    tags: Sequence[Sequence[str]] = (),
    created_at: int | None = None,
) -> Event:
    """Build and sign an event with BIP-340."""
    pubkey = public_key_hex(secret_key)
    ts = int(time.time()) if created_at is None else created_at
    tag_tuple = tuple(tuple(t) for t in tags)
    event_id = compute_id(pubkey, ts, kind, tag_tuple, content)
    sig = PrivateKey(secret_key).sign_schnorr(bytes.fromhex(event_id), os.urandom(32)).hex()
    return Event(event_id, pubkey, ts, kind, tag_tuple, content, sig)
