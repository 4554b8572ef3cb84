"""The claim decision: pure, deterministic, no I/O.

Given the channel (or None), the best claim accepted so far, the new claim, the
price and the clock, :func:`decide` returns :class:`Accepted` with the amount to
credit, or :class:`Rejected` with one of the contract's reasons. Cheap checks
come first; the signature is recovered last.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from payment_channel.claim import InvalidSignature, recover_claim_signer
from payment_channel.tag import PaymentClaim

from .channels import ChannelState


class Reason(enum.StrEnum):
    MALFORMED_CLAIM = "malformed-claim"
    INSUFFICIENT_PAYMENT = "insufficient-payment"
    INVALID_SIGNATURE = "invalid-signature"
    INVALID_NONCE = "invalid-nonce"
    CHANNEL_NOT_FOUND = "channel-not-found"
    CHANNEL_EXPIRED = "channel-expired"
    CHANNEL_CLOSED = "channel-closed"
    INSUFFICIENT_CHANNEL_BALANCE = "insufficient-channel-balance"
    UNSUPPORTED_CURRENCY = "unsupported-currency"


@dataclass(frozen=True, slots=True)
class BestClaim:
    """The highest claim accepted on a channel so far."""

    claim_amount: int
    nonce: int


@dataclass(frozen=True, slots=True)
class Accepted:
    delta: int
    """``claimAmount`` minus the best accepted claim: what this claim pays."""


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: Reason
    detail: str = ""


Decision = Accepted | Rejected


def decide(
    channel: ChannelState | None,
    best: BestClaim | None,
    claim: PaymentClaim,
    min_amount: int,
    now: float,
    expiry_margin: int,
) -> Decision:
    """Accept or reject ``claim`` on ``channel`` for a price of ``min_amount``."""
    if channel is None:
        return Rejected(Reason.CHANNEL_NOT_FOUND, "no such channel paying this node")
    if channel.closed:
        return Rejected(Reason.CHANNEL_CLOSED, "channel is closed")
    if now >= channel.expiration - expiry_margin:
        return Rejected(Reason.CHANNEL_EXPIRED, "channel expired or expires within the margin")
    if channel.currency is None or claim.currency != channel.currency:
        return Rejected(
            Reason.UNSUPPORTED_CURRENCY,
            f"channel is paid in {channel.currency or 'an unpriced asset'}",
        )
    c = claim.claim
    last_nonce = max(channel.highest_nonce, best.nonce if best else 0)
    if c.nonce <= last_nonce:
        return Rejected(Reason.INVALID_NONCE, f"nonce must exceed {last_nonce}")
    if c.claim_amount > channel.deposit:
        return Rejected(Reason.INSUFFICIENT_CHANNEL_BALANCE, f"deposit is {channel.deposit}")
    delta = c.claim_amount - (best.claim_amount if best else 0)
    if delta < min_amount:
        return Rejected(Reason.INSUFFICIENT_PAYMENT, f"pays {max(delta, 0)}, price {min_amount}")
    try:
        signer = recover_claim_signer(c.channel_id, c.claim_amount, c.nonce, c.signature)
    except InvalidSignature as exc:
        return Rejected(Reason.INVALID_SIGNATURE, str(exc))
    if signer.lower() != channel.sender.lower():
        return Rejected(Reason.INVALID_SIGNATURE, "not signed by the channel's sender")
    return Accepted(delta)
