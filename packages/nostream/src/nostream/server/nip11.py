"""The NIP-11 relay information document."""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..config import Settings
from ..payments.gate import PaymentGate

SUPPORTED_NIPS = [1, 9, 11, 13, 40, 42, 45, 70]


def document(settings: Settings, gate: PaymentGate) -> dict[str, Any]:
    """The NIP-11 document for these settings; fees come from the payment gate."""
    info = settings.info
    events = settings.events
    subs = settings.subscriptions
    fees = gate.nip11_fees()
    restricted = bool(fees) or bool(events.pubkey_whitelist) or settings.auth_required
    limitation: dict[str, Any] = {
        "max_message_length": settings.network.max_payload_size,
        "max_subscriptions": subs.max_subscriptions,
        "max_filters": subs.max_filters,
        "max_limit": subs.max_limit,
        "default_limit": subs.default_limit,
        "max_subid_length": subs.max_subscription_id_length,
        "max_content_length": events.max_content_length,
        "min_pow_difficulty": events.min_pow_bits,
        "auth_required": settings.auth_required,
        "payment_required": fees is not None,
        "restricted_writes": restricted,
    }
    if events.max_negative_delta:
        limitation["created_at_lower_limit"] = events.max_negative_delta
    if events.max_positive_delta:
        limitation["created_at_upper_limit"] = events.max_positive_delta
    doc: dict[str, Any] = {
        "name": info.name,
        "description": info.description,
        "supported_nips": SUPPORTED_NIPS,
        "software": "nostream (Python)",
        "version": __version__,
        "limitation": limitation,
    }
    if info.pubkey:
        doc["pubkey"] = info.pubkey
    if info.contact:
        doc["contact"] = info.contact
    if fees is not None:
        doc["fees"] = fees
    payments = gate.nip11_payments()
    if payments is not None:
        doc["payments"] = payments
    return doc
