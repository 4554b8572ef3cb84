"""Client message parsing and relay message encoding."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nostr_protocol.keys import sign_event
from nostr_protocol.messages import (
    AuthMessage,
    CloseMessage,
    CountMessage,
    EventMessage,
    MessageError,
    ReqMessage,
    encode_closed,
    encode_count,
    encode_eose,
    encode_event,
    encode_notice,
    encode_ok,
    event_frame_prefix,
    parse_client_message,
)

E = sign_event(b"\x0a" * 32, kind=1, content="m", created_at=5)


def test_parse_each_verb() -> None:
    assert parse_client_message(orjson.dumps(["EVENT", E.to_dict()])) == EventMessage(E)
    assert parse_client_message(orjson.dumps(["AUTH", E.to_dict()])) == AuthMessage(E)
    req = parse_client_message('["REQ","s",{"kinds":[1]},{}]')
    assert isinstance(req, ReqMessage) and req.subscription_id == "s" and len(req.filters) == 2
    count = parse_client_message('["COUNT","c",{}]')
    assert isinstance(count, CountMessage)
    assert parse_client_message('["CLOSE","s"]') == CloseMessage("s")


@pytest.mark.parametrize(
    ("frame", "sub", "event_id"),
    [
        ("nope", None, None),
        ("{}", None, None),
        ("[]", None, None),
        ('["WHAT"]', None, None),
        ("[3]", None, None),
        ('["REQ"]', None, None),
        ('["REQ", 5, {}]', None, None),
        ('["REQ", ""]', None, None),
        ('["REQ", "s"]', "s", None),
        ('["REQ", "s", []]', "s", None),
        ('["REQ", "s", {"kinds": "1"}]', "s", None),
        ('["CLOSE"]', None, None),
        ('["EVENT"]', None, None),
        ('["EVENT", {}]', None, None),
        (b"\xff", None, None),
        ('["\\udc00"]', None, None),
    ],
)
def test_errors_say_how_to_answer(frame, sub, event_id) -> None:
    with pytest.raises(MessageError) as info:
        parse_client_message(frame)
    assert info.value.subscription_id == sub
    assert info.value.event_id == event_id


def test_bad_event_keeps_its_id_for_the_ok_reply() -> None:
    with pytest.raises(MessageError) as info:
        parse_client_message(orjson.dumps(["EVENT", {**E.to_dict(), "kind": "x"}]))
    assert info.value.event_id == E.id and info.value.reason.startswith("invalid:")


def test_limits_on_filters_and_subscription_ids() -> None:
    with pytest.raises(MessageError, match="more than 2 filters"):
        parse_client_message('["REQ","s",{},{},{}]', max_filters=2)
    with pytest.raises(MessageError, match="longer than 3"):
        parse_client_message('["REQ","abcd",{}]', max_subscription_id_length=3)


def test_encoders_produce_nip01_json() -> None:
    assert json.loads(encode_event("s", E)) == ["EVENT", "s", E.to_dict()]
    assert json.loads(encode_event("s", E.to_json())) == ["EVENT", "s", E.to_dict()]
    assert json.loads(encode_ok(E.id, False, "invalid: x")) == ["OK", E.id, False, "invalid: x"]
    assert json.loads(encode_eose("s")) == ["EOSE", "s"]
    assert json.loads(encode_closed("s", "m")) == ["CLOSED", "s", "m"]
    assert json.loads(encode_notice("n")) == ["NOTICE", "n"]
    assert json.loads(encode_count("c", 3)) == ["COUNT", "c", {"count": 3}]


@given(st.text(min_size=1, max_size=20))
def test_a_cached_prefix_makes_the_same_event_frame(sub: str) -> None:
    frame = event_frame_prefix(sub) + E.to_json() + b"]"
    assert frame == encode_event(sub, E)
    assert json.loads(frame) == ["EVENT", sub, E.to_dict()]


@given(st.text(min_size=1, max_size=20).filter(lambda s: s < "\ud800" or True))
def test_subscription_ids_round_trip(sub: str) -> None:
    frame = orjson.dumps(["REQ", sub, {}])
    msg = parse_client_message(frame, max_subscription_id_length=100)
    assert isinstance(msg, ReqMessage) and msg.subscription_id == sub
    assert json.loads(encode_eose(sub)) == ["EOSE", sub]
