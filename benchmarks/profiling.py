"""Where the time goes: py-spy profiles of the hot paths, summarized per function.

``python -m benchmarks profile --size 100k --workload check`` runs the workload in a child
process under ``py-spy record`` (sampling, native frames off, 250 Hz), keeps the collapsed
stacks in benchmarks/results/profile-WORKLOAD-SIZE.txt and prints the functions with the
most self time and the most inclusive time (share of all samples).

Workloads: ``check`` (the in-process Check mix through ``CheckRun.dispatch``),
``lookup_resources`` (the big reader's 10,000 apps), ``load`` (PermissionSystem.start over
SQLite), ``import`` (bulk import through write_relationships), ``grpc_check`` (a
`stonetown serve` worker under h2load Check load; the server process is profiled, only
the thread holding the GIL: grpc's Cython code shows up as the asyncio frame that calls it).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import results_dir

WORKLOADS = ("check", "lookup_resources", "load", "import", "grpc_check")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/src/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['func']} ({path})"


FOCUS = {
    "check": "CheckRun.dispatch",
    "lookup_resources": "PermissionSystem.lookup_resources",
    "load": "PermissionSystem.start",
    "import": "bulk_import",
    "grpc_check": "",
}


def summarize(collapsed: Path, top: int = 25, focus: str = "") -> dict[str, Any]:
    """Self and inclusive sample shares per function from a py-spy collapsed-stack file,
    counting only the stacks that contain a frame with `focus` in it (all when empty), so
    set-up work (dataset generation, index load) does not dilute the workload's profile."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        if focus and focus not in stack:
            continue
        frames = [_short(f) for f in stack.split(";")]
        total += count
        self_time[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if total == 0:
        return {"samples": 0, "focus": focus, "self": [], "inclusive": []}
    return {
        "samples": total,
        "focus": focus,
        "self": [(name, round(100 * n / total, 1)) for name, n in self_time.most_common(top)],
        "inclusive": [(name, round(100 * n / total, 1)) for name, n in inclusive.most_common(top)],
    }


def target(workload: str, size: int, seed: int, seconds: float) -> None:
    """The profiled process: run `workload` for about `seconds`."""
    from benchmarks.common import bulk_import, db_path
    from benchmarks.dataset import generate
    from stonetown.core.relationship import SubjectRef
    from stonetown.engine.check import CheckRun
    from stonetown.engine.system import PermissionSystem
    from stonetown.engine.types import Consistency
    from stonetown.stores.sqlite import SqliteDatastore

    data = generate(size, seed)
    if workload == "import":
        tmp = results_dir() / "data" / f"profile-import-{size}.db"
        asyncio.run(bulk_import(data, tmp, progress=False))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)
        return

    async def body() -> None:
        system = PermissionSystem(SqliteDatastore(str(db_path(size, seed))))
        await system.start()
        if workload == "load":
            for _ in range(3):
                await system.stop()
                system = PermissionSystem(SqliteDatastore(str(db_path(size, seed))))
                await system.start()
        assert system.state is not None
        deadline = time.perf_counter() + seconds
        if workload == "check":
            compiled, index = system.state.compiled, system.index
            mix = data.mixed_checks(20_000)
            while time.perf_counter() < deadline:
                for c in mix:
                    CheckRun(compiled, index, 50).dispatch(c[0], c[1], c[2], (c[3], c[4], c[5]), 0)
        elif workload == "lookup_resources":
            q = data.lookup_resources[0]
            while time.perf_counter() < deadline:
                async for _ in system.lookup_resources(
                    q[0], q[1], SubjectRef("user", q[2]), Consistency.minimize_latency()
                ):
                    pass
        await system.stop()

    asyncio.run(body())


def profile(workload: str, size: int, seed: int, seconds: float = 10.0) -> dict[str, Any]:
    """Record `workload` with py-spy and print the summary."""
    if shutil.which("py-spy") is None and not Path(sys.executable).with_name("py-spy").exists():
        raise SystemExit("py-spy is not installed: pip install py-spy (or the `bench` extra)")
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    from benchmarks.dataset import size_label
    from benchmarks.inprocess import prepare

    prepare(size, seed, progress=False)
    out = results_dir() / f"profile-{workload}-{size_label(size)}.txt"
    root = Path(__file__).resolve().parent.parent
    if workload == "grpc_check":
        _profile_server(spy, size, seed, seconds, out)
    else:
        command = [
            spy, "record", "--format", "raw", "--rate", "250", "--output", str(out), "--",
            sys.executable, "-m", "benchmarks", "--seed", str(seed), "profile-target", workload,
            "--size", str(size), "--seconds", str(seconds),
        ]  # fmt: skip
        subprocess.run(command, cwd=root, check=True, capture_output=True, timeout=seconds + 600)
    summary = summarize(out, focus=FOCUS[workload])
    print(
        f"== profile {workload} {size_label(size)}: {summary['samples']} samples "
        f"in stacks through {FOCUS[workload] or 'anything'} -> {out}"
    )
    print("self time:")
    for name, share in summary["self"][:20]:
        print(f"  {share:5.1f}%  {name}")
    print("inclusive time:")
    for name, share in summary["inclusive"][:25]:
        print(f"  {share:5.1f}%  {name}")
    return summary


def _profile_server(spy: str, size: int, seed: int, seconds: float, out: Path) -> None:
    from benchmarks.common import db_path
    from benchmarks.dataset import generate
    from benchmarks.grpc_bench import CHECK, check_request, h2load, start_stonetown

    data = generate(size, seed)
    body = check_request(data.checks["deep_team"][0])
    server = start_stonetown(db_path(size, seed), 1, results_dir() / "profile-server.log")
    try:
        recorder = subprocess.Popen(
            [spy, "record", "--format", "raw", "--rate", "250", "--output", str(out), "--gil",
             "--duration", str(int(seconds)), "--pid", str(server.proc.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        h2load(server.target, CHECK, body, duration=seconds)
        recorder.wait(timeout=seconds + 60)
    finally:
        server.stop()
