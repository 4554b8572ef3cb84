"""Event validation: shape, id and signature, with clear reasons."""

from __future__ import annotations

from typing import Any

import pytest

from nostr_protocol.keys import sign_event
from nostr_protocol.validate import InvalidEvent, parse_event, validate_event

EVENT = sign_event(b"\x05" * 32, kind=1, content="hi", tags=[["t", "x"]], created_at=1700000000)


def good() -> dict[str, Any]:
    return EVENT.to_dict()


def test_a_good_event_validates() -> None:
    assert validate_event(good()) == EVENT


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"id": "AB" * 32}, "id must be"),
        ({"id": "ab" * 31}, "id must be"),
        ({"pubkey": 5}, "pubkey must be"),
        ({"sig": "ab" * 63}, "sig must be"),
        ({"kind": 65536}, "kind must be"),
        ({"kind": True}, "kind must be"),
        ({"kind": 1.0}, "kind must be"),
        ({"created_at": -1}, "created_at is out of range"),
        ({"created_at": 2**60}, "created_at is out of range"),
        ({"created_at": "1"}, "created_at must be"),
        ({"tags": [["a", None]]}, "tags must be"),
        ({"tags": ["a"]}, "tags must be"),
        ({"tags": {}}, "tags must be"),
        ({"content": 1}, "content must be"),
    ],
)
def test_shape_errors_name_the_field(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        parse_event({**good(), **change})


@pytest.mark.parametrize("field", ["id", "pubkey", "sig", "created_at", "kind", "tags", "content"])
def test_missing_fields(field: str) -> None:
    obj = good()
    del obj[field]
    with pytest.raises(InvalidEvent, match=f"no {field}"):
        parse_event(obj)


def test_the_id_is_reported_when_readable() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event({**good(), "kind": -5})
    assert info.value.event_id == EVENT.id
    with pytest.raises(InvalidEvent) as info:
        parse_event([1, 2])
    assert info.value.event_id is None


def test_id_is_checked_before_the_signature() -> None:
    with pytest.raises(InvalidEvent, match="id does not match"):
        validate_event({**good(), "content": "changed", "sig": "00" * 64})
    with pytest.raises(InvalidEvent, match="signature"):
        validate_event({**good(), "sig": "00" * 64})
    other = sign_event(b"\x06" * 32, kind=1, content="hi", tags=[["t", "x"]], created_at=1700000000)
    with pytest.raises(InvalidEvent, match="signature"):
        validate_event({**good(), "sig": other.sig})


def test_unknown_extra_fields_are_ignored() -> None:
    assert validate_event({**good(), "extra": 1}) == EVENT
