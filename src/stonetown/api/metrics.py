"""Prometheus metrics: per-RPC counts and latency histograms, and the /metrics endpoint.

With several worker processes the parent sets PROMETHEUS_MULTIPROC_DIR before starting them,
each worker writes its samples there, and the parent serves their sum (the RPC figures are
kept by :mod:`stonetown.api.rpc_metrics` and published by each worker once a second).
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
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, make_wsgi_app

from stonetown.api.auth import is_authorized
from stonetown.api.rpc_metrics import RPC_STATS, PublishedRpcStats
from stonetown.api.rpc_metrics import publish as publish_rpc_stats
from stonetown.engine.system import PermissionSystem

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

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
    """Publish the index revision, its lag behind the store, the check cache's hits and
    misses and (in a worker process) the RPC figures every `interval` seconds, until
    cancelled."""
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
        publish_rpc_stats()
        await asyncio.sleep(interval)


def record_rpc(method: str, code: grpc.StatusCode, seconds: float) -> None:
    """Count one finished RPC and observe its latency."""
    RPC_STATS.record(method, code, seconds)


def ok_recorder(method: str) -> Callable[[float], None]:
    """A function that does what ``record_rpc(method, OK, seconds)`` does, with the cells
    looked up once (by the first call, so no sample exists before a call did)."""
    return RPC_STATS.ok_recorder(method)


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
        registry.register(PublishedRpcStats(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
    app: WsgiApp = make_wsgi_app(registry)
    if preshared_key is not None:
        app = _require_key(app, preshared_key)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("MetricsServer", (_MetricsServer,), {"address_family": family})
    server = make_server(host, port, app, server_class, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return int(server.server_address[1])
