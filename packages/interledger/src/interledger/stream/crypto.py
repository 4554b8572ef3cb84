"""STREAM cryptography (RFC 29 section 4): key derivation, AES-256-GCM, conditions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from Crypto.Cipher import AES

from interledger.errors import DecodeError

ENCRYPTION_KEY_STRING = b"ilp_stream_encryption"
FULFILLMENT_KEY_STRING = b"ilp_stream_fulfillment"
SHARED_SECRET_KEY_STRING = b"ilp_stream_shared_secret"
NONCE_LENGTH = 12
TAG_LENGTH = 16
TOKEN_LENGTH = 18


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def generate_token() -> bytes:
    """A fresh random connection token (the receiver's per-connection nonce)."""
    return os.urandom(TOKEN_LENGTH)


def shared_secret_from_token(server_secret: bytes, token: bytes) -> bytes:
    """Derive a connection's shared secret from the server's secret and the token."""
    return hmac_sha256(hmac_sha256(server_secret, SHARED_SECRET_KEY_STRING), token)


def encode_token(token: bytes) -> str:
    """The token as the last ILP address segment (base64url, unpadded)."""
    return base64.urlsafe_b64encode(token).rstrip(b"=").decode()


def decode_token(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except ValueError as exc:
        raise DecodeError("invalid connection token") from exc


def encrypt(shared_secret: bytes, plaintext: bytes, nonce: bytes | None = None) -> bytes:
    """AES-256-GCM; output is ``nonce || tag || ciphertext``."""
    key = hmac_sha256(shared_secret, ENCRYPTION_KEY_STRING)
    iv = nonce if nonce is not None else os.urandom(NONCE_LENGTH)
    cipher = AES.new(key, AES.MODE_GCM, nonce=iv, mac_len=TAG_LENGTH)
    ciphertext, tag = cipher.encrypt_and_digest(plaintext)
    return iv + tag + ciphertext


def decrypt(shared_secret: bytes, data: bytes) -> bytes:
    """Reverse :func:`encrypt`; raises :class:`DecodeError` if authentication fails."""
    if len(data) < NONCE_LENGTH + TAG_LENGTH:
        raise DecodeError("ciphertext too short")
    key = hmac_sha256(shared_secret, ENCRYPTION_KEY_STRING)
    nonce = data[:NONCE_LENGTH]
    tag = data[NONCE_LENGTH : NONCE_LENGTH + TAG_LENGTH]
    body = data[NONCE_LENGTH + TAG_LENGTH :]
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_LENGTH)
    try:
        return cipher.decrypt_and_verify(body, tag)
    except ValueError as exc:  # pycryptodome's "MAC check failed"
        raise DecodeError("STREAM packet failed authentication") from exc


def fulfillment_for(shared_secret: bytes, data: bytes) -> bytes:
    """The fulfillment for a Prepare carrying ``data`` (the encrypted STREAM packet)."""
    return hmac_sha256(hmac_sha256(shared_secret, FULFILLMENT_KEY_STRING), data)


def condition_for(shared_secret: bytes, data: bytes) -> bytes:
    """The execution condition a sender puts on a Prepare carrying ``data``."""
    return hashlib.sha256(fulfillment_for(shared_secret, data)).digest()
