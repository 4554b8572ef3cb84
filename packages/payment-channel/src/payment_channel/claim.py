"""Channel claims: what the sender signs, and who signed it.

A claim authorises the channel's recipient to take ``claim_amount`` (cumulative)
from channel ``channel_id``. The sender signs, with EIP-191 ``personal_sign``,

    keccak256(abi.encodePacked(bytes32 channelId, uint256 claimAmount, uint256 nonce))

Signatures are 65 bytes ``r || s || v`` with ``v`` in {27, 28}; ``s`` must be in
the lower half of the curve order, as the contract's ``ecrecover`` check demands,
so that a claim has exactly one valid signature.
"""

from __future__ import annotations

from dataclasses import dataclass

from coincurve import PrivateKey

from ._recover import recover_public_key as _recover_public_key
from .keccak import address_from_public_key, keccak256, to_checksum_address

UINT256_MAX = 2**256 - 1
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = SECP256K1_N // 2
_PERSONAL_PREFIX = b"\x19Ethereum Signed Message:\n32"
_RECID = (b"\x00", b"\x01")
_ZERO = bytes(32)
_N_BYTES = SECP256K1_N.to_bytes(32, "big")
_HALF_N_BYTES = _HALF_N.to_bytes(32, "big")
NOT_RECOVERABLE = "signature does not recover to a public key"


class InvalidSignature(ValueError):
    """The signature is not a well-formed, recoverable, low-s secp256k1 signature."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A signed, cumulative claim on one channel."""

    channel_id: bytes
    claim_amount: int
    nonce: int
    signature: bytes

    def signer(self) -> str:
        """The checksummed address that signed this claim (raises InvalidSignature)."""
        return recover_claim_signer(self.channel_id, self.claim_amount, self.nonce, self.signature)


def claim_message(channel_id: bytes, claim_amount: int, nonce: int) -> bytes:
    """``abi.encodePacked(bytes32, uint256, uint256)``: the 96 bytes a claim is about
    (ValueError unless the channel id is 32 bytes and the numbers are uint256)."""
    try:  # to_bytes refuses a negative or too large value: the uint256 check, in C
        packed = channel_id + claim_amount.to_bytes(32, "big") + nonce.to_bytes(32, "big")
    except OverflowError:
        raise ValueError("claim_amount and nonce are uint256") from None
    if len(packed) != 96:
        raise ValueError("channel_id is 32 bytes")
    return packed


def claim_digest(channel_id: bytes, claim_amount: int, nonce: int) -> bytes:
    """keccak256(abi.encodePacked(bytes32, uint256, uint256))."""
    return keccak256(claim_message(channel_id, claim_amount, nonce))


def message_hash(message: bytes) -> bytes:
    """The EIP-191 hash signed for a :func:`claim_message`: keccak256(prefix || digest)."""
    return keccak256(_PERSONAL_PREFIX + keccak256(message))


def signed_message_hash(channel_id: bytes, claim_amount: int, nonce: int) -> bytes:
    """The EIP-191 hash that is actually signed: keccak256(prefix || digest)."""
    return message_hash(claim_message(channel_id, claim_amount, nonce))


def sign_claim(private_key: bytes, channel_id: bytes, claim_amount: int, nonce: int) -> bytes:
    """Sign a claim as the channel's sender; returns ``r || s || v`` (v = 27 or 28)."""
    compact = PrivateKey(private_key).sign_recoverable(
        signed_message_hash(channel_id, claim_amount, nonce), hasher=None
    )
    # libsecp256k1 always produces low-s signatures.
    return compact[:64] + bytes([compact[64] + 27])


def split_signature(signature: bytes) -> bytes:
    """Check a 65-byte ``r || s || v`` signature; return ``r || s || recid`` (recid 0 or 1).

    Raises InvalidSignature unless ``v`` is 27/28 (or 0/1) and ``0 < r < n``, ``0 < s <= n/2``.
    """
    if len(signature) != 65:
        raise InvalidSignature("a signature is 65 bytes")
    v = signature[64]
    if v >= 27:
        v -= 27
    if v > 1:
        raise InvalidSignature("v must be 27 or 28")
    # Big-endian 32-byte strings compare as the numbers they encode (no int conversions).
    r, s = signature[:32], signature[32:64]
    if not (_ZERO < r < _N_BYTES and _ZERO < s <= _HALF_N_BYTES):
        raise InvalidSignature("r or s out of range (s must be low)")
    return signature[:64] + _RECID[v]


def recover_address(message_hash: bytes, compact: bytes) -> bytes:
    """The 20-byte address whose key made ``compact`` (from :func:`split_signature`).

    ``message_hash`` is the 32-byte hash that was signed. Raises InvalidSignature when
    the signature does not recover to a public key.
    """
    public = _recover_public_key(message_hash, compact)
    if public is None:
        raise InvalidSignature(NOT_RECOVERABLE)
    return keccak256(public)[12:]


def recover_signer_address(
    channel_id: bytes, claim_amount: int, nonce: int, signature: bytes
) -> bytes:
    """The 20-byte address whose key signed this claim (no EIP-55 checksum: for comparing)."""
    compact = split_signature(signature)
    return recover_address(signed_message_hash(channel_id, claim_amount, nonce), compact)


def recover_claim_signer(channel_id: bytes, claim_amount: int, nonce: int, signature: bytes) -> str:
    """The checksummed address whose key signed this claim."""
    return to_checksum_address(recover_signer_address(channel_id, claim_amount, nonce, signature))


def address_of(private_key: bytes) -> str:
    """The checksummed address of a 32-byte private key."""
    return address_from_public_key(PrivateKey(private_key).public_key.format(compressed=False))
