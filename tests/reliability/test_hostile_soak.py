"""Issue #18's hostile mix, short: the server keeps answering health and honest callers.

The full ten-minute run is `python -m benchmarks soak` (its figures go in the notes); this slice
runs the same mix for the reliability budget and asserts liveness and correctness only.
"""

from __future__ import annotations

from pathlib import Path

from reliability_harness import Budget

from benchmarks.hostile_soak import run


def test_hostile_mix_leaves_health_and_honest_callers_served(tmp_path: Path, budget: Budget) -> None:
    figures = run(max(budget.soak_seconds, 15.0), tmp_path, settle=1.0)
    print(f"\n[reliability] hostile mix: {figures}")
    assert figures["server_alive_at_end"], figures
    assert figures["server_exit_code"] == 0, figures
    health = figures["health"]
    assert health["probes"] > 0 and health["failures"] == 0, figures
    attacks = figures["attacks"]
    assert attacks["legit"].get("allowed", 0) > 0, figures
    assert set(attacks["legit"]) == {"allowed"}, figures
    assert attacks["paged_lookup"].get("page-10", 0) > 0, figures
    assert set(attacks["unauth_calls"]) == {"UNAUTHENTICATED"}, figures
    assert "INTERNAL" not in str(attacks), figures
