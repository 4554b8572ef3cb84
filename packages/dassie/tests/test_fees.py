"""Replacement fees: 12.5% above the stuck transaction's, never below today's suggestion."""

from dassie.settlement.fees import bumped, replacement_fees


def test_bumped_rounds_up_and_always_rises() -> None:
    assert bumped(8) == 9
    assert bumped(1_000_000_001) == 1_125_000_002
    assert bumped(1) == 2 and bumped(0) == 1


def test_a_replacement_beats_the_old_fees_and_the_suggestion() -> None:
    previous = {"maxFeePerGas": 100, "maxPriorityFeePerGas": 10}
    cheap_today = {"maxFeePerGas": 50, "maxPriorityFeePerGas": 5, "gas": 21_000}
    assert replacement_fees(previous, cheap_today) == {
        "maxFeePerGas": 113,
        "maxPriorityFeePerGas": 12,
    }
    dear_today = {"maxFeePerGas": 500, "maxPriorityFeePerGas": 40}
    assert replacement_fees(previous, dear_today) == dear_today


def test_unknown_old_fees_bump_the_suggestion_and_the_tip_stays_under_the_cap() -> None:
    assert replacement_fees({}, {"gasPrice": 80}) == {"gasPrice": 90}
    fees = replacement_fees(
        {"maxPriorityFeePerGas": 100}, {"maxFeePerGas": 8, "maxPriorityFeePerGas": 1}
    )
    assert fees == {"maxFeePerGas": 113, "maxPriorityFeePerGas": 113}
