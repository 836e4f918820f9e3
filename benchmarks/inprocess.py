"""In-process benchmarks: the engine without gRPC.

One run = one dataset size, in a fresh process: the SQLite store is imported (once, in a
child process, timed: bulk import rate), then loaded into a PermissionSystem (timed: load
time; RSS before and after: bytes per relationship), then every workload is timed one
operation at a time with ``time.perf_counter_ns``:

- ``check_core/<kind>``: ``CheckRun(...).dispatch`` (the synchronous core: no asyncio, no
  argument validation), per label of :data:`benchmarks.dataset.CHECK_KINDS`, and the mix;
- ``check_facade/mix_uncached``: ``await PermissionSystem.check`` (validation, consistency,
  verdict) with the engine's whole-check cache emptied before each call;
  ``check_facade/mix``: the same with the cache on (the 20,000-check mix repeats, so most
  calls are cache hits);
- ``check_bulk_100``: ``PermissionSystem.check_bulk`` of 100 mixed checks (cache emptied);
- ``lookup_resources_big``: every app the big reader can run (10,000 at >= 100k);
- ``lookup_resources``: an organization owner's apps; ``lookup_subjects``: users who can run
  an app;
- ``write_single`` / ``write_batch_100``: ``PermissionSystem.write_relationships`` into a
  copy of the store (SQLite, synchronous=FULL).
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Latency,
    db_path,
    ensure_store,
    forget_walks,
    measured_start,
    remove_store,
    store_copy,
    summarize,
    write_result,
)
from benchmarks.dataset import CHECK_KINDS, generate, size_label
from stonetown.core.relationship import ObjectRef, SubjectRef
from stonetown.engine.check import CheckRun
from stonetown.engine.datastore import Update, UpdateOp
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import CheckRequest, Consistency
from stonetown.stores.sqlite import SqliteDatastore


def _import_child(size: int, seed: int, progress: bool) -> None:
    ensure_store(generate(size, seed), progress=progress)


def prepare(size: int, seed: int, *, progress: bool = True) -> tuple[Path, float]:
    """Import the dataset in a child process when its store is missing; (path, import s)."""
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=_import_child, args=(size, seed, progress))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"import of {size_label(size)} failed (exit {child.exitcode})")
    path = db_path(size, seed)
    seconds = float(path.with_suffix(".ok").read_text().strip())
    return path, seconds


def _time_each(items: list[Any], op: Callable[[Any], object], budget: float) -> Latency:
    """Run `op` on each item (cycling) until all ran once and `budget` seconds passed, or
    at most 200,000 operations; per-operation latency."""
    clock = time.perf_counter_ns
    samples: list[int] = []
    start = time.perf_counter()
    deadline = start + budget
    i = 0
    n = len(items)
    while i < 200_000 and (i < n or time.perf_counter() < deadline):
        item = items[i % n]
        t0 = clock()
        op(item)
        samples.append(clock() - t0)
        i += 1
    return summarize(samples, time.perf_counter() - start)


async def _time_each_async(items: list[Any], op: Callable[[Any], Any], budget: float, cap: int) -> Latency:
    clock = time.perf_counter_ns
    samples: list[int] = []
    start = time.perf_counter()
    deadline = start + budget
    i = 0
    n = len(items)
    while i < cap and (i < n or time.perf_counter() < deadline):
        item = items[i % n]
        t0 = clock()
        await op(item)
        samples.append(clock() - t0)
        i += 1
    return summarize(samples, time.perf_counter() - start)


async def measure(size: int, seed: int, *, budget: float = 2.0, progress: bool = True) -> dict[str, Any]:
    """Every in-process workload on one dataset size; the result document."""
    path, import_seconds = prepare(size, seed, progress=progress)
    gc.collect()
    store = SqliteDatastore(str(path))
    system = PermissionSystem(store)
    loaded = await measured_start(system)
    data = generate(size, seed)
    out: dict[str, Any] = {
        "size": size,
        "size_label": size_label(size),
        "import_seconds": round(import_seconds, 3),
        "import_rel_per_s": round(len(data.relationships) / import_seconds, 1),
        **loaded,
        "workloads": {},
    }
    work = out["workloads"]
    assert system.state is not None
    compiled, index = system.state.compiled, system.index

    def core(check: tuple[str, str, str, str, str, str, bool]) -> object:
        return CheckRun(compiled, index, 50).dispatch(
            check[0], check[1], check[2], (check[3], check[4], check[5]), 0
        )

    wrong = 0
    for kind in CHECK_KINDS:
        items = data.checks[kind]
        if not items:
            continue
        wrong += sum(1 for c in items[:500] if (core(c) is True) != c[6])
        work[f"check_core/{kind}"] = _time_each(items, core, budget / 2).as_dict()
    mix = data.mixed_checks(20_000)
    work["check_core/mix"] = _time_each(mix, core, budget).as_dict()
    out["check_answers_wrong"] = wrong

    latest = Consistency.minimize_latency()

    async def facade(check: tuple[str, str, str, str, str, str, bool]) -> object:
        return await system.check(
            ObjectRef(check[0], check[1]), check[2], SubjectRef(check[3], check[4]), latest
        )

    cache = getattr(system, "check_cache", None)

    async def facade_cold(check: tuple[str, str, str, str, str, str, bool]) -> object:
        if cache is not None:
            cache.entries.clear()
        return await facade(check)

    # a server sees both: repeated checks answered by the whole-check cache (if the engine
    # has one) and checks it has not seen at this revision
    work["check_facade/mix_uncached"] = (await _time_each_async(mix, facade_cold, budget, 100_000)).as_dict()
    work["check_facade/mix"] = (await _time_each_async(mix, facade, budget, 100_000)).as_dict()
    out["engine_check_cache"] = cache is not None

    bulks = [
        [CheckRequest(ObjectRef(c[0], c[1]), c[2], SubjectRef(c[3], c[4])) for c in mix[i : i + 100]]
        for i in range(0, len(mix), 100)
    ]

    async def bulk(requests: list[CheckRequest]) -> object:
        if cache is not None:
            cache.entries.clear()
        return await system.check_bulk(requests, latest)

    lat = await _time_each_async(bulks, bulk, budget, 5_000)
    work["check_bulk_100"] = lat.as_dict() | {"checks_per_s": round(lat.throughput * 100, 1)}

    async def lookup(query: tuple[str, str, str]) -> int:
        n = 0
        async for _ in system.lookup_resources(query[0], query[1], SubjectRef("user", query[2]), latest):
            n += 1
        return n

    big = data.lookup_resources[0]
    found = await lookup(big)
    lat = await _time_each_async([big], lookup, budget, 50)
    work["lookup_resources_big"] = lat.as_dict() | {"results": found}
    small = data.lookup_resources[1:6] or [big]
    work["lookup_resources"] = (await _time_each_async(small, lookup, budget / 2, 2_000)).as_dict()

    async def subjects(query: tuple[str, str, str, str]) -> int:
        forget_walks(system)  # each call walks (the pages of one lookup reuse the walk)
        n = 0
        async for _ in system.lookup_subjects(ObjectRef(query[0], query[1]), query[2], query[3], "", latest):
            n += 1
        return n

    work["lookup_subjects"] = (
        await _time_each_async(data.lookup_subjects, subjects, budget / 2, 2_000)
    ).as_dict()
    await system.stop()
    gc.collect()

    # writes, into a copy so the dataset stays as generated
    copy = store_copy(path, "writes")
    writer = PermissionSystem(SqliteDatastore(str(copy)))
    await writer.start()
    fresh = iter(data.fresh_writes)

    async def single(_: object) -> int:
        return await writer.write_relationships([Update(UpdateOp.TOUCH, next(fresh))])

    work["write_single"] = (await _time_each_async([None], single, budget / 2, 2_000)).as_dict()

    async def batch(_: object) -> int:
        return await writer.write_relationships([Update(UpdateOp.TOUCH, next(fresh)) for _ in range(100)])

    lat = await _time_each_async([None], batch, budget / 2, 200)
    work["write_batch_100"] = lat.as_dict() | {"relationships_per_s": round(lat.throughput * 100, 1)}
    await writer.stop()
    remove_store(copy)
    return out


def run(size: int, seed: int, *, budget: float = 2.0, progress: bool = True) -> dict[str, Any]:
    """Measure, print a summary and write benchmarks/results/inprocess-SIZE.json."""
    result = asyncio.run(measure(size, seed, budget=budget, progress=progress))
    print_summary(result)
    write_result(f"inprocess-{result['size_label']}", result)
    return result


def print_summary(result: dict[str, Any]) -> None:
    """A table of the result on stdout."""
    print(
        f"== in-process, {result['size_label']} ({result['relationships']} relationships): "
        f"import {result['import_seconds']} s ({result['import_rel_per_s']:.0f} rel/s), "
        f"load {result['load_seconds']} s, {result['index_bytes_per_relationship']} B/rel"
    )
    print(f"{'workload':32} {'ops/s':>11} {'p50 us':>9} {'p90 us':>9} {'p99 us':>9} {'max us':>10}")
    for name, row in result["workloads"].items():
        print(
            f"{name:32} {row['throughput_per_s']:>11.0f} {row['p50_us']:>9.1f} {row['p90_us']:>9.1f} "
            f"{row['p99_us']:>9.1f} {row['max_us']:>10.1f}"
        )
