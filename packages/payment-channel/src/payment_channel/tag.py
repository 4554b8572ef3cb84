"""The Nostr ``payment`` tag that carries a claim on an event.

    ["payment", "ilp", <channelId>, <claimAmount>, <nonce>, <signature>, <currency>]

channelId is ``0x`` + 64 hex, claimAmount and nonce are decimal uint256 strings,
signature is ``0x`` + 130 hex, currency the channel asset's code (``ETH`` for a
chain's native coin). Anything else is malformed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .claim import UINT256_MAX, Claim

TAG_NAME = "payment"
METHOD = "ilp"

_HEX32 = re.compile(r"0x[0-9a-fA-F]{64}\Z")
_HEX65 = re.compile(r"0x[0-9a-fA-F]{130}\Z")
_DECIMAL = re.compile(r"(?:0|[1-9][0-9]{0,77})\Z")
_CURRENCY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,15}\Z")


class MalformedClaim(ValueError):
    """The payment tag is not of the contract's form."""


@dataclass(frozen=True, slots=True)
class PaymentClaim:
    """A claim as carried by an event, with the currency it is paid in."""

    claim: Claim
    currency: str

    @property
    def channel_id(self) -> str:
        """``0x`` + 64 lowercase hex."""
        return "0x" + self.claim.channel_id.hex()

    @property
    def signature(self) -> str:
        return "0x" + self.claim.signature.hex()

    def to_tag(self) -> list[str]:
        return [
            TAG_NAME,
            METHOD,
            self.channel_id,
            str(self.claim.claim_amount),
            str(self.claim.nonce),
            self.signature,
            self.currency,
        ]

    def to_rpc_params(self) -> dict[str, str]:
        """The fields of ``payment.verifyPaymentClaim`` (without ``minAmount``)."""
        return {
            "channelId": self.channel_id,
            "claimAmount": str(self.claim.claim_amount),
            "nonce": str(self.claim.nonce),
            "signature": self.signature,
            "currency": self.currency,
        }


def find_payment_tag(tags: Iterable[Sequence[str]]) -> Sequence[str] | None:
    """The first tag named ``payment``, or None."""
    for tag in tags:
        if len(tag) > 0 and tag[0] == TAG_NAME:
            return tag
    return None


def _uint256(text: object, name: str) -> int:
    if not isinstance(text, str) or not _DECIMAL.match(text):
        raise MalformedClaim(f"{name} is not a decimal uint256")
    value = int(text)
    if value > UINT256_MAX:
        raise MalformedClaim(f"{name} exceeds uint256")
    return value


def parse_fields(
    channel_id: object, claim_amount: object, nonce: object, signature: object, currency: object
) -> PaymentClaim:
    """Validate the five claim fields (as in the tag and in the node's RPC)."""
    if not isinstance(channel_id, str) or not _HEX32.match(channel_id):
        raise MalformedClaim("channelId is not 0x + 64 hex")
    if not isinstance(signature, str) or not _HEX65.match(signature):
        raise MalformedClaim("signature is not 0x + 130 hex")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise MalformedClaim("currency is not an asset code")
    return PaymentClaim(
        claim=Claim(
            channel_id=bytes.fromhex(channel_id[2:]),
            claim_amount=_uint256(claim_amount, "claimAmount"),
            nonce=_uint256(nonce, "nonce"),
            signature=bytes.fromhex(signature[2:]),
        ),
        currency=currency,
    )


def parse_payment_tag(tag: Sequence[object]) -> PaymentClaim:
    """Parse a ``payment`` tag; raises MalformedClaim when it is not of the contract's form."""
    if len(tag) < 7:
        raise MalformedClaim("a payment tag has 7 elements")
    if tag[0] != TAG_NAME or tag[1] != METHOD:
        raise MalformedClaim('a payment tag starts with "payment", "ilp"')
    return parse_fields(tag[2], tag[3], tag[4], tag[5], tag[6])
