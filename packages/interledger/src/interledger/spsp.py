"""Simple Payment Setup Protocol (RFC 9): payment pointers and the JSON response."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from interledger.address import validate_address
from interledger.errors import DecodeError

CONTENT_TYPE = "application/spsp4+json"


@dataclass(frozen=True, slots=True)
class SpspResponse:
    destination_account: str
    shared_secret: bytes
    receipts_enabled: bool = False


def encode_response(response: SpspResponse) -> bytes:
    body: dict[str, object] = {
        "destination_account": response.destination_account,
        "shared_secret": base64.b64encode(response.shared_secret).decode(),
    }
    if response.receipts_enabled:
        body["receipts_enabled"] = True
    return json.dumps(body).encode()


def decode_response(raw: bytes) -> SpspResponse:
    """Parse an SPSP JSON body; raises :class:`DecodeError` when it is not one."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError("SPSP response is not JSON") from exc
    if not isinstance(body, dict):
        raise DecodeError("SPSP response is not a JSON object")
    account = body.get("destination_account")
    secret = body.get("shared_secret")
    if not isinstance(account, str) or not isinstance(secret, str):
        raise DecodeError("SPSP response needs destination_account and shared_secret strings")
    validate_address(account)
    try:
        shared_secret = base64.b64decode(secret + "=" * (-len(secret) % 4), altchars=b"-_")
    except (binascii.Error, ValueError) as exc:
        raise DecodeError("SPSP shared_secret is not base64") from exc
    if len(shared_secret) != 32:
        raise DecodeError("SPSP shared_secret must be 32 bytes")
    return SpspResponse(account, shared_secret, body.get("receipts_enabled") is True)


def resolve_payment_pointer(pointer: str, scheme: str = "https") -> str:
    """Turn ``$host/path`` into its SPSP URL (``/.well-known/pay`` when no path)."""
    if not pointer.startswith("$") or len(pointer) < 2:
        raise DecodeError(f"payment pointer must start with '$': {pointer[:80]!r}")
    parts = urlsplit(f"{scheme}://{pointer[1:]}")
    if not parts.hostname or parts.query or parts.fragment or parts.username:
        raise DecodeError(f"invalid payment pointer {pointer[:80]!r}")
    path = parts.path if parts.path not in ("", "/") else "/.well-known/pay"
    return f"{scheme}://{parts.netloc}{path}"
