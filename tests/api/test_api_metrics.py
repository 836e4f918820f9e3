"""Prometheus metrics: per-RPC counts by status code and latency histograms."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest
from grpc_harness import ServerProcess

from stonetown import Client
from stonetown.core.errors import NotFound


def test_metrics_count_rpcs_by_method_and_code(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path, "--port", "0", "--datastore", "memory", "--metrics-addr", "127.0.0.1:0")
    try:
        metrics_address = re.search(r"event=metrics address=(\S+)", proc.log())
        assert metrics_address is not None
        with Client(proc.address) as client:
            for _ in range(3):
                with pytest.raises(NotFound):
                    client.read_schema()
        with urllib.request.urlopen(f"http://{metrics_address.group(1)}/metrics", timeout=10) as response:
            text = response.read().decode()
        method = 'method="/stonetown.v1.SchemaService/ReadSchema"'
        assert f'stonetown_grpc_requests_total{{code="NOT_FOUND",{method}}} 3.0' in text
        assert f"stonetown_grpc_request_duration_seconds_count{{{method}}} 3.0" in text
    finally:
        assert proc.stop() == 0
