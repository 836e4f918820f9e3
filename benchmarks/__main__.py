"""`python -m benchmarks COMMAND`: see benchmarks/README.md."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from benchmarks.dataset import SEED, parse_size


def _sizes(text: str) -> list[int]:
    return [parse_size(part) for part in text.split(",") if part]


def build_parser() -> argparse.ArgumentParser:
    """The command line of the harness."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="Stonetown benchmarks")
    parser.add_argument("--seed", type=int, default=SEED, help="dataset seed (default %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)
    inproc = sub.add_parser("inprocess", help="the engine without gRPC, per dataset size")
    inproc.add_argument("--size", default="10k,100k,1M", help="comma-separated sizes (10k, 100k, 1M, 10M)")
    inproc.add_argument("--budget", type=float, default=2.0, help="seconds per workload (about)")
    grpc_cmd = sub.add_parser("grpc", help="over gRPC: floor and stonetown serve, same load generators")
    grpc_cmd.add_argument("--size", default="100k")
    grpc_cmd.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    grpc_cmd.add_argument("--workers", default="1,2", help="server process counts")
    grpc_cmd.add_argument("--reps", type=int, default=3, help="alternating runs per side (best kept)")
    grpc_cmd.add_argument(
        "--writes-only", action="store_true", help="only the write workloads, one server process, no floor"
    )
    cas = sub.add_parser("casbin", help="pycasbin RBAC-with-domains on the same data")
    cas.add_argument("--size", default="10k,100k")
    cas.add_argument("--budget", type=float, default=10.0)
    floor = sub.add_parser("floor", help="run the constant-answer floor server")
    floor.add_argument("--port", type=int, required=True)
    floor.add_argument("--workers", type=int, default=1)
    floor.add_argument("--interceptor", action="store_true", help="with stonetown's serving interceptor")
    gen = sub.add_parser("dataset", help="generate and import a dataset; print its shape")
    gen.add_argument("--size", default="10k")
    sub.add_parser("plot", help="PNG plots from benchmarks/results/*.json")
    sub.add_parser("targets", help="print the targets table (met / missed) from the results")
    sub.add_parser("tables", help="print markdown tables of the latest results")
    prof = sub.add_parser("profile", help="py-spy profile of a hot path, summarized per function")
    prof.add_argument("workload", choices=("check", "lookup_resources", "load", "import", "grpc_check"))
    prof.add_argument("--size", default="100k")
    prof.add_argument("--seconds", type=float, default=10.0)
    ptarget = sub.add_parser("profile-target", help=argparse.SUPPRESS)
    ptarget.add_argument("workload")
    ptarget.add_argument("--size", default="100k")
    ptarget.add_argument("--seconds", type=float, default=10.0)
    smoke = sub.add_parser("smoke", help="a seconds-long run of every part on a tiny dataset")
    smoke.add_argument("--size", default="1k")
    pg = sub.add_parser("postgres", help="PostgreSQL: bulk load, one vs two nodes, writes, catch-up lag")
    pg.add_argument("--size", default="10k")
    pg.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
    pg.add_argument("--reps", type=int, default=3, help="alternating Check runs per side (best kept)")
    pg.add_argument("--concurrency", type=int, default=64, help="total Check callers")
    pg.add_argument("--lag-samples", type=int, default=200, help="writes timed for catch-up lag")
    pg.add_argument("--no-fsync", action="store_true", help="keep the test cluster's fsync=off")
    real = sub.add_parser("realistic", help="issue #19's shapes: in process, gRPC vs floor, SpiceDB embedded")
    real.add_argument("--shape", default="docs", help="docs, github or hierarchy (comma-separated)")
    real.add_argument("--size", default="100k")
    real.add_argument("--budget", type=float, default=2.0, help="seconds per in-process workload (about)")
    real.add_argument("--duration", type=float, default=3.0, help="seconds per gRPC run")
    real.add_argument("--reps", type=int, default=3, help="alternating gRPC runs per side")
    real.add_argument("--no-grpc", action="store_true", help="in process (and SpiceDB) only")
    real.add_argument("--no-scaling", action="store_true", help="skip the --workers 2 vs 1 Check throughput")
    real.add_argument(
        "--pin", action="store_true", help="1-worker servers on the last core, the load generator on the rest"
    )
    real.add_argument("--lookup-timeout", type=float, default=120.0, help="seconds one lookup may take")
    real.add_argument("--no-lookups", action="store_true", help="skip the lookups (hours at 1M-10M)")
    real.add_argument("--spicedb-max", default="200k", help="largest size SpiceDB is loaded at (0: never)")
    rlook = sub.add_parser("realistic-lookups", help="the realistic shapes' lookups alone, best of N")
    rlook.add_argument("--shape", default="docs", help="docs, github or hierarchy (comma-separated)")
    rlook.add_argument("--size", default="100k")
    rlook.add_argument("--reps", type=int, default=5, help="calls per lookup (best kept)")
    rprof = sub.add_parser("realistic-profile", help="py-spy profile of a realistic shape's check kind")
    rprof.add_argument("--shape", default="docs")
    rprof.add_argument("--size", default="100k")
    rprof.add_argument("--kind", default="direct", help="check kinds (comma-separated), lookup_resources")
    rprof.add_argument("--seconds", type=float, default=10.0)
    rcalls = sub.add_parser("realistic-calls", help="Python calls and p50 (distinct / cached) per check kind")
    rcalls.add_argument("--shape", default="docs")
    rcalls.add_argument("--size", default="100k")
    rcalls.add_argument("--kind", default="", help="check kinds (comma-separated; default all)")
    rtarget = sub.add_parser("realistic-profile-target", help=argparse.SUPPRESS)
    rtarget.add_argument("shape")
    rtarget.add_argument("size", type=int)
    rtarget.add_argument("kind")
    rtarget.add_argument("--seconds", type=float, default=10.0)
    soak = sub.add_parser("soak", help="issue #18's hostile mix against a real server; health and RSS")
    soak.add_argument("--seconds", type=float, default=600.0, help="how long the mix runs (default 10 min)")
    soak.add_argument(
        "--only", action="append", metavar="ATTACK",
        help="run only this attack beside the honest client (repeatable); default: all of them",
    )  # fmt: skip
    soak.add_argument("--keep-log", metavar="PATH", help="copy the server's log (its pauses) to PATH")
    soak.add_argument(
        "--settle", type=float, default=40.0, help="idle seconds after the mix before RSS is measured again"
    )
    soak.add_argument(
        "--allocator", choices=("pymalloc", "malloc"), help="the server's --allocator (default: as started)"
    )
    play = sub.add_parser("playground", help="playground latency: keystroke to diagnostic, check to answer")
    play.add_argument("--rounds", type=int, default=200)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    if args.command == "inprocess":
        from benchmarks import inprocess

        for size in _sizes(args.size):
            inprocess.run(size, args.seed, budget=args.budget)
    elif args.command == "grpc":
        from benchmarks import grpc_bench

        workers = tuple(int(w) for w in args.workers.split(","))
        for size in _sizes(args.size):
            grpc_bench.run(
                size,
                args.seed,
                duration=args.duration,
                workers=workers,
                reps=args.reps,
                writes_only=args.writes_only,
            )
    elif args.command == "casbin":
        from benchmarks import casbin_bench

        for size in _sizes(args.size):
            casbin_bench.run(size, args.seed, budget=args.budget)
    elif args.command == "floor":
        from benchmarks.floor import main as floor_main

        return floor_main("127.0.0.1", args.port, args.workers, args.interceptor)
    elif args.command == "dataset":
        from benchmarks.common import ensure_store
        from benchmarks.dataset import generate

        for size in _sizes(args.size):
            data = generate(size, args.seed)
            path, seconds = ensure_store(data)
            kinds = {kind: len(items) for kind, items in data.checks.items()}
            print(
                f"{path}: {len(data.relationships)} relationships, {data.orgs} organizations, checks {kinds}"
            )
            if seconds is not None:
                print(f"imported in {seconds:.2f} s ({len(data.relationships) / seconds:,.0f} rel/s)")
    elif args.command == "plot":
        from benchmarks.plots import plot_all

        for path in plot_all():
            print(path)
    elif args.command == "targets":
        from benchmarks.targets import markdown

        print(markdown())
    elif args.command == "tables":
        from benchmarks.targets import tables

        print(tables())
    elif args.command == "profile":
        from benchmarks.profiling import profile

        for size in _sizes(args.size):
            profile(args.workload, size, args.seed, args.seconds)
    elif args.command == "profile-target":
        from benchmarks.profiling import target

        target(args.workload, parse_size(args.size), args.seed, args.seconds)
    elif args.command == "smoke":
        from benchmarks.smoke import smoke

        smoke(parse_size(args.size), args.seed)
    elif args.command == "postgres":
        from benchmarks.postgres import run_from_args

        run_from_args(args, parse_size, args.seed)
    elif args.command == "realistic":
        from benchmarks import realistic

        for shape in args.shape.split(","):
            for size in _sizes(args.size):
                realistic.run(
                    shape,
                    size,
                    args.seed,
                    budget=args.budget,
                    grpc=not args.no_grpc,
                    spicedb_max=parse_size(args.spicedb_max),
                    duration=args.duration,
                    reps=args.reps,
                    lookup_timeout=args.lookup_timeout,
                    scaling=not args.no_scaling,
                    lookups=not args.no_lookups,
                    pin=args.pin,
                )
    elif args.command == "realistic-lookups":
        from benchmarks.realistic_lookups import run as realistic_lookups

        for shape in args.shape.split(","):
            for size in _sizes(args.size):
                realistic_lookups(shape, size, args.seed, args.reps)
    elif args.command == "realistic-profile":
        from benchmarks.realistic_profile import profile as realistic_profile

        for kind in args.kind.split(","):
            realistic_profile(args.shape, parse_size(args.size), args.seed, kind, args.seconds)
    elif args.command == "realistic-calls":
        from benchmarks.realistic_calls import run as realistic_calls

        kinds = args.kind.split(",") if args.kind else None
        realistic_calls(args.shape, parse_size(args.size), args.seed, kinds)
    elif args.command == "realistic-profile-target":
        from benchmarks.realistic_profile import target as realistic_target

        realistic_target(args.shape, args.size, args.seed, args.kind, args.seconds)
    elif args.command == "soak":
        from benchmarks.hostile_soak import main as soak_main

        soak_main(args.seconds, args.only, args.keep_log, args.settle, args.allocator)
    elif args.command == "playground":
        from benchmarks.playground_bench import run as playground_run

        playground_run(args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
