"""The soak's health prober, in a process of its own (`python -m benchmarks.health_prober`).

A probe run as a thread of the soak's harness shares that process's GIL and collector with
the attack threads (building 5,000-relationship imports, 300-definition schemas, hundreds of
client calls a second): its own wait for the GIL is counted in the latency it measures. In
a process of its own, a late answer is the server's or the machine's. The soak runs both
(``health`` and ``health_in_harness``) so the difference shows.
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

LATE = 0.1  # seconds: a probe slower than this is listed with when it was sent


@dataclass
class HealthProbe:
    """Asks health every `interval` seconds on its own connection; keeps every latency, and
    the wall-clock time of each one over :data:`LATE` (to match with the server's log)."""

    address: str
    interval: float = 0.05
    deadline: float = 10.0  # a liveness bound: the latencies themselves are the figures
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    late: list[tuple[str, float]] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        """Probe until `stop` is set."""
        channel = grpc.insecure_channel(self.address, options=[("grpc.use_local_subchannel_pool", 1)])
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            while not stop.is_set():
                sent, started = time.time(), time.perf_counter()
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=self.deadline)
                    took = time.perf_counter() - started
                    self.latencies.append(took)
                    if took > LATE:
                        self.late.append((_utc(sent), round(took * 1000, 1)))
                    if reply.status != health_pb2.HealthCheckResponse.SERVING:
                        self.failures.append(f"status {reply.status}")
                except grpc.RpcError as exc:
                    self.failures.append(exc.code().name)  # type: ignore[attr-defined]
                stop.wait(self.interval)
        finally:
            channel.close()

    def summary(self) -> dict[str, object]:
        """p50 / p99 / max in milliseconds, probe and failure counts, the late probes."""
        if not self.latencies:
            return {"probes": 0, "failures": len(self.failures)}
        ordered = sorted(self.latencies)
        return {
            "probes": len(ordered),
            "failures": len(self.failures),
            "p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2),
            "over_100ms": sum(1 for value in ordered if value > LATE),
            "failed": self.failures[:20],
            "late": [f"{stamp} {ms}ms" for stamp, ms in self.late[:200]],
        }


def _utc(seconds: float) -> str:
    """The server log's time stamp format (api/logs.py), to the millisecond."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}Z"


class ProbeProcess:
    """:class:`HealthProbe` run in a child process until :meth:`stop`."""

    def __init__(self, address: str, out: Path) -> None:
        self.out = out
        self.process = subprocess.Popen([sys.executable, "-m", "benchmarks.health_prober", address, str(out)])

    def stop(self) -> dict[str, object]:
        """Stop the child; its summary (or why there is none)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        try:
            return json.loads(self.out.read_text())
        except (OSError, ValueError) as exc:
            return {"probes": 0, "error": repr(exc)}


def main(address: str, out: str) -> None:
    """Probe `address` until SIGTERM, then write the summary to `out` as JSON."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    probe = HealthProbe(address)
    thread = threading.Thread(target=probe.run, args=(stop,))
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
    Path(out).write_text(json.dumps(probe.summary()))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
