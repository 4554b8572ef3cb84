"""The relay's event policy from settings.yaml, as pure functions (no I/O)."""

from __future__ import annotations

from nostr_protocol.event import Event
from nostr_protocol.filters import Filter
from nostr_protocol.nips import committed_difficulty, leading_zero_bits

from .config import EventLimits, SubscriptionLimits


def _in_ranges(kind: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(lo <= kind <= hi for lo, hi in ranges)


def check_event(event: Event, limits: EventLimits, now: int) -> str | None:
    """The OK message refusing ``event`` under ``limits``, or None when it may proceed.

    Only cheap checks that need no hashing and no storage.
    """
    if limits.pubkey_blacklist and any(event.pubkey.startswith(p) for p in limits.pubkey_blacklist):
        return "blocked: pubkey is not allowed on this relay"
    if limits.pubkey_whitelist and not any(
        event.pubkey.startswith(p) for p in limits.pubkey_whitelist
    ):
        return "blocked: pubkey is not allowed on this relay"
    if limits.kind_blacklist and _in_ranges(event.kind, limits.kind_blacklist):
        return f"blocked: kind {event.kind} is not allowed on this relay"
    if limits.kind_whitelist and not _in_ranges(event.kind, limits.kind_whitelist):
        return f"blocked: kind {event.kind} is not allowed on this relay"
    if len(event.content) > limits.max_content_length:
        return f"invalid: content is longer than {limits.max_content_length} characters"
    if limits.max_positive_delta and event.created_at > now + limits.max_positive_delta:
        return "invalid: created_at is too far in the future"
    if limits.max_negative_delta and event.created_at < now - limits.max_negative_delta:
        return "invalid: created_at is too far in the past"
    if limits.min_pow_bits:
        bits = leading_zero_bits(event.id)
        target = committed_difficulty(event)
        if bits < limits.min_pow_bits:
            return f"pow: difficulty {bits} is less than {limits.min_pow_bits}"
        if target is not None and target < limits.min_pow_bits:
            return f"pow: committed target {target} is less than {limits.min_pow_bits}"
    if limits.pubkey_min_pow_bits:
        bits = leading_zero_bits(event.pubkey)
        if bits < limits.pubkey_min_pow_bits:
            return f"pow: pubkey difficulty {bits} is less than {limits.pubkey_min_pow_bits}"
    return None


def check_filters(filters: tuple[Filter, ...], limits: SubscriptionLimits) -> str | None:
    """The CLOSED message refusing a REQ/COUNT's filters, or None when acceptable."""
    for f in filters:
        values = sum(len(s) for s in (f.ids, f.authors, f.kinds) if s is not None)
        values += sum(len(v) for v in f.tags.values())
        if values > limits.max_filter_values:
            return f"invalid: a filter lists more than {limits.max_filter_values} values"
    return None
