"""LookupResources when positive paths (unions, `any` arrows, plain relationships) mix with
intersections, exclusions, `all` arrows, caveats, expirations and wildcards: every answer must
be exactly what Check says, object by object, and the proven/maybe split must not prove what
only a check can decide."""

from __future__ import annotations

from typing import Any

import pytest

from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine.check import CheckRun
from stonetown.engine.datastore import Update, UpdateOp
from stonetown.engine.lookup_resources import _two_phase
from stonetown.engine.reachability import Reachability
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import Consistency, Permissionship
from stonetown.schema import compile_schema
from stonetown.stores.memory import MemoryDatastore

SCHEMA = """
use expiration

caveat is_open(open bool) {
    open
}

definition user {}

definition group {
    relation member: user | user with is_open | user with expiration | group#member
}

definition folder {
    relation parent: folder
    relation viewer: user | user:* | group#member | user with is_open | user with expiration
    relation approved: user | group#member
    relation banned: user | group#member

    permission view = viewer + parent->view
    permission gated = view & approved
    permission safe = view - banned
    permission every = parent.all(view)
    permission any_of_them = gated + safe + every + viewer
}

definition doc {
    relation folder: folder | folder with is_open | folder with expiration
    relation owner: user
    permission read = owner + folder->any_of_them
    permission strict = folder->gated
    permission seen = folder->view
}
"""

RELATIONSHIPS = [
    # groups: g1 inside g2; a caveated and an expired membership
    "group:g1#member@user:ana",
    "group:g2#member@group:g1#member",
    "group:g2#member@user:cat[is_open]",
    "group:g2#member@user:dan[expiration:2020-01-01T00:00:00Z]",
    "group:g3#member@user:eve[expiration:2300-01-01T00:00:00Z]",
    # folders: root <- mid <- leaf; side has two parents
    "folder:mid#parent@folder:root",
    "folder:leaf#parent@folder:mid",
    "folder:side#parent@folder:root",
    "folder:side#parent@folder:other",
    "folder:root#viewer@group:g2#member",
    "folder:other#viewer@user:ana",
    "folder:other#viewer@user:bob[is_open]",
    "folder:other#viewer@user:dan[expiration:2020-01-01T00:00:00Z]",
    "folder:pub#viewer@user:*",
    "folder:mid#approved@user:ana",
    "folder:mid#approved@group:g3#member",
    "folder:leaf#banned@user:ana",
    "folder:pub#banned@user:bob",
    "folder:solo#viewer@user:bob",
    "folder:solo#approved@user:bob",
    "folder:solo#banned@user:bob",
    "folder:late#viewer@user:eve[expiration:2300-01-01T00:00:00Z]",
    "folder:late#approved@group:g3#member",
    # docs: plain, caveated and expired tupleset edges, and an owner
    "doc:d1#folder@folder:leaf",
    "doc:d2#folder@folder:side[is_open]",
    "doc:d3#folder@folder:mid[expiration:2020-01-01T00:00:00Z]",
    "doc:d4#folder@folder:pub",
    "doc:d5#folder@folder:solo",
    "doc:d6#folder@folder:late",
    "doc:d7#owner@user:bob",
]

SUBJECTS = ["user:ana", "user:bob", "user:cat", "user:dan", "user:eve", "user:zed", "group:g1#member"]
QUERIES = [
    ("folder", "view"),
    ("folder", "gated"),
    ("folder", "safe"),
    ("folder", "every"),
    ("folder", "any_of_them"),
    ("doc", "read"),
    ("doc", "strict"),
    ("doc", "seen"),
]
FRESH = Consistency.fully_consistent()


async def _system() -> PermissionSystem:
    system = PermissionSystem(MemoryDatastore())
    await system.start()
    await system.write_schema(SCHEMA)
    await system.write_relationships([Update(UpdateOp.TOUCH, Relationship.parse(t)) for t in RELATIONSHIPS])
    return system


def _ids(resource_type: str) -> set[str]:
    found = set()
    for text in RELATIONSHIPS:
        rel = Relationship.parse(text)
        if rel.resource_type == resource_type:
            found.add(rel.resource_id)
        if rel.subject_type == resource_type and rel.subject_id != "*":
            found.add(rel.subject_id)
    return found


async def _by_check(
    system: PermissionSystem,
    resource_type: str,
    permission: str,
    subject: str,
    context: dict[str, Any] | None,
    contextual: list[Relationship],
) -> dict[str, bool]:
    expected: dict[str, bool] = {}
    for rid in sorted(_ids(resource_type)):
        result = await system.check(
            ObjectRef(resource_type, rid), permission, SubjectRef.parse(subject), FRESH, context, contextual
        )
        if result.permissionship is not Permissionship.DENIED:
            expected[rid] = result.permissionship is Permissionship.CONDITIONAL
    return expected


@pytest.mark.parametrize("context", [None, {"open": True}, {"open": False}])
async def test_lookup_resources_equals_check_on_every_object(context: dict[str, Any] | None) -> None:
    system = await _system()
    for contextual in ([], [Relationship.parse("folder:solo#approved@user:cat")]):
        for resource_type, permission in QUERIES:
            for subject in SUBJECTS:
                found = {
                    r.resource_id: r.conditional
                    async for r, _ in system.lookup_resources(
                        resource_type, permission, SubjectRef.parse(subject), FRESH, context, contextual
                    )
                }
                expected = await _by_check(system, resource_type, permission, subject, context, contextual)
                assert found == expected, (resource_type, permission, subject, context, contextual)


async def test_answers_of_the_mixed_paths() -> None:
    system = await _system()

    async def lookup(resource_type: str, permission: str, subject: str) -> dict[str, bool]:
        return {
            r.resource_id: r.conditional
            async for r, _ in system.lookup_resources(
                resource_type, permission, SubjectRef.parse(subject), FRESH
            )
        }

    # ana: through g1 ⊂ g2 on root and directly on other; banned on leaf; approved on mid only
    assert await lookup("folder", "view", "user:ana") == dict.fromkeys(
        ["root", "mid", "leaf", "side", "other", "pub"], False
    )
    assert await lookup("folder", "gated", "user:ana") == {"mid": False}
    assert "leaf" not in await lookup("folder", "safe", "user:ana")
    assert await lookup("folder", "every", "user:ana") == {"mid": False, "leaf": False, "side": False}
    # bob: the wildcard gives him pub, but he is banned there; solo is view and gated, not safe
    assert "pub" not in await lookup("folder", "safe", "user:bob")
    assert await lookup("folder", "gated", "user:bob") == {"solo": False}
    # cat only through a caveated membership: everything conditional but the wildcard's pub
    assert await lookup("folder", "view", "user:cat") == {
        "root": True,
        "mid": True,
        "leaf": True,
        "side": True,
        "pub": False,
    }
    # dan's grants have expired: the wildcard is all that is left
    assert await lookup("folder", "view", "user:dan") == {"pub": False}
    # eve: unexpired expiring grants count
    assert await lookup("folder", "gated", "user:eve") == {"late": False}
    assert await lookup("doc", "strict", "user:eve") == {"d6": False}
    # the expired doc -> folder edge grants nothing; the caveated one is conditional
    seen = await lookup("doc", "seen", "user:ana")
    assert "d3" not in seen and seen["d2"] is True and seen["d1"] is False


async def test_only_plain_union_paths_are_proven() -> None:
    system = await _system()
    assert system.state is not None
    compiled, facts, index = system.state.compiled, system.state.facts, system.index

    def split(
        resource_type: str, permission: str, subject: tuple[str, str, str]
    ) -> tuple[set[str], set[str]]:
        run = CheckRun(compiled, index, 50)
        proven, maybe = _two_phase(facts.plan_for(resource_type, permission), index, subject, run)
        return (
            {rid for t, rid, rel in proven if (t, rel) == (resource_type, permission)},
            {rid for t, rid, rel in maybe if (t, rel) == (resource_type, permission)},
        )

    # view is a union: ana's folders are all proven, nothing is left to check
    assert split("folder", "view", ("user", "ana", "")) == (
        {"root", "mid", "leaf", "side", "other", "pub"},
        set(),
    )
    # any_of_them through `viewer` is proven; through gated/safe/every it needs a check
    proven, maybe = split("folder", "any_of_them", ("user", "ana", ""))
    assert proven == {"root", "other", "pub"}
    assert {"mid", "side"} <= maybe
    # a caveated membership or relationship, or an expiring one, is never proven
    assert split("folder", "view", ("user", "cat", ""))[0] == {"pub"}
    assert split("folder", "view", ("user", "bob", ""))[0] == {"pub", "solo"}
    assert split("folder", "view", ("user", "eve", ""))[0] == {"pub"}
    # an intersection the subject does not hold is pruned: no candidate above it
    assert split("doc", "strict", ("user", "zed", "")) == (set(), set())


def test_positive_edges_of_the_schema() -> None:
    facts = Reachability.of(compile_schema(SCHEMA))
    assert ("folder", "viewer", "view") in facts.positive_computed
    assert ("folder", "parent", "view", "view") in facts.positive_arrows
    assert ("folder", "view", "gated") not in facts.positive_computed
    assert ("folder", "view", "safe") not in facts.positive_computed
    assert ("folder", "parent", "view", "every") not in facts.positive_arrows
    assert ("folder", "gated", "any_of_them") in facts.positive_computed
    assert ("folder", "parent", "gated", "strict") not in facts.positive_arrows
    assert ("doc", "folder", "gated", "strict") in facts.positive_arrows
    assert ("folder", "viewer") in facts.positive_this
    assert ("folder", "view") not in facts.positive_this
