"""Benchmarks over gRPC: the floor server and `stonetown serve`, driven by the same clients.

Every server runs in its own process(es) on loopback; the load generators run in separate
processes too: h2load (nghttp2, C, one fixed request body per run) when installed, and
:mod:`benchmarks.loadgen` (Python grpc.aio, any mix of requests). On a small machine the
client competes with the server for CPU; both servers face the same client, so the ratios
are fair, and the client's CPU use is reported with every Python-driven result.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from benchmarks.common import remove_store, rss_tree_bytes, store_copy, write_result
from benchmarks.dataset import Check, Dataset, generate, size_label
from benchmarks.inprocess import prepare
from benchmarks.loadgen import Request, on_cpus, run_loadgen
from stonetown.api import convert as cv
from stonetown.api.pb import core, permission, relationship
from stonetown.client.base import LOOKUP_RESULTS_PER_MESSAGE
from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine.datastore import Update, UpdateOp

CHECK = "/stonetown.v1.PermissionService/Check"
CHECK_BULK = "/stonetown.v1.PermissionService/CheckBulk"
LOOKUP_RESOURCES = "/stonetown.v1.PermissionService/LookupResources"
WRITE = "/stonetown.v1.RelationshipService/WriteRelationships"
ROOT = Path(__file__).resolve().parent.parent
_LATEST = core.Consistency(minimize_latency=True)


# ------------------------------------------------------------------------------ requests


def check_request(check: Check) -> bytes:
    """A serialized CheckRequest (minimize_latency)."""
    return permission.CheckRequest(
        consistency=_LATEST,
        resource=cv.object_to_proto(ObjectRef(check[0], check[1])),
        permission=check[2],
        subject=cv.subject_to_proto(SubjectRef(check[3], check[4], check[5])),
    ).SerializeToString()


def check_bulk_request(checks: list[Check]) -> bytes:
    """A serialized CheckBulkRequest of `checks`."""
    request = permission.CheckBulkRequest(consistency=_LATEST)
    for c in checks:
        request.items.append(
            permission.CheckBulkRequestItem(
                resource=cv.object_to_proto(ObjectRef(c[0], c[1])),
                permission=c[2],
                subject=cv.subject_to_proto(SubjectRef(c[3], c[4], c[5])),
            )
        )
    return request.SerializeToString()


def lookup_resources_request(query: tuple[str, str, str]) -> bytes:
    """A serialized LookupResourcesRequest for user `query[2]` (no limit), asking for up to
    1,000 results per stream message as Stonetown's clients do."""
    return permission.LookupResourcesRequest(
        consistency=_LATEST,
        resource_object_type=query[0],
        permission=query[1],
        subject=cv.subject_to_proto(SubjectRef("user", query[2])),
        optional_results_per_message=LOOKUP_RESULTS_PER_MESSAGE,
    ).SerializeToString()


def write_request(rels: list[Relationship]) -> bytes:
    """A serialized WriteRelationshipsRequest touching `rels`."""
    return relationship.WriteRelationshipsRequest(
        updates=[cv.update_to_proto(Update(UpdateOp.TOUCH, rel)) for rel in rels]
    ).SerializeToString()


# ------------------------------------------------------------------------------- servers


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening_pids(pid: int, port: int) -> list[int]:
    """The processes of the tree rooted at `pid` that listen on TCP `port` (a server's workers)."""
    procs = [psutil.Process(pid)]
    procs.extend(procs[0].children(recursive=True))
    found = []
    for proc in procs:
        try:
            conns = proc.net_connections(kind="tcp")
        except psutil.Error:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns):
            found.append(proc.pid)
    return found


def _cpu_seconds(pids: list[int]) -> list[float]:
    out = []
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            out.append(times.user + times.system)
        except psutil.Error:
            out.append(float("nan"))
    return out


class Server:
    """A server process tree on a loopback port, stopped with SIGTERM."""

    def __init__(
        self, command: list[str], port: int, workers: int, log: Path, cpus: frozenset[int] | None = None
    ) -> None:
        self.port = port
        self.workers = workers
        self.log = log
        self.started = time.perf_counter()
        self._log_handle = log.open("w")
        self.proc = subprocess.Popen(
            command, cwd=ROOT, stdout=self._log_handle, stderr=subprocess.STDOUT, preexec_fn=on_cpus(cpus)
        )
        self.ready_seconds = self._wait_ready()

    @property
    def target(self) -> str:
        """host:port."""
        return f"127.0.0.1:{self.port}"

    def _wait_ready(self, timeout: float = 600.0) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early: {self.log.read_text()[-2000:]}")
            if len(listening_pids(self.proc.pid, self.port)) >= self.workers:
                return time.perf_counter() - self.started
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not become ready")

    def measured(self, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """`run()`'s result (a load run against this server), with each worker's CPU seconds
        during it and the server's CPU per answered request: unlike latency, that figure
        holds when the machine is shared (h2load's uncounted warm-up second is included, so
        compare h2load rows with h2load rows only)."""
        pids = listening_pids(self.proc.pid, self.port)
        before = _cpu_seconds(pids)
        row = run()
        row["worker_cpu_s"] = [round(b - a, 3) for a, b in zip(before, _cpu_seconds(pids), strict=True)]
        answered = row.get("count") or 0
        cpu_us = sum(row["worker_cpu_s"]) * 1e6
        row["server_cpu_us_per_request"] = round(cpu_us / answered, 1) if answered else None
        row["loadavg"] = list(os.getloadavg())
        return row

    def rss(self) -> int:
        """RSS of the whole process tree."""
        return rss_tree_bytes(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM, then wait (SIGKILL after 30 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_handle.close()


def start_stonetown(db: Path, workers: int, log: Path, cpus: frozenset[int] | None = None) -> Server:
    """`stonetown serve` over the dataset's SQLite file (on `cpus` when given)."""
    port = free_port()
    command = [
        sys.executable, "-m", "stonetown.cli.main", "serve", "--datastore", str(db), "--port", str(port),
        "--workers", str(workers), "--log-level", "warning",
    ]  # fmt: skip
    return Server(command, port, workers, log, cpus)


def start_floor(
    workers: int, log: Path, *, interceptor: bool = False, cpus: frozenset[int] | None = None
) -> Server:
    """The constant-answer floor server (on `cpus` when given)."""
    port = free_port()
    command = [sys.executable, "-m", "benchmarks", "floor", "--port", str(port), "--workers", str(workers)]
    if interceptor:
        command.append("--interceptor")
    return Server(command, port, workers, log, cpus)


# ------------------------------------------------------------------------------- h2load

_FINISHED = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
_REQUESTS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed")


def have_h2load() -> bool:
    """Whether h2load (apt: nghttp2-client) is installed."""
    return shutil.which("h2load") is not None


def h2load(
    target: str,
    method: str,
    body: bytes,
    *,
    duration: float = 5.0,
    clients: int = 16,
    streams: int = 4,
    rps: float = 0.0,
) -> dict[str, Any]:
    """Run h2load against one gRPC method with one request body; throughput and latency
    percentiles (from its per-request log). With `rps`, each client is paced to rps/clients.

    64 streams in flight over 16 connections: with `--workers 2` the kernel's SO_REUSEPORT
    hashing spreads connections between the processes, and with only 4 connections it put all
    of them on one process in about 1 run in 8 (and 3:1 in about half)."""
    with tempfile.TemporaryDirectory(prefix="stonetown-h2load-") as tmp:
        data = Path(tmp) / "body"
        data.write_bytes(b"\x00" + len(body).to_bytes(4, "big") + body)
        log = Path(tmp) / "log.tsv"
        command = [
            "h2load", "-D", str(max(1, round(duration))), "--warm-up-time", "1",
            "-c", str(clients), "-m", str(streams),
            "-t", "1", "-d", str(data), "-H", "content-type: application/grpc", "-H", "te: trailers",
            f"--log-file={log}", f"http://{target}{method}",
        ]  # fmt: skip
        if rps > 0:
            command.insert(1, f"--rps={max(1.0, rps / clients):.2f}")
        done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
        out = done.stdout
        finished, counts = _FINISHED.search(out), _REQUESTS.search(out)
        if done.returncode != 0 or finished is None or counts is None:
            raise RuntimeError(f"h2load failed: {out[-2000:]} {done.stderr[-2000:]}")
        elapsed_us = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line.strip())

    def pct(q: float) -> float:
        if not elapsed_us:
            return float("nan")
        return float(elapsed_us[min(len(elapsed_us) - 1, max(0, int(q * len(elapsed_us) + 0.5) - 1))])

    return {
        "tool": "h2load",
        "clients": clients,
        "streams_per_client": streams,
        "rps_target": rps,
        "count": int(counts.group(4)),
        "failed": int(counts.group(5)),
        "throughput_per_s": float(finished.group(3)),
        "p50_us": pct(0.5),
        "p90_us": pct(0.9),
        "p99_us": pct(0.99),
        "max_us": pct(1.0),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


# ------------------------------------------------------------------------------ workloads


def bump_revision(target: str) -> None:
    """Write one relationship so the server's revision moves on and its whole-check cache
    (keyed by revision) starts empty: every measured run starts cold."""
    from stonetown.client import Client

    with Client(target, timeout=30) as client:
        client.write(touch=[Relationship("app", "bench_bump", "runner", "user", "bench_bump")])


def grpc_import(target: str, count: int, label: str) -> dict[str, Any]:
    """Create `count` new relationships with one ImportRelationships stream (sync client in
    this process, 1,000 per message); the rate from the first message to the answer."""
    from stonetown.client import Client

    rels = (
        Relationship("app", f"bench_import_{label}_{n}", "runner", "user", f"u{n % 997}")
        for n in range(count)
    )
    with Client(target, timeout=600) as client:
        start = time.perf_counter()
        client.import_relationships(rels, chunk_size=1000)
        seconds = time.perf_counter() - start
    return {
        "relationships": count,
        "seconds": round(seconds, 3),
        "relationships_per_s": round(count / seconds, 1),
    }


def _requests(data: Dataset) -> dict[str, list[Request]]:
    mix = data.distinct_checks()
    bulk = data.mixed_checks(100 * 40, seed=data.seed + 1)
    fresh = data.fresh_writes
    writes_single = [(WRITE, "unary", write_request([rel])) for rel in fresh[:20_000]]
    writes_batch = [(WRITE, "unary", write_request(fresh[i : i + 100])) for i in range(20_000, 50_000, 100)]
    reads = [(CHECK, "unary", check_request(c)) for c in mix]
    mixed: list[Request] = []
    for i, req in enumerate(reads):
        mixed.append(req)
        if i % 19 == 18:  # 19 reads : 1 write = 95% / 5%
            mixed.append(writes_single[(i // 19) % len(writes_single)])
    lookups = [(LOOKUP_RESOURCES, "stream", lookup_resources_request(q)) for q in data.lookup_resources[:50]]
    return {
        "check_mix": reads,
        "check_bulk": [
            (CHECK_BULK, "unary", check_bulk_request(bulk[i : i + 100])) for i in range(0, 4000, 100)
        ],
        "lookup_resources": lookups[1:],
        "lookup_resources_big": lookups[:1],
        "write_single": writes_single,
        "write_batch_100": writes_batch,
        "mixed_95_5": mixed,
    }  # fmt: skip


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    best = dict(max(runs, key=lambda r: r["throughput_per_s"]))
    best["runs_throughput_per_s"] = [r["throughput_per_s"] for r in runs]
    cpu = [r["server_cpu_us_per_request"] for r in runs if r.get("server_cpu_us_per_request")]
    if cpu:
        best["median_server_cpu_us_per_request"] = statistics.median(cpu)
    return best


def _median_p99(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median p99 (the lower middle one of an even count), listing every
    run's p99 and load average."""
    ordered = sorted(runs, key=lambda r: r["p99_us"])
    middle = dict(ordered[(len(ordered) - 1) // 2])
    middle["runs_p99_us"] = [r["p99_us"] for r in runs]
    middle["runs_loadavg_1m"] = [r.get("loadavg_1m") for r in runs]
    return middle


def run(
    size: int,
    seed: int,
    *,
    duration: float = 5.0,
    workers: tuple[int, ...] = (1, 2),
    reps: int = 3,
    writes_only: bool = False,
) -> dict[str, Any]:
    """Every gRPC workload on one dataset size; writes benchmarks/results/grpc-SIZE.json.

    For each worker count, the floor and Stonetown run side by side (idle when not measured)
    and every throughput workload alternates between them `reps` times: each side's best run
    is kept, and the ratio of each adjacent pair is recorded (the machine is shared, so
    alternating is what keeps a ratio honest). `writes_only` runs only the write workloads on
    one Stonetown process and the floor, and writes grpc_writes-SIZE.json."""
    if writes_only:
        workers = (1,)
    original, _ = prepare(size, seed)
    # the write workloads change the store: serve a copy so the dataset stays as generated
    path = store_copy(original, "grpc")
    data = generate(size, seed)
    reqs = _requests(data)
    deep = data.checks["deep_team"][0]
    deep_body = check_request(deep)
    bulk_body = reqs["check_bulk"][0][2]
    use_h2 = have_h2load()
    logs = Path(tempfile.mkdtemp(prefix="stonetown-bench-logs-"))
    result: dict[str, Any] = {
        "size": size,
        "size_label": size_label(size),
        "h2load": use_h2,
        "duration_s": duration,
        "reps": reps,
        "fixed_check": list(deep[:6]),
        "floor": {},
        "stonetown": {},
        "paired_ratios": {},
        "loadavg_start": list(os.getloadavg()),
    }
    paired: dict[str, list[float]] = result["paired_ratios"]

    def check_workloads(target: str) -> dict[str, Any]:
        items: dict[str, Any] = {}
        if use_h2:
            items["check_h2load"] = lambda: h2load(target, CHECK, deep_body, duration=duration)
            items["check_bulk_h2load"] = lambda: h2load(
                target, CHECK_BULK, bulk_body, duration=duration, streams=4
            )
        items["check_mix_py"] = lambda: run_loadgen(target, reqs["check_mix"], duration=duration)
        return items

    for n in workers:
        label = f"x{n}"
        _say(f"[{label}] starting floor and stonetown (loading {size_label(size)})")
        servers = {"floor": start_floor(n, logs / f"floor-{n}.log")}
        if n == 1 and use_h2 and not writes_only:
            servers["floor_interceptor"] = start_floor(1, logs / "floor-i.log", interceptor=True)
        servers["stonetown"] = start_stonetown(path, n, logs / f"stonetown-{n}.log")
        try:
            rows: dict[str, dict[str, Any]] = {name: {} for name in servers}
            st = servers["stonetown"]
            rows["stonetown"]["ready_seconds"] = round(st.ready_seconds, 2)
            rows["stonetown"]["rss_bytes"] = st.rss()
            for key in {} if writes_only else check_workloads(st.target):
                sides = [name for name in servers if name != "floor_interceptor" or key == "check_h2load"]
                runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
                for rep in range(reps):
                    for name in sides:
                        _say(f"[{label}] {key} on {name} ({rep + 1}/{reps})")
                        if name == "stonetown":
                            bump_revision(servers[name].target)
                        runs[name].append(servers[name].measured(check_workloads(servers[name].target)[key]))
                    a, b = runs["stonetown"][-1], runs["floor"][-1]
                    paired.setdefault(f"{key}/stonetown_x{n}_vs_floor_x{n}", []).append(
                        round(a["throughput_per_s"] / b["throughput_per_s"], 3)
                    )
                for name in sides:
                    rows[name][key] = _best(runs[name])
                if key == "check_bulk_h2load":
                    for name in sides:
                        rows[name][key]["checks_per_s"] = rows[name][key]["throughput_per_s"] * 100
            if n == 1:
                row = rows["stonetown"]
                if use_h2 and not writes_only:
                    half = row["check_h2load"]["throughput_per_s"] / 2
                    # h2load's paced clients send in bursts: the floor at the same rate shows
                    # how much of the latency is the load generator and grpc.aio alone. One
                    # 5 s run's p99 is set by whatever else ran on the machine then, so the
                    # two alternate `reps` times and each keeps its median-p99 run.
                    half_runs: dict[str, list[dict[str, Any]]] = {"stonetown": [], "floor": []}
                    for rep in range(reps):
                        for name in half_runs:
                            _say(f"[{label}] h2load Check at {half:.0f}/s on {name} ({rep + 1}/{reps})")
                            half_runs[name].append(
                                h2load(servers[name].target, CHECK, deep_body, duration=duration, rps=half)
                            )
                        paired.setdefault("check_h2load_half_rate_p99/stonetown_x1_vs_floor_x1", []).append(
                            round(half_runs["stonetown"][-1]["p99_us"] / half_runs["floor"][-1]["p99_us"], 3)
                        )
                    for name, half_rows in half_runs.items():
                        rows[name]["check_h2load_half_rate"] = _median_p99(half_rows)
                    _say(f"[{label}] h2load LookupResources (big)")
                    row["lookup_resources_big_h2load"] = h2load(
                        st.target, LOOKUP_RESOURCES, reqs["lookup_resources_big"][0][2],
                        duration=duration, clients=1, streams=1,
                    )  # fmt: skip
                if not writes_only:
                    half_py = row["check_mix_py"]["throughput_per_s"] / 2
                    bump_revision(st.target)
                    _say(f"[{label}] python loadgen Check mix at half max ({half_py:.0f}/s)")
                    row["check_mix_py_half_rate"] = run_loadgen(
                        st.target, reqs["check_mix"], duration=duration, rate=half_py
                    )
                    _say(f"[{label}] LookupResources")
                    row["lookup_resources_py"] = run_loadgen(
                        st.target, reqs["lookup_resources"], concurrency=4, duration=duration
                    )
                # alternating with the floor's WriteRelationships (acknowledged at once)
                write_runs: dict[str, list[dict[str, Any]]] = {"floor": [], "stonetown": []}
                for rep in range(reps):
                    for name in write_runs:
                        _say(f"[{label}] WriteRelationships single, 16 clients, {name} ({rep + 1}/{reps})")
                        write_runs[name].append(
                            run_loadgen(
                                servers[name].target, reqs["write_single"], concurrency=16, duration=duration
                            )
                        )
                    paired.setdefault("write_single_py/stonetown_x1_vs_floor_x1", []).append(
                        round(
                            write_runs["stonetown"][-1]["throughput_per_s"]
                            / write_runs["floor"][-1]["throughput_per_s"],
                            3,
                        )
                    )
                row["write_single_py"] = _best(write_runs["stonetown"])
                rows["floor"]["write_single_py"] = _best(write_runs["floor"])
                _say(f"[{label}] WriteRelationships batch 100, 4 concurrent clients")
                batch = run_loadgen(st.target, reqs["write_batch_100"], concurrency=4, duration=duration)
                batch["relationships_per_s"] = batch["throughput_per_s"] * 100
                row["write_batch_100_py"] = batch
                _say(f"[{label}] mixed 95% Check / 5% WriteRelationships")
                row["mixed_95_5_py"] = run_loadgen(st.target, reqs["mixed_95_5"], duration=duration)
                _say(f"[{label}] ImportRelationships, one stream of 100,000")
                row["import_grpc"] = grpc_import(st.target, 100_000, str(int(time.time())))
            rows["stonetown"]["rss_bytes_after"] = st.rss()
            for name, row in rows.items():
                result.setdefault(name, {})[f"workers_{n}"] = row
        finally:
            for server in servers.values():
                server.stop()
    shutil.rmtree(logs, ignore_errors=True)
    remove_store(path)
    result["loadavg_end"] = list(os.getloadavg())
    _ratios(result)
    print_summary(result)
    write_result(f"{'grpc_writes' if writes_only else 'grpc'}-{result['size_label']}", result)
    return result


def _ratios(result: dict[str, Any]) -> None:
    ratios: dict[str, float] = {}
    st, fl = result["stonetown"], result["floor"]

    def tp(row: dict[str, Any], key: str) -> float:
        return float(row.get(key, {}).get("throughput_per_s", float("nan")))

    for key in ("check_h2load", "check_bulk_h2load", "check_mix_py"):
        for n in (1, 2):
            w = f"workers_{n}"
            if w in st and w in fl and key in st[w]:
                ratios[f"{key}/stonetown_x{n}_vs_floor_x{n}"] = round(tp(st[w], key) / tp(fl[w], key), 3)
            # requests per server CPU second, Stonetown's over the floor's: holds when the
            # machine is shared, where throughput follows whatever else runs
            cpu_st = st.get(w, {}).get(key, {}).get("median_server_cpu_us_per_request")
            cpu_fl = fl.get(w, {}).get(key, {}).get("median_server_cpu_us_per_request")
            if cpu_st and cpu_fl:
                ratios[f"{key}/stonetown_x{n}_vs_floor_x{n}_requests_per_cpu_s"] = round(cpu_fl / cpu_st, 3)
        if "workers_1" in st and "workers_2" in st and key in st["workers_1"]:
            ratios[f"{key}/stonetown_x2_vs_x1"] = round(
                tp(st["workers_2"], key) / tp(st["workers_1"], key), 3
            )
    w1_st, w1_fl = st.get("workers_1", {}), fl.get("workers_1", {})
    if "write_single_py" in w1_st and "write_single_py" in w1_fl:
        ratios["write_single_py/stonetown_x1_vs_floor_x1"] = round(
            tp(w1_st, "write_single_py") / tp(w1_fl, "write_single_py"), 3
        )
    fi = result.get("floor_interceptor", {}).get("workers_1", {})
    if "check_h2load" in fi and "workers_1" in fl:
        ratios["check_h2load/floor_interceptor_vs_floor"] = round(
            tp(fi, "check_h2load") / tp(fl["workers_1"], "check_h2load"), 3
        )
    result["ratios"] = ratios


def print_summary(result: dict[str, Any]) -> None:
    """A table of the result on stdout."""
    print(f"== gRPC, {result['size_label']} (each run {result['duration_s']} s)")
    head = ("server", "workload", "req/s", "p50 us", "p90 us", "p99 us", "max us")
    print("{:22} {:30} {:>10} {:>9} {:>9} {:>9} {:>10}".format(*head))
    for side in ("floor", "floor_interceptor", "stonetown"):
        for workers, rows in result.get(side, {}).items():
            for name, row in rows.items():
                if not isinstance(row, dict):
                    continue
                if "p50_us" not in row:
                    if "relationships_per_s" in row:  # the import
                        print(
                            f"{side + ' ' + workers:22} {name:30} {row['relationships_per_s']:>10.0f} rel/s"
                        )
                    continue
                print(
                    f"{side + ' ' + workers:22} {name:30} {row['throughput_per_s']:>10.0f} "
                    f"{row['p50_us']:>9.0f} {row['p90_us']:>9.0f} {row['p99_us']:>9.0f} "
                    f"{row['max_us']:>10.0f}"
                )
    for name, value in result["ratios"].items():
        print(f"ratio {name}: {value} (best runs); paired runs: {result['paired_ratios'].get(name, '-')}")
