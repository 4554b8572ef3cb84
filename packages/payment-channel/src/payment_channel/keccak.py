"""Keccak-256 and EIP-55 addresses, the two Ethereum primitives claims need."""

from __future__ import annotations

import sha3  # safe-pysha3: a C Keccak, ten times faster per call than pycryptodome


def keccak256(data: bytes) -> bytes:
    """Ethereum's Keccak-256 (not NIST SHA3-256)."""
    digest: bytes = sha3.keccak_256(data).digest()
    return digest


def to_checksum_address(address: str | bytes) -> str:
    """EIP-55 mixed-case form of a 20-byte address."""
    if isinstance(address, bytes):
        if len(address) != 20:
            raise ValueError("an address is 20 bytes")
        hex_lower = address.hex()
    else:
        body = address[2:] if address[:2] in ("0x", "0X") else address
        if len(body) != 40:
            raise ValueError("an address is 40 hex digits")
        hex_lower = body.lower()
        bytes.fromhex(hex_lower)  # raises ValueError on non-hex
    digest = keccak256(hex_lower.encode("ascii")).hex()
    return "0x" + "".join(
        c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c for i, c in enumerate(hex_lower)
    )


def address_from_public_key(uncompressed: bytes) -> str:
    """Checksummed address of a 65-byte (0x04-prefixed) or 64-byte public key."""
    if len(uncompressed) == 65:
        uncompressed = uncompressed[1:]
    if len(uncompressed) != 64:
        raise ValueError("an uncompressed public key is 64 bytes")
    return to_checksum_address(keccak256(uncompressed)[12:])
