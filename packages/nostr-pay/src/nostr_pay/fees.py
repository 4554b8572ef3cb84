"""Reading what a relay charges and where to pay it from its NIP-11 document."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class RelayInfoError(Exception):
    """The relay's NIP-11 does not say how to pay it."""


def price_for(nip11: dict[str, Any], kind: int, currency: str) -> int:
    """The relay's price for a ``kind`` event in ``currency`` (0 when it charges nothing)."""
    fees = nip11.get("fees")
    if not isinstance(fees, dict) or not isinstance(fees.get("publication"), list):
        if (nip11.get("limitation") or {}).get("payment_required"):
            raise RelayInfoError("the relay requires payment but publishes no fees")
        return 0
    default: int | None = None
    for entry in fees["publication"]:
        if not isinstance(entry, dict) or entry.get("unit") != currency:
            continue
        amount = entry.get("amount")
        if not isinstance(amount, int):
            continue
        kinds = entry.get("kinds")
        if isinstance(kinds, list):
            if kind in kinds:
                return amount
        elif default is None:
            default = amount
    if default is None:
        raise RelayInfoError(f"the relay prices no kind {kind} event in {currency}")
    return default


@dataclass(frozen=True, slots=True)
class PayTarget:
    """Where to open a channel: chain, factory, and the relay's recipient address."""

    chain_id: int
    factory: str
    recipient: str


def pay_target(
    nip11: dict[str, Any], chain_id: int, factory: str | None = None, recipient: str | None = None
) -> PayTarget:
    """The relay's chain entry for ``chain_id`` (explicit factory/recipient win)."""
    payments = nip11.get("payments")
    chains = payments.get("chains", []) if isinstance(payments, dict) else []
    for chain in chains:
        if isinstance(chain, dict) and chain.get("chainId") == chain_id:
            factory = factory or chain.get("factory")
            recipient = recipient or chain.get("recipient") or chain.get("relayAddress")
            break
    if not recipient:
        raise RelayInfoError(
            f"the relay names no recipient address on chain {chain_id}; pass --recipient"
        )
    if not factory:
        raise RelayInfoError(
            f"the relay names no channel factory on chain {chain_id}; pass --factory"
        )
    return PayTarget(chain_id, factory, recipient)
