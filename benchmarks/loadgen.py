"""The Python load generator: a separate process that sends pre-encoded gRPC requests.

Requests are serialized once, before timing, and sent as raw bytes through generic
multicallables (no per-call protobuf work in the client). Two modes:

- closed loop (default): ``concurrency`` callers, each sending its next request as soon as
  the previous answer arrives, for ``duration`` seconds: maximum throughput;
- open loop (``rate``): requests started on a fixed schedule whatever the answers do, each
  latency counted from its scheduled start (no coordinated omission).

Run through :func:`run_loadgen` (it starts ``python -m benchmarks.loadgen``); the result is
one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

# (full method path, "unary" | "stream", serialized request)
Request = tuple[str, str, bytes]


def _summary(latencies_ns: list[int], errors: int, seconds: float, cpu: float) -> dict[str, Any]:
    values = sorted(v / 1000 for v in latencies_ns)

    def pct(q: float) -> float:
        if not values:
            return float("nan")
        return round(values[min(len(values) - 1, max(0, int(q * len(values) + 0.5) - 1))], 1)

    return {
        "count": len(values),
        "errors": errors,
        "seconds": round(seconds, 3),
        "throughput_per_s": round(len(values) / seconds, 1) if seconds else 0.0,
        "p50_us": pct(0.5),
        "p90_us": pct(0.9),
        "p99_us": pct(0.99),
        "max_us": round(values[-1], 1) if values else float("nan"),
        "client_cpu_percent": round(100 * cpu / seconds, 1) if seconds else 0.0,
    }


async def _generate(
    target: str, requests: list[Request], concurrency: int, duration: float, rate: float, channels: int
) -> dict[str, Any]:
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    chans = [
        aio.insecure_channel(target, options=options + [("grpc.channel_id", i)]) for i in range(channels)
    ]
    for chan in chans:
        await asyncio.wait_for(chan.channel_ready(), 10)
    callers: dict[tuple[int, str], Any] = {}
    for i, chan in enumerate(chans):
        for method, kind, _ in requests:
            if (i, method) not in callers:
                factory = chan.unary_stream if kind == "stream" else chan.unary_unary
                callers[(i, method)] = factory(method)
    latencies: list[int] = []
    errors = 0
    clock = time.perf_counter_ns
    n = len(requests)

    async def one(index: int, started: int) -> None:
        nonlocal errors
        method, kind, payload = requests[index % n]
        call = callers[(index % channels, method)]
        try:
            if kind == "stream":
                async for _ in call(payload, timeout=30):
                    pass
            else:
                await call(payload, timeout=30)
        except grpc.RpcError:
            errors += 1
            return
        latencies.append(clock() - started)

    # warm-up: one pass of a few requests
    for i in range(min(n, 20)):
        await one(i, clock())
    latencies.clear()
    errors = 0
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    deadline = start + duration
    if rate > 0:
        tasks: set[asyncio.Task[None]] = set()
        interval = 1.0 / rate
        i = 0
        while True:
            scheduled = start + i * interval
            if scheduled >= deadline:
                break
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            origin = clock() - int(max(0.0, time.perf_counter() - scheduled) * 1e9)
            task = asyncio.create_task(one(i, origin))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if tasks:
            await asyncio.wait(tasks, timeout=30)
    else:
        counter = 0

        async def worker() -> None:
            nonlocal counter
            while time.perf_counter() < deadline:
                counter += 1
                await one(counter, clock())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    for chan in chans:
        await chan.close()
    return _summary(latencies, errors, seconds, cpu)


def on_cpus(cpus: frozenset[int] | None) -> Callable[[], None] | None:
    """A `preexec_fn` that keeps a child process (and every thread or process it starts) on
    `cpus`; None when `cpus` is None. Pinning the servers and the load generator to
    different cores keeps one from queueing behind the other on a small machine."""
    if cpus is None:
        return None
    chosen = set(cpus)
    return lambda: os.sched_setaffinity(0, chosen)


def run_loadgen(
    target: str,
    requests: list[Request],
    *,
    concurrency: int = 64,
    duration: float = 5.0,
    rate: float = 0.0,
    channels: int = 4,
    cpus: frozenset[int] | None = None,
) -> dict[str, Any]:
    """Run the load generator in a separate Python process (on `cpus` when given); its
    result document."""
    with tempfile.NamedTemporaryFile(suffix=".pickle", delete=False) as handle:
        pickle.dump(requests, handle)
        path = handle.name
    try:
        command = [
            sys.executable,
            "-m",
            "benchmarks.loadgen",
            target,
            path,
            "--concurrency",
            str(concurrency),
            "--duration",
            str(duration),
            "--rate",
            str(rate),
            "--channels",
            str(channels),
        ]
        root = Path(__file__).resolve().parent.parent
        pinned = on_cpus(cpus)
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=duration + 120, cwd=root, preexec_fn=pinned
        )
        if done.returncode != 0:
            raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(done.stdout)
        result.update(
            {"tool": "python-grpc-aio", "concurrency": concurrency, "rate": rate, "channels": channels}
        )
        if cpus is not None:
            result["cpus"] = sorted(cpus)
        return result
    finally:
        Path(path).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """Command line of the generator process."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen")
    parser.add_argument("target")
    parser.add_argument("requests", help="pickle of [(method, 'unary'|'stream', bytes)]")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: requests per second")
    parser.add_argument("--channels", type=int, default=4)
    args = parser.parse_args(argv)
    with open(args.requests, "rb") as handle:
        requests: list[Request] = pickle.load(handle)
    result = asyncio.run(
        _generate(args.target, requests, args.concurrency, args.duration, args.rate, args.channels)
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
