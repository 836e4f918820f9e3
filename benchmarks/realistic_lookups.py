"""`python -m benchmarks realistic-lookups`: the realistic shapes' lookups alone, in process,
each the best of `--reps` calls through `PermissionSystem` (CPU time of the process and wall
time; on a shared machine the CPU time is the steadier figure), with a digest of the answers
so that two versions of the engine can be compared on the same data; after each
LookupSubjects, its pages of 10 (the first, then the best of the next ones) for paging:
`PYTHONPATH=<other checkout>/src python -m benchmarks realistic-lookups ...` runs the other
version's engine on the same cached store (built by `realistic` or here)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Awaitable, Callable

import stonetown
from benchmarks.common import forget_walks
from benchmarks.dataset import size_label
from benchmarks.realistic import prepare
from benchmarks.realistic_data import generate
from stonetown.core.relationship import ObjectRef, SubjectRef
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import Consistency
from stonetown.stores.sqlite import SqliteDatastore


def run(shape: str, size: int, seed: int, reps: int) -> None:
    """Print one line per lookup query of the shape: results, best CPU and wall ms, digest."""
    path, _ = prepare(shape, size, seed)
    data = generate(shape, size, seed)
    print(f"engine {os.path.dirname(stonetown.__file__)}; {shape} {size_label(size)}; load average "
          f"{os.getloadavg()[0]:.1f}")  # fmt: skip
    asyncio.run(_measure(path, data.lookup_resources, data.lookup_subjects, reps))
    print(f"load average {os.getloadavg()[0]:.1f}")


async def _measure(
    path: object,
    resources: list[tuple[str, str, str, str, int]],
    subjects: list[tuple[str, str, str, str, int]],
    reps: int,
) -> None:
    system = PermissionSystem(SqliteDatastore(str(path)))
    await system.start()
    latest = Consistency.minimize_latency()
    try:
        for n, q in enumerate(resources):

            async def lookup_resources(q: tuple[str, str, str, str, int] = q) -> list[object]:
                found = system.lookup_resources(q[0], q[1], SubjectRef(q[2], q[3]), latest)
                return [(r.resource_id, r.conditional) async for r, _ in found]

            await _best(f"lookup_resources/{n}", lookup_resources, reps)
        for n, q in enumerate(subjects):

            async def lookup_subjects(q: tuple[str, str, str, str, int] = q) -> list[object]:
                forget_walks(system)  # each call walks (the pages of one lookup reuse the walk)
                found = system.lookup_subjects(ObjectRef(q[0], q[1]), q[2], q[3], "", latest)
                return [(s.subject.id, s.conditional, s.excluded) async for s, _ in found]

            await _best(f"lookup_subjects/{n}", lookup_subjects, reps)

            cursors: list[str | None] = [None]  # each page starts after the previous one's last id

            async def page_of_ten(
                q: tuple[str, str, str, str, int] = q, cursors: list[str | None] = cursors
            ) -> list[object]:
                found = system.lookup_subjects(
                    ObjectRef(q[0], q[1]), q[2], q[3], "", latest, after=cursors[-1], limit=10
                )
                ids = [s.subject.id async for s, _ in found]
                cursors.append(ids[-1] if len(ids) == 10 else None)
                return ids

            forget_walks(system)
            await _best("  first page of 10", page_of_ten, 1)  # walks, keeps the walk
            await _best("  next pages of 10", page_of_ten, reps)  # start at their cursors
    finally:
        await system.stop()


async def _best(name: str, call: Callable[[], Awaitable[list[object]]], reps: int) -> None:
    cpu = wall = float("inf")
    answers: list[object] = []
    for _ in range(reps):
        started_cpu, started = time.process_time(), time.perf_counter()
        answers = await call()
        cpu = min(cpu, time.process_time() - started_cpu)
        wall = min(wall, time.perf_counter() - started)
    digest = hashlib.sha256(repr(answers).encode()).hexdigest()[:12]
    print(f"{name:20s} results {len(answers):6d}  cpu {cpu * 1000:9.1f} ms  wall {wall * 1000:9.1f} ms  "
          f"answers {digest}")  # fmt: skip
