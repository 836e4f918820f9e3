"""LookupSubjects beside a wildcard as SpiceDB's subject-set algebra shapes it
(engine/subject_algebra.py), on cases ../shared/tools/spicedb/spicefuzz.py found and minimized.
tests/spicedb_diff's scenario `lookup_subjects_beside_wildcards` sends the same schema and
questions to the real SpiceDB; this asserts the answers it gave, so it runs everywhere."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine.conditions import CaveatLeaf
from stonetown.engine.datastore import Update, UpdateOp
from stonetown.engine.subject_algebra import EMPTY, SubjectSet, exclusion, intersection, union
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import CheckRequest, Consistency, Permissionship
from stonetown.stores.memory import MemoryDatastore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "spicedb_diff"))

from diff_schemas import (  # noqa: E402
    SPICEDB_QUIRKS,
    SPICEDB_QUIRKS_RELS,
    WILDCARD_SHAPES,
    WILDCARD_SHAPES_RELS,
)

Answer = list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]
CAVEAT = CaveatLeaf("c", ())


async def _system(schema: str, relationships: tuple[str, ...]) -> PermissionSystem:
    system = PermissionSystem(MemoryDatastore())
    await system.start()
    await system.write_schema(schema)
    await system.write_relationships([Update(UpdateOp.TOUCH, Relationship.parse(t)) for t in relationships])
    return system


async def _lookup(
    resource: str, permission: str, subject_type: str = "user", context: dict[str, Any] | None = None
) -> Answer:
    system = await _system(WILDCARD_SHAPES, WILDCARD_SHAPES_RELS)
    try:
        kind, _, relation = subject_type.partition("#")
        rtype, _, rid = resource.partition(":")
        found = system.lookup_subjects(
            ObjectRef(rtype, rid), permission, kind, relation, Consistency.fully_consistent(), context
        )
        return [
            (r.subject.id, "COND" if r.conditional else "HAS", r.excluded, r.conditionally_excluded)
            async for r, _ in found
        ]
    finally:
        await system.stop()


async def test_a_subject_one_side_names_and_the_other_sides_wildcard_covers_is_listed() -> None:
    # both = viewer & editor: {*} & {*, u1} is {*, u1}
    assert await _lookup("doc:d1", "both") == [("*", "HAS", (), ()), ("u1", "HAS", (), ())]


async def test_subjects_beside_a_conditional_wildcard_are_listed_under_its_condition() -> None:
    # view = shared & (shared + parent): {*[c]} & {*[c], u1, u2} is {*[c], u1[c], u2[c]}
    cond = [("*", "COND", (), ()), ("u1", "COND", (), ()), ("u2", "COND", (), ())]
    assert await _lookup("doc:d2", "view") == cond
    assert await _lookup("doc:d2", "view", context={"flag": True}) == [
        ("*", "HAS", (), ()), ("u1", "HAS", (), ()), ("u2", "HAS", (), ()),
    ]  # fmt: skip
    assert await _lookup("doc:d2", "view", context={"x": 2, "flag": False}) == []


async def test_the_wildcards_exclusions_are_the_algebras_not_only_what_check_answers_worse() -> None:
    # read = guest - owner.any(manage) - guest: `{*[c0]} - {u2[c]}` excludes u2 (under the
    # owner relationship's caveat), though Check answers u2 as it answers the wildcard
    assert await _lookup("doc:d3", "read") == [("*", "COND", ("u2",), ("u2",))]
    assert await _lookup("doc:d3", "read", context={"flag": True}) == []


async def test_a_wildcard_resource_holds_nothing_but_its_own_subject_set() -> None:
    assert await _lookup("doc:*", "both") == []
    assert await _lookup("doc:*", "both", "doc#both") == [("*", "HAS", (), ())]
    assert await _lookup("doc:*", "view", "doc#both") == []


async def test_a_bulk_check_of_a_wildcard_resource_is_denied() -> None:
    system = await _system(WILDCARD_SHAPES, WILDCARD_SHAPES_RELS)
    try:
        asked = [
            CheckRequest(ObjectRef("doc", "*"), "both", SubjectRef.parse("user:u1")),
            CheckRequest(ObjectRef("doc", "d1"), "both", SubjectRef.parse("user:u1")),
        ]
        results = await system.check_bulk(asked, Consistency.fully_consistent())
        assert [getattr(r, "permissionship", r) for r in results] == [
            Permissionship.DENIED, Permissionship.ALLOWED,
        ]  # fmt: skip
    finally:
        await system.stop()


async def test_where_spicedb_contradicts_itself_the_apis_agree() -> None:
    """The scenario `spicedb_v1_54_quirks`: each bulk item misses its own caveat parameters;
    `.all()` over a caveated subject-set member grants conditionally in Check, LookupResources
    and LookupSubjects alike."""
    system = await _system(SPICEDB_QUIRKS, SPICEDB_QUIRKS_RELS)
    try:
        subject = SubjectRef.parse("doc:d2#edit")
        asked = [CheckRequest(ObjectRef("org", o), "edit", subject) for o in ("o1", "o2")]
        results = await system.check_bulk(asked, Consistency.fully_consistent())
        assert [getattr(r, "missing_parameters", r) for r in results] == [("flag",), ("flag", "x")]
        full = Consistency.fully_consistent()
        t2 = SubjectRef.parse("team:t2")
        assert (await system.check(ObjectRef("org", "o3"), "tall", t2, full)).permissionship is (
            Permissionship.CONDITIONAL
        )
        resources = system.lookup_resources("org", "tall", t2, full)
        assert [(r.resource_id, r.conditional) async for r, _ in resources] == [("o3", True)]
        subjects = system.lookup_subjects(ObjectRef("org", "o3"), "tall", "team", "", full)
        assert [(r.subject.id, r.conditional) async for r, _ in subjects] == [("t2", True)]
    finally:
        await system.stop()


def test_set_rules_match_spicedbs_examples() -> None:
    star, u = SubjectSet(wildcard=True), SubjectSet({"u": True})
    assert union(star, u) == SubjectSet({"u": True}, True)
    assert intersection(star, union(star, u)) == SubjectSet({"u": True}, True)
    assert intersection(u, EMPTY) == EMPTY
    # {*} - {u} => {* - {u}};  {*} - {* - {u}} => {u}
    assert exclusion(star, u) == SubjectSet({}, True, {"u": True})
    assert exclusion(star, exclusion(star, u)) == SubjectSet({"u": True})
    # {* - {u}} | {u[c]} => {* - {u[!c]}, u[c]}: the exclusion holds only where u is not listed
    mixed = union(exclusion(star, u), SubjectSet({"u": CAVEAT}))
    assert mixed.concrete == {"u": CAVEAT} and mixed.wildcard is True
    assert mixed.excluded["u"] not in (True, False)


async def test_groups_nested_in_a_cycle_beside_a_wildcard_are_answered() -> None:
    """Every group member of every other (a cycle through all): the sets are not built (SpiceDB
    has no answer there), so their walk does not go round the cycle every way it can; every
    subject Check grants is listed, those it denies excluded."""
    schema = """
definition user {}
definition group { relation member: user | group#member }
definition doc {
    relation viewer: user | user:* | group#member
    relation banned: user
    permission view = viewer - banned
}
"""
    groups = range(12)
    relationships = ("doc:d#viewer@user:*", "doc:d#banned@user:u0")
    relationships += tuple(f"doc:d#viewer@group:g{g}#member" for g in groups)
    relationships += tuple(f"group:g{a}#member@group:g{b}#member" for a in groups for b in groups if a != b)
    relationships += tuple(f"group:g{g}#member@user:u{g}" for g in groups)
    system = await _system(schema, relationships)
    try:
        full = Consistency.fully_consistent()
        found = system.lookup_subjects(ObjectRef("doc", "d"), "view", "user", "", full)
        answer = [(r.subject.id, r.excluded) async for r, _ in found]
        assert answer == [("*", ("u0",))] + [(u, ()) for u in sorted(f"u{g}" for g in groups if g)]
    finally:
        await system.stop()
