"""The column-wise index update of an import agrees with adding one relationship at a time."""

from __future__ import annotations

import gc
from datetime import UTC, datetime

import pytest

from stonetown.core.relationship import ContextualizedCaveat, Relationship
from stonetown.engine import bulk_import
from stonetown.engine.index import RelationshipIndex


def sample(count: int) -> list[Relationship]:
    """`count` valid relationships of a few shapes (wildcards and subject sets included)."""
    rels = []
    for n in range(count):
        kind = n % 4
        if kind == 0:
            rels.append(Relationship("document", f"d{n}", "viewer", "user", f"u{n % 9}"))
        elif kind == 1:
            rels.append(Relationship("document", f"d{n}", "viewer", "user", "*"))
        elif kind == 2:
            rels.append(Relationship("org/document", f"x|{n}=+-_/", "editor", "team", f"t{n}", "member"))
        else:
            rels.append(Relationship("document", "A" * 1024, "viewer", "user", "B" * 1024))
    return rels


def index_state(index: RelationshipIndex) -> tuple[object, ...]:
    """What the index holds, comparable across indexes."""
    reverse = {key: set(holders) for key, holders in index.reverse.items()}
    return index.objects, index.usersets, reverse, index.count


@pytest.mark.parametrize("with_meta", [False, True])
def test_add_to_index_matches_adding_one_by_one(with_meta: bool) -> None:
    rels = sample(300)
    if with_meta:
        rels[10] = Relationship(
            "document", "c", "viewer", "user", "u1", "", ContextualizedCaveat("ip", {"a": 1})
        )
        rels[20] = Relationship(
            "document", "e", "viewer", "user", "u2", expiration=datetime(2300, 1, 1, tzinfo=UTC)
        )
    before = Relationship("document", "d0", "viewer", "user", "u0")  # already there: replaced
    expected = RelationshipIndex()
    expected.add(before)
    for rel in rels:
        expected.add(rel)
    index = RelationshipIndex()
    index.add(before)
    bulk_import.add_to_index(index, rels)
    assert index_state(index) == index_state(expected)


def test_add_to_index_restores_the_collector_state() -> None:
    rels = sample(10)
    assert gc.isenabled()
    bulk_import.add_to_index(RelationshipIndex(), rels)
    assert gc.isenabled()
    gc.disable()
    try:
        bulk_import.add_to_index(RelationshipIndex(), rels)
        assert not gc.isenabled()
    finally:
        gc.enable()
