"""A seconds-long run of every part of the harness on a tiny dataset (no timing judged).

Used by tests/benchmarks: it proves the harness still runs against the current engine,
schema and API, not that anything is fast.
"""

from __future__ import annotations

from typing import Any

from benchmarks import casbin_bench, inprocess
from benchmarks.common import write_result
from benchmarks.grpc_bench import CHECK, check_request, start_floor, start_stonetown
from benchmarks.loadgen import run_loadgen
from benchmarks.plots import plot_all
from benchmarks.targets import markdown


def smoke(size: int, seed: int) -> dict[str, Any]:
    """In-process workloads, pycasbin, the floor and `stonetown serve` under the Python load
    generator for half a second each, plots and the targets table; the combined result."""
    from benchmarks.common import results_dir
    from benchmarks.dataset import generate

    result: dict[str, Any] = {"inprocess": inprocess.run(size, seed, budget=0.02, progress=False)}
    result["casbin"] = casbin_bench.run(size, seed, budget=0.2, max_checks=50)
    data = generate(size, seed)
    requests = [
        ("/stonetown.v1.PermissionService/Check", "unary", check_request(c)) for c in data.mixed_checks(50)
    ]
    assert requests[0][0] == CHECK
    logs = results_dir()
    floor = start_floor(1, logs / "smoke-floor.log")
    try:
        result["floor"] = run_loadgen(floor.target, requests, concurrency=4, duration=0.5, channels=1)
    finally:
        floor.stop()
    server = start_stonetown(inprocess.db_path(size, seed), 1, logs / "smoke-stonetown.log")
    try:
        result["stonetown"] = run_loadgen(server.target, requests, concurrency=4, duration=0.5, channels=1)
    finally:
        server.stop()
    write_result("smoke", result)
    result["plots"] = [str(p) for p in plot_all()]
    result["targets"] = markdown()
    print(result["targets"])
    return result
