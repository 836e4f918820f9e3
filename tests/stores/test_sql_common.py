"""The pieces both SQL stores build on (stores/sql_common.py), on a real SQLite database."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from stonetown.engine.datastore import RelationshipFilter, SubjectFilter
from stonetown.stores.sql_common import filter_sql, run_sync


async def _answer() -> int:
    return 42


async def _waits() -> int:
    await asyncio.sleep(0)
    return 1


def test_run_sync_runs_a_body_that_never_waits() -> None:
    """A body over a blocking connection completes in one step, with no event loop."""
    assert run_sync(_answer()) == 42


def test_run_sync_refuses_a_body_that_waits() -> None:
    """A body that suspends (it awaited real I/O) is an error, not a half-run transaction."""
    with pytest.raises(RuntimeError, match="waited"):
        run_sync(_waits())


@pytest.mark.parametrize(
    ("filter", "revision", "expected"),
    [
        (RelationshipFilter(), None, {"doc:a#viewer@user:ana"}),
        (RelationshipFilter(), 1, {"doc:a#viewer@user:ana", "doc:b#owner@user:bob"}),
        (RelationshipFilter(resource_type="doc", resource_id_prefix="b"), 1, {"doc:b#owner@user:bob"}),
        (
            RelationshipFilter(resource_type="doc", subject=SubjectFilter("user", "ana", "")),
            2,
            {"doc:a#viewer@user:ana"},
        ),
        (RelationshipFilter(relation="owner"), 2, set()),
    ],
)
def test_filter_sql_numbered_placeholders_select_the_rows(
    filter: RelationshipFilter, revision: int | None, expected: set[str]
) -> None:
    """The clause and its parameters (`?n`, the revision bound twice) select exactly the rows
    live at the revision that match the filter."""
    connection = sqlite3.connect(":memory:")
    connection.execute(
        "CREATE TABLE r (resource_type, resource_id, relation, subject_type, subject_id, "
        "subject_relation, created_revision, deleted_revision)"
    )
    connection.executemany(
        "INSERT INTO r VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [("doc", "a", "viewer", "user", "ana", "", 1, None), ("doc", "b", "owner", "user", "bob", "", 1, 2)],
    )
    params: list[object] = []
    where = filter_sql(filter, revision, params, "?")
    rows = connection.execute(
        f"SELECT resource_type, resource_id, relation, subject_id FROM r WHERE {where}", params
    ).fetchall()
    assert {f"{t}:{i}#{rel}@user:{s}" for t, i, rel, s in rows} == expected
