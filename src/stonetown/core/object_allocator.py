"""Python objects allocated by the C library's malloc for a while, instead of by pymalloc.

pymalloc takes memory in 1 MiB arenas and gives an arena back only once every block in it is
free. A large structure that lives a while (a compiled schema of 100,000 objects: 10-15 MB)
is built with temporaries in between its objects, and its pools keep those holes; whatever
long-lived objects the process makes while it lives (other requests' new index keys,
connections' state) land in them. Once the structure is dropped, those few objects pin its
arenas for good: after the hostile mix, 14 arenas (+14 MB of resident memory) for two large
schemas compiled once (benchmarks/README.md, "h9-memory").

:func:`objects_in_malloc` makes the object allocator take new blocks from malloc meanwhile
(every thread's: the allocator is the process's), whose freed pages the server gives back
every few seconds (``malloc_trim``, api/runtime.py), whatever else is still alive beside them.
Used for large compilations (engine/schema_cache.py, CompiledSchema.walked). Not for the
change feed's reads: a window held across their await puts the whole loop's objects in malloc
meanwhile, and the soak ended higher in RSS with it (benchmarks/README.md, after merging h10).
The hook keeps pymalloc's ``realloc`` and ``free``: they hand a block that is not pymalloc's
to the raw allocator (as for every object over 512 bytes), so blocks of either allocator are
freed right during the window and after it. CPython allows a hook after startup, not a
replacement; this one replaces no function that receives an existing block.

One figure is skewed: CPython counts the blocks pymalloc passes to the raw allocator (part of
``sys.getallocatedblocks()``), up when it allocates one, down when it frees one; the hook's
blocks are allocated past that count and freed through it, so the figure drops by one for
each (the pause summary's ``python_blocks_k`` can end below zero after large compilations).

Only under pymalloc as the process started it (a build with pymalloc and the GIL, no
``PYTHONMALLOC``, no debug hooks, no tracemalloc); elsewhere the context does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys
import sysconfig
import threading
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

_DOMAIN_RAW = 0
_DOMAIN_OBJ = 2


class _Allocator(ctypes.Structure):
    """CPython's ``PyMemAllocatorEx``."""

    _fields_ = [
        (name, ctypes.c_void_p) for name in ("ctx", "malloc", "calloc", "realloc", "free")
    ]  # fmt: skip


class _Window:
    """Process-wide, as the allocator is: how many callers are inside a window (threads may
    overlap them), and pymalloc's functions to put back when the last one leaves."""

    lock = threading.Lock()
    inside = 0
    saved: _Allocator | None = None


def _api() -> ctypes.PyDLL | None:
    """The interpreter's C API when this process runs pymalloc unhooked, else None."""
    if os.environ.get("PYTHONMALLOC", "") not in ("", "pymalloc") or sys.flags.dev_mode:
        return None
    # pymalloc built in, and the default (free-threaded builds run mimalloc, whose free does
    # not hand foreign blocks on); a debug build hooks the allocator itself
    config = sysconfig.get_config_var
    if config("WITH_PYMALLOC") != 1 or config("Py_GIL_DISABLED") or config("Py_DEBUG"):
        return None
    api = getattr(ctypes, "pythonapi", None)
    if api is None or not hasattr(api, "PyMem_SetAllocator"):
        return None
    for name in ("PyMem_GetAllocator", "PyMem_SetAllocator"):
        function = getattr(api, name)
        function.argtypes = [ctypes.c_int, ctypes.POINTER(_Allocator)]
        function.restype = None
    return api


_API = _api()


def _install(api: ctypes.PyDLL) -> _Allocator | None:
    """Install the hook; pymalloc's functions, or None when the allocator is not plain
    pymalloc (a context not seen by :func:`_api`: e.g. a hook of some other tool)."""
    raw, objects = _Allocator(), _Allocator()
    api.PyMem_GetAllocator(_DOMAIN_RAW, ctypes.byref(raw))
    api.PyMem_GetAllocator(_DOMAIN_OBJ, ctypes.byref(objects))
    if raw.ctx or objects.ctx or objects.malloc == raw.malloc:
        return None
    hook = _Allocator(None, raw.malloc, raw.calloc, objects.realloc, objects.free)
    api.PyMem_SetAllocator(_DOMAIN_OBJ, ctypes.byref(hook))
    return objects


@contextmanager
def objects_in_malloc() -> Iterator[bool]:
    """New Python objects from malloc, not pymalloc, until the context exits (see the module
    docstring); yields whether the allocator was switched. Re-entrant, and safe from several
    threads at once: pymalloc comes back when the last one leaves."""
    api = _API
    if api is None or tracemalloc.is_tracing():
        yield False
        return
    with _Window.lock:
        if _Window.inside == 0:
            _Window.saved = _install(api)
        _Window.inside += 1
        switched = _Window.saved is not None
    try:
        yield switched
    finally:
        with _Window.lock:
            _Window.inside -= 1
            if _Window.inside == 0 and _Window.saved is not None:
                api.PyMem_SetAllocator(_DOMAIN_OBJ, ctypes.byref(_Window.saved))
                _Window.saved = None
