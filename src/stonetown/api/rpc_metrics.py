"""Per-RPC counts by status code and latency histograms, kept as plain numbers.

Recording a call is a few list operations on the event loop's thread. prometheus_client's
Counter and Histogram children take a lock for every increment and walk the buckets in
Python: together about as much CPU as the whole empty gRPC handler (measured in process:
~2 µs of a cached Check's ~9 µs), for figures that are read once per scrape.

The figures are exposed with the same names, labels and buckets as before
(``stonetown_grpc_requests_total{method,code}``, ``stonetown_grpc_request_duration_seconds``
with its ``_bucket``/``_count``/``_sum`` and ``_created`` series):

- one process: :data:`RPC_STATS` is a collector of the default registry, read at scrape time;
- worker processes (``PROMETHEUS_MULTIPROC_DIR`` set by the parent): each worker writes its
  figures to ``rpcs-PID-START.json`` in that directory (:func:`publish`, once a second and when it
  stops) and the parent's registry sums every worker's file (:class:`PublishedRpcStats`), the
  files of workers that exited included, so the counters never go back.
"""

from __future__ import annotations

import json
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_COUNT_NAME, _COUNT_HELP = "stonetown_grpc_requests", "RPCs handled, by method and status code"
_LATENCY_NAME, _LATENCY_HELP = "stonetown_grpc_request_duration_seconds", "RPC handling time, by method"
_FILE_PREFIX = "rpcs-"

# (method, code name) -> [count, created]; method -> [count per bucket ..., +Inf, sum, created]
Counts = dict[tuple[str, str], list[float]]
Latencies = dict[str, list[float]]


class RpcStats(Collector):
    """RPC counts and latency histograms of this process (written by the event loop's
    thread only; a scrape from another thread reads them as they are)."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = buckets
        self.counts: Counts = {}
        self.latencies: Latencies = {}

    def _count_cell(self, method: str, code: str) -> list[float]:
        cell = self.counts.get((method, code))
        if cell is None:
            cell = self.counts[(method, code)] = [0, time.time()]
        return cell

    def _latency_row(self, method: str) -> list[float]:
        row = self.latencies.get(method)
        if row is None:
            row = self.latencies[method] = [0] * (len(self.bounds) + 2) + [time.time()]
        return row

    def record(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        """Count one finished call of `method` with status `code` that took `seconds`."""
        self._count_cell(method, code.name)[0] += 1
        row = self._latency_row(method)
        row[bisect_left(self.bounds, seconds)] += 1  # the first bucket whose bound >= seconds
        row[-2] += seconds

    def ok_recorder(self, method: str) -> Callable[[float], None]:
        """A function that does what ``record(method, OK, seconds)`` does, with the cells
        looked up once (by the first call, so no sample exists before a call did)."""
        bounds = self.bounds
        cell: list[float] | None = None
        row: list[float] = []

        def record(seconds: float) -> None:
            nonlocal cell, row
            if cell is None:
                cell, row = self._count_cell(method, "OK"), self._latency_row(method)
            cell[0] += 1
            row[bisect_left(bounds, seconds)] += 1
            row[-2] += seconds

        return record

    def collect(self) -> Iterable[Metric]:
        """The two metric families, for a scrape of this process."""
        return families(self.bounds, dict(self.counts), dict(self.latencies))

    def snapshot(self) -> dict[str, Any]:
        """Everything recorded so far, as JSON-ready data."""
        return {
            "bounds": list(self.bounds),
            "counts": [[method, code, *cell] for (method, code), cell in list(self.counts.items())],
            "latencies": [[method, list(row)] for method, row in list(self.latencies.items())],
        }


def families(bounds: tuple[float, ...], counts: Counts, latencies: Latencies) -> Iterator[Metric]:
    """The requests counter and the latency histogram families of these figures."""
    counter = CounterMetricFamily(_COUNT_NAME, _COUNT_HELP, labels=["method", "code"])
    for (method, code), (count, created) in sorted(counts.items()):
        counter.add_metric([method, code], count, created=created)
    yield counter
    histogram = HistogramMetricFamily(_LATENCY_NAME, _LATENCY_HELP, labels=["method"])
    names = [*(floatToGoString(b) for b in bounds), "+Inf"]
    for method, row in sorted(latencies.items()):
        cumulative = list(accumulate(row[: len(bounds) + 1]))
        histogram.add_metric([method], list(zip(names, cumulative, strict=True)), sum_value=row[-2])
        histogram.samples.append(Sample(f"{_LATENCY_NAME}_created", {"method": method}, row[-1]))
    yield histogram


RPC_STATS = RpcStats()
_MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
_STARTED_NS = time.time_ns()  # in the file name: a later worker given a reused pid has its own
if not _MULTIPROCESS_DIR:
    REGISTRY.register(RPC_STATS)


def publish() -> None:
    """In a worker process, write this process's figures for the parent to serve (nothing
    to do in a single process: its registry reads them directly)."""
    if not _MULTIPROCESS_DIR:
        return
    path = Path(_MULTIPROCESS_DIR) / f"{_FILE_PREFIX}{os.getpid()}-{_STARTED_NS}.json"
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(RPC_STATS.snapshot()))
    partial.replace(path)  # atomic: a scrape never reads half a file


class PublishedRpcStats(Collector):
    """The sum of the figures every worker published in `directory` (the parent's view)."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def collect(self) -> Iterable[Metric]:
        """The summed families."""
        bounds = LATENCY_BUCKETS
        counts: Counts = {}
        latencies: Latencies = {}
        for path in sorted(self.directory.glob(f"{_FILE_PREFIX}*.json")):
            try:
                published = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # a worker's file being replaced: its figures come with the next scrape
            bounds = tuple(published["bounds"])
            for method, code, count, created in published["counts"]:
                cell = counts.setdefault((method, code), [0, created])
                cell[0] += count
                cell[1] = min(cell[1], created)
            for method, row in published["latencies"]:
                total = latencies.setdefault(method, [0] * (len(row) - 1) + [row[-1]])
                for i, value in enumerate(row[:-1]):
                    total[i] += value
                total[-1] = min(total[-1], row[-1])
        return families(bounds, counts, latencies)
