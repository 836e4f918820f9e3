"""The half-rate latency rows of the gRPC benchmark: the median-p99 run of several, every
run's p99 kept."""

from __future__ import annotations

from benchmarks.grpc_bench import _median_p99


def _run(p99: float, loadavg: float) -> dict[str, float]:
    return {"throughput_per_s": 3000.0, "p50_us": 3000.0, "p99_us": p99, "loadavg_1m": loadavg}


def test_median_p99_keeps_the_middle_run_and_lists_all() -> None:
    runs = [_run(42_000.0, 4.3), _run(6_900.0, 0.5), _run(8_100.0, 0.7)]
    row = _median_p99(runs)
    assert row["p99_us"] == 8_100.0
    assert row["loadavg_1m"] == 0.7
    assert row["runs_p99_us"] == [42_000.0, 6_900.0, 8_100.0]
    assert row["runs_loadavg_1m"] == [4.3, 0.5, 0.7]
    assert "runs_p99_us" not in runs[2]  # the input rows are left as they were


def test_median_p99_of_an_even_count_is_the_lower_middle() -> None:
    row = _median_p99([_run(9.0, 0.0), _run(30.0, 0.0), _run(7.0, 0.0), _run(12.0, 0.0)])
    assert row["p99_us"] == 9.0


def test_median_p99_of_one_run_is_that_run() -> None:
    assert _median_p99([_run(5.0, 1.0)])["p99_us"] == 5.0
