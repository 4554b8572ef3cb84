"""Pricing from settings.yaml's payments: section and the PRICING_* environment."""

from __future__ import annotations

import pytest

from nostream.payments.pricing import DEFAULT_PRICE, PricingError, load_pricing

PK = "a" * 64


def test_defaults_price_every_kind_in_eth() -> None:
    pricing = load_pricing(None, {})
    assert pricing.price(1, "ETH") == DEFAULT_PRICE
    assert pricing.price(30023, "ETH") == DEFAULT_PRICE
    assert pricing.price(1, "USDC") is None
    assert pricing.currencies == {"ETH"}
    assert pricing.nip11_fees() == {"publication": [{"amount": DEFAULT_PRICE, "unit": "ETH"}]}


def test_settings_kinds_currencies_free_kinds_and_allow_list() -> None:
    pricing = load_pricing(
        {
            "default_price": {"ETH": 10, "USDC": 3},
            "kind_prices": {1: 100, "30023": {"ETH": 5000}},
            "free_kinds": [0, 3],
            "allowed_pubkeys": [PK.upper()],
            "free_tier_events": 2,
        },
        {},
    )
    assert pricing.price(7, "USDC") == 3
    assert pricing.price(1, "ETH") == 100
    assert pricing.price(1, "USDC") is None  # a kind price replaces the defaults
    assert pricing.price(30023, "ETH") == 5000
    assert pricing.is_free(0, "b" * 64) and pricing.is_free(1, PK)
    assert not pricing.is_free(1, "b" * 64)
    assert pricing.free_tier_events == 2
    assert pricing.nip11_fees()["publication"] == [
        {"kinds": [1], "amount": 100, "unit": "ETH"},
        {"kinds": [30023], "amount": 5000, "unit": "ETH"},
        {"kinds": [0, 3], "amount": 0, "unit": "ETH"},
        {"amount": 10, "unit": "ETH"},
        {"amount": 3, "unit": "USDC"},
    ]


def test_environment_overrides_settings() -> None:
    pricing = load_pricing(
        {"default_price": 10, "kind_prices": {1: 100}},
        {
            "PRICING_STORE_EVENT": "77",
            "PRICING_KIND_OVERRIDES": "1:5, 30023:5000",
            "PRICING_FREE_TIER_EVENTS": "3",
            "PRICING_FREE_KINDS": "7",
            "PRICING_ALLOWED_PUBKEYS": PK,
        },
    )
    assert pricing.price(2, "ETH") == 77
    assert pricing.price(1, "ETH") == 5
    assert pricing.price(30023, "ETH") == 5000
    assert pricing.free_tier_events == 3
    assert pricing.is_free(7, "b" * 64) and pricing.is_free(1, PK)


@pytest.mark.parametrize(
    ("settings", "env", "names"),
    [
        ({}, {"PRICING_STORE_EVENT": "-1"}, "PRICING_STORE_EVENT"),
        ({}, {"PRICING_STORE_EVENT": "1.5"}, "PRICING_STORE_EVENT"),
        ({}, {"PRICING_KIND_OVERRIDES": "1=100"}, "PRICING_KIND_OVERRIDES"),
        ({}, {"PRICING_KIND_OVERRIDES": "x:100"}, "PRICING_KIND_OVERRIDES"),
        ({}, {"PRICING_KIND_OVERRIDES": "70000:1"}, "PRICING_KIND_OVERRIDES"),
        ({}, {"PRICING_FREE_TIER_EVENTS": "many"}, "PRICING_FREE_TIER_EVENTS"),
        ({}, {"PRICING_ALLOWED_PUBKEYS": "npub1xyz"}, "PRICING_ALLOWED_PUBKEYS"),
        ({"default_price": True}, {}, "payments.default_price"),
        ({"kind_prices": [1, 2]}, {}, "payments.kind_prices"),
        ({"kind_prices": {1: "cheap"}}, {}, "payments.kind_prices.1"),
    ],
)
def test_bad_configuration_names_the_setting(
    settings: dict[str, object], env: dict[str, str], names: str
) -> None:
    with pytest.raises(PricingError, match=names.replace(".", r"\.")):
        load_pricing(settings, env)
