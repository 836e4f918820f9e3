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
import ctypes.util
import gc
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable

log = logging.getLogger("stonetown.server")

# Young passes after this many surviving allocations (default 700), the middle generation
# after 10 young passes, a full pass after 10 middle ones (and the old generation grown by a
# quarter, CPython's own rule).
COLLECTOR_THRESHOLDS = (10_000, 10, 10)
# CPU seconds of a full collector pass past which its survivors are frozen (SurvivorFreezer).
FREEZE_AFTER = 0.01
# Frozen objects allowed beyond twice the live set before everything is unfrozen once.
FREEZE_SLACK = 250_000
SWITCH_INTERVAL = 0.001
TRIM_INTERVAL = 5.0
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 - glibc only (not musl): the attribute is the test
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def hand_over_gil_sooner() -> None:
    """Set the interpreter's switch interval to :data:`SWITCH_INTERVAL` (see the module docstring)."""
    sys.setswitchinterval(SWITCH_INTERVAL)


def pace_collector() -> None:
    """Set the collector's thresholds for a server, and freeze what a long full pass found
    alive (see :class:`SurvivorFreezer` and the module docstring)."""
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
    if not any(isinstance(callback, SurvivorFreezer) for callback in gc.callbacks):
        gc.callbacks.append(SurvivorFreezer())


class SurvivorFreezer:
    """A collector callback: after a full pass that took at least :data:`FREEZE_AFTER` of
    CPU, everything still tracked is moved to the permanent generation (``gc.freeze``).

    A full pass walks every tracked object and follows every reference of each; what makes it
    long is long-lived data (compiled schemas, the caches of old revisions, the members of a
    large set being walked), walked again by every pass while it lives. Right after a full
    pass nothing tracked is garbage (every unreachable cycle was just freed), so freezing
    then keeps no garbage, and frozen objects are still freed by reference counting when
    dropped (the engine keeps its long-lived structures acyclic). The next passes walk only
    what was made since.

    An object frozen while alive that later dies in a reference cycle is not freed while
    frozen. So that such leftovers are bounded, once the frozen objects outnumber twice the
    live set last measured (plus :data:`FREEZE_SLACK`) everything is unfrozen: the next full
    pass walks it all once, frees those cycles, and its survivors (the live set, measured
    again) are frozen.
    """

    __slots__ = ("_after", "_slack", "_started", "_baseline", "_measuring", "freezes", "unfreezes")

    def __init__(self, freeze_after: float = FREEZE_AFTER, slack: int = FREEZE_SLACK) -> None:
        self._after = freeze_after
        self._slack = slack
        self._started: float | None = None
        self._baseline = gc.get_freeze_count()  # the live set frozen at startup
        self._measuring = False
        self.freezes = 0
        self.unfreezes = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        """The collector's callback: times each full pass, and freezes after a long one."""
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.thread_time()
            return
        if self._started is None:
            return
        took, self._started = time.thread_time() - self._started, None
        if took < self._after and not self._measuring:
            return
        gc.freeze()
        self.freezes += 1
        frozen = gc.get_freeze_count()
        if self._measuring:  # the pass after an unfreeze walked everything: the live set
            self._baseline, self._measuring = frozen, False
        elif frozen > 2 * self._baseline + self._slack:
            gc.unfreeze()
            self.unfreezes += 1
            self._measuring = True


def limit_malloc_arenas() -> None:
    """At most :data:`MALLOC_ARENAS` glibc arenas for the threads started from now on (each
    thread otherwise gets its own, and each keeps its peak); no-op without glibc."""
    if _LIBC is not None:
        _LIBC.mallopt(_M_ARENA_MAX, MALLOC_ARENAS)


def trim() -> bool:
    """Return the allocator's free pages to the system; whether any were (False without glibc).
    ctypes releases the GIL for the call: run it on a thread, the loop keeps serving."""
    return bool(_LIBC is not None and _LIBC.malloc_trim(0))


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")
    ]  # fmt: skip


def allocator_figures() -> dict[str, float]:
    """What holds the process's memory, in MB: glibc's blocks in use, its free blocks kept
    (what trimming could give back), its mmapped blocks, and Python's small-object blocks
    (count, thousands). Empty without glibc's mallinfo2 (glibc 2.33+)."""
    figures: dict[str, float] = {"python_blocks_k": round(sys.getallocatedblocks() / 1000, 1)}
    mallinfo2 = getattr(_LIBC, "mallinfo2", None)
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
    release_caches: Callable[[], object] | None = None, interval: float = TRIM_INTERVAL
) -> None:
    """Run until cancelled: every `interval` seconds, `release_caches()` (the engine's idle
    caches), then :func:`trim` on a worker thread."""
    if _LIBC is None:
        log.info("the allocator cannot be asked to give memory back (no glibc)")
    while True:
        await asyncio.sleep(interval)
        if release_caches is not None:
            release_caches()
        if _LIBC is not None:
            await asyncio.to_thread(trim)
