"""PNG plots from the result files: latency vs dataset size, throughput vs workers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.common import results_dir


def _load(prefix: str) -> list[dict[str, Any]]:
    docs = [json.loads(p.read_text()) for p in sorted(results_dir().glob(f"{prefix}-*.json"))]
    return sorted(docs, key=lambda d: d["size"])


def plot_all(out_dir: Path | None = None) -> list[Path]:
    """Write latency_vs_size.png and throughput_vs_workers.png; return the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = out_dir or results_dir()
    written: list[Path] = []
    inproc = _load("inprocess")
    if inproc:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        sizes = [d["relationships"] for d in inproc]
        for name in (
            "check_core/mix",
            "check_core/deep_run",
            "check_core/denied_outsider",
            "check_facade/mix",
        ):
            for stat, style in (("p50_us", "-o"), ("p99_us", "--x")):
                values = [d["workloads"].get(name, {}).get(stat, float("nan")) for d in inproc]
                ax.plot(sizes, values, style, label=f"{name} {stat[:3]}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("relationships")
        ax.set_ylabel("latency (µs)")
        ax.set_title("In-process Check latency vs dataset size")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        path = out / "latency_vs_size.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    grpc_docs = _load("grpc")
    if grpc_docs:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for doc in grpc_docs:
            for side in ("floor", "stonetown"):
                for key in ("check_h2load", "check_mix_py"):
                    points = []
                    for workers, row in doc[side].items():
                        if workers.startswith("workers_") and key in row:
                            points.append((int(workers.split("_")[1]), row[key]["throughput_per_s"]))
                    if points:
                        points.sort()
                        ax.plot(
                            [p[0] for p in points],
                            [p[1] for p in points],
                            "-o",
                            label=f"{side} {key} ({doc['size_label']})",
                        )
        ax.set_xlabel("server worker processes")
        ax.set_ylabel("Check requests / s")
        ax.set_title("gRPC Check throughput vs workers (2-core machine, client included)")
        ax.set_xticks([1, 2])
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        path = out / "throughput_vs_workers.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
