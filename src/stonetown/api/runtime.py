"""A worker process's runtime settings: GIL hand-over, the cyclic collector's pace, and
freed memory given back to the system.

The GIL: the event loop shares it with worker threads (schema compiles, caveat evaluation,
old-revision reads, SQLite). A thread that wants it waits for the switch interval before the
holder is asked to let go (5 ms by default), and a health answer needs it several times:
:func:`hand_over_gil_sooner` sets 1 ms, so CPU-bound threads cost the loop less latency.

The collector: with CPython's default thresholds a full pass (every tracked object walked,
the GIL held: tens to hundreds of milliseconds) follows every few hundred thousand surviving
allocations, several a second while large schemas compile or imports are indexed. The engine
keeps its long-lived structures free of reference cycles (they are freed by reference
counting the moment they are dropped), so the collector has little to find and can run
less often: :func:`pace_collector`.

The allocator: glibc keeps memory freed by a large import, a compilation or a burst of
streams in its arenas, so the resident size stays at its peak. :func:`give_back_freed_memory`
first lets the engine drop its idle caches, then asks glibc (``malloc_trim``) every few
seconds, off the event loop, to return free pages to the system; :func:`limit_malloc_arenas`
keeps the worker threads from each growing an arena of their own. :func:`allocator_figures`
says where the memory is (for the pause summary).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable

from stonetown.core.glibc import GLIBC, trim
from stonetown.stores.sqlite_memory import memory_used as sqlite_memory_used

log = logging.getLogger("stonetown.server")

# Young passes after this many surviving allocations (default 700), the middle generation
# after 10 young passes, a full pass after 10 middle ones (and the old generation grown by a
# quarter, CPython's own rule).
COLLECTOR_THRESHOLDS = (10_000, 10, 10)
SWITCH_INTERVAL = 0.001
TRIM_INTERVAL = 5.0
# Seconds without a full collection after which give_back_freed_memory runs one.
FULL_PASS_AT_LEAST = 30.0
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter


def hand_over_gil_sooner() -> None:
    """Set the interpreter's switch interval to :data:`SWITCH_INTERVAL` (see the module docstring)."""
    sys.setswitchinterval(SWITCH_INTERVAL)


def pace_collector() -> None:
    """Set the collector's thresholds for a server (see the module docstring)."""
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


def limit_malloc_arenas() -> None:
    """At most :data:`MALLOC_ARENAS` glibc arenas for the threads started from now on (each
    thread otherwise gets its own, and each keeps its peak); no-op without glibc."""
    if GLIBC is not None:
        GLIBC.mallopt(_M_ARENA_MAX, MALLOC_ARENAS)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")
    ]  # fmt: skip


def allocator_figures() -> dict[str, float]:
    """What holds the process's memory, in MB: glibc's blocks in use, its free blocks kept
    (what trimming could give back), its mmapped blocks, SQLite's share of the blocks in use
    (page caches, statements), and Python's small-object blocks (count, thousands; less the
    blocks of large compilations freed since: core/object_allocator.py). Only the last two
    without glibc's mallinfo2 (glibc 2.33+)."""
    figures: dict[str, float] = {"python_blocks_k": round(sys.getallocatedblocks() / 1000, 1)}
    sqlite_used = sqlite_memory_used()
    if sqlite_used is not None:
        figures["sqlite_in_use_mb"] = round(sqlite_used / 1024 / 1024, 1)
    mallinfo2 = getattr(GLIBC, "mallinfo2", None)
    if mallinfo2 is None:
        return figures
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    mb = 1024 * 1024
    figures.update(
        malloc_in_use_mb=round(info.uordblks / mb, 1),
        malloc_free_kept_mb=round(info.fordblks / mb, 1),
        malloc_mmapped_mb=round(info.hblkhd / mb, 1),
    )
    return figures


def python_allocator_figures() -> dict[str, float]:
    """Python's own small-object allocator (pymalloc), in MB: its arenas (1 MB each, given
    back only once wholly empty), the blocks in use in them, and the free blocks they keep.
    Read from ``sys._debugmallocstats`` (it writes to file descriptor 2, briefly redirected):
    for the summary at stop, not for a serving process."""
    debug = getattr(sys, "_debugmallocstats", None)
    if debug is None:
        return {}
    with tempfile.TemporaryFile() as out:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)
        try:
            debug()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    wanted = {
        "# arenas allocated current": "pymalloc_arenas_mb",
        "# bytes in allocated blocks": "pymalloc_in_use_mb",
        "# bytes in available blocks": "pymalloc_free_kept_mb",
    }
    figures: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition("=")
        key = wanted.get(name.strip())
        if key is not None:
            number = int(value.strip().replace(",", ""))
            figures[key] = number if key == "pymalloc_arenas_mb" else round(number / 1024 / 1024, 1)
    return figures


async def give_back_freed_memory(
    release_caches: Callable[[], object] | None = None,
    interval: float = TRIM_INTERVAL,
    release_store: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Run until cancelled: every `interval` seconds, `release_caches()` (the engine's idle
    caches), then :func:`trim` on a worker thread.

    When caches were released, or no full collection has run for :data:`FULL_PASS_AT_LEAST`
    seconds (the server is idle), a full collection first frees what only reference cycles
    still hold: the collector runs its passes as objects are allocated, so a server gone
    quiet would keep them for good (in the hostile mix, tens of MB: aborted calls, whose
    AbortError grpc keeps in a cycle with the call, and what their frames held). The
    long-lived data is frozen (the index at startup, large compiled schemas as they are
    built: engine/schema_cache.py :class:`_Frozen`) and never unfrozen, so such a pass walks
    only what an automatic one would: never the index. Then
    `release_store()` empties the store's idle page caches (SQLite: up to 64 MB a
    connection), which the trim that follows gives back."""
    if GLIBC is None:
        log.info("the allocator cannot be asked to give memory back (no glibc)")
    full_passes, quiet = gc.get_stats()[-1]["collections"], 0.0
    while True:
        await asyncio.sleep(interval)
        released = release_caches() if release_caches is not None else 0
        now = gc.get_stats()[-1]["collections"]
        quiet = quiet + interval if now == full_passes else 0.0
        if released or quiet >= FULL_PASS_AT_LEAST:
            gc.collect()
            quiet, now = 0.0, gc.get_stats()[-1]["collections"]
            if release_store is not None:
                await _release_store(release_store)
        full_passes = now
        if GLIBC is not None:
            await asyncio.to_thread(trim)


async def _release_store(release_store: Callable[[], Awaitable[object]]) -> None:
    """`release_store()`; a failure is logged (the store's health is the probe's to report)
    and the loop giving memory back goes on."""
    try:
        await release_store()
    except Exception as exc:  # noqa: BLE001 - best effort: trimming must not stop for it
        log.warning("releasing the store's caches failed", extra={"error": repr(exc)})
