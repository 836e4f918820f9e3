"""The server's own pause figures (api/pauses.py): loop stalls and collector passes are seen.

They separate the server's stalls from the machine's in the hostile soak's notes (issue #18),
so they must count what happens: a loop held for 300 ms is a stall, a full collection is a
full pass, and stopping removes the collector hook.
"""

from __future__ import annotations

import asyncio
import gc
import time

from stonetown.api.pauses import PauseRecorder
from stonetown.api.runtime import allocator_figures, python_allocator_figures


async def test_a_held_loop_and_a_full_collection_are_recorded() -> None:
    recorder = PauseRecorder()
    recorder.start()
    await asyncio.sleep(0.05)
    until = time.monotonic() + 0.3
    while time.monotonic() < until:
        pass  # the loop held, as a long synchronous step would
    await asyncio.sleep(0.05)
    gc.collect()
    summary = await recorder.stop()
    assert summary["loop_stalls_busy"] + summary["loop_stalls_starved"] >= 1, summary
    assert summary["loop_max_lag_ms"] >= 250, summary
    assert summary["gc_full_passes"] >= 1 and summary["gc_passes"] >= 1, summary
    assert recorder._on_gc not in gc.callbacks
    passes = recorder.gc_passes
    gc.collect()
    assert recorder.gc_passes == passes  # no longer hooked


def test_the_allocator_figures_see_python_objects_come_and_go() -> None:
    before = python_allocator_figures()
    held = [str(n) * 3 for n in range(500_000)]
    during = python_allocator_figures()
    del held
    after = python_allocator_figures()
    assert during["pymalloc_in_use_mb"] > before["pymalloc_in_use_mb"] + 20, (before, during)
    assert after["pymalloc_in_use_mb"] < during["pymalloc_in_use_mb"] - 20, (during, after)
    assert allocator_figures()["python_blocks_k"] > 0
