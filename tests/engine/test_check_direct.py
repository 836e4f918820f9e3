"""The shortcuts of a document's check through its folder's ancestor chain answer exactly as
the walk: an arrow calling the chain's evaluation in place of its dispatch (check_operators'
`direct`, memoized as the dispatch would be), a folder with no parent as a chain of one, a
chain none of whose levels may grant refused at once (closure_check), and a subtracted lookup
read in place (check_operators' stored_exclusion: plain users, a wildcard, caveats and
expirations). Random writes and deletes on an index keeping closures and one without (checked
with the plain walk's plans), every check compared after each step, one at a time and in one
run sharing its memo, at depth limits 1-8 and 50; through a real server, the head and old
revisions alike, and a depth error that is the walk's to give (check.Rewalk)."""

from __future__ import annotations

import operator
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from random_history import DEPTHS, answers, compare_at_depths, random_batches

from stonetown.core.relationship import ContextualizedCaveat, ObjectRef, Relationship, SubjectRef
from stonetown.engine.check import CheckRun, DepthExceeded, Subject
from stonetown.engine.check_plan import CompiledSchema
from stonetown.engine.closure import Closures
from stonetown.engine.datastore import Update, UpdateOp
from stonetown.engine.index import RelationshipIndex
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import CheckRequest, CheckResult, Consistency, Permissionship
from stonetown.schema import compile_schema
from stonetown.stores.sqlite import SqliteDatastore

SCHEMA = """
use expiration

caveat weekday(day int) {
    day < 6
}

definition user {}

definition team {
    relation member: user | team#member
}

definition organization {
    relation member: team#member
    relation admin: user
    permission view = member + admin
}

definition folder {
    relation org: organization
    relation parent: folder | folder with weekday
    relation editor: user | team#member
    relation viewer: user | team#member | user:*
    permission edit = editor + parent->edit
    permission view = viewer + edit + parent->view + org->view
}

definition document {
    relation folder: folder
    relation owner: user
    relation editor: team#member
    relation viewer: user | team#member | user:*
    relation banned: user | user:* | user with weekday | user with expiration
    permission edit = owner + editor + folder->edit
    permission view = (viewer + edit + folder->view) - banned
}
"""

USERS = [f"u{i}" for i in range(5)]
TEAMS = [f"t{i}" for i in range(4)]
FOLDERS = [f"f{i}" for i in range(7)]
DOCS = ["d0", "d1", "d2"]
NOW = datetime.now(UTC)


def _relationship(rng: random.Random) -> Relationship:
    kind = rng.randrange(9)
    team, folder, user = rng.choice(TEAMS), rng.choice(FOLDERS), rng.choice(USERS)
    if kind == 0:
        if rng.random() < 0.5:
            return Relationship("team", team, "member", "team", rng.choice(TEAMS), "member")
        return Relationship("team", team, "member", "user", user)
    if kind <= 2:  # folder trees, cycles and caveated links included
        meta = {"caveat": ContextualizedCaveat("weekday", {"day": 3})} if rng.random() < 0.1 else {}
        return Relationship("folder", folder, "parent", "folder", rng.choice(FOLDERS), **meta)  # type: ignore[arg-type]
    if kind == 3:
        relation = rng.choice(["viewer", "editor"])
        if rng.random() < 0.4:
            return Relationship("folder", folder, relation, "team", team, "member")
        return Relationship(
            "folder", folder, relation, "user", "*" if relation == "viewer" and rng.random() < 0.2 else user
        )
    if kind == 4:
        org = rng.choice(["o0", "o1"])
        if rng.random() < 0.5:
            return Relationship("folder", folder, "org", "organization", org)
        if rng.random() < 0.5:
            return Relationship("organization", org, "member", "team", team, "member")
        return Relationship("organization", org, "admin", "user", user)
    doc = rng.choice(DOCS)
    if kind == 5:
        return Relationship("document", doc, "folder", "folder", folder)
    if kind == 6:  # the subtracted lookup: plain, wildcard, caveated, expiring
        roll = rng.random()
        if roll < 0.15:
            return Relationship("document", doc, "banned", "user", "*")
        if roll < 0.3:
            return Relationship(
                "document", doc, "banned", "user", user, caveat=ContextualizedCaveat("weekday", {})
            )
        if roll < 0.45:
            expiration = NOW + timedelta(hours=rng.choice((-1, 1)))
            return Relationship("document", doc, "banned", "user", user, expiration=expiration)
        return Relationship("document", doc, "banned", "user", user)
    relation = rng.choice(["owner", "viewer", "editor"])
    if relation != "owner" and rng.random() < 0.5:
        return Relationship("document", doc, relation, "team", team, "member")
    return Relationship("document", doc, "viewer" if relation == "editor" else relation, "user", user)


def _answer(run: CheckRun, query: tuple[str, str, str, Subject]) -> object:
    try:
        return run.dispatch(*query, 0)
    except DepthExceeded:
        return DepthExceeded


def test_documents_through_folder_chains_answer_as_the_walk_under_random_writes() -> None:
    compiled = CompiledSchema(compile_schema(SCHEMA))
    subjects: list[Subject] = [("user", u, "") for u in [*USERS, "stranger"]]
    subjects.append(("team", "t0", "member"))
    queries = [("document", d, p, s) for d in DOCS for p in ("view", "edit") for s in subjects]
    queries += [("folder", f, "view", s) for f in FOLDERS for s in subjects]
    compared = granted = answered = 0
    direct = 0
    original = compiled.functions[("folder", "view")]

    def counting(*args: object) -> object:
        nonlocal direct
        direct += len(args) == 5  # called `direct`, in place of a dispatch
        return original(*args)  # type: ignore[arg-type]

    for seed in range(20):
        rng = random.Random(seed)
        for step, kept, plain in random_batches(rng, _relationship, 25):
            if step == 2:
                assert kept.closure is not None
                kept.closure.prepare(compiled.closure_graphs)
            # against the plain walk's plans (no lookup read in place) over an index without
            # closures, at depth limits 1-8 and 50
            sample = rng.sample(queries, 12)
            counts = compare_at_depths(compiled, kept, plain, sample, operator.eq, (seed, step))
            compared += counts[0]
            answered += counts[1]
            granted += sum(answer is True for answer in answers(compiled, kept, 50, sample, False))
    assert granted > compared // (20 * 2 * len(DEPTHS))
    # near the limit, the walk meets it where the shortcuts answer (a ban looked up first, a
    # chain none of whose levels may grant): with the walk's answer at depth 50
    assert answered > 0
    # the direct calls happened (the arrow links the chain's evaluation)
    arrow_links = [arrow for rtype, arrow in compiled._arrows if rtype == "document"]
    assert arrow_links
    compiled.plans[("folder", "view")] = (counting, True)
    index = RelationshipIndex(1)
    index.closure = Closures(index)
    for text in ("document:d#folder@folder:f1", "folder:f1#parent@folder:f0", "folder:f0#viewer@user:u0"):
        index.add(Relationship.parse(text))
    assert CheckRun(compiled, index, 50).dispatch("document", "d", "view", ("user", "u0", ""), 0) is True
    assert direct == 0  # the dispatch table is not how the arrow reaches the chain


def test_a_direct_call_is_memoized_as_its_dispatch() -> None:
    """f3 answered in place of its dispatch is in the memo when the walk below f4 meets it at
    the depth limit (as after the walk's own dispatch of f3): False, not a depth error."""
    compiled = CompiledSchema(compile_schema(SCHEMA))
    texts = [
        "document:d0#folder@folder:f3",
        "document:d0#folder@folder:f4",
        "folder:f4#parent@folder:f4",
        "folder:f4#parent@folder:f6",
        "folder:f6#parent@folder:f3",
        "folder:f6#parent@folder:f6",
    ]
    kept = RelationshipIndex(1)
    kept.closure = Closures(kept)
    plain = RelationshipIndex(1)
    for text in texts:
        kept.add(Relationship.parse(text))
        plain.add(Relationship.parse(text))
    kept.closure.prepare(compiled.closure_graphs)
    query = ("document", "d0", "view", ("user", "u3", ""))
    for depth in range(1, 8):
        got = _answer(CheckRun(compiled, kept, depth), query)  # type: ignore[arg-type]
        want = _answer(CheckRun(compiled, plain, depth), query)  # type: ignore[arg-type]
        assert got == want, (depth, got, want)
    assert _answer(CheckRun(compiled, kept, 3), query) is False  # type: ignore[arg-type]


async def test_through_a_server_the_shortcuts_answer_as_the_walk(tmp_path: Path) -> None:
    """A real system on SQLite: the head (closures, direct calls, the lookup read in place)
    and old revisions (no closures: the walk) answer a folder chain's checks alike, before
    and after a ban and a banned wildcard."""
    system = PermissionSystem(SqliteDatastore(str(tmp_path / "s.db")), poll_interval=None, gc_interval=None)
    await system.start()
    try:
        await system.write_schema(SCHEMA)
        texts = [
            "document:d#folder@folder:f2",
            "folder:f2#parent@folder:f1",
            "folder:f1#parent@folder:f0",
            "folder:f0#viewer@user:ana",
            "folder:f1#viewer@user:cy",
            "folder:g#viewer@user:bob",
        ]
        revisions = [
            await system.write_relationships([Update(UpdateOp.TOUCH, Relationship.parse(t)) for t in texts])
        ]
        for text in ("document:d#banned@user:ana", "document:d#banned@user:*"):
            revisions.append(
                await system.write_relationships([Update(UpdateOp.TOUCH, Relationship.parse(text))])
            )
        doc, fresh = ObjectRef.parse("document:d"), Consistency.fully_consistent()
        expected = {"ana": [True, False, False], "bob": [False, False, False], "cy": [True, True, False]}
        for user, answers in expected.items():
            subject = SubjectRef.parse(f"user:{user}")
            for revision, allowed in zip(revisions, answers, strict=True):
                got = await system.check(doc, "view", subject, Consistency.at_exact_snapshot(revision))
                assert (got.permissionship is Permissionship.ALLOWED) is allowed, (user, revision)
            head = await system.check(doc, "view", subject, fresh)
            assert (head.permissionship is Permissionship.ALLOWED) is answers[-1], user
    finally:
        await system.stop()


async def test_a_depth_error_is_the_walks_through_check_check_bulk_and_explain(tmp_path: Path) -> None:
    """At a depth limit of 6, the head's closure evaluates f3 as the third ancestor of f2 (f2
    itself, met again through the cycle, takes a place in its chain) where the walk reaches it
    second: the team nesting below it meets the limit, which the walk stays under (True). Check,
    CheckBulk and Explain answer the walk's True; a chain too long for either is refused."""
    system = PermissionSystem(
        SqliteDatastore(str(tmp_path / "s.db")), max_depth=6, poll_interval=None, gc_interval=None
    )
    await system.start()
    try:
        await system.write_schema(SCHEMA)
        texts = [
            "team:t3#member@team:t1#member",
            "team:t1#member@team:t0#member",
            "team:t0#member@user:u0",
            "folder:f2#parent@folder:f4",
            "folder:f4#parent@folder:f2",
            "folder:f4#parent@folder:f3",
            "folder:f3#viewer@team:t3#member",
        ]
        texts += [f"folder:g{i}#parent@folder:g{i + 1}" for i in range(8)]
        await system.write_relationships([Update(UpdateOp.TOUCH, Relationship.parse(t)) for t in texts])
        fresh, user = Consistency.fully_consistent(), SubjectRef.parse("user:u0")
        f2, g0 = ObjectRef.parse("folder:f2"), ObjectRef.parse("folder:g0")
        kept = CheckRun(system.state.compiled, system.index, 6)  # type: ignore[union-attr]
        with pytest.raises(DepthExceeded):  # the closure's way meets the limit
            kept.dispatch("folder", "f2", "view", ("user", "u0", ""), 0)
        got = await system.check(f2, "view", user, fresh)
        assert got.permissionship is Permissionship.ALLOWED
        tree, explained = await system.explain(f2, "view", user, fresh)  # rebuilt with the walk
        assert explained.permissionship is Permissionship.ALLOWED and tree.granted
        with pytest.raises(DepthExceeded):
            await system.check(g0, "view", user, fresh)
        with pytest.raises(DepthExceeded):
            await system.explain(g0, "view", user, fresh)
        items = [CheckRequest(resource, "view", user) for resource in (f2, g0, f2)]
        bulk = await system.check_bulk(items, fresh)
        assert isinstance(bulk[1], DepthExceeded)
        for answer in (bulk[0], bulk[2]):
            assert isinstance(answer, CheckResult) and answer.permissionship is Permissionship.ALLOWED
    finally:
        await system.stop()
