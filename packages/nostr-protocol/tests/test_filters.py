"""Filter parsing and matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nostr_protocol.filters import Filter, FilterError, parse_filter
from nostr_protocol.keys import sign_event

TAGS = [["e", "aa" * 32], ["t", "nostr"]]
E = sign_event(b"\x09" * 32, kind=7, content="x", tags=TAGS, created_at=100)


def test_empty_filter_matches_everything() -> None:
    assert parse_filter({}) == Filter()
    assert Filter().matches(E)


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"ids": [E.id]}, True),
        ({"ids": ["00" * 32]}, False),
        ({"authors": [E.pubkey]}, True),
        ({"kinds": [1, 7]}, True),
        ({"kinds": [1]}, False),
        ({"since": 100, "until": 100}, True),
        ({"since": 101}, False),
        ({"until": 99}, False),
        ({"#t": ["nostr", "x"]}, True),
        ({"#t": ["x"]}, False),
        ({"#e": ["aa" * 32], "#t": ["nostr"]}, True),
        ({"#p": ["aa" * 32]}, False),
        ({"ids": []}, False),
    ],
)
def test_matches(obj: dict, expected: bool) -> None:
    assert parse_filter(obj).matches(E) is expected


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "must be a JSON object"),
        ({"ids": "x"}, "ids must be an array"),
        ({"ids": ["abc"]}, "ids must list 64-character"),
        ({"authors": ["AB" * 32]}, "authors must list"),
        ({"kinds": [70000]}, "kinds must list"),
        ({"kinds": [True]}, "kinds must list"),
        ({"since": -1}, "since must not be negative"),
        ({"until": "now"}, "until must be an integer"),
        ({"limit": 1.5}, "limit must be an integer"),
        ({"#t": [1]}, "#t must list strings"),
        ({"#t": "x"}, "#t must be an array"),
        ({"foo": 1}, "unknown filter field"),
        ({"ids": ["00" * 32] * 1001}, "more than 1000"),
    ],
)
def test_bad_filters_raise_clear_errors(obj: object, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        parse_filter(obj)


hexes = st.text("0123456789abcdef", min_size=64, max_size=64)
filters = st.fixed_dictionaries(
    {},
    optional={
        "ids": st.lists(hexes, max_size=3),
        "authors": st.lists(hexes, max_size=3),
        "kinds": st.lists(st.integers(0, 65535), max_size=3),
        "#t": st.lists(st.text(max_size=5), max_size=3),
        "since": st.integers(0, 2**40),
        "until": st.integers(0, 2**40),
        "limit": st.integers(0, 10000),
    },
)


@given(filters)
def test_to_dict_round_trips(obj: dict) -> None:
    f = parse_filter(obj)
    assert parse_filter(f.to_dict()) == f
