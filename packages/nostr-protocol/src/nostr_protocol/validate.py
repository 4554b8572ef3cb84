"""Event validation in strfry's order: cheap shape checks, then the id hash, then the signature.

:func:`parse_event` only checks the shape (no hashing), so a relay can look up
the id for duplicates before spending time on :func:`check_id` and
:func:`check_signature`. :func:`validate_event` runs all three.
"""

from __future__ import annotations

import re
from typing import Any

from .event import Event, compute_id, verify_signature

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")

_FIELDS = ("id", "pubkey", "sig", "created_at", "kind", "tags", "content")
"""The fields an event must have, in the order a missing one is reported."""

MAX_TIMESTAMP = 2**53 - 1
"""The largest created_at accepted (the JSON-safe integer range)."""


class InvalidEvent(ValueError):
    """The event is not valid; ``str(exc)`` is the reason (without the ``invalid:`` prefix)."""

    def __init__(self, reason: str, event_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id
        """The event's id when it was readable (for an OK reply), else None."""


def event_id_of(obj: object) -> str | None:
    """The ``id`` field of a raw event object when it is well-formed, else None."""
    if isinstance(obj, dict):
        value = obj.get("id")
        if isinstance(value, str) and _HEX64.fullmatch(value):
            return value
    return None


def _fail(reason: str, obj: object) -> InvalidEvent:
    return InvalidEvent(reason, event_id_of(obj))


def parse_event(obj: Any) -> Event:
    """Check the shape of a decoded event object and build an :class:`Event`.

    Does not hash or verify: see :func:`check_id` and :func:`check_signature`.
    """
    if not isinstance(obj, dict):
        raise InvalidEvent("event must be a JSON object")
    try:
        event_id, pubkey, sig = obj["id"], obj["pubkey"], obj["sig"]
        created_at, kind = obj["created_at"], obj["kind"]
        raw_tags, content = obj["tags"], obj["content"]
    except KeyError:
        for name in _FIELDS:
            if name not in obj:
                raise _fail(f"event has no {name}", obj) from None
        raise
    if not isinstance(event_id, str) or not _HEX64.fullmatch(event_id):
        raise _fail("id must be 64 lowercase hex characters", obj)
    if not isinstance(pubkey, str) or not _HEX64.fullmatch(pubkey):
        raise _fail("pubkey must be 64 lowercase hex characters", obj)
    if not isinstance(sig, str) or not _HEX128.fullmatch(sig):
        raise _fail("sig must be 128 lowercase hex characters", obj)
    if isinstance(created_at, bool) or not isinstance(created_at, int):
        raise _fail("created_at must be an integer", obj)
    if not 0 <= created_at <= MAX_TIMESTAMP:
        raise _fail("created_at is out of range", obj)
    if isinstance(kind, bool) or not isinstance(kind, int) or not 0 <= kind <= 65535:
        raise _fail("kind must be an integer between 0 and 65535", obj)
    if not isinstance(content, str):
        raise _fail("content must be a string", obj)
    if not isinstance(raw_tags, list):
        raise _fail("tags must be an array of arrays of strings", obj)
    for tag in raw_tags:
        if not isinstance(tag, list):
            raise _fail("tags must be an array of arrays of strings", obj)
        for value in tag:
            if not isinstance(value, str):
                raise _fail("tags must be an array of arrays of strings", obj)
    return Event(event_id, pubkey, created_at, kind, tuple(map(tuple, raw_tags)), content, sig)


def check_id(event: Event) -> None:
    """Raise :class:`InvalidEvent` unless ``event.id`` is the NIP-01 hash of its fields."""
    computed = compute_id(event.pubkey, event.created_at, event.kind, event.tags, event.content)
    if computed != event.id:
        raise InvalidEvent("event id does not match its contents", event.id)


def check_signature(event: Event) -> None:
    """Raise :class:`InvalidEvent` unless ``event.sig`` is a valid BIP-340 signature."""
    if not verify_signature(event.id, event.pubkey, event.sig):
        raise InvalidEvent("signature is not valid", event.id)


def validate_event(obj: Any) -> Event:
    """Shape, id and signature checks in that order; returns the verified :class:`Event`."""
    event = parse_event(obj)
    check_id(event)
    check_signature(event)
    return event
