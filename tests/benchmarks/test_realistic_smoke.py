"""Smoke test of `python -m benchmarks realistic` (issue #19's shapes): seeded generation,
labelled answers verified by the engine, and a seconds-long end-to-end run (no timing asserts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.mark.parametrize("shape", ["docs", "github", "hierarchy"])
def test_shape_is_seeded_and_labelled_answers_hold(shape: str) -> None:
    """Same seed, same relationships; other seed, others; every kind has labelled checks and
    the engine answers each as labelled."""
    import asyncio

    from benchmarks.common import memory_system
    from benchmarks.realistic_data import KINDS, generate
    from stonetown.engine.check import CheckRun

    first, second, other = generate(shape, 3000, 7), generate(shape, 3000, 7), generate(shape, 3000, 8)
    assert first.relationships == second.relationships
    assert first.relationships != other.relationships
    assert len(first.relationships) >= 3000 * 0.97
    assert all(first.checks[kind] for kind in KINDS[shape]), {k: len(v) for k, v in first.checks.items()}
    assert {c[6] for items in first.checks.values() for c in items} == {True, False}

    async def wrong() -> list[tuple[str, tuple[object, ...]]]:
        system = await memory_system(first.schema_text(), first.relationships)
        assert system.state is not None
        out = []
        for kind, items in first.checks.items():
            for c in items[:40]:
                run = CheckRun(system.state.compiled, system.index, 50)
                if (run.dispatch(c[0], c[1], c[2], (c[3], c[4], c[5]), 0) is True) != c[6]:
                    out.append((kind, c))
        await system.stop()
        return out

    assert asyncio.run(wrong()) == []


def test_realistic_command_runs_end_to_end(tmp_path: Path) -> None:
    """`python -m benchmarks realistic` on a tiny docs dataset: in process, gRPC against the
    floor (one short run each; no --workers 2 run; with 2 cores or more, `--pin`: servers and
    load generator on cores of their own), SpiceDB skipped; the result file and the targets
    rows. About 20 s on a quiet machine (its bound is generous for a loaded one)."""
    pytest.importorskip("psutil")
    env = dict(os.environ, STONETOWN_BENCH_RESULTS=str(tmp_path))
    command = [
        sys.executable, "-m", "benchmarks", "realistic", "--shape", "docs", "--size", "2k",
        "--budget", "0.05", "--duration", "0.3", "--reps", "1", "--spicedb-max", "0",
        "--lookup-timeout", "20", "--no-scaling",
    ]  # fmt: skip
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= 2:
        command.append("--pin")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "realistic-docs-2000.json").read_text())
    inproc = result["inprocess"]
    assert sum(inproc["check_answers_wrong"].values()) == 0
    assert {"check_core/denied_excluded", "check_core/wildcard", "check_bulk_100"} <= set(inproc["workloads"])
    assert inproc["workloads"]["lookup_resources/0"]["wrong"] is False
    assert result["grpc"]["single"]["stonetown"][0]["errors"] == 0
    assert result["grpc"]["single"]["floor"][0]["count"] > 0
    if len(cores) >= 2:
        assert result["grpc"]["pinned"] == {"servers": cores[-1:], "load_generator": cores[:-1]}
        assert result["grpc"]["tail"]["stonetown"][0]["cpus"] == cores[:-1]
    assert "skipped" in result["spicedb"]
    targets = subprocess.run(
        [sys.executable, "-m", "benchmarks", "targets"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "docs: in-process Check p50" in targets.stdout, targets.stderr[-2000:]


def test_realistic_without_lookups_records_the_load(tmp_path: Path) -> None:
    """`--no-lookups --no-grpc` (the 1M-10M runs): checks and the load's figures (CPU seconds,
    load averages) are recorded, no lookup is run."""
    pytest.importorskip("psutil")
    env = dict(os.environ, STONETOWN_BENCH_RESULTS=str(tmp_path))
    command = [
        sys.executable, "-m", "benchmarks", "realistic", "--shape", "docs", "--size", "2k",
        "--budget", "0.05", "--spicedb-max", "0", "--no-grpc", "--no-lookups",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    inproc = json.loads((tmp_path / "realistic-docs-2000.json").read_text())["inprocess"]
    assert sum(inproc["check_answers_wrong"].values()) == 0
    assert "check_core/direct" in inproc["workloads"]
    assert not [name for name in inproc["workloads"] if name.startswith("lookup_")]
    assert 0 < inproc["load_cpu_seconds"] and len(inproc["loadavg_load"]) == 2
