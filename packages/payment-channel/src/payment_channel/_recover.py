"""secp256k1 public-key recovery through libsecp256k1, the one coincurve ships.

The library is called through ``ctypes.PyDLL``, which keeps the GIL for the
~65 µs call: coincurve's binding releases it, and in a process whose other
threads (a SQLite writer) want the GIL, getting it back can cost the event loop
a whole switch interval. When the library lacks a symbol, coincurve is used.
"""

from __future__ import annotations

import ctypes
import importlib
from collections.abc import Callable
from typing import Any

from coincurve import PublicKey

_UNCOMPRESSED = 2  # SECP256K1_EC_UNCOMPRESSED

Recover = Callable[[bytes, bytes], "bytes | None"]


def _with_coincurve(message_hash: bytes, compact: bytes) -> bytes | None:
    try:
        public = PublicKey.from_signature_and_message(compact, message_hash, hasher=None)
    except Exception:  # coincurve raises plain Exception/ValueError
        return None
    return public.format(compressed=False)[1:]


_Bound = tuple[Any, Callable[..., int], Callable[..., int], Callable[..., int]]


def _bind() -> _Bound | None:
    """libsecp256k1's context and its parse, recover and serialize functions, or None."""
    try:
        module = importlib.import_module("coincurve._libsecp256k1")
        context = importlib.import_module("coincurve.context").GLOBAL_CONTEXT
        dll = ctypes.PyDLL(module.__file__)
        parse = dll.secp256k1_ecdsa_recoverable_signature_parse_compact
        recover = dll.secp256k1_ecdsa_recover
        serialize = dll.secp256k1_ec_pubkey_serialize
    except (ImportError, OSError, AttributeError):
        return None
    ctx = ctypes.c_void_p(int(module.ffi.cast("uintptr_t", context.ctx)))
    parse.restype = recover.restype = serialize.restype = ctypes.c_int
    parse.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    recover.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]
    serialize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_char_p]
    serialize.argtypes += [ctypes.c_uint]
    return ctx, parse, recover, serialize


def _direct() -> Recover | None:
    bound = _bind()
    if bound is None:
        return None
    ctx, parse, recover, serialize = bound
    create = ctypes.create_string_buffer
    size_t = ctypes.c_size_t
    byref = ctypes.byref

    def recover_direct(message_hash: bytes, compact: bytes) -> bytes | None:
        # Fresh buffers per call: the function may run in several threads at once.
        signature = create(65)  # secp256k1_ecdsa_recoverable_signature
        if not parse(ctx, signature, compact, compact[64]):
            return None
        public = create(64)  # secp256k1_pubkey
        if len(message_hash) != 32 or not recover(ctx, public, signature, message_hash):
            return None
        out = create(65)
        length = size_t(65)
        serialize(ctx, out, byref(length), public, _UNCOMPRESSED)
        return out.raw[1:]

    return recover_direct


def _direct_reusing() -> Recover | None:
    """Like :func:`_direct`, with one set of buffers: for one thread only."""
    bound = _bind()
    if bound is None:
        return None
    ctx, parse, recover, serialize = bound
    signature = ctypes.create_string_buffer(65)
    public = ctypes.create_string_buffer(64)
    out = ctypes.create_string_buffer(65)
    length = ctypes.c_size_t(65)
    length_ref = ctypes.byref(length)

    def recover_reusing(message_hash: bytes, compact: bytes) -> bytes | None:
        if len(compact) != 65 or compact[64] > 3 or len(message_hash) != 32:
            return None
        if not parse(ctx, signature, compact, compact[64]):
            return None
        if not recover(ctx, public, signature, message_hash):
            return None
        length.value = 65
        serialize(ctx, out, length_ref, public, _UNCOMPRESSED)
        return out.raw[1:]

    return recover_reusing


_RECOVER: Recover = _direct() or _with_coincurve


def single_thread_recoverer() -> Recover:
    """:func:`recover_public_key` with buffers reused from call to call, for a process
    that recovers on one thread only (a recovery worker): a few µs less per call."""
    return _direct_reusing() or _with_coincurve


def recover_public_key(message_hash: bytes, compact: bytes) -> bytes | None:
    """The 64-byte public key (x || y) that made ``compact`` (``r || s || recid``) over
    the 32-byte ``message_hash``, or None when it does not recover."""
    if len(compact) != 65 or compact[64] > 3:
        return None
    return _RECOVER(message_hash, compact)
