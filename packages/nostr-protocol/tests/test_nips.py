"""NIP rules as pure functions."""

from __future__ import annotations

from nostr_protocol.keys import public_key_hex, sign_event
from nostr_protocol.nips import (
    check_auth_event,
    committed_difficulty,
    deletion_targets,
    expiration,
    is_expired,
    is_protected,
    leading_zero_bits,
)

SK = b"\x0b" * 32
PK = public_key_hex(SK)


def test_deletion_targets_keep_only_own_addresses() -> None:
    d = sign_event(
        SK,
        kind=5,
        tags=[
            ["e", "ab" * 32],
            ["e", "not-hex"],
            ["a", f"30023:{PK}:post"],
            ["a", f"30023:{'cd' * 32}:theirs"],
            ["a", "bad"],
            ["e"],
        ],
    )
    assert deletion_targets(d) == (["ab" * 32], [(30023, PK, "post")])


def test_expiration() -> None:
    e = sign_event(SK, kind=1, tags=[["expiration", "100"]])
    assert expiration(e) == 100 and is_expired(e, 100) and not is_expired(e, 99)
    assert expiration(sign_event(SK, kind=1, tags=[["expiration", "soon"]])) is None


def test_pow_difficulty() -> None:
    assert leading_zero_bits("f" + "0" * 63) == 0
    assert leading_zero_bits("0" * 63 + "1") == 255
    assert leading_zero_bits("000006" + "0" * 58) == 21
    assert leading_zero_bits("0" * 64) == 256
    e = sign_event(SK, kind=1, tags=[["nonce", "1", "20"]])
    assert committed_difficulty(e) == 20


def test_protected() -> None:
    assert is_protected(sign_event(SK, kind=1, tags=[["-"]]))
    assert not is_protected(sign_event(SK, kind=1, tags=[["t", "-"]]))


def test_auth_event_checks() -> None:
    url = "wss://relay.example.com/"

    def auth(challenge: str = "c1", relay: str = url, kind: int = 22242, at: int = 1000):
        tags = [["relay", relay], ["challenge", challenge]]
        return sign_event(SK, kind=kind, tags=tags, created_at=at)

    assert check_auth_event(auth(), challenge="c1", relay_url=url, now=1000) is None
    assert (
        check_auth_event(
            auth(relay="WSS://relay.example.com"), challenge="c1", relay_url=url, now=1000
        )
        is None
    )
    wrong = check_auth_event(auth("x"), challenge="c1", relay_url=url, now=1000)
    assert "challenge" in (wrong or "")
    assert "relay" in (
        check_auth_event(auth(relay="wss://evil"), challenge="c1", relay_url=url, now=1000) or ""
    )
    assert "kind" in (check_auth_event(auth(kind=1), challenge="c1", relay_url=url, now=1000) or "")
    assert "created_at" in (
        check_auth_event(auth(at=0), challenge="c1", relay_url=url, now=1000) or ""
    )
