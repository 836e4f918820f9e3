"""The server's own pauses: event-loop stalls and garbage-collector passes, measured in-process.

A health probe answered late may have waited on the server (its event loop busy, a long
collector pass holding the GIL) or on the machine (other processes on the cores). The
:class:`PauseRecorder` tells them apart. It wakes every :data:`TICK` seconds and measures how
late each wake-up was (a late wake-up is a loop that could not have answered either), and how
much CPU the process used meanwhile: a stall during which the process ran less than half the
time is the machine's (the process was waiting for a core: ``starved``), otherwise the
server's own (its threads were busy: ``busy``). It also times every pass of the cyclic
garbage collector, in whatever thread it runs, in wall time and in the CPU time of that
thread, and counts the objects the largest full pass walked (``gc_full_max_objects``: every
tracked object not frozen; the loaded index is frozen, so this stays the working set).
Stalls and passes over their thresholds are logged as they happen (``event=loop_stall`` /
``event=gc_pause``), and a summary when the server stops (``event=pause_summary``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections import Counter
from typing import Any

from stonetown.api.runtime import allocator_figures, python_allocator_figures

log = logging.getLogger("stonetown.server")

TICK = 0.02
STALL_LOGGED = 0.1  # seconds late for a wake-up to count and be logged as a loop stall
GC_LOGGED = 0.05  # seconds (wall) for a collector pass to be logged


class PauseRecorder:
    """Event-loop lag and garbage-collector pauses of this process (see the module docstring)."""

    def __init__(self) -> None:
        self.ticks = 0
        self.busy_stalls = 0  # stalls while the process was running (its own work)
        self.starved_stalls = 0  # stalls while the process mostly waited for a core
        self.max_lag = 0.0
        self.max_busy_lag = 0.0
        self.gc_passes = 0
        self.gc_wall = 0.0
        self.gc_cpu = 0.0
        self.gc_max_wall = 0.0
        self.gc_max_cpu = 0.0
        self.gc_long = 0  # passes longer than GC_LOGGED (wall)
        self.full_passes = 0  # of the oldest generation, which walks every tracked object
        self.full_cpu = 0.0
        self.full_walked_max = 0  # the most tracked objects a full pass walked
        self._gc_started = threading.local()
        self._task: asyncio.Task[None] | None = None
        self._memory_at_start: dict[str, float] = {}
        self._cpu_start = time.process_time()
        self._wall_start = time.monotonic()

    def start(self) -> None:
        """Start timing collector passes and the loop's wake-ups (and note where the memory
        is now, to compare with the summary's figures at stop)."""
        self._memory_at_start = {
            f"{name}_at_start": value
            for name, value in {**allocator_figures(), **python_allocator_figures()}.items()
        }
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.create_task(self._follow_loop())

    async def stop(self) -> dict[str, Any]:
        """Stop recording; log and return the summary (with the kinds of object the collector
        tracks most: what a full pass walks, and what the process holds on to)."""
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        summary = self.summary()
        kinds = Counter(type(item).__name__ for item in gc.get_objects())
        summary.update(allocator_figures())
        summary.update(python_allocator_figures())
        summary.update(self._memory_at_start)
        summary["gc_tracked_kinds"] = ",".join(f"{name}:{count}" for name, count in kinds.most_common(8))
        log.info("pause_summary", extra=summary)
        return summary

    def summary(self) -> dict[str, Any]:
        """The figures so far (milliseconds, seconds of CPU)."""
        return {
            "wall_seconds": round(time.monotonic() - self._wall_start, 1),
            "cpu_seconds": round(time.process_time() - self._cpu_start, 1),
            "loop_ticks": self.ticks,
            "loop_stalls_busy": self.busy_stalls,
            "loop_stalls_starved": self.starved_stalls,
            "loop_max_lag_ms": _ms(self.max_lag),
            "loop_max_busy_lag_ms": _ms(self.max_busy_lag),
            "gc_passes": self.gc_passes,
            "gc_wall_ms": _ms(self.gc_wall),
            "gc_cpu_ms": _ms(self.gc_cpu),
            "gc_max_wall_ms": _ms(self.gc_max_wall),
            "gc_max_cpu_ms": _ms(self.gc_max_cpu),
            "gc_over_50ms": self.gc_long,
            "gc_full_passes": self.full_passes,
            "gc_full_cpu_ms": _ms(self.full_cpu),
            "gc_full_max_objects": self.full_walked_max,
            "gc_tracked_objects": len(gc.get_objects()),
            "gc_frozen_objects": gc.get_freeze_count(),
        }

    async def _follow_loop(self) -> None:
        while True:
            before, cpu_before = time.monotonic(), time.process_time()
            await asyncio.sleep(TICK)
            wall = time.monotonic() - before
            lag = wall - TICK
            self.ticks += 1
            self.max_lag = max(self.max_lag, lag)
            if lag <= STALL_LOGGED:
                continue
            ran = (time.process_time() - cpu_before) / wall  # cores' worth the process used
            if ran >= 0.5:
                self.busy_stalls += 1
                self.max_busy_lag = max(self.max_busy_lag, lag)
            else:
                self.starved_stalls += 1
            log.warning(
                "loop_stall",
                extra={"lag_ms": _ms(lag), "process_cpu_share": round(ran, 2), "busy": ran >= 0.5},
            )

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        started = self._gc_started
        if phase == "start":
            if info.get("generation") == 2:
                # what the pass walks: every tracked object not frozen (a list of them costs
                # a fraction of the walk; full passes are rare)
                self.full_walked_max = max(self.full_walked_max, len(gc.get_objects()))
            started.wall, started.cpu = time.perf_counter(), time.thread_time()
            return
        if getattr(started, "wall", None) is None:
            return
        wall, cpu = time.perf_counter() - started.wall, time.thread_time() - started.cpu
        started.wall = None
        self.gc_passes += 1
        self.gc_wall += wall
        self.gc_cpu += cpu
        self.gc_max_wall = max(self.gc_max_wall, wall)
        self.gc_max_cpu = max(self.gc_max_cpu, cpu)
        if info.get("generation") == 2:
            self.full_passes += 1
            self.full_cpu += cpu
        if wall > GC_LOGGED:
            self.gc_long += 1
            log.warning(
                "gc_pause",
                extra={
                    "ms": _ms(wall),
                    "cpu_ms": _ms(cpu),
                    "generation": info.get("generation"),
                    "collected": info.get("collected"),
                },
            )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
