"""Smoke test of `python -m benchmarks.spicedb_api`: both APIs answer the same checks
identically and the harness runs end to end (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_spicedb_api_benchmark_runs_and_both_apis_agree() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.spicedb_api", "--size", "1k", "--duration", "0.3", "--reps", "1",
         "--checks", "100", "--concurrency", "4"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((ROOT / "benchmarks" / "results" / "spicedb_api.json").read_text())
    assert result["answers_compared"] == 100 + 100  # 100 checks, 10 bulk calls of 10
    for workload in ("check", "check_bulk"):
        for side in ("stonetown", "authzed"):
            assert result[workload]["runs"][side][0]["count"] > 0
            assert result[workload]["runs"][side][0]["errors"] == 0
    assert "authzed extra cost" in done.stdout
