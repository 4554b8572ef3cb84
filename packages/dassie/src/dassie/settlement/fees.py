"""Fees for a transaction that replaces a stuck one (pure).

A node accepts a replacement (same sender, same nonce) only if it raises the fee
by at least 10%: for EIP-1559 transactions both the fee cap and the tip, for
legacy ones the gas price. We raise by 12.5%, the margin wallets use, and never
go below what the chain suggests now.
"""

from __future__ import annotations

from collections.abc import Mapping

BUMP_NUMERATOR = 9
BUMP_DENOMINATOR = 8  # x 1.125
FEE_FIELDS = ("maxFeePerGas", "maxPriorityFeePerGas", "gasPrice")


def bumped(fee: int) -> int:
    """``fee`` raised by 12.5%, rounded up, and by at least 1 wei."""
    return max(-(-fee * BUMP_NUMERATOR // BUMP_DENOMINATOR), fee + 1)


def replacement_fees(previous: Mapping[str, int], suggested: Mapping[str, int]) -> dict[str, int]:
    """The fee fields for a replacement of ``previous``, given today's ``suggested`` fields.

    Each is 12.5% above the previous one and at least the suggestion; a field the
    previous transaction is not known to have is 12.5% above the suggestion (it was
    dropped, most likely for too low a fee). Only the fields present in
    ``suggested`` (the transaction being built) are set; the tip never exceeds the
    fee cap.
    """
    fees = {
        name: max(value, bumped(previous[name])) if name in previous else bumped(value)
        for name, value in suggested.items()
        if name in FEE_FIELDS
    }
    if "maxFeePerGas" in fees and "maxPriorityFeePerGas" in fees:
        fees["maxFeePerGas"] = max(fees["maxFeePerGas"], fees["maxPriorityFeePerGas"])
    return fees
