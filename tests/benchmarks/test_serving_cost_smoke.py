"""Smoke test of `python -m benchmarks.serving_cost` (no timing asserts): every row is measured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_serving_cost_measures_every_handler(tmp_path: Path) -> None:
    env = dict(os.environ, STONETOWN_BENCH_RESULTS=str(tmp_path))
    command = [sys.executable, "-m", "benchmarks.serving_cost", "--size", "2k", "--calls", "50"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.endswith(" µs")]
    names = [line.rsplit(None, 2)[0] for line in rows]
    assert names == [
        "floor",
        "floor + serving layer",
        "stonetown cached, one check",
        "stonetown cached, mix",
        "stonetown uncached, mix",
        "stonetown servicer alone, cached mix",
    ]
    assert all(float(line.rsplit(None, 2)[1]) > 0 for line in rows)
