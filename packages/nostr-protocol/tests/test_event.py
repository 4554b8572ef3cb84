"""Event ids and signatures, checked against independent computations and vectors."""

from __future__ import annotations

import hashlib
import json

from hypothesis import given
from hypothesis import strategies as st

from nostr_protocol.event import (
    KindClass,
    compute_id,
    kind_class,
    serialize_for_id,
    verify_signature,
)
from nostr_protocol.keys import public_key_hex, sign_event
from nostr_protocol.validate import validate_event

# BIP-340 test vector 0 (bip-0340/test-vectors.csv).
BIP340_PUBKEY = "f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9"
BIP340_MSG = "00" * 32
BIP340_SIG = (
    "e907831f80848d1069a5371b402410364bdf1c5f8307b0084c55f1ce2dca8215"
    "25f66a4a85ea8b71e482a74f382d2ce5ebeee8fdb2172f477df4900d310536c0"
)

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=50)
tag_lists = st.lists(st.lists(texts, min_size=1, max_size=4), max_size=5)


def reference_id(pubkey: str, created_at: int, kind: int, tags, content: str) -> str:
    """NIP-01 id through the standard library's json (a second, independent path)."""
    data = [0, pubkey, created_at, kind, tags, content]
    raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(raw).hexdigest()


def test_bip340_vector_verifies_and_a_flipped_bit_does_not() -> None:
    assert verify_signature(BIP340_MSG, BIP340_PUBKEY, BIP340_SIG)
    flipped = BIP340_SIG[:-1] + ("1" if BIP340_SIG[-1] == "0" else "0")
    assert not verify_signature(BIP340_MSG, BIP340_PUBKEY, flipped)
    assert not verify_signature(BIP340_MSG, "00" * 32, BIP340_SIG)
    assert not verify_signature("zz", BIP340_PUBKEY, BIP340_SIG)


def test_secret_key_3_gives_the_bip340_public_key() -> None:
    assert public_key_hex((3).to_bytes(32, "big")) == BIP340_PUBKEY


def test_known_escapes_serialize_like_nip01() -> None:
    raw = serialize_for_id("ab" * 32, 1, 1, [["t", 'q"\\']], "a\nb\tc\x01\u2603\x7f")
    assert raw == (
        b'[0,"'
        + b"ab" * 32
        + b'",1,1,[["t","q\\"\\\\"]],"a\\nb\\tc\\u0001'
        + "\u2603".encode()
        + b'\x7f"]'
    )


@given(
    content=texts,
    tags=tag_lists,
    created_at=st.integers(0, 2**40),
    kind=st.integers(0, 65535),
)
def test_id_matches_the_stdlib_serialization(content, tags, created_at, kind) -> None:
    pubkey = "7e" * 32
    assert compute_id(pubkey, created_at, kind, tags, content) == reference_id(
        pubkey, created_at, kind, tags, content
    )


@given(content=texts, tags=tag_lists, kind=st.integers(0, 65535))
def test_signed_events_validate_and_round_trip_through_json(content, tags, kind) -> None:
    event = sign_event(b"\x07" * 32, kind=kind, content=content, tags=tags, created_at=1)
    assert event.id == reference_id(event.pubkey, 1, kind, tags, content)
    decoded = json.loads(event.to_json())
    assert validate_event(decoded) == event


def test_kind_classes() -> None:
    assert kind_class(0) is KindClass.REPLACEABLE
    assert kind_class(3) is KindClass.REPLACEABLE
    assert kind_class(1) is KindClass.REGULAR
    assert kind_class(10002) is KindClass.REPLACEABLE
    assert kind_class(20000) is KindClass.EPHEMERAL
    assert kind_class(30023) is KindClass.ADDRESSABLE
    assert kind_class(40000) is KindClass.REGULAR


def test_the_direct_verify_agrees_with_coincurve() -> None:
    """Both direct libsecp256k1 calls (keeping or releasing the GIL) answer as coincurve does."""
    import os

    from coincurve import PublicKeyXOnly

    from nostr_protocol import event as event_module
    from nostr_protocol.keys import sign_event

    assert event_module._VERIFY is not None, "coincurve's library no longer exports the symbol"
    assert event_module._VERIFY_RELEASING is not None
    for _ in range(50):
        signed = sign_event(os.urandom(32), kind=1, content=os.urandom(8).hex())
        good = bytes.fromhex(signed.sig)
        bad = bytes([good[0] ^ 1]) + good[1:]
        other = sign_event(os.urandom(32), kind=1).pubkey
        for sig, pubkey in ((good, signed.pubkey), (bad, signed.pubkey), (good, other)):
            expected = PublicKeyXOnly(bytes.fromhex(pubkey)).verify(sig, bytes.fromhex(signed.id))
            assert verify_signature(signed.id, pubkey, sig.hex()) is expected
            assert verify_signature(signed.id, pubkey, sig.hex(), release_gil=True) is expected
    assert verify_signature(signed.id, signed.pubkey, signed.sig[:-2]) is False
    assert verify_signature(signed.id, signed.pubkey, signed.sig[:-2], release_gil=True) is False
    assert verify_signature("zz", signed.pubkey, signed.sig, release_gil=True) is False
