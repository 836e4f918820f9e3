"""The per-RPC figures (api/rpc_metrics.py): the same series as prometheus_client's own Counter
and Histogram would expose, in one process and summed over --workers 2."""

from __future__ import annotations

import random
import re
import socket
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import grpc
from grpc_harness import OWN_CONNECTION, SCHEMA, ServerProcess, connections_by_process, listening_pids
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from stonetown import Client
from stonetown.api.rpc_metrics import LATENCY_BUCKETS, RpcStats

CODES = (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


def _series(text: str) -> dict[str, float]:
    """Every sample line of an exposition but the `_created` timestamps, by name and labels."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "_created" not in line:
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_the_figures_are_those_prometheus_client_would_expose() -> None:
    """Random calls (latencies on and around every bucket bound, zero, beyond the last)
    recorded both ways: every count, bucket and sum agrees."""
    oracle = CollectorRegistry()
    counter = Counter("stonetown_grpc_requests_total", "-", ["method", "code"], registry=oracle)
    histogram = Histogram(
        "stonetown_grpc_request_duration_seconds", "-", ["method"], buckets=LATENCY_BUCKETS, registry=oracle
    )
    stats = RpcStats()
    ours = CollectorRegistry()
    ours.register(stats)
    rng = random.Random(19)
    recorders = {method: stats.ok_recorder(method) for method in ("/s/A", "/s/B")}
    values = [0.0, 45.0, *LATENCY_BUCKETS, *(b * 1.0000001 for b in LATENCY_BUCKETS)]
    for _ in range(2_000):
        method, code = rng.choice(("/s/A", "/s/B", "/s/C")), rng.choice(CODES)
        seconds = rng.choice(values) if rng.random() < 0.5 else rng.uniform(0, 35)
        counter.labels(method=method, code=code.name).inc()
        histogram.labels(method=method).observe(seconds)
        if code is grpc.StatusCode.OK and method in recorders:
            recorders[method](seconds)
        else:
            stats.record(method, code, seconds)
    expected, got = _series(generate_latest(oracle).decode()), _series(generate_latest(ours).decode())
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert abs(got[name] - value) <= 1e-9 * max(1.0, abs(value)), name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_workers_figures_are_summed_by_the_parent(tmp_path: Path) -> None:
    """Clients on connections of their own reach both workers; the parent's /metrics counts
    every call of both (each worker publishes its figures once a second)."""
    (tmp_path / "schema.zed").write_text(SCHEMA)
    port = _free_port()
    proc = ServerProcess(
        tmp_path,
        "--port", str(port), "--workers", "2", "--datastore", str(tmp_path / "st.db"),
        "--schema", "schema.zed", "--metrics-addr", "127.0.0.1:0",
        listeners=2,
    )  # fmt: skip
    try:
        metrics_address = re.search(r"event=metrics address=(\S+)", proc.log())
        assert metrics_address is not None
        workers = listening_pids(proc.log())
        assert len(workers) == 2
        calls = 0
        with ExitStack() as clients:
            for n in range(40):  # the kernel hashes each new connection to one worker
                client = clients.enter_context(Client(proc.address, channel_options=OWN_CONNECTION))
                for _ in range(3):
                    assert not client.check(f"document:d{n}", "view", "user:u").allowed
                    calls += 1
                held = connections_by_process(workers, port)
                if n >= 3 and all(held.values()):
                    break
        assert all(held.values()), held  # both workers answered some of the calls
        method = 'method="/stonetown.v1.PermissionService/Check"'
        expected = f'stonetown_grpc_requests_total{{code="OK",{method}}} {float(calls)}'
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(f"http://{metrics_address.group(1)}/metrics", timeout=10) as response:
                text = response.read().decode()
            if expected in text or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert expected in text, [line for line in text.splitlines() if "PermissionService/Check" in line]
        assert f"stonetown_grpc_request_duration_seconds_count{{{method}}} {float(calls)}" in text
        assert "stonetown_index_revision" in text  # the gauges still come through prometheus' files
    finally:
        assert proc.stop() == 0
