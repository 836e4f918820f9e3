"""py-spy profiles of the realistic shapes' check kinds and lookups (issue #19).

``python -m benchmarks realistic-profile --shape docs --size 1M --kind direct --seconds 10``
runs the labelled checks of one kind (``CheckRun.dispatch`` in a loop), or ``lookup_resources``
/ ``lookup_subjects`` (the shape's first, big query), in a child process under ``py-spy record``
and prints the functions with the most self and inclusive time (summarized as in
:mod:`benchmarks.profiling`). The dataset's store must exist (``python -m benchmarks realistic``
builds it). The collapsed stacks stay in benchmarks/results/profile-realistic-SHAPE-KIND-SIZE.txt.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import forget_walks, results_dir
from benchmarks.dataset import size_label
from benchmarks.profiling import summarize


def target(shape: str, size: int, seed: int, kind: str, seconds: float) -> None:
    """The profiled process: run one check kind (or lookup) for about `seconds`."""
    from benchmarks.realistic import check_core, started_system
    from benchmarks.realistic_data import generate
    from stonetown.core.relationship import ObjectRef, SubjectRef
    from stonetown.engine.types import Consistency

    data = generate(shape, size, seed)

    async def body() -> None:
        system = await started_system(shape, size, seed)
        try:
            assert system.state is not None
            latest = Consistency.minimize_latency()
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                if kind == "lookup_resources":
                    q = data.lookup_resources[0]
                    async for _ in system.lookup_resources(q[0], q[1], SubjectRef(q[2], q[3]), latest):
                        pass
                elif kind == "lookup_subjects":
                    s = data.lookup_subjects[0]
                    forget_walks(system)  # profile the walk, not its reuse
                    async for _ in system.lookup_subjects(ObjectRef(s[0], s[1]), s[2], s[3], "", latest):
                        pass
                else:
                    compiled, index = system.state.compiled, system.index
                    for c in data.checks[kind]:
                        check_core(compiled, index, c)
        finally:
            await system.stop()

    asyncio.run(body())


def profile(shape: str, size: int, seed: int, kind: str, seconds: float) -> dict[str, Any]:
    """Record one kind with py-spy and print the summary."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy (or the `bench` extra)")
    out = results_dir() / f"profile-realistic-{shape}-{kind}-{size_label(size)}.txt"
    command = [
        spy, "record", "--format", "raw", "--rate", "250", "--output", str(out), "--",
        sys.executable, "-m", "benchmarks", "--seed", str(seed), "realistic-profile-target", shape,
        str(size), kind, "--seconds", str(seconds),
    ]  # fmt: skip
    root = Path(__file__).resolve().parent.parent
    subprocess.run(command, cwd=root, check=True, capture_output=True, timeout=seconds + 900)
    focus = f"PermissionSystem.{kind}" if kind.startswith("lookup_") else "CheckRun.dispatch"
    summary = summarize(out, focus=focus)
    print(f"== profile realistic {shape} {kind} {size_label(size)}: {summary['samples']} samples -> {out}")
    print("self time:")
    for name, share in summary["self"][:15]:
        print(f"  {share:5.1f}%  {name}")
    print("inclusive time:")
    for name, share in summary["inclusive"][:20]:
        print(f"  {share:5.1f}%  {name}")
    return summary
