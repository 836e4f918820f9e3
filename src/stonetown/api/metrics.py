"""Prometheus metrics: per-RPC counts and latency histograms, and the /metrics endpoint.

With several worker processes the parent sets PROMETHEUS_MULTIPROC_DIR before starting them,
each worker writes its samples there, and the parent serves their sum.
"""

from __future__ import annotations

import os

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server

RPC_COUNT = Counter(
    "stonetown_grpc_requests_total", "RPCs handled, by method and status code", ["method", "code"]
)
RPC_LATENCY = Histogram(
    "stonetown_grpc_request_duration_seconds",
    "RPC handling time, by method",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def record_rpc(method: str, code: grpc.StatusCode, seconds: float) -> None:
    """Count one finished RPC and observe its latency."""
    RPC_COUNT.labels(method=method, code=code.name).inc()
    RPC_LATENCY.labels(method=method).observe(seconds)


def parse_address(address: str) -> tuple[str, int]:
    """`host:port` (or `:port`, meaning 127.0.0.1) as a pair."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"metrics address {address!r} is not of the form host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


def serve_metrics(address: str) -> int:
    """Serve /metrics on `address` in a background thread; return the port bound."""
    host, port = parse_address(address)
    registry: CollectorRegistry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return int(server.server_address[1])
