"""Smoke test of `python -m benchmarks.caveat_cost`: it runs end to end with a tiny N, verifies
every answer it times and writes its JSON (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODES = ["caveated", "caveated_cached", "conditional", "conditional_cached", "plain"]


def test_both_sides_hold_the_same_grants() -> None:
    """The plain and caveated data differ only by the caveat on the viewer grants."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks.caveat_cost import generate, schema_text

    data = generate(200, 50, seed=3)
    assert [rel.key for rel in data.plain] == [rel.key for rel in data.caveated]
    viewers = [rel for rel in data.caveated if rel.relation == "viewer"]
    assert len(viewers) == 200 and len({rel.key for rel in viewers}) == 200
    assert all(rel.caveat is not None and rel.caveat.name == "valid_until" for rel in viewers)
    assert all(rel.caveat is None for rel in data.plain)
    assert {(str(r), str(s)) for r, s in data.checks} <= {(str(v.resource), str(v.subject)) for v in viewers}
    assert "relation viewer: user with valid_until\n" in schema_text(True)
    assert "relation viewer: user\n" in schema_text(False)


def test_module_runs_and_writes_json(tmp_path: Path) -> None:
    """A run with 30 checks per mode prints the table and writes counts and ratios per mode."""
    out = tmp_path / "caveat_cost.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.caveat_cost",
            "--checks",
            "30",
            "--relationships",
            "100",
            "--warmup",
            "5",
            "--output",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert sorted(result["modes"]) == MODES
    assert all(result["modes"][mode]["count"] == 30 for mode in MODES)
    assert sorted(result["ratio_to_plain"]) == [mode for mode in MODES if mode != "plain"]
    assert result["relationships"] == 110 and result["outcome_cache_emptied"] is True
    for mode in MODES:
        assert mode in done.stdout
    assert str(out) in done.stdout
