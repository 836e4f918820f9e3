"""The resolution tree (engine/explain.py) agrees with Check: on every file of SpiceDB's
consistency corpus and for every resource × permission × subject the file's data names, the
tree's answer is the Check's answer; a grant has a granting path ending at the subject (or a
wildcard or a subject set holding it); and every operator node's value (computed from its
children with the engine's own and/or/not) matches the engine's value of the permission
above it, wherever the data has no cycle. Also: the tree is bounded on wide data."""

from __future__ import annotations

from pathlib import Path

import pytest

from stonetown.core.relationship import ObjectRef, SubjectRef
from stonetown.engine.datastore import Update, UpdateOp
from stonetown.engine.explain import granting_path
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import Consistency
from stonetown.stores.memory import MemoryDatastore
from stonetown.validation.files import read_validation_file
from stonetown.validation.runner import load_into

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "spicedb"
FILES = sorted(CORPUS.glob("*.yaml")) if CORPUS.is_dir() else []
MAX_PAIRS = 400


def _nodes(tree: dict) -> list[dict]:
    out, stack = [], [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node["children"])
    return out


@pytest.mark.skipif(not FILES, reason="../shared/conformance/spicedb is absent")
@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_the_tree_answers_what_check_answers(path: Path) -> None:
    parsed = read_validation_file(path)
    system = PermissionSystem(MemoryDatastore(), poll_interval=None, gc_interval=None)
    await system.start()
    try:
        assert await load_into(system, parsed) == []
        assert system.state is not None
        schema = system.state.schema
        rels = [rel for rel, _line in parsed.relationships]
        resources = sorted({(r.resource_type, r.resource_id) for r in rels})
        stored = {(r.subject_type, r.subject_id, r.subject_relation or "") for r in rels}
        stored = {subject for subject in stored if subject[1] != "*"}
        asked = {(a.relationship.subject_type, a.relationship.subject_id, "") for a in parsed.assertions}
        subjects = sorted(stored) + sorted(asked)
        consistency = Consistency.fully_consistent()
        for assertion in parsed.assertions:  # with their caveat contexts
            rel = assertion.relationship
            question = (rel.resource, rel.relation, rel.subject, consistency, assertion.context)
            answer = await system.check(*question)
            _tree, explained = await system.explain(*question)
            assert explained == answer, (path.stem, assertion.text)
        pairs = 0
        for rtype, rid in resources:
            for name, relation in schema.definitions[rtype].relations.items():
                if not relation.is_permission:
                    continue
                for stype, sid, srel in dict.fromkeys(subjects):
                    if pairs >= MAX_PAIRS:
                        return
                    pairs += 1
                    resource, subject = ObjectRef(rtype, rid), SubjectRef(stype, sid, srel)
                    try:
                        answer = await system.check(resource, name, subject, consistency)
                    except Exception as exc:  # noqa: BLE001 - the tree must fail the same way
                        with pytest.raises(type(exc)):
                            await system.explain(resource, name, subject, consistency)
                        continue
                    tree, explained = await system.explain(resource, name, subject, consistency)
                    data = tree.to_dict()
                    where = (path.stem, resource, name, subject)
                    assert explained.permissionship is answer.permissionship, where
                    assert data["result"] == answer.permissionship.name
                    if answer.allowed:
                        path_labels = granting_path(data)
                        assert path_labels[0] == f"{rtype}:{rid}#{name}"
                    nodes = _nodes(data)
                    if any("cycle" in node["reason"] for node in nodes):
                        continue
                    for node in nodes:
                        if node["kind"] == "permission" and len(node["children"]) == 1:
                            assert node["children"][0]["result"] == node["result"], (path.stem, node["label"])
    finally:
        await system.stop()


async def test_a_wide_relation_is_explained_within_bounds() -> None:
    system = PermissionSystem(MemoryDatastore(), poll_interval=None, gc_interval=None)
    await system.start()
    try:
        await system.write_schema(
            "definition user {}\ndefinition team { relation member: user | team#member }\n"
            "definition doc { relation viewer: team#member\n permission view = viewer }"
        )
        rels = [f"doc:d#viewer@team:t{i}#member" for i in range(2000)]
        rels += [f"team:t{i}#member@user:u{i}" for i in range(2000)]
        from stonetown.core.relationship import Relationship

        await system.write_relationships([Update(UpdateOp.TOUCH, Relationship.parse(r)) for r in rels])
        tree, answer = await system.explain(
            ObjectRef("doc", "d"), "view", SubjectRef("user", "u1999"), Consistency.fully_consistent()
        )
        assert answer.allowed
        nodes = _nodes(tree.to_dict())
        assert len(nodes) < 500
        assert any(node["kind"] == "omitted" for node in nodes)
        tree, answer = await system.explain(
            ObjectRef("doc", "d"), "view", SubjectRef("user", "nobody"), Consistency.fully_consistent()
        )
        assert not answer.allowed and len(_nodes(tree.to_dict())) < 500
    finally:
        await system.stop()


async def test_caveats_in_the_tree_are_evaluated_under_the_requests_budget() -> None:
    from stonetown.core.errors import StonetownError
    from stonetown.core.relationship import Relationship

    system = PermissionSystem(MemoryDatastore(), poll_interval=None, gc_interval=None)
    await system.start()
    try:
        await system.write_schema(
            "caveat tagged(tags list<string>) { tags.all(x, tags.all(y, x == y || x != y)) }\n"
            "caveat weekday(day int) { day < 6 }\n"
            "definition user {}\ndefinition doc {\n relation viewer: user with weekday | user with tagged\n"
            " permission view = viewer\n}"
        )
        rels = ["doc:d#viewer@user:ana[weekday]", "doc:d#viewer@user:bob[tagged]"]
        await system.write_relationships([Update(UpdateOp.TOUCH, Relationship.parse(r)) for r in rels])
        fresh = Consistency.fully_consistent()
        ana = SubjectRef("user", "ana")
        tree, answer = await system.explain(ObjectRef("doc", "d"), "view", ana, fresh, {"day": 7})
        assert not answer.allowed
        assert "caveat weekday is false for the context" in str(tree.to_dict())
        tree, answer = await system.explain(ObjectRef("doc", "d"), "view", ana, fresh)
        assert answer.missing_parameters == ("day",)
        assert "caveat weekday needs context: day" in str(tree.to_dict())
        bomb = {"tags": [f"t{i}" for i in range(400)]}
        with pytest.raises(StonetownError, match="cost limit"):
            await system.explain(ObjectRef("doc", "d"), "view", SubjectRef("user", "bob"), fresh, bomb)
    finally:
        await system.stop()
