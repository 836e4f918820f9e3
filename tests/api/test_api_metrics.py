"""Prometheus metrics: per-RPC counts by status code and latency histograms."""

from __future__ import annotations

import re
import time
import urllib.error
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


def test_metrics_report_index_revision_lag_and_check_cache(tmp_path: Path) -> None:
    (tmp_path / "schema.zed").write_text("definition user {}\ndefinition doc {\n relation viewer: user\n}")
    proc = ServerProcess(
        tmp_path,
        "--port",
        "0",
        "--datastore",
        "memory",
        "--schema",
        "schema.zed",
        "--metrics-addr",
        "127.0.0.1:0",
    )
    try:
        metrics_address = re.search(r"event=metrics address=(\S+)", proc.log())
        assert metrics_address is not None
        with Client(proc.address) as client:
            client.write(touch=["doc:a#viewer@user:ana"])
            for _ in range(5):
                assert client.check("doc:a", "viewer", "user:ana", consistency="fully_consistent").allowed
        deadline = time.monotonic() + 30
        while True:  # the figures are published once a second
            with urllib.request.urlopen(f"http://{metrics_address.group(1)}/metrics", timeout=10) as response:
                text = response.read().decode()
            hits = re.search(r'stonetown_check_cache_lookups_total\{outcome="hit"\} (\S+)', text)
            if (hits and float(hits.group(1)) >= 4) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert hits is not None and float(hits.group(1)) >= 4
        assert re.search(r"stonetown_index_revision \d+\.0", text)
        assert "stonetown_index_lag_revisions 0.0" in text
    finally:
        assert proc.stop() == 0


def test_with_a_preshared_key_a_scrape_needs_it(tmp_path: Path) -> None:
    proc = ServerProcess(
        tmp_path,
        "--port", "0", "--datastore", "memory", "--metrics-addr", "127.0.0.1:0", "--preshared-key", "mk",
    )  # fmt: skip
    try:
        metrics_address = re.search(r"event=metrics address=(\S+)", proc.log())
        assert metrics_address is not None
        url = f"http://{metrics_address.group(1)}/metrics"
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10)
            assert refused.value.code == 401
        scrape = urllib.request.Request(url, headers={"Authorization": "Bearer mk"})
        with urllib.request.urlopen(scrape, timeout=10) as response:
            assert "stonetown_index_revision" in response.read().decode()
    finally:
        assert proc.stop() == 0
