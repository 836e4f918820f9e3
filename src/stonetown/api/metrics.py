"""Prometheus metrics: per-RPC counts and latency histograms, and the /metrics endpoint.

With several worker processes the parent sets PROMETHEUS_MULTIPROC_DIR before starting them,
each worker writes its samples there, and the parent serves their sum.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from stonetown.api.auth import is_authorized
from stonetown.engine.system import PermissionSystem

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

RPC_COUNT = Counter(
    "stonetown_grpc_requests_total", "RPCs handled, by method and status code", ["method", "code"]
)
RPC_LATENCY = Histogram(
    "stonetown_grpc_request_duration_seconds",
    "RPC handling time, by method",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


INDEX_REVISION = Gauge(
    "stonetown_index_revision", "The revision the in-memory index answers at", multiprocess_mode="liveall"
)
INDEX_LAG = Gauge(
    "stonetown_index_lag_revisions",
    "How many revisions the index is behind the store's head",
    multiprocess_mode="liveall",
)
CHECK_CACHE = Counter(
    "stonetown_check_cache_lookups_total", "Check cache lookups, by outcome (hit or miss)", ["outcome"]
)


async def observe_system(system: PermissionSystem, interval: float = 1.0) -> None:
    """Publish the index revision, its lag behind the store and the check cache's hits and
    misses every `interval` seconds, until cancelled."""
    hits = misses = 0
    while True:
        try:
            head = await system.store.head_revision()
        except Exception:  # noqa: BLE001 - a store hiccup must not stop the metrics
            head = system.index.revision
        INDEX_REVISION.set(system.index.revision)
        INDEX_LAG.set(max(0, head - system.index.revision))
        cache = system.check_cache
        CHECK_CACHE.labels(outcome="hit").inc(cache.hits - hits)
        CHECK_CACHE.labels(outcome="miss").inc(cache.misses - misses)
        hits, misses = cache.hits, cache.misses
        await asyncio.sleep(interval)


_COUNTERS: dict[tuple[str, grpc.StatusCode], Counter] = {}
_HISTOGRAMS: dict[str, Histogram] = {}


def record_rpc(method: str, code: grpc.StatusCode, seconds: float) -> None:
    """Count one finished RPC and observe its latency (label children bound once)."""
    counter = _COUNTERS.get((method, code))
    if counter is None:
        counter = _COUNTERS[(method, code)] = RPC_COUNT.labels(method=method, code=code.name)
    histogram = _HISTOGRAMS.get(method)
    if histogram is None:
        histogram = _HISTOGRAMS[method] = RPC_LATENCY.labels(method=method)
    counter.inc()
    histogram.observe(seconds)


def ok_recorder(method: str) -> Callable[[float], None]:
    """A function that does what ``record_rpc(method, OK, seconds)`` does, with the label
    children looked up once (by the first call, so no sample exists before a call did)."""
    counter: Counter | None = None
    histogram: Histogram | None = None

    def record(seconds: float) -> None:
        nonlocal counter, histogram
        if counter is None or histogram is None:
            record_rpc(method, grpc.StatusCode.OK, seconds)  # binds both children
            counter, histogram = _COUNTERS[(method, grpc.StatusCode.OK)], _HISTOGRAMS[method]
            return
        counter.inc()
        histogram.observe(seconds)

    return record


def parse_address(address: str) -> tuple[str, int]:
    """`host:port` (or `:port`, meaning 127.0.0.1) as a pair."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"metrics address {address!r} is not of the form host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


class _MetricsServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Scrapes are not logged."""


def _require_key(app: WsgiApp, key: str) -> WsgiApp:
    """`app` answering only requests with `Authorization: Bearer KEY` (401 otherwise)."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not is_authorized((("authorization", environ.get("HTTP_AUTHORIZATION", "")),), key):
            start_response(
                "401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")]
            )
            return [b"missing or wrong preshared key (expected header `Authorization: Bearer KEY`)\n"]
        return app(environ, start_response)

    return guarded


def serve_metrics(address: str, preshared_key: str | None = None) -> int:
    """Serve /metrics on `address` in a background thread; return the port bound. With a
    preshared key, a scrape needs it, as every API call does (`Authorization: Bearer KEY`)."""
    host, port = parse_address(address)
    registry: CollectorRegistry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    app: WsgiApp = make_wsgi_app(registry)
    if preshared_key is not None:
        app = _require_key(app, preshared_key)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("MetricsServer", (_MetricsServer,), {"address_family": family})
    server = make_server(host, port, app, server_class, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return int(server.server_address[1])
