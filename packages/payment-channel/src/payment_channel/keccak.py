"""Keccak-256 and EIP-55 addresses, the two Ethereum primitives claims need."""

from __future__ import annotations

import sha3  # safe-pysha3: a C Keccak, ten times faster per call than pycryptodome

# EIP-55 without a per-character loop: a hex digit of the hash >= 8 becomes 0x20,
# which, masked to the letters of the address, clears their lowercase bit.
_HIGH_NIBBLE = bytes(0x20 if chr(b) in "89abcdef" else 0 for b in range(256))
_LETTER_BITS = int.from_bytes(b"\x40" * 40, "big")


def keccak256(data: bytes) -> bytes:
    """Ethereum's Keccak-256 (not NIST SHA3-256)."""
    digest: bytes = sha3.keccak_256(data).digest()
    return digest


def _checksum(hex_lower: str) -> str:
    ascii_hex = hex_lower.encode("ascii")
    flips = keccak256(ascii_hex)[:20].hex().encode("ascii").translate(_HIGH_NIBBLE)
    letters = (int.from_bytes(ascii_hex, "big") & _LETTER_BITS) >> 1
    mixed = int.from_bytes(ascii_hex, "big") ^ (int.from_bytes(flips, "big") & letters)
    return "0x" + mixed.to_bytes(40, "big").decode("ascii")


def to_checksum_address(address: str | bytes) -> str:
    """EIP-55 mixed-case form of a 20-byte address."""
    if isinstance(address, bytes):
        if len(address) != 20:
            raise ValueError("an address is 20 bytes")
        return _checksum(address.hex())
    body = address[2:] if address[:2] in ("0x", "0X") else address
    if len(body) != 40:
        raise ValueError("an address is 40 hex digits")
    hex_lower = body.lower()
    bytes.fromhex(hex_lower)  # raises ValueError on non-hex
    return _checksum(hex_lower)


def address_bytes_from_public_key(uncompressed: bytes) -> bytes:
    """The 20-byte address of a 65-byte (0x04-prefixed) or 64-byte public key."""
    if len(uncompressed) == 65:
        uncompressed = uncompressed[1:]
    if len(uncompressed) != 64:
        raise ValueError("an uncompressed public key is 64 bytes")
    return keccak256(uncompressed)[12:]


def address_from_public_key(uncompressed: bytes) -> str:
    """Checksummed address of a 65-byte (0x04-prefixed) or 64-byte public key."""
    return to_checksum_address(address_bytes_from_public_key(uncompressed))
