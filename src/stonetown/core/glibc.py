"""glibc's allocator controls (malloc_trim, mallopt, mallinfo2), where the C library is glibc.

One handle for the process: the engine trims after a load (engine/index.py), the server's
runtime trims every few seconds and sets the arena limit (api/runtime.py).
"""

from __future__ import annotations

import ctypes


def _glibc() -> ctypes.CDLL | None:
    """The process's C library if it is glibc, else None (musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded: no library search
        libc.malloc_trim  # noqa: B018 - glibc only (not musl): the attribute is the test
        libc.mallopt  # noqa: B018
    except (AttributeError, OSError, TypeError):
        return None
    return libc


GLIBC = _glibc()


def trim() -> bool:
    """Return the allocator's free pages to the system; whether any were (False without glibc).
    ctypes releases the GIL for the call: on a thread, the event loop keeps serving."""
    return bool(GLIBC is not None and GLIBC.malloc_trim(0))
