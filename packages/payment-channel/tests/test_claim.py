"""Claim signing and signer recovery agree with eth-account; bad signatures are refused."""

from __future__ import annotations

import os

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address as reference_checksum

from payment_channel import _recover
from payment_channel.claim import (
    NOT_RECOVERABLE,
    SECP256K1_N,
    InvalidSignature,
    address_of,
    claim_digest,
    recover_address,
    recover_claim_signer,
    recover_signer_address,
    sign_claim,
    signed_message_hash,
    split_signature,
)
from payment_channel.keccak import keccak256, to_checksum_address

KEY = bytes.fromhex("22" * 32)
CHANNEL = bytes.fromhex("ab" * 32)


def with_s(signature: bytes, s: int) -> bytes:
    return signature[:32] + s.to_bytes(32, "big") + signature[64:]


def test_recovered_signer_matches_eth_account() -> None:
    for n in range(1, 21):
        key = os.urandom(32)
        signature = sign_claim(key, CHANNEL, n * 1000, n)
        expected = Account.recover_message(
            encode_defunct(primitive=claim_digest(CHANNEL, n * 1000, n)), signature=signature
        )
        assert recover_claim_signer(CHANNEL, n * 1000, n, signature) == expected
        assert expected == address_of(key)
        raw = recover_signer_address(CHANNEL, n * 1000, n, signature)
        assert raw == bytes.fromhex(expected[2:])


def test_v_may_be_0_or_1() -> None:
    signature = sign_claim(KEY, CHANNEL, 5, 1)
    low_v = signature[:64] + bytes([signature[64] - 27])
    assert recover_claim_signer(CHANNEL, 5, 1, low_v) == address_of(KEY)
    assert split_signature(low_v) == split_signature(signature)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda sig: sig[:64], "65 bytes"),
        (lambda sig: sig + b"\x00", "65 bytes"),
        (lambda sig: sig[:64] + b"\x1d", "v must be 27 or 28"),
        (lambda sig: sig[:64] + b"\x02", "v must be 27 or 28"),
        (lambda sig: with_s(sig, SECP256K1_N - int.from_bytes(sig[32:64], "big")), "s must be low"),
        (lambda sig: with_s(sig, 0), "out of range"),
        (lambda sig: bytes(32) + sig[32:], "out of range"),
        (lambda sig: SECP256K1_N.to_bytes(32, "big") + sig[32:], "out of range"),
    ],
)
def test_bad_signatures_are_refused_with_a_reason(mutate, message) -> None:  # type: ignore[no-untyped-def]
    bad = mutate(sign_claim(KEY, CHANNEL, 5, 1))
    with pytest.raises(InvalidSignature, match=message):
        recover_claim_signer(CHANNEL, 5, 1, bad)


def test_a_signature_over_other_values_recovers_someone_else() -> None:
    signature = sign_claim(KEY, CHANNEL, 5, 1)
    assert recover_claim_signer(CHANNEL, 6, 1, signature) != address_of(KEY)


def test_direct_recovery_agrees_with_coincurve_on_good_and_garbage_input() -> None:
    unrecoverable = 0
    for n in range(1, 201):
        message_hash = signed_message_hash(CHANNEL, n, n)
        good = split_signature(sign_claim(KEY, CHANNEL, n, n))
        garbage = os.urandom(64) + bytes([n % 2])
        for compact in (good, garbage):
            direct = _recover.recover_public_key(message_hash, compact)
            assert direct == _recover._with_coincurve(message_hash, compact)
            if direct is None:
                unrecoverable += 1
                with pytest.raises(InvalidSignature, match=NOT_RECOVERABLE):
                    recover_address(message_hash, compact)
    assert unrecoverable > 0  # random r is not always the x of a curve point
    assert _recover.recover_public_key(bytes(31), good) is None
    assert _recover.recover_public_key(message_hash, good[:64] + b"\x04") is None


def test_checksum_matches_eip55() -> None:
    # The EIP's own examples, then random addresses against eth-utils.
    for address in (
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ):
        assert to_checksum_address(address.lower()) == address
        assert to_checksum_address(bytes.fromhex(address[2:])) == address
    for _ in range(500):
        raw = os.urandom(20)
        assert to_checksum_address(raw) == reference_checksum(raw)
        assert to_checksum_address(raw.hex().upper()) == reference_checksum(raw)
    for bad in ("0x1234", "0x" + "zz" * 20, b"\x00" * 19):
        with pytest.raises(ValueError):
            to_checksum_address(bad)


def test_signature_range_boundaries_and_claim_field_checks() -> None:
    good = sign_claim(KEY, CHANNEL, 5, 1)
    half_n = SECP256K1_N // 2
    for r, s, ok in [
        (SECP256K1_N - 1, 1, True),
        (1, half_n, True),
        (1, half_n + 1, False),
        (SECP256K1_N, 1, False),
        (2**256 - 1, 1, False),
        (0, 1, False),
    ]:
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big") + good[64:]
        if ok:
            assert split_signature(sig) == sig[:64] + bytes([good[64] - 27])
        else:
            with pytest.raises(InvalidSignature, match="out of range"):
                split_signature(sig)
    for channel, amount, nonce in [
        (CHANNEL[:31], 1, 1),
        (CHANNEL + b"\x00", 1, 1),
        (CHANNEL, -1, 1),
        (CHANNEL, 1, 2**256),
    ]:
        with pytest.raises(ValueError):
            claim_digest(channel, amount, nonce)
        with pytest.raises(ValueError):
            signed_message_hash(channel, amount, nonce)
    assert signed_message_hash(CHANNEL, 2**256 - 1, 0) == keccak256(
        b"\x19Ethereum Signed Message:\n32" + claim_digest(CHANNEL, 2**256 - 1, 0)
    )
