"""What publishing an event costs: sans-I/O pricing from settings and environment.

settings.yaml (every key optional)::

    payments:
      currency: ETH               # the currency plain amounts below are in
      default_price: 1000000000   # base units (wei); or a mapping {ETH: ..., USDC: ...}
      kind_prices: {1: 100, 30023: 5000}   # values: an amount or a currency mapping
      free_kinds: [0, 3]
      allowed_pubkeys: [<64 hex>, ...]     # these publish free
      free_tier_events: 0         # free events per pubkey before payment is due

Environment overrides (amounts in the default currency): ``PRICING_STORE_EVENT``,
``PRICING_KIND_OVERRIDES`` (``1:100,30023:5000``), ``PRICING_FREE_TIER_EVENTS``,
``PRICING_FREE_KINDS`` (``0,3``), ``PRICING_ALLOWED_PUBKEYS`` (comma separated).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_CURRENCY = "ETH"
DEFAULT_PRICE = 1_000_000_000  # 1 gwei per event
_PUBKEY = re.compile(r"[0-9a-f]{64}\Z")


class PricingError(ValueError):
    """The pricing configuration is invalid; the message names the setting."""


@dataclass(frozen=True, slots=True)
class Pricing:
    """Prices per kind and currency, plus who and what publishes free."""

    default_prices: Mapping[str, int]
    kind_prices: Mapping[int, Mapping[str, int]] = field(default_factory=dict)
    free_kinds: frozenset[int] = frozenset()
    allowed_pubkeys: frozenset[str] = frozenset()
    free_tier_events: int = 0
    currency: str = DEFAULT_CURRENCY

    def price(self, kind: int, currency: str) -> int | None:
        """The price of a ``kind`` event in ``currency``; None when that currency is not priced."""
        if kind in self.kind_prices:
            return self.kind_prices[kind].get(currency)
        return self.default_prices.get(currency)

    def is_free(self, kind: int, pubkey: str) -> bool:
        """Whether the event publishes free whatever its payment tag (before the free tier)."""
        return kind in self.free_kinds or pubkey in self.allowed_pubkeys

    @property
    def currencies(self) -> frozenset[str]:
        found = set(self.default_prices)
        for prices in self.kind_prices.values():
            found.update(prices)
        return frozenset(found)

    def nip11_fees(self) -> dict[str, Any]:
        """NIP-11 ``fees``: one entry per (currency, amount) group of kinds, then the defaults."""
        grouped: dict[tuple[str, int], list[int]] = {}
        for kind in sorted(self.kind_prices):
            for unit, amount in self.kind_prices[kind].items():
                grouped.setdefault((unit, amount), []).append(kind)
        publication: list[dict[str, Any]] = [
            {"kinds": kinds, "amount": amount, "unit": unit}
            for (unit, amount), kinds in grouped.items()
        ]
        if self.free_kinds:
            publication.append(
                {"kinds": sorted(self.free_kinds), "amount": 0, "unit": self.currency}
            )
        publication.extend(
            {"amount": amount, "unit": unit} for unit, amount in self.default_prices.items()
        )
        return {"publication": publication}


def _amount(value: object, where: str) -> int:
    if isinstance(value, bool):
        raise PricingError(f"{where}: must be a non-negative integer amount, got {value!r}")
    if isinstance(value, int):
        amount = value
    elif isinstance(value, str) and value.strip().isdigit():
        amount = int(value.strip())
    else:
        raise PricingError(f"{where}: must be a non-negative integer amount, got {value!r}")
    if amount < 0:
        raise PricingError(f"{where}: must be a non-negative integer amount, got {value!r}")
    return amount


def _kind(value: object, where: str) -> int:
    try:
        kind = int(str(value).strip())
    except ValueError:
        raise PricingError(f"{where}: {value!r} is not an event kind") from None
    if not 0 <= kind <= 65535:
        raise PricingError(f"{where}: kind {kind} is outside 0..65535")
    return kind


def _prices(value: object, currency: str, where: str) -> dict[str, int]:
    if isinstance(value, Mapping):
        return {str(unit): _amount(amount, f"{where}.{unit}") for unit, amount in value.items()}
    return {currency: _amount(value, where)}


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _pubkeys(values: list[object], where: str) -> frozenset[str]:
    keys = {str(v).strip().lower() for v in values}
    for key in keys:
        if not _PUBKEY.match(key):
            raise PricingError(f"{where}: {key!r} is not a 64-hex public key")
    return frozenset(keys)


def load_pricing(settings: Mapping[str, Any] | None, env: Mapping[str, str]) -> Pricing:
    """Pricing from the ``payments:`` mapping of settings.yaml, overridden by the environment."""
    section: Mapping[str, Any] = settings or {}
    if not isinstance(section, Mapping):
        raise PricingError("payments: must be a mapping")
    currency = str(section.get("currency", DEFAULT_CURRENCY))
    default_prices = _prices(
        section.get("default_price", DEFAULT_PRICE), currency, "payments.default_price"
    )
    kind_section = section.get("kind_prices") or {}
    if not isinstance(kind_section, Mapping):
        raise PricingError("payments.kind_prices: must be a mapping of kind to amount")
    kind_prices: dict[int, dict[str, int]] = {
        _kind(k, "payments.kind_prices"): _prices(v, currency, f"payments.kind_prices.{k}")
        for k, v in kind_section.items()
    }
    free_kinds = {_kind(k, "payments.free_kinds") for k in section.get("free_kinds") or []}
    allowed = _pubkeys(list(section.get("allowed_pubkeys") or []), "payments.allowed_pubkeys")
    free_tier = _amount(section.get("free_tier_events", 0), "payments.free_tier_events")

    if (text := env.get("PRICING_STORE_EVENT")) is not None:
        default_prices = {**default_prices, currency: _amount(text, "PRICING_STORE_EVENT")}
    if (text := env.get("PRICING_KIND_OVERRIDES")) is not None:
        for part in _split(text):
            kind_text, sep, amount_text = part.partition(":")
            if not sep:
                raise PricingError(f"PRICING_KIND_OVERRIDES: {part!r} is not kind:amount")
            kind = _kind(kind_text, "PRICING_KIND_OVERRIDES")
            amount = _amount(amount_text.strip(), "PRICING_KIND_OVERRIDES")
            kind_prices[kind] = {**kind_prices.get(kind, {}), currency: amount}
    if (text := env.get("PRICING_FREE_TIER_EVENTS")) is not None:
        free_tier = _amount(text, "PRICING_FREE_TIER_EVENTS")
    if (text := env.get("PRICING_FREE_KINDS")) is not None:
        free_kinds = {_kind(k, "PRICING_FREE_KINDS") for k in _split(text)}
    if (text := env.get("PRICING_ALLOWED_PUBKEYS")) is not None:
        allowed = _pubkeys(list(_split(text)), "PRICING_ALLOWED_PUBKEYS")

    return Pricing(
        default_prices=default_prices,
        kind_prices=kind_prices,
        free_kinds=frozenset(free_kinds),
        allowed_pubkeys=allowed,
        free_tier_events=free_tier,
        currency=currency,
    )
