"""The Nostr event (NIP-01): its fields, canonical serialization, id and signature."""

from __future__ import annotations

import ctypes
import hashlib
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any

import orjson
from coincurve import PublicKeyXOnly


class KindClass(Enum):
    """How a relay keeps events of a kind (NIP-01)."""

    REGULAR = "regular"
    REPLACEABLE = "replaceable"
    EPHEMERAL = "ephemeral"
    ADDRESSABLE = "addressable"


def kind_class(kind: int) -> KindClass:
    if kind in (0, 3) or 10000 <= kind < 20000:
        return KindClass.REPLACEABLE
    if 20000 <= kind < 30000:
        return KindClass.EPHEMERAL
    if 30000 <= kind < 40000:
        return KindClass.ADDRESSABLE
    return KindClass.REGULAR


Tags = tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class Event:
    """A Nostr event. Construct through validation, never trust raw input."""

    id: str
    pubkey: str
    created_at: int
    kind: int
    tags: Tags
    content: str
    sig: str

    @property
    def kind_class(self) -> KindClass:
        return kind_class(self.kind)

    def d_tag(self) -> str:
        """The first ``d`` tag's value ('' when absent), which addresses an addressable event."""
        for tag in self.tags:
            if len(tag) >= 1 and tag[0] == "d":
                return tag[1] if len(tag) > 1 else ""
        return ""

    def first_tag_values(self, name: str) -> list[str]:
        """The first values of every tag called ``name``."""
        return [tag[1] for tag in self.tags if len(tag) > 1 and tag[0] == name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pubkey": self.pubkey,
            "created_at": self.created_at,
            "kind": self.kind,
            "tags": [list(t) for t in self.tags],
            "content": self.content,
            "sig": self.sig,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def serialize_for_id(
    pubkey: str, created_at: int, kind: int, tags: Sequence[Sequence[str]], content: str
) -> bytes:
    """NIP-01 canonical form: ``[0,pubkey,created_at,kind,tags,content]``, compact UTF-8.

    orjson writes exactly NIP-01's escaping: ``\\n \\" \\\\ \\r \\t \\b \\f``, other
    control characters as ``\\u00XX``, everything else verbatim as UTF-8.
    """
    return orjson.dumps([0, pubkey, created_at, kind, tags, content])


def compute_id(
    pubkey: str, created_at: int, kind: int, tags: Sequence[Sequence[str]], content: str
) -> str:
    return hashlib.sha256(serialize_for_id(pubkey, created_at, kind, tags, content)).hexdigest()


@lru_cache(maxsize=8192)
def _xonly_key(pubkey: str) -> PublicKeyXOnly:
    """Parsing a key costs a square root; authors repeat, so parsed keys are cached."""
    return PublicKeyXOnly(bytes.fromhex(pubkey))


_Verify = Callable[..., int]


def _libsecp256k1_verify() -> tuple[_Verify, int, Any] | None:
    """libsecp256k1's ``secp256k1_schnorrsig_verify`` called through ``ctypes.PyDLL``.

    The call keeps the GIL: on the event loop that is cheaper than a binding that
    releases it for each ~50 µs check and then has to win it back from the
    SQLite writer thread. Returns ``(verify, context address, ffi)``, or None
    when coincurve's library does not export the symbol (then coincurve is used).
    """
    try:
        lib = importlib.import_module("coincurve._libsecp256k1")
        context = importlib.import_module("coincurve.context").GLOBAL_CONTEXT
        fn = ctypes.PyDLL(lib.__file__).secp256k1_schnorrsig_verify
    except (ImportError, OSError, AttributeError):
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
    fn.argtypes += [ctypes.c_char_p]
    ffi = lib.ffi
    return fn, int(ffi.cast("uintptr_t", context.ctx)), ffi


def _cffi_verify() -> tuple[_Verify, Any] | None:
    """The same function through coincurve's cffi binding, which releases the GIL
    for the call (so a background thread can check signatures while the event
    loop runs) and converts its arguments several µs faster than ctypes.
    Returns ``(verify, context)``, or None when the binding lacks it."""
    try:
        lib = importlib.import_module("coincurve._libsecp256k1").lib
        context = importlib.import_module("coincurve.context").GLOBAL_CONTEXT.ctx
        fn: _Verify = lib.secp256k1_schnorrsig_verify
    except (ImportError, AttributeError):
        return None
    return fn, context


_VERIFY = _libsecp256k1_verify()
_VERIFY_RELEASING = _cffi_verify()


@lru_cache(maxsize=8192)
def _xonly_struct(pubkey: str) -> bytes:
    """The parsed key as libsecp256k1's 64-byte ``secp256k1_xonly_pubkey``."""
    assert _VERIFY is not None
    return bytes(_VERIFY[2].buffer(_xonly_key(pubkey).public_key, 64))


def verify_signature(event_id: str, pubkey: str, sig: str, *, release_gil: bool = False) -> bool:
    """BIP-340 Schnorr signature of the 32-byte id by the x-only ``pubkey``.

    ``release_gil=True`` lets other Python threads run during the check (for a
    checking thread beside an event loop); the answer is the same either way.
    """
    try:
        sig_bytes = bytes.fromhex(sig)
        message = bytes.fromhex(event_id)
        if len(sig_bytes) != 64:
            return False
        if release_gil:
            if _VERIFY_RELEASING is None:
                return bool(_xonly_key(pubkey).verify(sig_bytes, message))
            verify, context = _VERIFY_RELEASING
            return (
                verify(context, sig_bytes, message, len(message), _xonly_key(pubkey).public_key)
                == 1
            )
        if _VERIFY is None:
            return bool(_xonly_key(pubkey).verify(sig_bytes, message))
        fn, address, _ = _VERIFY
        return fn(address, sig_bytes, message, len(message), _xonly_struct(pubkey)) == 1
    except (ValueError, TypeError):
        return False
