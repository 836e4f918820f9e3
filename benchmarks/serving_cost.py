"""What a Check RPC costs in the server's Python code, in process, without the transport.

``python -m benchmarks.serving_cost [--size 10k] [--calls 20000]``: each Check handler as grpc
registers it (request deserializer, handler, response serializer) is called on the docs
shape's labelled checks, with a minimal servicer context, and its CPU time per call measured
(``time.process_time``, best of 7 rounds: CPU time, not wall time, so the figure holds on a
shared machine better than a latency does):

- ``floor``: the empty server's handler (:mod:`benchmarks.floor`);
- ``floor + serving layer``: the same wrapped by api/interceptor.py (auth, admission,
  deadline, error mapping, metrics, logs);
- ``stonetown cached``: `stonetown serve`'s Check through the serving layer, answered from
  the whole-check cache (one check repeated, and the labelled mix);
- ``stonetown uncached``: the same with the cache emptied before every call (engine included);
- ``stonetown servicer alone``: the cached mix without the serving layer.

gRPC's own per-call work (HTTP/2, the Cython server, asyncio tasks) comes on top of every
row alike; the gRPC benchmarks measure it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

import grpc

from benchmarks.common import remove_store, store_copy
from benchmarks.dataset import parse_size, size_label
from benchmarks.floor import FloorServicer
from benchmarks.grpc_bench import check_request
from benchmarks.realistic import prepare
from benchmarks.realistic_data import generate
from stonetown.api.interceptor import ServingLayer
from stonetown.api.limits import Limits
from stonetown.api.pb import permission_grpc
from stonetown.api.servicers.permissions import PermissionServicer
from stonetown.engine.system import PermissionSystem
from stonetown.stores.sqlite import SqliteDatastore

ROUNDS = 7


class _Context:
    """The servicer context calls the Check path makes: no deadline, no metadata."""

    def time_remaining(self) -> float | None:
        """No client deadline."""
        return None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        """No metadata."""
        return ()


class _Handlers:
    """Takes the handlers a servicer registers, as a server would."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        """Keep `handlers` by method name."""
        self.handlers.update(handlers)

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        """Not used by the generated code for registered methods."""


def check_handler(
    servicer: permission_grpc.PermissionServiceServicer, wrapped: bool
) -> grpc.RpcMethodHandler:
    """The Check handler `servicer` registers, through the serving layer when `wrapped`."""
    taken = _Handlers()
    layer = ServingLayer(None, Limits().request_timeout)
    target: Any = layer.registrar(taken) if wrapped else taken  # type: ignore[arg-type]
    permission_grpc.add_PermissionServiceServicer_to_server(servicer, target)
    return taken.handlers["Check"]


async def cpu_per_call(
    handler: grpc.RpcMethodHandler,
    payloads: list[bytes],
    calls: int,
    before: Callable[[], None] | None = None,
) -> float:
    """CPU µs per call of `handler` (decode, handle, encode), the best of :data:`ROUNDS`."""
    context, decode, encode = _Context(), handler.request_deserializer, handler.response_serializer
    handle = handler.unary_unary
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.process_time()
        for i in range(calls):
            if before is not None:
                before()
            encode(await handle(decode(payloads[i % len(payloads)]), context))
        best = min(best, (time.process_time() - start) / calls * 1e6)
    return best


async def measure(size: int, seed: int, calls: int) -> dict[str, float]:
    """Every row of the module docstring: CPU µs per call."""
    path, _ = prepare("docs", size, seed, progress=False)
    data = generate("docs", size, seed)
    payloads = [check_request(c) for c in sorted({c for items in data.checks.values() for c in items})]
    store = store_copy(path, "serving-cost")
    system = PermissionSystem(SqliteDatastore(str(store)))
    await system.start()
    try:
        gc.collect()
        gc.freeze()  # as `stonetown serve` does after loading
        stonetown = check_handler(PermissionServicer(system, Limits()), True)
        return {
            "floor": await cpu_per_call(check_handler(FloorServicer(), False), payloads, calls),
            "floor + serving layer": await cpu_per_call(
                check_handler(FloorServicer(), True), payloads, calls
            ),
            "stonetown cached, one check": await cpu_per_call(stonetown, payloads[:1], calls),
            "stonetown cached, mix": await cpu_per_call(stonetown, payloads, calls),
            "stonetown uncached, mix": await cpu_per_call(
                stonetown, payloads, max(1, calls // 4), system.check_cache.entries.clear
            ),
            "stonetown servicer alone, cached mix": await cpu_per_call(
                check_handler(PermissionServicer(system, Limits()), False), payloads, calls
            ),
        }
    finally:
        gc.unfreeze()
        await system.stop()
        remove_store(store)


def main(argv: list[str] | None = None) -> int:
    """Print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving_cost")
    parser.add_argument("--size", default="10k")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round")
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    rows = asyncio.run(measure(size, args.seed, args.calls))
    print(f"== Check handler CPU per call, docs {size_label(size)} (best of {ROUNDS} rounds)")
    for name, us in rows.items():
        print(f"{name:40} {us:8.2f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
