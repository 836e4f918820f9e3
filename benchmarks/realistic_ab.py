"""In-process Check per kind of a realistic shape, two source trees alternating (issue #19).

    python -m benchmarks.realistic_ab --old /tmp/base --new . --shape docs --size 1M --rounds 6

Each tree runs in its own child process (``PYTHONPATH=TREE/src``) that loads the shape's
store once (it must exist: ``python -m benchmarks realistic`` builds it); the driver then asks
the children in turn for one round each: every labelled check of every kind, repeated until
about ``--seconds`` per kind, each timed (``check_core`` as :mod:`benchmarks.realistic`
times it) and its answer verified. A round's figures are per kind p50 / p99 (wall, µs) and the
mean CPU time (thread time) per check; the summary is each tree's median over its rounds, so
both trees meet the same machine load. Both children hash strings alike (``PYTHONHASHSEED=0``):
the index's dicts then have the same layouts on both sides. Nothing is written to the results
directory.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.dataset import SEED, parse_size

BENCH_ROOT = Path(__file__).resolve().parent.parent


def child(shape: str, size: int, seed: int, seconds: float) -> None:
    """A tree's side: load the store, then one round per line read on stdin."""
    from benchmarks.realistic import check_core, started_system
    from benchmarks.realistic_data import generate

    data = generate(shape, size, seed)
    system = asyncio.run(started_system(shape, size, seed))
    assert system.state is not None
    compiled, index = system.state.compiled, system.index
    gc.collect()
    gc.freeze()
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    print(json.dumps({"ready": True}), flush=True)
    for _line in sys.stdin:
        out: dict[str, Any] = {}
        for kind, items in data.checks.items():
            if not items:
                continue
            samples: list[int] = []
            wrong = 0
            start, cpu0 = time.perf_counter(), cpu()
            i, n = 0, len(items)
            while i < n or (time.perf_counter() - start < seconds and i < 200_000):
                c = items[i % n]
                t0 = clock()
                found = check_core(compiled, index, c)
                samples.append(clock() - t0)
                wrong += (found is True) != c[6]
                i += 1
            cpu_us = (cpu() - cpu0) / 1e3 / i
            samples.sort()
            out[kind] = {
                "p50": samples[len(samples) // 2] / 1e3,
                "p99": samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1e3,
                "cpu": cpu_us,
                "wrong": wrong,
            }
        print(json.dumps(out), flush=True)
    os._exit(0)  # the system's background threads are not waited for


def main(argv: list[str] | None = None) -> int:
    """The driver (or, with ``child``, one tree's side)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.realistic_ab")
    parser.add_argument("--old", required=True, help="the tree measured first in each round")
    parser.add_argument("--new", required=True)
    parser.add_argument("--shape", default="docs")
    parser.add_argument("--size", default="1M")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=0.5, help="per kind per round (about)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    if args.child:
        child(args.shape, size, args.seed, args.seconds)
        return 0
    procs = {}
    for label, tree in (("old", args.old), ("new", args.new)):
        # the same string hashes on both sides: the same dict layouts and collisions
        env = dict(os.environ, PYTHONPATH=f"{Path(tree).resolve() / 'src'}:{BENCH_ROOT}", PYTHONHASHSEED="0")
        command = [sys.executable, "-m", "benchmarks.realistic_ab", "--child", "--old", "-", "--new", "-"]
        command += ["--shape", args.shape, "--size", args.size, "--seed", str(args.seed)]
        command += ["--seconds", str(args.seconds)]
        procs[label] = subprocess.Popen(
            command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert procs[label].stdout is not None
        json.loads(procs[label].stdout.readline())  # loaded (one at a time: the machine is shared)
    rounds: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    load = [os.getloadavg()[0]]
    try:
        for r in range(args.rounds):
            for label in ("old", "new") if r % 2 == 0 else ("new", "old"):
                proc = procs[label]
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write("round\n")
                proc.stdin.flush()
                rounds[label].append(json.loads(proc.stdout.readline()))
            load.append(os.getloadavg()[0])
    finally:
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=60)
    print(f"{args.shape} {args.size}, {args.rounds} rounds; load average {min(load):.2f}-{max(load):.2f}")
    # the best round's p50 too: on a shared machine the least disturbed round of each tree
    heads = ("old p50", "new p50", "old p99", "new p99", "old cpu", "new cpu", "old best", "new best")
    print(f"{'kind':18} " + " ".join(f"{head:>8}" for head in heads))
    for kind in rounds["old"][0]:
        cells = []
        for stat in ("p50", "p99", "cpu"):
            for label in ("old", "new"):
                cells.append(statistics.median(row[kind][stat] for row in rounds[label]))
        best = [min(row[kind]["p50"] for row in rounds[label]) for label in ("old", "new")]
        wrong = sum(row[kind]["wrong"] for label in rounds for row in rounds[label])
        p50o, p50n, p99o, p99n, cpuo, cpun = cells
        print(
            f"{kind:18} {p50o:8.1f} {p50n:8.1f} {p99o:8.1f} {p99n:8.1f} {cpuo:8.2f} {cpun:8.2f}"
            f" {best[0]:8.1f} {best[1]:8.1f}" + (f"  WRONG {wrong}" if wrong else "")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
