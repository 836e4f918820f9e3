"""What a caveat costs a check: `python -m benchmarks.caveat_cost [--checks N] [--relationships R]`.

In one process, two PermissionSystems over a MemoryDatastore hold the same data: R direct
grants `document:dX#viewer@user:uY` over R / 10 documents (each document also has a plain
owner). In the *plain* system the grant is uncaveated; in the *caveated* one every grant
carries `valid_until` with its own stored `expires`:

    caveat valid_until(now timestamp, expires timestamp) { now < expires }

Then N checks `document:dX#view@user:uY` on existing grants are timed one at a time
(``await PermissionSystem.check``, minimize-latency consistency, the whole-check cache emptied
before each call so every call walks the graph), in these modes:

- ``plain``: the uncaveated grant (ALLOWED);
- ``caveated``: the caveated grant with a `now` that differs per request, as a service sending
  the current time does; the caveat's outcome cache (results by parameter values) is emptied
  before each call, so the CEL expression runs every time (ALLOWED);
- ``caveated_cached``: the same `now` for every request, the outcome cache kept: stored
  `expires` values repeat (50 distinct end dates), so it answers without running CEL (ALLOWED);
- ``conditional``: the caveated grant with no context, outcome cache emptied: CEL runs, fails
  on the missing `now`, the answer is CONDITIONAL (missing `now`);
- ``conditional_cached``: the same with the outcome cache kept.

The modes are interleaved in rounds so machine noise spreads over all of them. Every answer is
verified. Prints p50 / p99 / mean in microseconds and the ratios to ``plain``, and writes JSON to
benchmarks/results/caveat_cost.json (or --output).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import memory_system
from stonetown.core.relationship import ContextualizedCaveat, ObjectRef, Relationship, SubjectRef
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import Consistency, Permissionship

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "caveat_cost.json"
CAVEAT = "caveat valid_until(now timestamp, expires timestamp) {\n    now < expires\n}"
MODES = ("plain", "caveated", "caveated_cached", "conditional", "conditional_cached")
VIEWERS_PER_DOCUMENT = 10
ROUNDS = 5
#: every stored `expires` lies after this instant, and every request's `now` before it
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def schema_text(caveated: bool) -> str:
    """The schema of one side: the direct `viewer` grant with or without the caveat."""
    grant = "user with valid_until" if caveated else "user"
    return (
        f"{CAVEAT}\n\n"
        "definition user {}\n\n"
        "definition document {\n"
        "    relation owner: user\n"
        f"    relation viewer: {grant}\n"
        "    permission view = owner + viewer\n"
        "}\n"
    )


def _stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Data:
    """The grants of both sides (same keys), and the checks to time."""

    plain: list[Relationship]
    caveated: list[Relationship]
    checks: list[tuple[ObjectRef, SubjectRef]]


def generate(relationships: int, checks: int, seed: int) -> Data:
    """`relationships` viewer grants (plus one owner per document) and `checks` existing grants
    to check, the same for both sides."""
    rng = random.Random(seed)
    documents = max(1, relationships // VIEWERS_PER_DOCUMENT)
    users = max(VIEWERS_PER_DOCUMENT, relationships // 5)
    plain: list[Relationship] = []
    caveated: list[Relationship] = []
    grants: list[tuple[ObjectRef, SubjectRef]] = []
    for doc in range(documents):
        owner = Relationship("document", f"d{doc}", "owner", "user", f"owner{doc}")
        plain.append(owner)
        caveated.append(owner)
    seen: set[tuple[int, int]] = set()
    while len(grants) < relationships:
        doc, user = rng.randrange(documents), rng.randrange(users)
        if (doc, user) in seen:
            continue
        seen.add((doc, user))
        rel = Relationship("document", f"d{doc}", "viewer", "user", f"u{user}")
        plain.append(rel)
        # a stored `expires` per grant, in whole days so that many grants share one (the
        # `*_cached` modes rely on the outcome cache seeing repeats)
        expires = NOW + timedelta(days=1 + len(grants) % 50)
        caveat = ContextualizedCaveat("valid_until", {"expires": _stamp(expires)})
        caveated.append(Relationship("document", f"d{doc}", "viewer", "user", f"u{user}", "", caveat))
        grants.append((rel.resource, rel.subject))
    return Data(plain, caveated, [grants[rng.randrange(len(grants))] for _ in range(checks)])


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    rank = min(len(sorted_values) - 1, max(0, int(round(q * len(sorted_values) + 0.5)) - 1))
    return float(sorted_values[rank])


def summarize(samples_ns: Sequence[int]) -> dict[str, float]:
    """p50 / p90 / p99 / max / mean in microseconds, and the count."""
    values = sorted(ns / 1000.0 for ns in samples_ns)
    return {
        "count": len(values),
        "p50_us": round(percentile(values, 0.50), 2),
        "p90_us": round(percentile(values, 0.90), 2),
        "p99_us": round(percentile(values, 0.99), 2),
        "max_us": round(values[-1], 2) if values else float("nan"),
        "mean_us": round(sum(values) / len(values), 2) if values else float("nan"),
    }


_EXPECTED = {
    "plain": Permissionship.ALLOWED,
    "caveated": Permissionship.ALLOWED,
    "caveated_cached": Permissionship.ALLOWED,
    "conditional": Permissionship.CONDITIONAL,
    "conditional_cached": Permissionship.CONDITIONAL,
}


def _outcome_cache(system: PermissionSystem) -> dict[str, Any] | None:
    """The caveat's outcome cache (an engine detail: None if the engine has none)."""
    if system.state is None or "valid_until" not in system.state.schema.caveats:
        return None
    outcomes = getattr(system.state.caveats.compiled("valid_until"), "_outcomes", None)
    return outcomes if isinstance(outcomes, dict) else None


async def _time_mode(
    mode: str,
    system: PermissionSystem,
    checks: Sequence[tuple[ObjectRef, SubjectRef]],
    offset: int,
    samples: list[int],
) -> None:
    """Time one check per item of `checks`, appending nanoseconds to `samples`; verify answers."""
    consistency = Consistency.minimize_latency()
    cache = system.check_cache.entries
    outcomes = _outcome_cache(system) if mode in ("caveated", "conditional") else None
    clock = time.perf_counter_ns
    expected = _EXPECTED[mode]
    same = {"now": _stamp(NOW)}
    if mode.endswith("_cached"):
        for resource, subject in checks:  # untimed: the outcome cache sees every stored `expires`
            await system.check(
                resource, "view", subject, consistency, same if mode == "caveated_cached" else None
            )
    for i, (resource, subject) in enumerate(checks, start=offset):
        if mode == "caveated":
            # a different `now` for every request, as a service sending the current time
            context: dict[str, Any] | None = {"now": _stamp(NOW - timedelta(microseconds=i + 1))}
        elif mode == "caveated_cached":
            context = same
        else:
            context = None
        cache.clear()
        if outcomes is not None:
            outcomes.clear()
        t0 = clock()
        result = await system.check(resource, "view", subject, consistency, context)
        samples.append(clock() - t0)
        if result.permissionship is not expected or (
            mode.startswith("conditional") and result.missing_parameters != ("now",)
        ):
            raise AssertionError(f"{mode}: {resource}#view@{subject} answered {result}, expected {expected}")


async def measure(relationships: int, checks: int, seed: int, warmup: int) -> dict[str, Any]:
    """Build both systems, time every mode (interleaved rounds), return the JSON result."""
    data = generate(relationships, checks, seed)
    build_start = time.perf_counter()
    plain = await memory_system(schema_text(False), data.plain)
    caveated = await memory_system(schema_text(True), data.caveated)
    build_seconds = time.perf_counter() - build_start
    systems = {mode: plain if mode == "plain" else caveated for mode in MODES}
    outcome_cache_found = _outcome_cache(caveated) is not None
    try:
        for mode in MODES:  # warm-up: compile the caveat, fill interpreter caches
            await _time_mode(mode, systems[mode], data.checks[:warmup], 10_000_000, [])
        samples: dict[str, list[int]] = {mode: [] for mode in MODES}
        rounds = max(1, min(ROUNDS, checks))
        size = -(-checks // rounds)
        for start in range(0, checks, size):
            for mode in MODES:
                await _time_mode(mode, systems[mode], data.checks[start : start + size], start, samples[mode])
    finally:
        await plain.stop()
        await caveated.stop()
    results = {mode: summarize(samples[mode]) for mode in MODES}
    base = results["plain"]
    ratios = {
        mode: {
            "p50": round(results[mode]["p50_us"] / base["p50_us"], 2),
            "p99": round(results[mode]["p99_us"] / base["p99_us"], 2),
            "mean": round(results[mode]["mean_us"] / base["mean_us"], 2),
        }
        for mode in MODES
        if mode != "plain"
    }
    return {
        "benchmark": "caveat_cost",
        "operation": "await PermissionSystem.check (MemoryDatastore, whole-check cache emptied per call)",
        "caveat": CAVEAT,
        "relationships": len(data.plain),
        "viewer_grants": relationships,
        "checks_per_mode": checks,
        "outcome_cache_emptied": outcome_cache_found,
        "warmup_per_mode": warmup,
        "seed": seed,
        "build_seconds": round(build_seconds, 2),
        "modes": results,
        "ratio_to_plain": ratios,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def render(result: dict[str, Any]) -> str:
    """The result as a small text table."""
    lines = [
        f"caveat cost: {result['relationships']:,} relationships "
        f"({result['viewer_grants']:,} viewer grants), {result['checks_per_mode']:,} checks per mode",
        f"  {result['operation']}",
        f"  {'mode':<24}{'p50 µs':>10}{'p99 µs':>10}{'mean µs':>10}{'p50 ×':>9}{'p99 ×':>9}",
    ]
    for mode in MODES:
        row = result["modes"][mode]
        ratio = result["ratio_to_plain"].get(mode, {"p50": 1.0, "p99": 1.0})
        lines.append(
            f"  {mode:<24}{row['p50_us']:>10.1f}{row['p99_us']:>10.1f}{row['mean_us']:>10.1f}"
            f"{ratio['p50']:>9.2f}{ratio['p99']:>9.2f}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.caveat_cost", description="Cost of a CEL caveat on a direct grant."
    )
    parser.add_argument(
        "--checks", type=int, default=10_000, help="timed checks per mode (default %(default)s)"
    )
    parser.add_argument(
        "--relationships", type=int, default=10_000, help="viewer grants per side (default %(default)s)"
    )
    parser.add_argument("--warmup", type=int, default=500, help="untimed checks per mode first")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file (default %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON; exit code 0."""
    args = build_parser().parse_args(argv)
    if args.checks < 1 or args.relationships < VIEWERS_PER_DOCUMENT:
        raise SystemExit(f"--checks must be >= 1 and --relationships >= {VIEWERS_PER_DOCUMENT}")
    result = asyncio.run(measure(args.relationships, args.checks, args.seed, max(1, args.warmup)))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(render(result))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
