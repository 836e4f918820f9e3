"""The compiled check plan (flattened unions, subsumed arrows, the group shortcut) answers
exactly what a naive evaluation of the schema answers."""

from __future__ import annotations

import random

from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine.check_plan import CompiledSchema
from stonetown.engine.datastore import Update, UpdateOp
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import Consistency, Permissionship
from stonetown.schema import compile_schema, ir
from stonetown.stores.memory import MemoryDatastore

SCHEMA = """
definition user {}

definition team {
    relation member: user | team#member
}

definition org {
    relation owner: user
    relation admin: user
    relation member: user | team#member
    relation role: role
    permission is_member = owner + admin + member
    permission administer = owner + admin
    permission manage_apps = administer + role->manage_apps
    permission edit_apps = manage_apps + role->edit_apps
    permission run_apps = edit_apps + role->run_apps
}

definition role {
    relation org: org
    relation holder: user | team#member
    relation grants_run: user:*
    relation grants_edit: user:*
    relation grants_manage: user:*
    permission member = holder & org->is_member
    permission manage_apps = member & grants_manage
    permission edit_apps = manage_apps + (member & grants_edit)
    permission run_apps = edit_apps + (member & grants_run)
}

definition app {
    relation owner: user
    relation org: org
    relation runner: user | team#member | role#member | org#manage_apps
    relation manager: user | team#member
    permission own = owner + org->owner
    permission manage = own + manager + org->manage_apps
    permission edit = manage + org->edit_apps
    permission run = edit + runner + org->run_apps
    permission view = run + org->is_member
}
"""

FRESH = Consistency.fully_consistent()
Subject = tuple[str, str, str]


def _random_relationships(rng: random.Random) -> set[tuple[str, str, str, str, str, str]]:
    users = [f"u{i}" for i in range(6)]
    teams = [f"t{i}" for i in range(5)]
    orgs = ["o0", "o1"]
    roles = ["r0", "r1", "r2"]
    apps = ["a0", "a1", "a2"]
    rels: set[tuple[str, str, str, str, str, str]] = set()

    def some(items: list[str], p: float) -> list[str]:
        return [x for x in items if rng.random() < p]

    for i, team in enumerate(teams):
        rels |= {("team", team, "member", "user", u, "") for u in some(users, 0.2)}
        # teams nest upwards only: the naive evaluator below needs acyclic data
        rels |= {("team", team, "member", "team", t, "member") for t in some(teams[:i], 0.3)}
    for org in orgs:
        rels |= {("org", org, "owner", "user", u, "") for u in some(users, 0.15)}
        rels |= {("org", org, "admin", "user", u, "") for u in some(users, 0.15)}
        rels |= {("org", org, "member", "user", u, "") for u in some(users, 0.3)}
        rels |= {("org", org, "member", "team", t, "member") for t in some(teams, 0.2)}
    for role in roles:
        org = rng.choice(orgs)
        rels.add(("org", org, "role", "role", role, ""))
        rels.add(("role", role, "org", "org", org, ""))
        rels |= {("role", role, "holder", "user", u, "") for u in some(users, 0.3)}
        rels |= {("role", role, "holder", "team", t, "member") for t in some(teams, 0.2)}
        for flag in ("grants_run", "grants_edit", "grants_manage"):
            if rng.random() < 0.4:
                rels.add(("role", role, flag, "user", "*", ""))
    for app in apps:
        rels |= {("app", app, "owner", "user", u, "") for u in some(users, 0.1)}
        rels |= {("app", app, "org", "org", o, "") for o in some(orgs, 0.5)}
        rels |= {("app", app, "runner", "user", u, "") for u in some(users, 0.15)}
        rels |= {("app", app, "runner", "team", t, "member") for t in some(teams, 0.15)}
        rels |= {("app", app, "runner", "role", r, "member") for r in some(roles, 0.2)}
        rels |= {("app", app, "runner", "org", o, "manage_apps") for o in some(orgs, 0.2)}
        rels |= {("app", app, "manager", "user", u, "") for u in some(users, 0.1)}
        rels |= {("app", app, "manager", "team", t, "member") for t in some(teams, 0.15)}
    return rels


class _Naive:
    """The schema evaluated straight from its IR: no memo, no ordering, no shortcuts."""

    def __init__(self, schema: ir.Schema, rels: set[tuple[str, str, str, str, str, str]]) -> None:
        self.schema = schema
        self.rels = rels

    def check(self, rtype: str, rid: str, rel: str, subj: Subject) -> bool:
        if subj == (rtype, rid, rel):
            return True
        relation = self.schema.relation(rtype, rel)
        return relation is not None and self.node(rtype, rid, rel, relation.rewrite, subj)

    def node(self, rtype: str, rid: str, rel: str, node: ir.Rewrite, subj: Subject) -> bool:
        if isinstance(node, ir.This):
            for t, i, r, st, sid, srel in self.rels:
                if (t, i, r) != (rtype, rid, rel):
                    continue
                if not srel and not subj[2] and st == subj[0] and sid in (subj[1], "*"):
                    return True
                if srel and self.check(st, sid, srel, subj):
                    return True
            return False
        if isinstance(node, ir.ComputedUserset):
            return self.check(rtype, rid, node.relation, subj)
        if isinstance(node, ir.TupleToUserset):
            return any(
                self.check(st, sid, node.computed, subj)
                for t, i, r, st, sid, srel in self.rels
                if (t, i, r) == (rtype, rid, node.tupleset) and not srel
            )
        if isinstance(node, ir.Union):
            return any(self.node(rtype, rid, rel, c, subj) for c in node.children)
        if isinstance(node, ir.Intersection):
            return all(self.node(rtype, rid, rel, c, subj) for c in node.children)
        raise AssertionError(f"not in this schema: {node}")


async def test_flattened_plan_matches_naive_evaluation() -> None:
    schema = compile_schema(SCHEMA)
    subjects: list[Subject] = [("user", f"u{i}", "") for i in range(7)]
    subjects += [("team", "t1", "member"), ("role", "r0", "member"), ("app", "a0", "manage")]
    subjects += [("org", "o0", "manage_apps"), ("org", "o1", "edit_apps"), ("org", "o0", "is_member")]
    checked = granted = 0
    for seed in range(12):
        rels = _random_relationships(random.Random(seed))
        naive = _Naive(schema, rels)
        system = PermissionSystem(MemoryDatastore())
        await system.start()
        await system.write_schema(SCHEMA)
        await system.write_relationships(
            [Update(UpdateOp.TOUCH, Relationship(*r)) for r in sorted(rels)]  # type: ignore[arg-type]
        )
        for rtype, ids, permissions in (
            ("app", ("a0", "a1", "a2"), ("run", "edit", "manage", "view", "own")),
            ("org", ("o0", "o1"), ("run_apps", "edit_apps", "manage_apps")),
            ("role", ("r0", "r1", "r2"), ("run_apps", "member")),
            ("team", ("t3", "t4"), ("member",)),
        ):
            for rid in ids:
                for permission in permissions:
                    for subj in subjects:
                        expected = naive.check(rtype, rid, permission, subj)
                        result = await system.check(
                            ObjectRef(rtype, rid), permission, SubjectRef(*subj), FRESH
                        )
                        got = result.permissionship is Permissionship.ALLOWED
                        assert got == expected, (seed, rtype, rid, permission, subj)
                        checked += 1
                        granted += expected
        await system.stop()
    assert granted > checked // 10  # the data grants often enough to exercise every path


def test_arrow_subsumed_only_when_evaluated_inside_the_larger_one() -> None:
    compiled = CompiledSchema(compile_schema(SCHEMA))
    # run_apps inlines edit_apps inlines manage_apps on every org
    assert compiled._subsumed("app", "org", "manage_apps", "run_apps")
    assert compiled._subsumed("app", "org", "owner", "run_apps")
    assert not compiled._subsumed("app", "org", "run_apps", "manage_apps")
    assert not compiled._subsumed("app", "org", "is_member", "run_apps")
    cyclic = compile_schema(
        """
        definition user {}
        definition folder {
            relation parent: folder
            relation viewer: user
            relation owner: user
            permission edit = owner + parent->view
            permission view = viewer + edit
        }
        definition doc {
            relation folder: folder
            permission read = folder->view + folder->edit
        }
        """
    )
    # view inlines edit, but edit reaches view again through the parent arrow: a cycle cut
    # could give edit a different value inside view than on its own, so both arrows stay
    assert not CompiledSchema(cyclic)._subsumed("doc", "folder", "edit", "view")
