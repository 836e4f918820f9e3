"""SpiceDB's consistency test configs on PostgreSQL: every file loaded through the engine into
a PostgreSQL store, then the consistency harness (Check, CheckBulk, lookups and Expand must all
agree). Reads ../shared/conformance/spicedb (skipped when absent)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pgcluster import PgCluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "conformance"))

from consistency_harness import cross_check  # noqa: E402

from stonetown.engine.system import PermissionSystem  # noqa: E402
from stonetown.engine.types import Consistency, Permissionship  # noqa: E402
from stonetown.stores.postgres import PostgresDatastore  # noqa: E402
from stonetown.validation.files import read_validation_file  # noqa: E402
from stonetown.validation.runner import load_into  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "spicedb"
FILES = sorted(CORPUS.glob("*.yaml")) if CORPUS.is_dir() else []
_EXPECTED = {
    "assertTrue": Permissionship.ALLOWED,
    "assertFalse": Permissionship.DENIED,
    "assertCaveated": Permissionship.CONDITIONAL,
}


@pytest.mark.skipif(not FILES, reason="../shared/conformance/spicedb is not present")
async def test_spicedb_corpus_on_postgres(pg_cluster: PgCluster) -> None:
    """All corpus files, each in a database of its own, in one test (one cluster round trip
    per file keeps this well under the time budget)."""
    pairs = assertions = 0
    problems: list[str] = []
    for path in FILES:
        parsed = read_validation_file(path)
        uri = await pg_cluster.new_database_async()
        loader = PermissionSystem(PostgresDatastore(uri), poll_interval=None, gc_interval=None)
        await loader.start()
        try:
            problems.extend(f"{path.name}: load: {failure}" for failure in await load_into(loader, parsed))
            loaded_at = loader.index.revision
        finally:
            await loader.stop()
        # A second system loads its index from the database (iter_all), not from the writes.
        system = PermissionSystem(PostgresDatastore(uri), poll_interval=None, gc_interval=None)
        await system.start()
        try:
            assert system.index.revision == loaded_at
            harness = await cross_check(system, [rel for rel, _line in parsed.relationships])
            pairs += harness.pairs
            problems.extend(f"{path.name}: {d}" for d in harness.disagreements or [])
            for assertion in parsed.assertions:
                assertions += 1
                rel = assertion.relationship
                result = await system.check(
                    rel.resource, rel.relation, rel.subject, Consistency.fully_consistent(), assertion.context
                )
                if result.permissionship is not _EXPECTED[assertion.kind]:
                    problems.append(f"{path.name}:{assertion.line}: {assertion.kind} {assertion.text} failed")
        finally:
            await system.stop()
    print(
        f"\nSpiceDB corpus on PostgreSQL: {len(FILES)} files, {assertions} assertions, "
        f"{pairs} pairs cross-checked"
    )
    assert problems == []
    assert len(FILES) >= 70 and pairs > 0 and assertions > 0
