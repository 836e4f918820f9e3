"""The gRPC part of `python -m benchmarks realistic` (issue #19's serving-path goals).

Every figure is a ratio measured in one run, sides alternating, because the machine is shared:

- **single**: one caller, one channel, every distinct labelled check in turn (a write before
  each run, so the whole-check cache starts empty), against `stonetown serve` and the empty
  grpc.aio floor (:mod:`benchmarks.floor`), alternating ``reps`` times; the median p50 of
  each side and their ratio (goal: Stonetown <= 1.3x the floor);
- **max**: Check throughput, closed loop (64 Python callers over 4 channels, the same mix),
  Stonetown and the floor alternating; the median of Stonetown's runs is "the maximum
  rate" (the best one overstates what the shared machine gives at other moments);
- **tail**: open loop (:mod:`benchmarks.loadgen` with ``rate``: requests started on a fixed
  schedule, latency counted from the scheduled start) at half of that maximum, Stonetown
  and the floor alternating ``reps`` times; the median p99 of each side and their ratio
  (goal: <= 3x), paired ratios listed;
- **scaling**: Check throughput of ``--workers 2`` vs ``--workers 1`` (goal: >= 1.6x), for
  Stonetown and, as the machine's own ceiling, the floor. With h2load installed the load
  comes from it (C: its client costs a fraction of the server's work per request, so the
  servers, not the client, are what is measured; one request body per run, so after the
  first answer Stonetown answers from its whole-check cache); otherwise from the Python
  generator (over 16 connections).

With ``pin`` (``--pin``) the one-worker servers run on the machine's last core and the Python
load generator on the others, so that neither queues behind the other: on a 2-core machine an
open-loop p99 otherwise follows the generator's own scheduling as much as the server's. The
scaling runs are never pinned (two workers and a generator need more cores than two).

Every run records each worker's CPU seconds (``worker_cpu_s``: how evenly SO_REUSEPORT spread
the connections over two workers) and the server's CPU per answered request, a figure that
holds when the machine is shared, where latencies and throughputs follow whatever else runs.
"""

from __future__ import annotations

import os
import statistics
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.common import remove_store, results_dir, store_copy
from benchmarks.grpc_bench import (
    CHECK,
    Server,
    check_request,
    h2load,
    have_h2load,
    start_floor,
    start_stonetown,
)
from benchmarks.loadgen import Request, run_loadgen
from benchmarks.realistic_data import ShapeData

# h2load for the scaling runs: 32 connections of 2 streams. SO_REUSEPORT hashes each
# connection to one worker; with many connections the split is close to even.
SCALING_CONNECTIONS = 32
SCALING_STREAMS = 2
# the check kind h2load repeats (the slowest allowed kind of the docs shape)
SCALING_KINDS = ("folder_ancestor", "nested_team", "direct")


def _bump(target: str, data: ShapeData) -> None:
    """A new revision: the whole-check cache starts empty."""
    from stonetown.client import Client

    with Client(target, timeout=30) as client:
        client.write(touch=[data.relationships[0]])


def _compare(rows: dict[str, list[dict[str, Any]]], stat: str) -> dict[str, Any]:
    """Stonetown against the floor on `stat` of alternating runs: each side's median, the
    ratio of the medians, the ratio of each adjacent pair, and each side's median server CPU
    per request."""
    median = {side: float(statistics.median(r[stat] for r in side_rows)) for side, side_rows in rows.items()}
    cpu = {
        side: statistics.median(r["server_cpu_us_per_request"] or float("nan") for r in side_rows)
        for side, side_rows in rows.items()
    }
    return {
        stat: median,
        "ratio": round(median["stonetown"] / median["floor"], 3),
        "paired_ratios": [
            round(s[stat] / f[stat], 3) for s, f in zip(rows["stonetown"], rows["floor"], strict=True)
        ],
        "server_cpu_us_per_request": {side: round(value, 1) for side, value in cpu.items()},
    }


def split_cpus() -> tuple[frozenset[int], frozenset[int]]:
    """(the servers' core, the load generator's cores) for ``--pin``: the last core this
    process may use for the servers, the rest for the generator."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        raise ValueError("--pin needs at least 2 cores")
    return frozenset(allowed[-1:]), frozenset(allowed[:-1])


def measure(
    data: ShapeData, original: Path, duration: float, reps: int, scaling: bool = True, pin: bool = False
) -> dict[str, Any]:
    """The serving-path figures of one dataset (see the module docstring)."""
    checks = sorted({c for items in data.checks.values() for c in items})
    requests: list[Request] = [(CHECK, "unary", check_request(c)) for c in checks]
    logs = results_dir()
    out: dict[str, Any] = {"distinct_checks": len(requests), "loadavg_start": list(os.getloadavg())}
    server_cpus, load_cpus = split_cpus() if pin else (None, None)
    if pin:
        out["pinned"] = {"servers": sorted(server_cpus or ()), "load_generator": sorted(load_cpus or ())}
    stores = {n: store_copy(original, f"grpc{n}") for n in (1, 2)}
    servers: dict[str, Server] = {}
    try:
        servers["floor"] = start_floor(1, logs / "realistic-floor.log", cpus=server_cpus)
        servers["stonetown"] = start_stonetown(stores[1], 1, logs / "realistic-stonetown.log", server_cpus)

        def alternate(label: str, concurrency: int, channels: int, rate: float = 0.0) -> None:
            rows: dict[str, list[dict[str, Any]]] = {"floor": [], "stonetown": []}
            for _ in range(reps):
                for side, server in servers.items():
                    if side == "stonetown":
                        _bump(server.target, data)
                    job = partial(
                        run_loadgen, server.target, requests,
                        concurrency=concurrency, duration=duration, channels=channels, rate=rate,
                        cpus=load_cpus,
                    )  # fmt: skip
                    rows[side].append(server.measured(job))
            out[label] = rows

        alternate("single", 1, 1)
        single = _compare(out["single"], "p50_us")
        out["single_p50_us"] = single["p50_us"]
        out["single_ratio_vs_floor"] = single["ratio"]
        out["paired_ratios"] = single["paired_ratios"]
        out["single_server_cpu_us_per_request"] = single["server_cpu_us_per_request"]

        alternate("max", 64, 4)
        rates = {side: sorted(r["throughput_per_s"] for r in rows) for side, rows in out["max"].items()}
        out["max_rate_per_s"] = {side: statistics.median(values) for side, values in rates.items()}
        out["max_server_cpu_us_per_request"] = _compare(out["max"], "throughput_per_s")[
            "server_cpu_us_per_request"
        ]
        half = out["half_rate_per_s"] = round(out["max_rate_per_s"]["stonetown"] / 2, 1)
        alternate("tail", 64, 4, rate=half)
        tail = _compare(out["tail"], "p99_us")
        out["tail_p99_us"] = tail["p99_us"]
        out["tail_p99_ratio_vs_floor"] = tail["ratio"]
        out["tail_paired_p99_ratios"] = tail["paired_ratios"]
        out["tail_server_cpu_us_per_request"] = tail["server_cpu_us_per_request"]
        if scaling:
            out["scaling"] = _scaling(data, stores[2], requests, servers, duration, reps, logs)
            out["workers_2_vs_1"] = out["scaling"]["stonetown_x2_vs_x1"]
    finally:
        for server in servers.values():
            server.stop()
        for path in stores.values():
            remove_store(path)
    out["loadavg_end"] = list(os.getloadavg())
    return out


def _scaling(
    data: ShapeData,
    store_x2: Path,
    requests: list[Request],
    servers: dict[str, Server],
    duration: float,
    reps: int,
    logs: Path,
) -> dict[str, Any]:
    """Check throughput of two workers vs one, Stonetown's and the floor's, alternating."""
    use_h2 = have_h2load()
    kind = next(k for k in (*SCALING_KINDS, *data.checks) if data.checks.get(k))
    body = check_request(data.checks[kind][0])

    def load(server: Server) -> dict[str, Any]:
        if use_h2:
            return h2load(
                server.target,
                CHECK,
                body,
                duration=duration,
                clients=SCALING_CONNECTIONS,
                streams=SCALING_STREAMS,
            )
        # 16 connections of their own, so that SO_REUSEPORT spreads them over both workers
        return run_loadgen(server.target, requests, concurrency=64, duration=duration, channels=16)

    out: dict[str, Any] = {
        "load_generator": "h2load" if use_h2 else "python",
        "check_kind": kind if use_h2 else "mix",
    }
    two: dict[str, Server] = {}
    try:
        two["stonetown_x2"] = start_stonetown(store_x2, 2, logs / "realistic-stonetown-x2.log")
        two["floor_x2"] = start_floor(2, logs / "realistic-floor-x2.log")
        sides = {"stonetown_x1": servers["stonetown"], "floor_x1": servers["floor"], **two}
        rows: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
        for _ in range(reps):
            for side, server in sides.items():
                if side.startswith("stonetown"):
                    _bump(server.target, data)
                rows[side].append(server.measured(partial(load, server)))
    finally:
        for server in two.values():
            server.stop()
    out["runs"] = rows
    best = {side: max(r["throughput_per_s"] for r in side_rows) for side, side_rows in rows.items()}
    out["best_per_s"] = best
    for name in ("stonetown", "floor"):
        out[f"{name}_x2_vs_x1"] = round(best[f"{name}_x2"] / best[f"{name}_x1"], 3)
        out[f"{name}_paired_x2_vs_x1"] = [
            round(b["throughput_per_s"] / a["throughput_per_s"], 3)
            for a, b in zip(rows[f"{name}_x1"], rows[f"{name}_x2"], strict=True)
        ]
    # how evenly the two workers shared the work: the smaller worker's share of the CPU
    shares = [min(r["worker_cpu_s"]) / max(sum(r["worker_cpu_s"]), 1e-9) for r in rows["stonetown_x2"]]
    out["stonetown_x2_smaller_worker_cpu_share"] = [round(s, 3) for s in shares]
    out["server_cpu_us_per_request"] = {
        side: statistics.median(r["server_cpu_us_per_request"] or float("nan") for r in side_rows)
        for side, side_rows in rows.items()
    }
    return out
