"""NIP rules as pure functions: deletion, PoW, expiration, auth, protected events."""

from __future__ import annotations

import re

from .event import Event

_HEX64 = re.compile(r"[0-9a-f]{64}")

DELETION_KIND = 5
AUTH_KIND = 22242


def deletion_targets(deletion: Event) -> tuple[list[str], list[tuple[int, str, str]]]:
    """What a kind-5 event asks to delete (NIP-09): event ids and ``(kind, pubkey, d)`` addresses.

    Only the deletion author's own addresses are returned; ``e`` ids are
    returned as-is (the store checks that the target has the same author).
    Malformed references are ignored.
    """
    ids: list[str] = []
    addresses: list[tuple[int, str, str]] = []
    for tag in deletion.tags:
        if len(tag) < 2:
            continue
        if tag[0] == "e" and _HEX64.fullmatch(tag[1]):
            ids.append(tag[1])
        elif tag[0] == "a":
            parts = tag[1].split(":", 2)
            if len(parts) != 3 or not parts[0].isdigit() or parts[1] != deletion.pubkey:
                continue
            kind = int(parts[0])
            if kind <= 65535:
                addresses.append((kind, parts[1], parts[2]))
    return ids, addresses


def expiration(event: Event) -> int | None:
    """The NIP-40 ``expiration`` unix time, or None when absent or not an integer."""
    for tag in event.tags:
        if len(tag) > 1 and tag[0] == "expiration":
            value = tag[1]
            return int(value) if value.isdigit() else None
    return None


def is_expired(event: Event, now: int) -> bool:
    exp = expiration(event)
    return exp is not None and exp <= now


def leading_zero_bits(hex_id: str) -> int:
    """NIP-13 difficulty: the number of leading zero bits of a hex id."""
    bits = 0
    for ch in hex_id:
        nibble = int(ch, 16)
        if nibble == 0:
            bits += 4
            continue
        return bits + (4 - nibble.bit_length())
    return bits


def committed_difficulty(event: Event) -> int | None:
    """The target difficulty committed in the ``nonce`` tag's third value, if any."""
    for tag in event.tags:
        if len(tag) > 2 and tag[0] == "nonce" and tag[2].isdigit():
            return int(tag[2])
    return None


def is_protected(event: Event) -> bool:
    """NIP-70: the event carries the ``["-"]`` tag (only its author may publish it)."""
    return any(len(tag) >= 1 and tag[0] == "-" for tag in event.tags)


def _normalize_url(url: str) -> str:
    return url.strip().rstrip("/").lower()


def check_auth_event(
    event: Event, *, challenge: str, relay_url: str, now: int, max_skew: int = 600
) -> str | None:
    """Validate a NIP-42 AUTH event (already id/signature-checked).

    Returns None when it authenticates, else the reason (for an
    ``auth-required:``/``invalid:`` OK message).
    """
    if event.kind != AUTH_KIND:
        return f"auth event must be kind {AUTH_KIND}"
    if abs(event.created_at - now) > max_skew:
        return "auth event created_at is too far from now"
    challenges = event.first_tag_values("challenge")
    if challenge not in challenges:
        return "auth event challenge does not match"
    relays = event.first_tag_values("relay")
    if not any(_normalize_url(r) == _normalize_url(relay_url) for r in relays):
        return "auth event relay does not match this relay"
    return None
