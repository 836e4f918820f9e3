"""The server's own pauses: event-loop stalls and garbage-collector passes, measured in-process.

A health probe answered late may have waited on the server (its event loop busy, a long
collector pass holding the GIL) or on the machine (other processes on the cores). The
:class:`PauseRecorder` tells them apart: it wakes every :data:`TICK` seconds and counts how
late each wake-up was (a late wake-up is a loop that could not have answered either), and
times every pass of the cyclic garbage collector, in whatever thread it runs. Passes and
stalls over their thresholds are logged as they happen (``event=gc_pause`` /
``event=loop_stall``), and a summary with the process's CPU time when the server stops
(``event=pause_summary``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections import Counter
from typing import Any

log = logging.getLogger("stonetown.server")

TICK = 0.02
STALL_LOGGED = 0.1  # seconds late for a wake-up to be logged as a loop stall
GC_LOGGED = 0.05  # seconds for a collector pass to be logged


class PauseRecorder:
    """Event-loop lag and garbage-collector pauses of this process (see the module docstring)."""

    def __init__(self) -> None:
        self.ticks = 0
        self.stalls = 0  # wake-ups later than STALL_LOGGED
        self.max_lag = 0.0
        self.gc_passes = 0
        self.gc_seconds = 0.0
        self.gc_max = 0.0
        self.gc_long = 0  # passes longer than GC_LOGGED
        self.full_passes = 0  # of the oldest generation, which walks every tracked object
        self.full_seconds = 0.0
        self._gc_started = threading.local()
        self._task: asyncio.Task[None] | None = None
        self._cpu_start = time.process_time()
        self._wall_start = time.monotonic()

    def start(self) -> None:
        """Start timing collector passes and the loop's wake-ups."""
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
        summary["gc_tracked_kinds"] = ",".join(f"{name}:{count}" for name, count in kinds.most_common(8))
        log.info("pause_summary", extra=summary)
        return summary

    def summary(self) -> dict[str, Any]:
        """The figures so far (milliseconds, seconds of CPU)."""
        return {
            "wall_seconds": round(time.monotonic() - self._wall_start, 1),
            "cpu_seconds": round(time.process_time() - self._cpu_start, 1),
            "loop_ticks": self.ticks,
            "loop_stalls_over_100ms": self.stalls,
            "loop_max_lag_ms": round(self.max_lag * 1000, 1),
            "gc_passes": self.gc_passes,
            "gc_total_ms": round(self.gc_seconds * 1000, 1),
            "gc_max_ms": round(self.gc_max * 1000, 1),
            "gc_over_50ms": self.gc_long,
            "gc_full_passes": self.full_passes,
            "gc_full_ms": round(self.full_seconds * 1000, 1),
            "gc_tracked_objects": len(gc.get_objects()),
            "gc_frozen_objects": gc.get_freeze_count(),
        }

    async def _follow_loop(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(TICK)
            lag = time.monotonic() - before - TICK
            self.ticks += 1
            if lag > self.max_lag:
                self.max_lag = lag
            if lag > STALL_LOGGED:
                self.stalls += 1
                log.warning("loop_stall", extra={"lag_ms": round(lag * 1000, 1)})

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started.at = time.perf_counter()
            return
        started = getattr(self._gc_started, "at", None)
        if started is None:
            return
        took = time.perf_counter() - started
        self._gc_started.at = None
        self.gc_passes += 1
        self.gc_seconds += took
        if took > self.gc_max:
            self.gc_max = took
        if info.get("generation") == 2:
            self.full_passes += 1
            self.full_seconds += took
        if took > GC_LOGGED:
            self.gc_long += 1
            log.warning(
                "gc_pause",
                extra={
                    "ms": round(took * 1000, 1),
                    "generation": info.get("generation"),
                    "collected": info.get("collected"),
                },
            )
