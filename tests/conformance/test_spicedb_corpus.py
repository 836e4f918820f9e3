"""SpiceDB's consistency test configs: assertions, validation blocks and the consistency harness.

Reads ../shared/conformance/spicedb (skipped when absent). Every file runs, caveat and
expiration files included.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from consistency_harness import cross_check

from stonetown.engine.system import PermissionSystem
from stonetown.stores.memory import MemoryDatastore
from stonetown.stores.sqlite import SqliteDatastore
from stonetown.validation.files import read_validation_file
from stonetown.validation.runner import load_into, validate_parsed

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "spicedb"
FILES = sorted(CORPUS.glob("*.yaml")) if CORPUS.is_dir() else []
SUMMARY = {"files": 0, "assertions": 0, "pairs": 0}


def summary_line() -> str:
    """The corpus line the run ends with (see conftest.py): nothing is skipped."""
    return (
        f"SpiceDB corpus: {SUMMARY['files']} files, {SUMMARY['assertions']} assertions, "
        f"{SUMMARY['pairs']} pairs cross-checked, 0 skipped"
    )


def test_corpus_present():
    if not FILES:
        pytest.skip("../shared/conformance/spicedb is not present")
    assert len(FILES) >= 70


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_spicedb_file(path: Path, store_kind: str, tmp_path: Path) -> None:
    parsed = read_validation_file(path)
    if store_kind == "memory":
        report = await validate_parsed(parsed)
        assert report.failures == []
        SUMMARY["files"] += 1
        SUMMARY["assertions"] += report.assertions
    store = MemoryDatastore() if store_kind == "memory" else SqliteDatastore(str(tmp_path / "corpus.db"))
    system = PermissionSystem(store)
    await system.start()
    try:
        assert await load_into(system, parsed) == []
        harness = await cross_check(system, [rel for rel, _line in parsed.relationships])
        if store_kind == "memory":
            SUMMARY["pairs"] += harness.pairs
        assert harness.disagreements == []
    finally:
        await system.stop()
