"""`python -m benchmarks realistic --shape S --size N`: issue #19's realistic shapes.

One run, one dataset (:mod:`benchmarks.realistic_data`), every baseline in the same run:

- **in process**: bulk import (child process, timed), load from SQLite (time, RSS growth per
  relationship), ``CheckRun.dispatch`` per check kind (p50/p90/p99), ``check_bulk`` of 100
  (per check, cache emptied), every LookupResources / LookupSubjects query (the first of
  each returns about min(10,000, size/10) objects); every labelled answer is verified;
- **gRPC** (unless ``--no-grpc``, :mod:`benchmarks.realistic_grpc`): single-check round trips
  vs the empty grpc.aio floor's, p99 at half the maximum rate vs the floor's at that rate,
  and Check throughput of ``--workers 2`` vs ``1``;
- **SpiceDB embedded** (unless ``--no-spicedb`` or the size is above ``--spicedb-max``): the
  same relationships in SpiceDB v1.54 (:mod:`benchmarks.spicedb_side` under the SpiceDB venv),
  its Check through FFI per kind, CheckBulk of 100, the lookups, and the answers compared with
  Stonetown's on the same sample.

Written to ``benchmarks/results/realistic-SHAPE-SIZE.json``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import multiprocessing
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import realistic_grpc
from benchmarks.common import (
    Latency,
    bulk_import,
    forget_walks,
    measured_start,
    results_dir,
    summarize,
    write_result,
)
from benchmarks.dataset import size_label
from benchmarks.inprocess import _time_each, _time_each_async
from benchmarks.realistic_data import ShapeData, generate
from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine.check import CheckRun
from stonetown.engine.closure import Closures
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import CheckRequest, Consistency
from stonetown.stores.sqlite import SqliteDatastore

ROOT = Path(__file__).resolve().parent.parent
SPICE_ENV = ROOT.parent / "shared" / "tools" / "spicedb" / "spice_env.sh"
SPICE_SAMPLE = 40  # checks per kind sent to SpiceDB one by one (its FFI Check takes ms)


def db_file(shape: str, size: int, seed: int) -> Path:
    """Where the SQLite store of (shape, size, seed) is cached."""
    directory = results_dir() / "data"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"realistic-{shape}-{size}-{seed}.db"


async def started_system(shape: str, size: int, seed: int) -> PermissionSystem:
    """A `PermissionSystem` over the cached store of (shape, size, seed), started."""
    system = PermissionSystem(SqliteDatastore(str(db_file(shape, size, seed))))
    await system.start()
    return system


def check_core(compiled: Any, index: Any, c: tuple[Any, ...]) -> object:
    """One labelled check (a `ShapeData.checks` item) as the engine's dispatch answers it, the
    way every in-process figure of this shape is timed (`check_core`)."""
    return CheckRun(compiled, index, 50).dispatch(c[0], c[1], c[2], (c[3], c[4], c[5]), 0)


def _import_child(shape: str, size: int, seed: int, progress: bool) -> None:
    path = db_file(shape, size, seed)
    marker = path.with_suffix(".ok")
    if path.exists() and marker.exists():
        return
    data = generate(shape, size, seed)
    seconds = asyncio.run(bulk_import(data, path, progress=progress))  # type: ignore[arg-type]
    marker.write_text(f"{seconds}\n")


def prepare(shape: str, size: int, seed: int, *, progress: bool = True) -> tuple[Path, float]:
    """Import the dataset in a child process when its store is missing; (path, import s)."""
    child = multiprocessing.get_context("spawn").Process(
        target=_import_child, args=(shape, size, seed, progress)
    )
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"import of {shape} {size_label(size)} failed (exit {child.exitcode})")
    path = db_file(shape, size, seed)
    return path, float(path.with_suffix(".ok").read_text().strip())


def tuple_text(r: Relationship) -> str:
    """`type:id#rel@type:id[#rel]`."""
    subject = f"{r.subject_type}:{r.subject_id}" + (f"#{r.subject_relation}" if r.subject_relation else "")
    return f"{r.resource_type}:{r.resource_id}#{r.relation}@{subject}"


async def measure_inprocess(
    data: ShapeData, path: Path, budget: float, lookup_timeout: float = 120.0, lookups: bool = True
) -> dict[str, Any]:
    """The in-process workloads; also Stonetown's answers on the SpiceDB sample."""
    gc.collect()
    system = PermissionSystem(SqliteDatastore(str(path)))
    try:
        return await _measure_system(system, data, budget, lookup_timeout, lookups)
    finally:
        await system.stop()


async def _measure_system(
    system: PermissionSystem, data: ShapeData, budget: float, lookup_timeout: float, lookups: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {**(await measured_start(system)), "workloads": {}}
    work = out["workloads"]
    assert system.state is not None
    compiled, index = system.state.compiled, system.index

    def core(c: tuple[str, str, str, str, str, str, bool]) -> object:
        return check_core(compiled, index, c)

    closures = index.closure
    out["closures"] = _closure_figures(index, compiled.closure_graphs)
    wrong: dict[str, int] = {}
    walk_wrong: dict[str, int] = {}
    for kind, items in data.checks.items():
        if not items:
            continue
        wrong[kind] = sum(1 for c in items if (core(c) is True) != c[6])
        index.closure = None
        walk_wrong[kind] = sum(1 for c in items if (core(c) is True) != c[6])
        index.closure = closures
        with_closure, walk = _time_paired(items, core, index, budget / 2)
        work[f"check_core/{kind}"] = with_closure.as_dict() | {"expected": items[0][6]}
        work[f"check_walk/{kind}"] = walk.as_dict()
        # the same checks one after another, no walk between them (check_core's pairing puts
        # one between every two: at 10M it evicts what the next check would find cached)
        work[f"check_alone/{kind}"] = _time_each(items, core, budget / 4).as_dict()
    mix = data.mixed_checks(20_000)
    with_closure, walk = _time_paired(mix, core, index, budget)
    work["check_core/mix"], work["check_walk/mix"] = with_closure.as_dict(), walk.as_dict()
    work["check_alone/mix"] = _time_each(mix, core, budget / 2).as_dict()
    if closures is not None:  # with what the checks kept per subject (engine/subject_side.py)
        kept = closures.nbytes() / max(index.count, 1)
        out["closures"]["bytes_per_relationship_after_checks"] = round(kept, 2)
    out["check_answers_wrong"] = wrong
    out["check_answers_wrong_without_closures"] = walk_wrong
    latest = Consistency.minimize_latency()
    cache = getattr(system, "check_cache", None)
    bulks = [
        [CheckRequest(ObjectRef(c[0], c[1]), c[2], SubjectRef(c[3], c[4], c[5])) for c in mix[i : i + 100]]
        for i in range(0, len(mix), 100)
    ]

    async def bulk(requests: list[CheckRequest]) -> object:
        if cache is not None:
            cache.entries.clear()
        return await system.check_bulk(requests, latest)

    lat = (await _time_each_async(bulks, bulk, budget, 2_000)).as_dict()
    work["check_bulk_100"] = lat | {"per_check_us": round(lat["p50_us"] / 100, 2)}

    async def lookup_resources(q: tuple[str, str, str, str, int]) -> list[str]:
        return [
            r.resource_id
            async for r, _ in system.lookup_resources(q[0], q[1], SubjectRef(q[2], q[3]), latest)
        ]

    async def lookup_subjects(q: tuple[str, str, str, str, int]) -> list[str]:
        forget_walks(system)  # each sample walks: the figure is a first page's, not a reuse
        return [
            s.subject.id
            async for s, _ in system.lookup_subjects(ObjectRef(q[0], q[1]), q[2], q[3], "", latest)
        ]

    answers: dict[str, Any] = {"lookup_resources": [], "lookup_subjects": []}
    for name, queries, fn in (
        ("lookup_resources", data.lookup_resources, lookup_resources),
        ("lookup_subjects", data.lookup_subjects, lookup_subjects),
    ):
        for n, q in enumerate(queries if lookups else ()):
            row: dict[str, Any] = {"query": list(q[:4]), "expected": q[4] if q[4] >= 0 else None}
            samples: list[int] = []
            found: list[str] | None = None
            start = time.perf_counter()
            # repeated while it fits in the budget; one call is bounded by lookup_timeout
            while not samples or (len(samples) < 30 and time.perf_counter() - start < budget / 2):
                t1 = time.perf_counter_ns()
                try:
                    ids = await asyncio.wait_for(fn(q), lookup_timeout)
                except TimeoutError:
                    row["timed_out_after_s"] = lookup_timeout
                    break
                samples.append(time.perf_counter_ns() - t1)
                found = found if found is not None else sorted(set(ids))
            answers[name].append(found)
            if samples:
                row |= summarize(samples, time.perf_counter() - start).as_dict()
                row["results"] = len(found or [])
                row["wrong"] = q[4] >= 0 and q[4] != len(found or [])
            work[f"{name}/{n}"] = row
    out["answers"] = answers
    return out


def _time_paired(
    items: list[Any], op: Callable[[Any], object], index: Any, budget: float
) -> tuple[Latency, Latency]:
    """`op` on each item (cycling) with the index's closures and without (the walk), the
    two interleaved op by op so both meet the same machine load: (with, without)."""
    closures = index.closure
    clock = time.perf_counter_ns
    kept: list[int] = []
    walked: list[int] = []
    start = time.perf_counter()
    deadline = start + 2 * budget
    i, n = 0, len(items)
    try:
        while i < 100_000 and (i < n or time.perf_counter() < deadline):
            item = items[i % n]
            # which goes first alternates: the second meets the item's data in the CPU caches
            for closure, samples in ((closures, kept), (None, walked))[:: 1 if i % 2 else -1]:
                index.closure = closure
                t0 = clock()
                op(item)
                samples.append(clock() - t0)
            i += 1
    finally:
        index.closure = closures
    seconds = (time.perf_counter() - start) / 2
    return summarize(kept, seconds), summarize(walked, seconds)


def _closure_figures(index: Any, graphs: set[tuple[str, str, str]]) -> dict[str, Any]:
    """What the closures of recursive sets cost: memory (bytes of their dicts and tuples per
    relationship of the index), a fresh build's time, and each graph's size."""
    closures = index.closure
    if closures is None:
        return {"enabled": False}
    t0 = time.perf_counter()
    Closures(index).prepare(graphs)
    build = time.perf_counter() - t0
    nbytes = closures.nbytes()
    return {
        "bytes": nbytes,
        "bytes_per_relationship": round(nbytes / max(index.count, 1), 2),
        "build_seconds": round(build, 3),
        "given_up": sorted(":".join(k) for k in closures.given_up),
        "graphs": {
            ":".join(key): {"nodes": len(g.up), "entries": g.size, "longest": g.longest}
            for key, g in closures.graphs.items()
        },
    }


def spicedb_python() -> tuple[str, str] | None:
    """(python, libspicedb.so) of the SpiceDB venv, via spice_env.sh; None when unavailable."""
    if not SPICE_ENV.exists():
        return None
    done = subprocess.run(
        ["bash", "-c", f'. "{SPICE_ENV}" >/dev/null && echo "$SPY" && echo "$SPICEDB_LIBRARY_PATH"'],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    lines = done.stdout.split()
    return (lines[0], lines[1]) if done.returncode == 0 and len(lines) == 2 else None


def measure_spicedb(data: ShapeData, ours: dict[str, Any], check_seconds: float) -> dict[str, Any]:
    # `ours`: Stonetown's lookup answers, {"lookup_resources": [ids...], "lookup_subjects": [...]}
    """SpiceDB embedded on the same data: timings and agreement with Stonetown's answers."""
    found = spicedb_python()
    if found is None:
        return {"skipped": "SpiceDB venv unavailable (../shared/tools/spicedb/spice_env.sh)"}
    python, library = found
    sample = {
        kind: [
            [f"{c[0]}:{c[1]}", c[2], f"{c[3]}:{c[4]}" + (f"#{c[5]}" if c[5] else "")]
            for c in items[:SPICE_SAMPLE]
        ]
        for kind, items in data.checks.items()
    }
    mix = data.mixed_checks(1_000)
    bulk = [
        [[f"{c[0]}:{c[1]}", c[2], f"{c[3]}:{c[4]}"] for c in mix[i : i + 100]]
        for i in range(0, len(mix), 100)
    ]
    spec = {
        "schema": data.schema,
        "relationships": [tuple_text(r) for r in data.relationships],
        "checks": sample,
        "check_seconds": check_seconds,
        "bulk": bulk,
        "lookup_resources": [[q[0], q[1], f"{q[2]}:{q[3]}"] for q in data.lookup_resources],
        "lookup_subjects": [[f"{q[0]}:{q[1]}", q[2], q[3]] for q in data.lookup_subjects],
    }
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps(spec))
        env = dict(os.environ, SPICEDB_LIBRARY_PATH=library)
        t0 = time.perf_counter()
        done = subprocess.run(
            [python, str(Path(__file__).with_name("spicedb_side.py")), str(src), str(dst)],
            capture_output=True, text=True, timeout=3600, env=env,
        )  # fmt: skip
        if done.returncode != 0:
            return {"error": done.stderr[-2000:]}
        theirs = json.loads(dst.read_text())
    theirs["wall_seconds"] = round(time.perf_counter() - t0, 1)
    disagree: dict[str, int] = {}
    compared = 0
    for kind, answers in theirs.pop("check_answers").items():
        expected = [c[6] for c in data.checks[kind][: len(answers)]]
        disagree[kind] = sum(1 for a, b in zip(answers, expected, strict=True) if a is not None and a != b)
        compared += len(answers)
    bulk_answers = theirs.pop("bulk_answers")
    disagree["check_bulk"] = sum(
        1 for a, c in zip(bulk_answers, mix, strict=False) if a is not None and a != c[6]
    )
    compared += len(bulk_answers)
    for name in ("lookup_resources", "lookup_subjects"):
        for n, (mine, row) in enumerate(zip(ours[name], theirs[name], strict=True)):
            ids = row.pop("ids")
            row["results"] = None if ids is None else len(ids)
            row["same_as_stonetown"] = None if mine is None or ids is None else sorted(ids) == mine
            disagree[f"{name}/{n}"] = 0 if row["same_as_stonetown"] in (True, None) else 1
    theirs["checks_compared"] = compared
    theirs["disagreements"] = disagree
    return theirs


def run(
    shape: str,
    size: int,
    seed: int,
    *,
    budget: float = 2.0,
    grpc: bool = True,
    spicedb_max: int = 200_000,
    duration: float = 3.0,
    reps: int = 3,
    lookup_timeout: float = 120.0,
    scaling: bool = True,
    progress: bool = True,
    lookups: bool = True,
    pin: bool = False,
) -> dict[str, Any]:
    """Measure everything for one shape and size; print a summary; write the JSON."""
    t0 = time.perf_counter()
    path, import_seconds = prepare(shape, size, seed, progress=progress)
    data = generate(shape, size, seed)
    generate_seconds = time.perf_counter() - t0
    result: dict[str, Any] = {
        "shape": shape,
        "size": size,
        "size_label": size_label(size),
        "seed": seed,
        "import_seconds": round(import_seconds, 3),
        "import_rel_per_s": round(len(data.relationships) / import_seconds, 1),
        "loadavg_start": list(os.getloadavg()),
    }
    result["inprocess"] = asyncio.run(measure_inprocess(data, path, budget, lookup_timeout, lookups))
    result["loadavg_inprocess"] = list(os.getloadavg())
    result["generate_seconds_incl_import_check"] = round(generate_seconds, 2)
    answers = result["inprocess"].pop("answers")
    name = f"realistic-{shape}-{result['size_label']}"
    write_result(name, result)  # kept if a later part fails
    if grpc:
        result["grpc"] = realistic_grpc.measure(data, path, duration, reps, scaling, pin)
        write_result(name, result)
    if spicedb_max and size <= spicedb_max:
        result["spicedb"] = measure_spicedb(data, answers, check_seconds=20 * budget)
        result["loadavg_spicedb"] = list(os.getloadavg())
    else:
        result["spicedb"] = {"skipped": f"size above --spicedb-max {spicedb_max}"}
    print_summary(result)
    write_result(name, result)
    return result


def print_summary(result: dict[str, Any]) -> None:
    """A table on stdout."""
    inproc = result["inprocess"]
    print(
        f"== realistic {result['shape']} {result['size_label']} ({inproc['relationships']} relationships): "
        f"import {result['import_rel_per_s']:,.0f} rel/s, load {inproc['load_seconds']} s "
        f"({inproc.get('load_cpu_seconds', '?')} s CPU), "
        f"{inproc['index_bytes_per_relationship']} B/rel, "
        f"wrong answers {sum(inproc['check_answers_wrong'].values())}"
    )
    closures = inproc.get("closures", {})
    if closures.get("graphs") is not None:
        print(
            f"closures: {closures['bytes_per_relationship']} B/rel "
            f"({closures.get('bytes_per_relationship_after_checks')} after the checks), "
            f"build {closures['build_seconds']} s, "
            f"graphs {closures['graphs']}, given up {closures['given_up']}"
        )
    spice = result.get("spicedb", {})
    print(
        f"{'workload':28} {'p50 us':>10} {'p90 us':>10} {'p99 us':>10} {'results':>8} {'SpiceDB p50 us':>15}"
    )
    for name, row in inproc["workloads"].items():
        theirs = ""
        if name.startswith("check_core/") and name[11:] in spice.get("check", {}):
            theirs = f"{spice['check'][name[11:]].get('p50_us', '')}"
        elif name.startswith("lookup_") and "/" in name:
            kind, n = name.split("/")
            rows = spice.get(kind) or []
            theirs = f"{rows[int(n)]['ms'] * 1000:.0f}" if int(n) < len(rows) else ""
            theirs += "" if not rows or rows[int(n)].get("same_as_stonetown") is not False else " DIFFERS"
        elif name == "check_bulk_100" and "check_bulk_per_check" in spice:
            theirs = f"{spice['check_bulk_per_check']['p50_us']}/check"
        if "p50_us" not in row:
            print(f"{name:28} timed out after {row.get('timed_out_after_s')} s {theirs:>15}")
            continue
        print(
            f"{name:28} {row['p50_us']:>10.1f} {row['p90_us']:>10.1f} {row['p99_us']:>10.1f} "
            f"{row.get('results', ''):>8} {theirs:>15}"
        )
    if "grpc" in result:
        g = result["grpc"]
        print(
            f"gRPC single check p50: stonetown {g['single_p50_us']['stonetown']:.0f} µs, floor "
            f"{g['single_p50_us']['floor']:.0f} µs, ratio {g['single_ratio_vs_floor']} "
            f"(paired {g['paired_ratios']})"
        )
        print(
            f"gRPC p99 at half max ({g['half_rate_per_s']:.0f}/s): "
            f"stonetown {g['tail_p99_us']['stonetown']:.0f} µs, "
            f"floor {g['tail_p99_us']['floor']:.0f} µs, ratio {g['tail_p99_ratio_vs_floor']} "
            f"(paired {g['tail_paired_p99_ratios']})"
        )
        if "scaling" in g:
            sc = g["scaling"]
            print(
                f"gRPC Check --workers 2 vs 1 ({sc['load_generator']}): stonetown {sc['stonetown_x2_vs_x1']} "
                f"(paired {sc['stonetown_paired_x2_vs_x1']}), floor {sc['floor_x2_vs_x1']} "
                f"(paired {sc['floor_paired_x2_vs_x1']}); smaller worker's CPU share "
                f"{sc['stonetown_x2_smaller_worker_cpu_share']}"
            )
    if "disagreements" in spice:
        print(
            f"SpiceDB: load {spice['load_seconds']} s, disagreements {spice['disagreements']}, "
            f"errors (not compared) {len(spice.get('errors', []))}"
        )
    elif spice:
        print(f"SpiceDB: {spice}")
