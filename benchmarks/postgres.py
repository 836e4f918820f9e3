"""PostgreSQL and two nodes: `python -m benchmarks postgres --size 10k`.

One run measures, on the collaboration dataset of the given size:

- **bulk load** of the dataset into a throwaway PostgreSQL cluster (the real write path:
  `PermissionSystem.write_relationships`, batches of 1,000 touches);
- **Check throughput** of one node vs two nodes (separate `stonetown serve` processes on
  separate ports over the same database), driven by two :mod:`benchmarks.loadgen` processes
  with the same total concurrency in both cases (one node: both generators on node A; two
  nodes: one generator per node), alternating one node / two nodes `reps` times;
- **write latency** p50/p99 of single-relationship WriteRelationships (one caller), and the
  write throughput of 16 concurrent callers;
- **catch-up lag** from a write acknowledged by node A to node B: the first Check with
  minimize_latency on B that sees it (polled back to back), and the arrival of the change
  on a Watch stream opened on B (from A's acknowledgement, negative when the event comes
  first, and from the moment the write was sent);
- the **SQLite** single node on the same dataset and the same load, as the baseline (its
  Check runs alternate with the PostgreSQL ones).

The cluster comes from tests/postgres/pgcluster.py (imported by path), started with
durable settings (fsync on, like SQLite's synchronous=FULL) unless `fsync=False`. Results go
to benchmarks/results/postgres-SIZE.json and a table is printed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.common import percentile, remove_store, store_copy, write_result
from benchmarks.dataset import Dataset, generate, size_label
from benchmarks.grpc_bench import (
    CHECK,
    WRITE,
    Server,
    bump_revision,
    check_request,
    free_port,
    start_stonetown,
    write_request,
)
from benchmarks.inprocess import prepare
from benchmarks.loadgen import Request, run_loadgen
from stonetown.client import Client, ReadConsistency
from stonetown.core.relationship import Relationship
from stonetown.engine.datastore import Update, UpdateOp
from stonetown.engine.system import PermissionSystem
from stonetown.stores.postgres import PostgresDatastore

ROOT = Path(__file__).resolve().parent.parent
PGCLUSTER_FILE = ROOT / "tests" / "postgres" / "pgcluster.py"
BATCH = 1000


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ cluster


def load_pgcluster() -> ModuleType:
    """tests/postgres/pgcluster.py, imported from its path (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location("stonetown_bench_pgcluster", PGCLUSTER_FILE)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {PGCLUSTER_FILE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start_cluster(*, fsync: bool) -> Any:
    """A throwaway cluster (pgcluster.PgCluster); with `fsync`, restarted with PostgreSQL's
    durable defaults (fsync, full_page_writes) instead of the test cluster's fast settings."""
    pgcluster = load_pgcluster()
    bin_dir = pgcluster.find_bin_dir()
    if bin_dir is None:
        raise SystemExit(f"benchmarks postgres: {pgcluster.MISSING}")
    cluster = pgcluster.PgCluster(bin_dir)
    if fsync:
        # The test cluster passes fsync=off on the command line, which beats ALTER SYSTEM:
        # restart it with the same options minus those two.
        cluster._run("pg_ctl", "-D", str(cluster.data), "-m", "fast", "-w", "stop")
        options = (
            f"-p {cluster.port} -k {cluster.root} -c listen_addresses=127.0.0.1 "
            "-c max_connections=200 -c shared_buffers=64MB"
        )
        cluster._run(
            "pg_ctl", "-D", str(cluster.data), "-o", options, "-l", str(cluster.root / "log"), "-w", "start"
        )
    return cluster


def pg_settings(cluster: Any) -> dict[str, str]:
    """The durability settings in force."""
    names = ("fsync", "synchronous_commit", "full_page_writes", "server_version")
    return {name: cluster.psql(f"SHOW {name}").strip() for name in names}


async def _bulk_load(data: Dataset, uri: str) -> float:
    system = PermissionSystem(PostgresDatastore(uri), poll_interval=None, gc_interval=None)
    await system.start()
    try:
        await system.write_schema(data.schema_text())
        rels = data.relationships
        start = time.perf_counter()
        for first in range(0, len(rels), BATCH):
            await system.write_relationships(
                [Update(UpdateOp.TOUCH, rel) for rel in rels[first : first + BATCH]]
            )
        return time.perf_counter() - start
    finally:
        await system.stop()


def bulk_load(data: Dataset, uri: str) -> float:
    """Write the schema and every relationship of `data` into the database at `uri` through
    the real write path, in batches of 1,000; seconds spent on relationships."""
    return asyncio.run(_bulk_load(data, uri))


def start_pg_node(uri: str, log: Path) -> Server:
    """`stonetown serve` over the PostgreSQL database at `uri`, on a free loopback port."""
    port = free_port()
    command = [
        sys.executable, "-m", "stonetown.cli.main", "serve", "--datastore", "postgres",
        "--datastore-uri", uri, "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    return Server(command, port, 1, log)


# ----------------------------------------------------------------------------- workloads


def _parallel_loadgen(
    targets: list[str], requests: list[Request], concurrency: int, duration: float
) -> dict[str, Any]:
    """One load generator process per entry of `targets` (a target may repeat), each with
    concurrency/len(targets) callers, all at once; their summed throughput and each result."""
    share = max(1, concurrency // len(targets))
    slices = [requests[i :: len(targets)] or requests for i in range(len(targets))]
    with ThreadPoolExecutor(len(targets)) as pool:
        futures = [
            pool.submit(run_loadgen, target, part, concurrency=share, duration=duration, channels=2)
            for target, part in zip(targets, slices, strict=True)
        ]
        results = [future.result() for future in futures]
    return {
        "targets": targets,
        "concurrency_total": share * len(targets),
        "throughput_per_s": round(sum(r["throughput_per_s"] for r in results), 1),
        "errors": sum(r["errors"] for r in results),
        "p50_us": max(r["p50_us"] for r in results),
        "p99_us": max(r["p99_us"] for r in results),
        "client_cpu_percent": round(sum(r["client_cpu_percent"] for r in results), 1),
        "generators": results,
    }


def _wait_revision(reader: str, probe: tuple[str, str, str]) -> None:
    """Until a minimize-latency check of `probe` on `reader` is allowed (at most 10 s)."""
    deadline = time.monotonic() + 10
    with Client(reader, timeout=30) as client:
        while not client.check(*probe, consistency=ReadConsistency.minimize_latency()).allowed:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{reader} never saw {probe}")
            time.sleep(0.005)


def measure_lag(writer: str, reader: str, samples: int) -> dict[str, Any]:
    """Catch-up lag from `writer` to `reader`, per write acknowledged by `writer`: until a
    Check with minimize_latency on `reader` sees it (polled back to back), and until the
    change arrives on a Watch stream opened on `reader` before the writes."""
    arrivals: dict[str, float] = {}
    seen = threading.Condition()
    stop = f"bench_lag_stop_{os.getpid()}"
    with Client(writer, timeout=30) as a, Client(reader, timeout=30) as b, Client(reader) as watcher:
        start = a.write(touch=[Relationship("app", f"{stop}_start", "runner", "user", stop)])
        _wait_revision(reader, (f"app:{stop}_start", "run", f"user:{stop}"))

        def watch() -> None:
            """Record when each change reaches the stream."""
            try:
                for event in watcher.watch(["app"], after=start):
                    now = time.perf_counter()
                    for change in event.changes:
                        with seen:
                            arrivals.setdefault(change.relationship.resource_id, now)
                            seen.notify_all()
                    if stop in arrivals:
                        return
            except Exception:  # noqa: BLE001 - the stream ends when its channel closes
                return

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        time.sleep(0.2)  # the stream is open before the first timed write
        latency = ReadConsistency.minimize_latency()
        poll_ms: list[float] = []
        watch_ms: list[float] = []
        watch_from_send_ms: list[float] = []
        write_ms: list[float] = []
        first_poll = 0
        tag = f"bench_lag_{os.getpid()}_{int(time.time())}"
        for n in range(samples):
            app = f"{tag}_{n}"
            sent = time.perf_counter()
            a.write(touch=[Relationship("app", app, "runner", "user", tag)])
            acked = time.perf_counter()
            polls = 1
            while not b.check(f"app:{app}", "run", f"user:{tag}", consistency=latency).allowed:
                polls += 1
                if time.perf_counter() - acked > 10:
                    raise RuntimeError(f"{reader} did not see app:{app} within 10 s")
            poll_ms.append((time.perf_counter() - acked) * 1000)
            write_ms.append((acked - sent) * 1000)
            first_poll += polls == 1
            with seen:
                seen.wait_for(lambda app=app: app in arrivals, timeout=10)
            if app in arrivals:
                watch_ms.append((arrivals[app] - acked) * 1000)
                watch_from_send_ms.append((arrivals[app] - sent) * 1000)
        a.write(touch=[Relationship("app", stop, "runner", "user", stop)])
        thread.join(10)
    return {
        "samples": samples,
        "poll_check_ms": _ms(poll_ms),
        "visible_at_first_poll": first_poll,
        "watch_ms": _ms(watch_ms),
        "watch_from_send_ms": _ms(watch_from_send_ms),
        "write_ms": _ms(write_ms),
    }


def _ms(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "p50": round(percentile(ordered, 0.5), 2),
        "p90": round(percentile(ordered, 0.9), 2),
        "p99": round(percentile(ordered, 0.99), 2),
        "max": round(ordered[-1], 2) if ordered else float("nan"),
    }


# ---------------------------------------------------------------------------------- run


def run(
    size: int,
    seed: int,
    *,
    duration: float = 5.0,
    reps: int = 3,
    concurrency: int = 64,
    lag_samples: int = 200,
    fsync: bool = True,
) -> dict[str, Any]:
    """The whole PostgreSQL / two-node benchmark on one dataset size (see the module doc);
    writes benchmarks/results/postgres-SIZE.json, prints a table, returns the result."""
    started = time.perf_counter()
    label = size_label(size)
    data = generate(size, seed)
    reads = [(CHECK, "unary", check_request(c)) for c in data.distinct_checks()]
    fresh = data.fresh_writes
    writes = {
        "sqlite": [(WRITE, "unary", write_request([rel])) for rel in fresh[:10_000]],
        "postgres": [(WRITE, "unary", write_request([rel])) for rel in fresh[10_000:20_000]],
    }
    _say(f"[{label}] SQLite store of the dataset")
    original, _ = prepare(size, seed, progress=False)
    sqlite_path = store_copy(original, "pgbench")
    logs = Path(tempfile.mkdtemp(prefix="stonetown-pgbench-"))
    _say(f"[{label}] starting a throwaway PostgreSQL cluster (fsync {'on' if fsync else 'off'})")
    cluster = start_cluster(fsync=fsync)
    servers: dict[str, Server] = {}
    result: dict[str, Any] = {
        "size": size,
        "size_label": label,
        "relationships": len(data.relationships),
        "duration_s": duration,
        "reps": reps,
        "concurrency": concurrency,
        "loadavg_start": list(os.getloadavg()),
    }
    try:
        result["postgres_settings"] = pg_settings(cluster)
        uri = cluster.new_database()
        _say(f"[{label}] bulk load of {len(data.relationships):,} relationships into PostgreSQL")
        seconds = bulk_load(data, uri)
        result["bulk_load"] = {
            "seconds": round(seconds, 3),
            "relationships_per_s": round(len(data.relationships) / seconds, 1),
            "batch": BATCH,
        }
        _say(f"[{label}] starting the SQLite node and PostgreSQL nodes A and B")
        servers["sqlite"] = start_stonetown(sqlite_path, 1, logs / "sqlite.log")
        servers["pg_a"] = start_pg_node(uri, logs / "pg-a.log")
        servers["pg_b"] = start_pg_node(uri, logs / "pg-b.log")
        result["ready_seconds"] = {name: round(s.ready_seconds, 2) for name, s in servers.items()}
        a, b, lite = servers["pg_a"].target, servers["pg_b"].target, servers["sqlite"].target
        sides = {"sqlite_1_node": [lite, lite], "postgres_1_node": [a, a], "postgres_2_nodes": [a, b]}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
        for rep in range(reps):
            for name, targets in sides.items():
                _say(f"[{label}] Check mix, {name} ({rep + 1}/{reps})")
                bump_revision(targets[0])
                if name.startswith("postgres"):
                    _wait_revision(b, ("app:bench_bump", "run", "user:bench_bump"))
                runs[name].append(_parallel_loadgen(targets, reads, concurrency, duration))
        checks: dict[str, Any] = {}
        for name, items in runs.items():
            best = dict(max(items, key=lambda r: r["throughput_per_s"]))
            best["runs_throughput_per_s"] = [r["throughput_per_s"] for r in items]
            checks[name] = best
        result["check"] = checks
        result["check_ratios"] = {
            "postgres_2_nodes_vs_1_node": _ratio(checks, "postgres_2_nodes", "postgres_1_node"),
            "postgres_1_node_vs_sqlite": _ratio(checks, "postgres_1_node", "sqlite_1_node"),
            "paired_2_vs_1": [
                round(two["throughput_per_s"] / one["throughput_per_s"], 3)
                for one, two in zip(runs["postgres_1_node"], runs["postgres_2_nodes"], strict=True)
            ],
        }
        write_rows: dict[str, Any] = {}
        for name, target in (("sqlite", lite), ("postgres", a)):
            _say(f"[{label}] WriteRelationships single, 1 caller, {name}")
            one = run_loadgen(target, writes[name][:5000], concurrency=1, duration=duration, channels=1)
            _say(f"[{label}] WriteRelationships single, 16 callers, {name}")
            many = run_loadgen(target, writes[name][5000:], concurrency=16, duration=duration)
            write_rows[name] = {"single_1_caller": one, "single_16_callers": many}
        result["write"] = write_rows
        _say(f"[{label}] catch-up lag A -> B, {lag_samples} writes")
        result["lag_a_to_b"] = measure_lag(a, b, lag_samples)
        result["rss_bytes"] = {name: s.rss() for name, s in servers.items()}
    finally:
        for server in servers.values():
            server.stop()
        cluster.stop()
        shutil.rmtree(logs, ignore_errors=True)
        remove_store(sqlite_path)
    result["loadavg_end"] = list(os.getloadavg())
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    print_summary(result)
    write_result(f"postgres-{label}", result)
    return result


def _ratio(checks: dict[str, Any], top: str, bottom: str) -> float:
    return round(checks[top]["throughput_per_s"] / checks[bottom]["throughput_per_s"], 3)


def print_summary(result: dict[str, Any]) -> None:
    """The result as a table on stdout."""
    bulk = result["bulk_load"]
    print(
        f"== PostgreSQL and two nodes, {result['size_label']} ({result['relationships']:,} relationships); "
        f"{result['duration_s']} s per run, best of {result['reps']}; settings {result['postgres_settings']}"
    )
    print(f"bulk load into PostgreSQL: {bulk['seconds']} s, {bulk['relationships_per_s']:,.0f} rel/s")
    print(f"{'Check mix (' + str(result['concurrency']) + ' callers, 2 generators)':44} "
          f"{'req/s':>9} {'p50 us':>9} {'p99 us':>9} {'runs req/s'}")  # fmt: skip
    for name, row in result["check"].items():
        print(
            f"{name:44} {row['throughput_per_s']:>9,.0f} {row['p50_us']:>9,.0f} {row['p99_us']:>9,.0f} "
            f"{row['runs_throughput_per_s']}"
        )
    ratios = result["check_ratios"]
    print(
        f"two nodes vs one: {ratios['postgres_2_nodes_vs_1_node']} (paired {ratios['paired_2_vs_1']}); "
        f"PostgreSQL one node vs SQLite: {ratios['postgres_1_node_vs_sqlite']}"
    )
    print(f"{'WriteRelationships (1 relationship)':44} {'req/s':>9} {'p50 us':>9} {'p99 us':>9}")
    for store, rows in result["write"].items():
        for mode, row in rows.items():
            print(
                f"{store + ' ' + mode:44} {row['throughput_per_s']:>9,.0f} {row['p50_us']:>9,.0f} "
                f"{row['p99_us']:>9,.0f}"
            )
    lag = result["lag_a_to_b"]
    print(f"visible on B at the first poll after A's ack: {lag['visible_at_first_poll']}/{lag['samples']}")
    for key in ("poll_check_ms", "watch_ms", "watch_from_send_ms", "write_ms"):
        row = lag[key]
        print(
            f"catch-up lag A->B {key:18} p50 {row['p50']} ms, p90 {row['p90']} ms, p99 {row['p99']} ms, "
            f"max {row['max']} ms ({row['count']} samples)"
        )
    print(f"load average start {result['loadavg_start']}, end {result['loadavg_end']}; "
          f"wall {result['wall_seconds']} s")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.postgres` (also `python -m benchmarks postgres`)."""
    import argparse

    from benchmarks.dataset import SEED, parse_size

    parser = argparse.ArgumentParser(prog="python -m benchmarks.postgres")
    add_arguments(parser)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    run_from_args(args, parse_size, args.seed)
    return 0


def add_arguments(parser: Any) -> None:
    """The options of the `postgres` command."""
    parser.add_argument("--size", default="10k", help="comma-separated sizes (default %(default)s)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
    parser.add_argument("--reps", type=int, default=3, help="alternating Check runs per side (best kept)")
    parser.add_argument("--concurrency", type=int, default=64, help="total Check callers")
    parser.add_argument("--lag-samples", type=int, default=200, help="writes timed for catch-up lag")
    parser.add_argument(
        "--no-fsync", action="store_true", help="keep the test cluster's fsync=off (not durable)"
    )


def run_from_args(args: Any, parse_size: Any, seed: int) -> None:
    """Run every size named by parsed `args` (from :func:`add_arguments`)."""
    for part in str(args.size).split(","):
        if part:
            run(
                parse_size(part),
                seed,
                duration=args.duration,
                reps=args.reps,
                concurrency=args.concurrency,
                lag_samples=args.lag_samples,
                fsync=not args.no_fsync,
            )


if __name__ == "__main__":
    sys.exit(main())
