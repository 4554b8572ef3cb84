"""Give the calling thread an operating-system name, so ``top -H`` and
``/proc/<pid>/task/<tid>/comm`` tell the relay's threads apart (Linux only)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

_PR_SET_NAME = 15


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn: Callable[..., int] = libc.prctl
        return fn
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()


def name_native_thread(name: str) -> None:
    """Set the calling thread's kernel name (at most 15 bytes; a no-op elsewhere)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
