"""What SpiceDB's API costs over Stonetown's own: `python -m benchmarks.spicedb_api
[--size 10k] [--duration 3] [--reps 3] [--concurrency 32] [--bulk-items 10]`.

One `stonetown serve` (one worker, the dataset's SQLite file) answers both APIs. The same
checks (the dataset's Check mix, minimize-latency consistency) are sent as
`stonetown.v1.PermissionService/Check` and as `authzed.api.v1.PermissionsService/
CheckPermission`, and in groups of `--bulk-items` as `CheckBulk` and `CheckBulkPermissions`,
by the Python load generator (pre-encoded requests, closed loop, a separate process). Runs
alternate between the two APIs (`--reps` each, the starting side swapped every rep) and each
side's median throughput is kept. Before timing, every request's answer through one API is
compared with the other's (they must agree). Prints the throughputs, the extra cost of the
authzed path per call (`stonetown / authzed - 1`) and writes benchmarks/results/spicedb_api.json.

On a shared, loaded machine the throughput runs are noisy; the same requests are therefore
also timed against the two servicers in this process (no transport, no load generator,
interleaved rounds, median per side): the adapter's own cost, which is what differs.

The paired gRPC mode (`--paired-blocks`, on by default; `--no-throughput` skips the load
generator runs) times the whole path through the real server: one client connection per API
(its own subchannel pool, so the two never share a TCP connection), calls sent one at a time
with pre-encoded requests, in short blocks that alternate between the APIs (the first side
swapped every block). Each pair of neighbouring blocks gives a ratio (authzed µs per call /
stonetown µs per call): load on the shared machine changes slowly next to a block, so it
mostly cancels within a pair, and the median of the paired ratios is the extra cost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from authzed.api.v1 import core_pb2 as az_core
from authzed.api.v1 import permission_service_pb2 as az

from benchmarks.common import ensure_store, results_dir, write_result
from benchmarks.dataset import SEED, Check, generate, parse_size
from benchmarks.grpc_bench import check_bulk_request, check_request, start_stonetown
from benchmarks.loadgen import Request, run_loadgen
from stonetown.api.authzed.permissions import AuthzedPermissionsServicer
from stonetown.api.limits import Limits
from stonetown.api.pb import permission
from stonetown.api.servicers.permissions import PermissionServicer
from stonetown.engine.system import PermissionSystem
from stonetown.stores.sqlite import SqliteDatastore

ST_CHECK = "/stonetown.v1.PermissionService/Check"
ST_BULK = "/stonetown.v1.PermissionService/CheckBulk"
AZ_CHECK = "/authzed.api.v1.PermissionsService/CheckPermission"
AZ_BULK = "/authzed.api.v1.PermissionsService/CheckBulkPermissions"
_LATEST = az.Consistency(minimize_latency=True)


def _subject(c: Check) -> az_core.SubjectReference:
    return az_core.SubjectReference(
        object=az_core.ObjectReference(object_type=c[3], object_id=c[4]), optional_relation=c[5]
    )


def authzed_check(c: Check) -> bytes:
    """A serialized CheckPermissionRequest (minimize_latency)."""
    return az.CheckPermissionRequest(
        consistency=_LATEST,
        resource=az_core.ObjectReference(object_type=c[0], object_id=c[1]),
        permission=c[2],
        subject=_subject(c),
    ).SerializeToString()


def authzed_bulk(checks: Sequence[Check]) -> bytes:
    """A serialized CheckBulkPermissionsRequest of `checks`."""
    return az.CheckBulkPermissionsRequest(
        consistency=_LATEST,
        items=[
            az.CheckBulkPermissionsRequestItem(
                resource=az_core.ObjectReference(object_type=c[0], object_id=c[1]),
                permission=c[2],
                subject=_subject(c),
            )
            for c in checks
        ],
    ).SerializeToString()


def workloads(checks: list[Check], bulk_items: int) -> dict[str, dict[str, list[Request]]]:
    """Per workload, per API, the same requests."""
    groups = [checks[i : i + bulk_items] for i in range(0, len(checks) - bulk_items + 1, bulk_items)]
    return {
        "check": {
            "stonetown": [(ST_CHECK, "unary", check_request(c)) for c in checks],
            "authzed": [(AZ_CHECK, "unary", authzed_check(c)) for c in checks],
        },
        "check_bulk": {
            "stonetown": [(ST_BULK, "unary", check_bulk_request(g)) for g in groups],
            "authzed": [(AZ_BULK, "unary", authzed_bulk(g)) for g in groups],
        },
    }


def verify(target: str, plan: dict[str, dict[str, list[Request]]]) -> int:
    """Send every request through both APIs once; the number compared (raises on a difference)."""
    compared = 0
    with grpc.insecure_channel(target) as channel:
        responses = {
            ST_CHECK: permission.CheckResponse,
            AZ_CHECK: az.CheckPermissionResponse,
            ST_BULK: permission.CheckBulkResponse,
            AZ_BULK: az.CheckBulkPermissionsResponse,
        }
        calls = {
            path: channel.unary_unary(path, response_deserializer=kind.FromString)
            for path, kind in responses.items()
        }
        for sides in plan.values():
            for (st_path, _, st_body), (az_path, _, az_body) in zip(
                sides["stonetown"], sides["authzed"], strict=True
            ):
                own, theirs = calls[st_path](st_body, timeout=30), calls[az_path](az_body, timeout=30)
                if st_path == ST_CHECK:
                    mine, other = [own.permissionship], [theirs.permissionship]
                else:
                    mine = [pair.item.permissionship for pair in own.pairs]
                    other = [pair.item.permissionship for pair in theirs.pairs]
                # Both enums number NO=1, HAS=2, CONDITIONAL=3.
                if mine != other:
                    raise AssertionError(f"{st_path} answered {mine}, {az_path} answered {other}")
                compared += len(mine)
    return compared


async def _servicer_times(
    db: Path, plan: dict[str, dict[str, list[Request]]], rounds: int
) -> dict[str, dict[str, float]]:
    """Per workload and API, the median over `rounds` interleaved rounds of the mean time (µs)
    of one call of the servicer method itself: request parsed from its bytes, answered,
    response serialized; no gRPC transport (identical for both APIs) and no load generator."""
    system = PermissionSystem(SqliteDatastore(str(db)), poll_interval=None, gc_interval=None)
    await system.start()
    try:
        own = PermissionServicer(system, Limits())
        theirs = AuthzedPermissionsServicer(system, Limits())
        handlers = {
            ST_CHECK: (own.Check, permission.CheckRequest),
            ST_BULK: (own.CheckBulk, permission.CheckBulkRequest),
            AZ_CHECK: (theirs.CheckPermission, az.CheckPermissionRequest),
            AZ_BULK: (theirs.CheckBulkPermissions, az.CheckBulkPermissionsRequest),
        }
        out: dict[str, dict[str, float]] = {}
        for name, sides in plan.items():
            samples: dict[str, list[float]] = {"stonetown": [], "authzed": []}
            for round_ in range(rounds):
                for side in ("stonetown", "authzed") if round_ % 2 == 0 else ("authzed", "stonetown"):
                    requests = sides[side]
                    started = time.perf_counter()
                    for path, _, body in requests:
                        method, kind = handlers[path]
                        (await method(kind.FromString(body), None)).SerializeToString()
                    samples[side].append((time.perf_counter() - started) / len(requests) * 1e6)
            out[name] = {side: round(statistics.median(values), 2) for side, values in samples.items()}
        return out
    finally:
        await system.stop()


def _quartiles(values: list[float]) -> list[float]:
    """The 25th, 50th and 75th percentiles."""
    low, mid, high = statistics.quantiles(values, n=4)
    return [round(low, 4), round(mid, 4), round(high, 4)]


def paired_grpc(
    target: str, plan: dict[str, dict[str, list[Request]]], blocks: int, block_calls: int
) -> dict[str, dict[str, Any]]:
    """Per workload: µs per call through each API (median of the blocks) and the paired
    ratios authzed / stonetown of neighbouring blocks (quartiles), one call at a time over
    one connection per API (see the module docstring)."""
    own_connection = [("grpc.use_local_subchannel_pool", 1)]
    channels = {side: grpc.insecure_channel(target, options=own_connection) for side in plan["check"]}
    try:
        out: dict[str, dict[str, Any]] = {}
        for name, sides in plan.items():
            calls = {
                side: [(channels[side].unary_unary(path), body) for path, _, body in requests]
                for side, requests in sides.items()
            }
            for pending in calls.values():  # warm each connection and the server's caches
                for call, body in pending[: 2 * block_calls]:
                    call(body, timeout=30)
            times: dict[str, list[float]] = {"stonetown": [], "authzed": []}
            ratios: list[float] = []
            position = 0
            for block in range(blocks):
                pair: dict[str, float] = {}
                for side in ("stonetown", "authzed") if block % 2 == 0 else ("authzed", "stonetown"):
                    pending = calls[side]
                    started = time.perf_counter()
                    for offset in range(block_calls):
                        call, body = pending[(position + offset) % len(pending)]
                        call(body, timeout=30)
                    pair[side] = (time.perf_counter() - started) / block_calls * 1e6
                    times[side].append(pair[side])
                position += block_calls  # both sides sent the same requests in this pair
                ratios.append(pair["authzed"] / pair["stonetown"])
            out[name] = {
                "us_per_call": {side: round(statistics.median(values), 1) for side, values in times.items()},
                "ratio_quartiles": _quartiles(ratios),
                "authzed_extra_cost_percent": round(100 * (statistics.median(ratios) - 1), 2),
                "blocks": blocks,
                "block_calls": block_calls,
            }
        return out
    finally:
        for channel in channels.values():
            channel.close()


def run(
    size: int,
    seed: int,
    *,
    duration: float,
    reps: int,
    concurrency: int,
    bulk_items: int,
    checks: int,
    blocks: int = 40,
    block_calls: int = 100,
    throughput: bool = True,
) -> dict[str, Any]:
    """Time both APIs on one server; the result document."""
    data = generate(size, seed)
    db, _ = ensure_store(data, progress=False)
    plan = workloads(data.mixed_checks(checks), bulk_items)
    server = start_stonetown(db, 1, results_dir() / "spicedb_api-server.log")
    result: dict[str, Any] = {"size": size, "seed": seed, "duration": duration, "reps": reps,
                              "concurrency": concurrency, "bulk_items": bulk_items}  # fmt: skip
    result["servicer_us_per_call"] = asyncio.run(_servicer_times(db, plan, rounds=max(4, 2 * reps)))
    for name, times in result["servicer_us_per_call"].items():
        result[name + "_servicer_extra_cost_percent"] = round(
            100 * (times["authzed"] / times["stonetown"] - 1), 2
        )
    try:
        result["answers_compared"] = verify(server.target, plan)
        if blocks:
            result["loadavg_before_paired"] = list(os.getloadavg())
            result["paired_grpc"] = paired_grpc(server.target, plan, blocks, block_calls)
            result["loadavg_after_paired"] = list(os.getloadavg())
        for name, sides in plan.items():
            if not throughput:
                break
            runs: dict[str, list[dict[str, Any]]] = {"stonetown": [], "authzed": []}
            for rep in range(reps):
                order = ("stonetown", "authzed") if rep % 2 == 0 else ("authzed", "stonetown")
                for side in order:
                    found = run_loadgen(
                        server.target, sides[side], concurrency=concurrency, duration=duration, channels=2
                    )
                    if found["errors"]:
                        raise RuntimeError(f"{name} through {side}: {found['errors']} errors")
                    runs[side].append(found)
            median = {side: statistics.median(r["throughput_per_s"] for r in runs[side]) for side in runs}
            result[name] = {
                "runs": runs,
                "median_throughput_per_s": median,
                "authzed_extra_cost_percent": round(100 * (median["stonetown"] / median["authzed"] - 1), 2),
            }
    finally:
        server.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    """Run and print; exit code 0."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spicedb_api", description=__doc__)
    parser.add_argument("--size", default="10k")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    parser.add_argument("--reps", type=int, default=3, help="runs per API and workload (alternating)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--bulk-items", type=int, default=10)
    parser.add_argument("--checks", type=int, default=2000, help="distinct checks sent (round robin)")
    parser.add_argument(
        "--paired-blocks", type=int, default=40, help="paired gRPC blocks per workload (0: none)"
    )
    parser.add_argument("--block-calls", type=int, default=100, help="calls per paired block")
    parser.add_argument("--no-throughput", action="store_true", help="skip the load generator runs")
    args = parser.parse_args(argv)
    result = run(
        parse_size(args.size), args.seed, duration=args.duration, reps=args.reps,
        concurrency=args.concurrency, bulk_items=args.bulk_items, checks=args.checks,
        blocks=args.paired_blocks, block_calls=args.block_calls, throughput=not args.no_throughput,
    )  # fmt: skip
    path = write_result("spicedb_api", result)
    print(f"answers compared between the APIs: {result['answers_compared']} (all equal)")
    if "paired_grpc" in result:
        load = f"{result['loadavg_before_paired']} -> {result['loadavg_after_paired']}"
        print(f"paired gRPC, load average {load}")
        print("| workload | stonetown.v1 µs/call | authzed.api.v1 µs/call | ratio p25/p50/p75 | extra |")
        print("| --- | --- | --- | --- | --- |")
        for name, paired in result["paired_grpc"].items():
            us, quartiles = paired["us_per_call"], "/".join(f"{q:.3f}" for q in paired["ratio_quartiles"])
            print(f"| {name} | {us['stonetown']:.0f} | {us['authzed']:.0f} | {quartiles} | "
                  f"{paired['authzed_extra_cost_percent']:+.1f} % |")  # fmt: skip
    print("| workload | stonetown.v1 calls/s | authzed.api.v1 calls/s | authzed extra cost |")
    print("| --- | --- | --- | --- |")
    for name in ("check", "check_bulk"):
        if name not in result:
            continue
        median = result[name]["median_throughput_per_s"]
        print(f"| {name} | {median['stonetown']:.0f} | {median['authzed']:.0f} | "
              f"{result[name]['authzed_extra_cost_percent']:+.1f} % |")  # fmt: skip
    print(
        "| workload | stonetown.v1 servicer µs/call | authzed.api.v1 servicer µs/call | authzed extra cost |"
    )
    print("| --- | --- | --- | --- |")
    for name, times in result["servicer_us_per_call"].items():
        print(f"| {name} | {times['stonetown']:.1f} | {times['authzed']:.1f} | "
              f"{result[name + '_servicer_extra_cost_percent']:+.1f} % |")  # fmt: skip
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
