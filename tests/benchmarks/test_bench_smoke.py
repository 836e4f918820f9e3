"""Smoke test of the benchmark harness: it runs end to end on a tiny dataset (no timing asserts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_dataset_is_seeded_and_answers_match_expectations() -> None:
    """The same seed gives the same relationships; the engine answers every labelled query as expected."""
    import asyncio

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks.common import memory_system
    from benchmarks.dataset import CHECK_KINDS, generate
    from stonetown.engine.check import CheckRun

    first, second = generate(2000, 7), generate(2000, 7)
    assert first.relationships == second.relationships
    assert len(first.relationships) >= 2000
    assert all(first.checks[kind] for kind in CHECK_KINDS)

    async def answers() -> list[bool]:
        system = await memory_system(first.schema_text(), first.relationships)
        assert system.state is not None
        out = []
        for kind in CHECK_KINDS:
            for c in first.checks[kind][:30]:
                run = CheckRun(system.state.compiled, system.index, 50)
                out.append((run.dispatch(c[0], c[1], c[2], (c[3], c[4], c[5]), 0) is True) == c[6])
        await system.stop()
        return out

    assert all(asyncio.run(answers()))


def test_harness_smoke_run(tmp_path: Path) -> None:
    """`python -m benchmarks smoke` runs every part and writes its result files (needs the
    `bench` extra: psutil, matplotlib, pycasbin; skipped without it)."""
    for module in ("psutil", "matplotlib", "casbin"):
        pytest.importorskip(module)
    env = dict(os.environ, STONETOWN_BENCH_RESULTS=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "smoke", "--size", "1k"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    smoke = json.loads((tmp_path / "smoke.json").read_text())
    assert smoke["stonetown"]["count"] > 0 and smoke["stonetown"]["errors"] == 0
    assert smoke["floor"]["count"] > 0
    assert smoke["inprocess"]["check_answers_wrong"] == 0
    assert smoke["casbin"]["answers_wrong"] == 0
    assert (tmp_path / "inprocess-1k.json").exists()
    assert (tmp_path / "latency_vs_size.png").exists()
    assert "| target |" in done.stdout
