"""Shared helpers: latency statistics, memory, result files, progress and the dataset store."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import platform
import resource
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.dataset import Dataset
from stonetown.cli.progress import Progress
from stonetown.core.relationship import Relationship
from stonetown.engine.datastore import Update, UpdateOp
from stonetown.engine.system import PermissionSystem
from stonetown.stores.memory import MemoryDatastore
from stonetown.stores.sqlite import SqliteDatastore

RESULTS_DIR = Path(__file__).with_name("results")
DATA_DIR = RESULTS_DIR / "data"
IMPORT_BATCH = 500_000  # relationships per import call (one transaction, one revision each)
_SQLITE_SIDE_FILES = ("-wal", "-shm")


def store_copy(original: Path, tag: str) -> Path:
    """A fresh copy of the SQLite store `original` beside it (NAME-TAG.db, stale -wal/-shm
    removed): what a benchmark that writes, or a second server, serves (a SQLite file is
    locked by the one server that serves it)."""
    path = original.with_name(f"{original.stem}-{tag}.db")
    remove_store(path)
    shutil.copyfile(original, path)
    return path


def remove_store(path: Path) -> None:
    """Delete a SQLite store and its -wal/-shm files (those that exist)."""
    for suffix in ("", *_SQLITE_SIDE_FILES):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def results_dir() -> Path:
    """benchmarks/results (or $STONETOWN_BENCH_RESULTS), created on demand."""
    path = Path(os.environ.get("STONETOWN_BENCH_RESULTS", RESULTS_DIR))
    path.mkdir(parents=True, exist_ok=True)
    return path


def forget_walks(system: PermissionSystem) -> None:
    """Drop the LookupSubjects walks `system` keeps for the next page, so that a repeated
    lookup measures a first page (its walk), not the reuse of the previous call's."""
    held = getattr(system, "held_cache", None)
    if held is not None:
        held.clear()


async def memory_system(schema: str, rels: Sequence[Relationship], batch: int = 1000) -> PermissionSystem:
    """A started PermissionSystem over a MemoryDatastore holding `schema` and `rels` (written
    `batch` at a time), without background polling or GC: for in-process measurements and the
    benchmarks' answer checks."""
    system = PermissionSystem(MemoryDatastore(), poll_interval=None, gc_interval=None)
    await system.start()
    await system.write_schema(schema)
    for start in range(0, len(rels), batch):
        await system.write_relationships([Update(UpdateOp.TOUCH, rel) for rel in rels[start : start + batch]])
    return system


async def measured_start(system: PermissionSystem) -> dict[str, Any]:
    """Start `system` (its load from the store) and measure it: wall and CPU seconds (all
    threads and the reading child process of a large SQLite file: the figure a busy shared
    machine changes least), load averages around it, and the resident memory it added per
    relationship (the child's is its own, gone when the load ends)."""
    rss_before = rss_bytes()
    loadavg_before = os.getloadavg()
    t0, cpu0, child0 = time.perf_counter(), time.process_time(), _children_cpu()
    await system.start()
    load_seconds, load_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    child_cpu = _children_cpu() - child0  # a large SQLite file's reading process
    gc.collect()
    rss_after = rss_bytes()
    count = system.index.count
    return {
        "relationships": count,
        "load_seconds": round(load_seconds, 3),
        "load_rel_per_s": round(count / load_seconds, 1),
        "load_cpu_seconds": round(load_cpu + child_cpu, 3),
        "load_cpu_child_seconds": round(child_cpu, 3),
        "loadavg_load": [list(loadavg_before), list(os.getloadavg())],
        "rss_before_load_bytes": rss_before,
        "rss_after_load_bytes": rss_after,
        "index_bytes_per_relationship": round((rss_after - rss_before) / max(count, 1), 1),
    }


def _children_cpu() -> float:
    """CPU seconds of this process's ended and waited-for children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted values, nearest-rank."""
    if not sorted_values:
        return float("nan")
    rank = min(len(sorted_values) - 1, max(0, int(round(q * len(sorted_values) + 0.5)) - 1))
    return float(sorted_values[rank])


@dataclass(slots=True)
class Latency:
    """Latency summary in microseconds, and throughput in operations per second."""

    count: int
    seconds: float
    p50_us: float
    p90_us: float
    p99_us: float
    max_us: float
    mean_us: float

    @property
    def throughput(self) -> float:
        """Operations per second over the measured wall time."""
        return self.count / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, with throughput."""
        return {
            "count": self.count,
            "seconds": round(self.seconds, 4),
            "throughput_per_s": round(self.throughput, 1),
            "p50_us": round(self.p50_us, 2),
            "p90_us": round(self.p90_us, 2),
            "p99_us": round(self.p99_us, 2),
            "max_us": round(self.max_us, 2),
            "mean_us": round(self.mean_us, 2),
        }


def summarize(samples_ns: list[int] | list[float], seconds: float, *, unit_ns: bool = True) -> Latency:
    """A Latency from per-operation durations (ns by default, else µs) and the wall time."""
    scale = 1e-3 if unit_ns else 1.0
    values = sorted(v * scale for v in samples_ns)
    mean = sum(values) / len(values) if values else float("nan")
    return Latency(
        len(values),
        seconds,
        percentile(values, 0.50),
        percentile(values, 0.90),
        percentile(values, 0.99),
        values[-1] if values else float("nan"),
        mean,
    )


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default)."""
    import psutil

    return int(psutil.Process(pid or os.getpid()).memory_info().rss)


def rss_tree_bytes(pid: int) -> int:
    """RSS of a process and all its descendants (server workers)."""
    import psutil

    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            continue
    return int(total)


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    import grpc

    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
        "grpcio": grpc.__version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **_git(),
    }


def _git() -> dict[str, Any]:
    """The commit measured and whether the engine sources had uncommitted changes."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return {}
    return {"commit": head.stdout.strip(), "src_uncommitted_changes": bool(dirty)}


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write one result document as benchmarks/results/NAME.json and return its path."""
    path = results_dir() / f"{name}.json"
    payload = {"benchmark": name, "environment": environment(), **payload}
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    print(f"-> {path}", file=sys.stderr)
    return path


def db_path(size: int, seed: int) -> Path:
    """Where the SQLite file of the dataset (size, seed) lives."""
    directory = results_dir() / "data"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"bench-{size}-{seed}.db"


async def bulk_import(
    data: Dataset, path: Path, *, batch: int = IMPORT_BATCH, progress: bool = True
) -> float:
    """Write the schema and every relationship of `data` into a new SQLite store at `path`
    through the real import path (PermissionSystem.import_relationships: validation, one
    transaction and one revision per call of `batch` relationships, index updated), as an
    ImportRelationships stream (`stonetown import --bulk`) makes the server do; two calls in
    flight. Returns the seconds spent on relationships (schema excluded), until the index
    holds them."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    system = PermissionSystem(SqliteDatastore(str(path)))
    await system.start()
    try:
        await system.write_schema(data.schema_text())
        bar = Progress(f"import {path.name}", len(data.relationships), enabled=progress)
        if progress:
            bar._interactive = True  # redraw on stderr even when it is not a terminal
        rels = data.relationships
        start = time.perf_counter()
        # Two calls in flight (as a client with two streams): while one call's relationships
        # go into the index, the next one's are written to SQLite on the store's thread.
        in_flight: list[tuple[asyncio.Task[int], int]] = []
        try:
            for first in range(0, len(rels), batch):
                chunk = rels[first : first + batch]
                in_flight.append((asyncio.ensure_future(system.import_relationships(chunk)), len(chunk)))
                if len(in_flight) == 2:
                    task, count = in_flight.pop(0)
                    await task
                    bar.advance(count)
            for task, count in in_flight:
                await task
                bar.advance(count)
        finally:
            await asyncio.gather(*(task for task, _ in in_flight), return_exceptions=True)
        elapsed = time.perf_counter() - start
        bar.finish()
        return elapsed
    finally:
        await system.stop()


def ensure_store(data: Dataset, *, progress: bool = True) -> tuple[Path, float | None]:
    """The SQLite file of `data`, importing it when missing; (path, import seconds or None
    when it already existed)."""
    path = db_path(data.size, data.seed)
    marker = path.with_suffix(".ok")
    if path.exists() and marker.exists():
        return path, None
    seconds = asyncio.run(bulk_import(data, path, progress=progress))
    marker.write_text(f"{seconds}\n")
    return path, seconds
