"""NIP-01/42/45 relay messages: parsing what clients send, encoding what relays send."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .event import Event
from .filters import Filter, FilterError, parse_filter
from .validate import InvalidEvent, event_id_of, parse_event


class MessageError(ValueError):
    """A client message that cannot be handled.

    ``subscription_id`` is set for a bad REQ/COUNT whose id was readable (answer
    with CLOSED); ``event_id`` for a bad EVENT/AUTH whose id was readable
    (answer with OK false); otherwise answer with NOTICE.
    """

    def __init__(
        self, reason: str, *, subscription_id: str | None = None, event_id: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.subscription_id = subscription_id
        self.event_id = event_id


@dataclass(frozen=True, slots=True)
class EventMessage:
    """``["EVENT", <event>]``: the event's shape is checked, its id and signature are not."""

    event: Event


@dataclass(frozen=True, slots=True)
class ReqMessage:
    subscription_id: str
    filters: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class CountMessage:
    subscription_id: str
    filters: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class CloseMessage:
    subscription_id: str


@dataclass(frozen=True, slots=True)
class AuthMessage:
    """``["AUTH", <signed kind-22242 event>]``: shape checked only."""

    event: Event


ClientMessage = EventMessage | ReqMessage | CountMessage | CloseMessage | AuthMessage


def _subscription_id(value: object, max_length: int) -> str:
    if not isinstance(value, str) or not value:
        raise MessageError("subscription id must be a non-empty string")
    if len(value) > max_length:
        raise MessageError(f"subscription id is longer than {max_length} characters")
    return value


def _filters(verb: str, sub_id: str, items: list[Any], max_filters: int) -> tuple[Filter, ...]:
    if len(items) > max_filters:
        raise MessageError(f"invalid: more than {max_filters} filters", subscription_id=sub_id)
    if verb == "REQ" and not items:
        raise MessageError("invalid: REQ needs at least one filter", subscription_id=sub_id)
    try:
        return tuple(parse_filter(item) for item in items)
    except FilterError as exc:
        raise MessageError(f"invalid: {exc}", subscription_id=sub_id) from None


def decode_json(data: str | bytes) -> Any:
    """Decode a frame strictly (UTF-8, no lone surrogates), raising :class:`MessageError`."""
    try:
        return orjson.loads(data)
    except (orjson.JSONDecodeError, UnicodeError):
        raise MessageError("message is not valid JSON") from None


def parse_client_message(
    data: str | bytes | Any,
    *,
    max_filters: int = 10,
    max_subscription_id_length: int = 64,
) -> ClientMessage:
    """Parse one client frame (raw text/bytes, or already-decoded JSON)."""
    msg = decode_json(data) if isinstance(data, (str, bytes)) else data
    if not isinstance(msg, list) or not msg:
        raise MessageError("message must be a non-empty JSON array")
    verb = msg[0]
    if verb in ("EVENT", "AUTH"):
        if len(msg) != 2:
            raise MessageError(f"{verb} takes exactly one event", event_id=_any_id(msg))
        try:
            event = parse_event(msg[1])
        except InvalidEvent as exc:
            raise MessageError(f"invalid: {exc.reason}", event_id=exc.event_id) from None
        return EventMessage(event) if verb == "EVENT" else AuthMessage(event)
    if verb in ("REQ", "COUNT"):
        if len(msg) < 2:
            raise MessageError(f"{verb} needs a subscription id")
        sub_id = _subscription_id(msg[1], max_subscription_id_length)
        filters = _filters(verb, sub_id, msg[2:], max_filters)
        return ReqMessage(sub_id, filters) if verb == "REQ" else CountMessage(sub_id, filters)
    if verb == "CLOSE":
        if len(msg) != 2:
            raise MessageError("CLOSE takes exactly one subscription id")
        return CloseMessage(_subscription_id(msg[1], max_subscription_id_length))
    if isinstance(verb, str):
        raise MessageError(f"unknown message type {verb[:20]!r}")
    raise MessageError("message type must be a string")


def _any_id(msg: list[Any]) -> str | None:
    return event_id_of(msg[1]) if len(msg) > 1 else None


# -- relay to client ------------------------------------------------------------------


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def event_frame_prefix(subscription_id: str) -> bytes:
    """``["EVENT",<sub>,``: with an encoded event and ``]`` after it, an EVENT message.

    A relay keeps it per subscription, so a live event encoded once reaches each
    subscriber as ``prefix + encoded + b"]"`` (see :func:`encode_event`).
    """
    return b'["EVENT",' + _dumps(subscription_id) + b","


def encode_event(subscription_id: str, event: Event | bytes) -> bytes:
    """``["EVENT", sub, event]``; ``event`` may be pre-encoded JSON bytes (for fan-out)."""
    body = event if isinstance(event, bytes) else event.to_json()
    return event_frame_prefix(subscription_id) + body + b"]"


def encode_ok(event_id: str, accepted: bool, message: str = "") -> bytes:
    return _dumps(["OK", event_id, accepted, message])


def encode_eose(subscription_id: str) -> bytes:
    return _dumps(["EOSE", subscription_id])


def encode_closed(subscription_id: str, message: str) -> bytes:
    return _dumps(["CLOSED", subscription_id, message])


def encode_notice(message: str) -> bytes:
    return _dumps(["NOTICE", message])


def encode_count(subscription_id: str, count: int) -> bytes:
    return _dumps(["COUNT", subscription_id, {"count": count}])


def encode_auth_challenge(challenge: str) -> bytes:
    return _dumps(["AUTH", challenge])
