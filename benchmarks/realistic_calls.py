"""How much work one check does, per kind, at one size (issue #19's 10M growth).

``python -m benchmarks realistic-calls --shape docs --size 1M`` loads the dataset's store (it must
exist: ``python -m benchmarks realistic`` builds it), runs each kind's first labelled checks
once to warm what they keep, then prints per kind: Python calls per check (``sys.setprofile``)
and the most called functions, the size of the subject's reverse entry, and the p50 of the
checks over distinct resources against the p50 of a few checks each repeated while their
objects are in cache. The same calls and a "same again" p50 near the 10k figure mean the
growth is memory latency; more calls mean more work.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections import Counter
from functools import partial
from types import FrameType
from typing import Any

from benchmarks.dataset import size_label

CHECKS = 300  # labelled checks per kind
HOT = 20  # of them, each repeated while in cache
REPEATS = 10


def run(shape: str, size: int, seed: int, kinds: list[str] | None) -> None:
    """Print the work per check of each kind (all kinds of the shape when `kinds` is None)."""
    asyncio.run(_run(shape, size, seed, kinds))


async def _run(shape: str, size: int, seed: int, kinds: list[str] | None) -> None:
    from benchmarks.realistic import check_core, started_system
    from benchmarks.realistic_data import generate

    data = generate(shape, size, seed)
    system = await started_system(shape, size, seed)
    try:
        assert system.state is not None
        compiled, index = system.state.compiled, system.index

        check = partial(check_core, compiled, index)  # (one Python call per check, as before)

        for kind in kinds or [k for k, v in data.checks.items() if v]:
            items = data.checks[kind][:CHECKS]
            for c in items:
                check(c)
            calls = _calls(check, items)
            distinct = [_timed(check, c) for c in items]
            hot = [_timed(check, c) for c in items[:HOT] for _ in range(REPEATS)]
            held = statistics.median(len(index.reverse.get((c[3], c[4], ""), ())) for c in items)
            n = len(items)
            print(
                f"{size_label(size)} {kind}: {sum(calls.values()) / n:.1f} Python calls per check, subject's "
                f"reverse entry {held:g} keys; p50 µs distinct {statistics.median(distinct):.2f}, "
                f"same again {statistics.median(hot):.2f}"
            )
            print("    " + ", ".join(f"{name} {c / n:.2f}" for (_, name), c in calls.most_common(8)))
    finally:
        await system.stop()


def _calls(check: Any, items: list[tuple[Any, ...]]) -> Counter[tuple[str, str]]:
    """The Python functions `check` calls over `items`, counted by (file, name)."""
    calls: Counter[tuple[str, str]] = Counter()

    def count(frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            calls[(frame.f_code.co_filename.rsplit("/", 1)[-1], frame.f_code.co_name)] += 1

    sys.setprofile(count)
    try:
        for c in items:
            check(c)
    finally:
        sys.setprofile(None)
    return calls


def _timed(check: Any, c: tuple[Any, ...]) -> float:
    t0 = time.perf_counter_ns()
    check(c)
    return (time.perf_counter_ns() - t0) / 1000
