"""Relationships decoded in bulk share their strings (``Relationship.shared``).

Issue #18's soak: after the mix the server kept 20-25 more of pymalloc's 1 MiB arenas than it
started with, each pinned by a few long-lived objects allocated while the bursts were alive.
A 5,000-row import and every change-log read of it (the change feed, for Watch) were 30,000+
small strings each, one per field of every row, where a handful of distinct values repeat. These
tests read a real SQLite file and a real protobuf message and count the distinct string objects
the relationships hold: one per distinct value, not one per row."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlite_holding import sqlite_holding

from stonetown.api import convert as cv
from stonetown.api.pb import core, relationship
from stonetown.core.relationship import Relationship
from stonetown.engine.datastore import RelationshipFilter
from stonetown.stores.sqlite import SqliteDatastore

ROWS = 2_000


def _distinct_objects(rels: list[Relationship], field: str) -> int:
    return len({id(getattr(rel, field)) for rel in rels})


def _assert_shared(rels: list[Relationship]) -> None:
    assert len(rels) == ROWS
    for field in ("resource_type", "relation", "subject_type"):
        assert _distinct_objects(rels, field) == 1, field
    assert _distinct_objects(rels, "resource_id") == 3  # doc0, doc1, doc2
    assert _distinct_objects(rels, "subject_relation") == 1


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteDatastore]:
    """A store on a real file holding ROWS relationships over three documents."""
    texts = (f"document:doc{i % 3}#viewer@user:someone-{i}" for i in range(ROWS))
    async with sqlite_holding(tmp_path / "store.db", texts) as datastore:
        yield datastore


async def test_change_log_read_shares_strings(store: SqliteDatastore) -> None:
    """What the change feed reads for Watch (a bulk import's revision): shared strings."""
    (batch,) = await store.changes(0)
    _assert_shared([change.relationship for change in batch.changes])


async def test_filtered_read_shares_strings(store: SqliteDatastore) -> None:
    """A read by filter (deletes, old revisions' buckets): shared strings."""
    revision = await store.head_revision()
    rels = await store.read(RelationshipFilter(resource_type="document"), revision)
    _assert_shared(list(rels))


def test_import_message_shares_strings() -> None:
    """An import request as the server receives it (serialized bytes, parsed by protobuf):
    every relationship's fields from its own string, now shared."""
    sent = relationship.ImportRelationshipsRequest(
        relationships=[
            core.Relationship(
                resource=core.ObjectReference(object_type="document", object_id=f"doc{i % 3}"),
                relation="viewer",
                subject=core.SubjectReference(
                    object=core.ObjectReference(object_type="user", object_id=f"u{i}")
                ),
            )
            for i in range(ROWS)
        ]
    )
    received = relationship.ImportRelationshipsRequest.FromString(sent.SerializeToString())
    cv.check_type_name("document", "resource")  # names validated once before, as a server does
    cv.check_type_name("user", "subject")
    cv.check_relation_name("viewer", "relation")
    rels = [cv.relationship_from_proto_quick(item) for item in received.relationships]
    assert all(rel is not None for rel in rels)
    _assert_shared([rel for rel in rels if rel is not None])


async def test_change_log_read_does_not_hold_every_raw_row(tmp_path: Path) -> None:
    """A change-log read decodes its rows as SQLite hands them over, a batch at a time: the
    raw rows (a tuple and a string per column each, twice what the decoded change holds) of a
    large revision were all alive at once before any was decoded."""
    datastore = SqliteDatastore(str(tmp_path / "large.db"), synchronous="OFF")
    await datastore.open()
    try:
        revision = await datastore.import_relationships(
            [Relationship.parse(f"document:doc{i % 3}#viewer@user:someone-{i}") for i in range(10_000)]
        )
        tracemalloc.start()
        try:
            (batch,) = await datastore.changes(revision - 1)
            kept, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(batch.changes) == 10_000
        # before: 1.7 times what it keeps beyond it (the rows); now 0.6 (a batch, the sort keys)
        assert peak - kept < kept, f"{peak - kept} bytes beyond the {kept} kept at the peak"
    finally:
        await datastore.close()
