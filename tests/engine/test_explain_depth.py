"""Explain answers whenever Check answers near the depth limit (engine/explain.py): a branch
Check skips (the subtracted side under a base that does not hold, an intersection's operand
after a failing one, a union's operand beside a grant) may meet the limit when the tree
evaluates it; it is shown skipped, not evaluated, and the answer is Check's. Where Check
fails with the depth error, Explain fails the same way. Over a real SQLite store."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import pytest

from stonetown.api.pb import permission
from stonetown.api.trace import trace_from_proto, trace_to_proto
from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine.check import DepthExceeded
from stonetown.engine.datastore import Update, UpdateOp
from stonetown.engine.explain import SKIPPED, ExplainNode, granting_path, render
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import Consistency, Permissionship
from stonetown.stores.sqlite import SqliteDatastore

# `deep` and `banned` hold through four levels of subject sets (no recursive relation: no
# closure answers them in one step), so their evaluation needs a depth of 5
SCHEMA = """
definition user {}
definition lthree { relation member: user }
definition ltwo { relation member: lthree#member }
definition lone { relation member: ltwo#member }
definition lzero { relation member: lone#member }
definition doc {
    relation owner: user
    relation viewer: user
    relation banned: lzero#member
    relation deep: lzero#member
    permission view = owner - banned
    permission both = owner & deep
    permission either = viewer + deep
}
"""
RELATIONSHIPS = [
    "lthree:c#member@user:ana",
    "ltwo:b#member@lthree:c#member",
    "lone:a#member@ltwo:b#member",
    "lzero:z#member@lone:a#member",
    "doc:d#banned@lzero:z#member",
    "doc:d#deep@lzero:z#member",
    "doc:d#viewer@user:bob",
    "doc:d#owner@user:ana",
]


Tree = TypeVar("Tree", ExplainNode, permission.CheckTrace)


def _nodes(tree: Tree) -> list[Tree]:
    """Every node of an explanation, or of its wire form."""
    out, stack = [], [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node.children)
    return out


async def _system(tmp_path: Path, max_depth: int) -> PermissionSystem:
    store = SqliteDatastore(str(tmp_path / f"d{max_depth}.db"))
    system = PermissionSystem(store, max_depth=max_depth, poll_interval=None, gc_interval=None)
    await system.start()
    await system.write_schema(SCHEMA)
    await system.write_relationships([Update(UpdateOp.TOUCH, Relationship.parse(r)) for r in RELATIONSHIPS])
    return system


@pytest.mark.parametrize("max_depth", [2, 4])
async def test_a_branch_check_skips_is_skipped_where_it_meets_the_limit(
    tmp_path: Path, max_depth: int
) -> None:
    system = await _system(tmp_path, max_depth)
    fresh, bob = Consistency.fully_consistent(), SubjectRef("user", "bob")
    doc = ObjectRef("doc", "d")
    try:
        expected = {
            "view": ("doc:d#banned", Permissionship.DENIED, "the base does not hold"),
            "both": ("doc:d#deep", Permissionship.DENIED, "another operand does not hold"),
            "either": ("doc:d#deep", Permissionship.ALLOWED, "another operand grants"),
        }
        for name, (label, answer, why) in expected.items():
            assert (await system.check(doc, name, bob, fresh)).permissionship is answer
            tree, explained = await system.explain(doc, name, bob, fresh)
            assert explained.permissionship is answer and tree.result is answer, name
            skipped = [node for node in _nodes(tree) if node.kind == SKIPPED]
            assert [node.label for node in skipped] == [label], name
            assert why in skipped[0].reason and f"depth limit of {max_depth}" in skipped[0].reason
            operator = next(node for node in _nodes(tree) if skipped[0] in node.children)
            assert label not in operator.reason  # not named a failing operand
            data = tree.to_dict()
            text = render(data)
            assert f"· {label}" in text and "not evaluated" in text
            if answer is Permissionship.ALLOWED:
                assert granting_path(data) == ["doc:d#either", "doc:d#viewer", "doc:d#viewer@user:bob"]
            # on the wire the skipped node has no value; read back, DENIED (its value by convention)
            message = trace_to_proto(tree)
            wired = [child for child in _nodes(message) if child.kind == SKIPPED]
            assert [child.result for child in wired] == [permission.PERMISSIONSHIP_UNSPECIFIED]
            assert trace_from_proto(message) == data
        # ana's checks evaluate the deep branches: Check meets the limit, Explain the same way
        ana = SubjectRef("user", "ana")
        for name in expected:
            with pytest.raises(DepthExceeded) as checked:
                await system.check(doc, name, ana, fresh)
            with pytest.raises(DepthExceeded) as explained_error:
                await system.explain(doc, name, ana, fresh)
            assert str(explained_error.value) == str(checked.value)
    finally:
        await system.stop()


async def test_with_room_nothing_is_skipped(tmp_path: Path) -> None:
    system = await _system(tmp_path, 6)
    fresh, doc = Consistency.fully_consistent(), ObjectRef("doc", "d")
    try:
        for who, name, answer in [
            ("ana", "view", Permissionship.DENIED),
            ("ana", "both", Permissionship.ALLOWED),
            ("bob", "view", Permissionship.DENIED),
            ("bob", "both", Permissionship.DENIED),
        ]:
            subject = SubjectRef("user", who)
            assert (await system.check(doc, name, subject, fresh)).permissionship is answer
            tree, explained = await system.explain(doc, name, subject, fresh)
            assert explained.permissionship is answer
            nodes = _nodes(tree)
            assert not [node for node in nodes if node.kind == SKIPPED or "not expanded" in node.reason]
        tree, _ = await system.explain(doc, "view", SubjectRef("user", "ana"), fresh)
        assert "excluded: doc:d#banned holds" in tree.children[0].reason
    finally:
        await system.stop()
