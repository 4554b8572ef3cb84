"""The claim decision: pure, deterministic, no I/O.

Given the channel (or None), the best claim accepted so far, the new claim, the
price and the clock, :func:`decide` returns :class:`Accepted` with the amount to
credit, or :class:`Rejected` with one of the contract's reasons. Cheap checks
come first; the signature is looked at last. The caller may pass the signer
already recovered (by a :class:`~dassie.claims.recovery.RecoveryPool`), else it
is recovered here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from payment_channel.claim import InvalidSignature, recover_signer_address
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


class Best(Protocol):
    """What :func:`decide` reads of the best claim (a :class:`BestClaim`, a ClaimRecord)."""

    @property
    def claim_amount(self) -> int: ...

    @property
    def nonce(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Accepted:
    delta: int
    """``claimAmount`` minus the best accepted claim: what this claim pays."""


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: Reason
    detail: str = ""


Decision = Accepted | Rejected

Signer = bytes | InvalidSignature
"""A recovered signer: its 20-byte address, or why the signature does not recover."""


def recover_signer(claim: PaymentClaim) -> Signer:
    """The claim's signer, for :func:`decide`."""
    c = claim.claim
    try:
        return recover_signer_address(c.channel_id, c.claim_amount, c.nonce, c.signature)
    except InvalidSignature as exc:
        return exc


def decide(
    channel: ChannelState | None,
    best: Best | None,
    claim: PaymentClaim,
    min_amount: int,
    now: float,
    expiry_margin: int,
    signer: Signer | None = None,
) -> Decision:
    """Accept or reject ``claim`` on ``channel`` for a price of ``min_amount``.

    ``signer`` is the claim's recovered signer (see :data:`Signer`); None recovers it here.
    """
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
    if signer is None:
        signer = recover_signer(claim)
    if isinstance(signer, InvalidSignature):
        return Rejected(Reason.INVALID_SIGNATURE, str(signer))
    if signer.hex() != channel.sender.lower().removeprefix("0x"):
        return Rejected(Reason.INVALID_SIGNATURE, "not signed by the channel's sender")
    return Accepted(delta)
