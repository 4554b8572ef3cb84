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


def _check_fields(channel_id: bytes, claim_amount: int, nonce: int) -> None:
    if len(channel_id) != 32:
        raise ValueError("channel_id is 32 bytes")
    if not 0 <= claim_amount <= UINT256_MAX or not 0 <= nonce <= UINT256_MAX:
        raise ValueError("claim_amount and nonce are uint256")


def claim_digest(channel_id: bytes, claim_amount: int, nonce: int) -> bytes:
    """keccak256(abi.encodePacked(bytes32, uint256, uint256))."""
    _check_fields(channel_id, claim_amount, nonce)
    return keccak256(channel_id + claim_amount.to_bytes(32, "big") + nonce.to_bytes(32, "big"))


def signed_message_hash(channel_id: bytes, claim_amount: int, nonce: int) -> bytes:
    """The EIP-191 hash that is actually signed: keccak256(prefix || digest)."""
    return keccak256(_PERSONAL_PREFIX + claim_digest(channel_id, claim_amount, nonce))


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
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    if not (0 < r < SECP256K1_N and 0 < s <= _HALF_N):
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
