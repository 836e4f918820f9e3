"""A plain subject's side kept on the closures (engine/subject_side.py) never goes stale: each
write that changes what a subject may be granted on (a team membership, a team nested in
another, a folder's parent, its organization, an organization's admin, a subject set or a
wildcard stored on a folder, a ban) is followed by the check that sees it, on an index
keeping closures and the subject's side (asked before the write, so kept) and compared with
the plain walk. Through a real server on SQLite: an old revision does not see the head's
side; a graph with an edge carrying metadata, a deep chain near the depth limit and OpenFGA's
cycle handling do not use it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stonetown.core.relationship import ContextualizedCaveat, ObjectRef, Relationship, SubjectRef
from stonetown.engine import closure, closure_graph
from stonetown.engine.check import CheckRun, DepthExceeded, Subject
from stonetown.engine.check_plan import CompiledSchema
from stonetown.engine.closure import Closures
from stonetown.engine.datastore import Update, UpdateOp
from stonetown.engine.index import RelationshipIndex
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import Consistency, Permissionship
from stonetown.schema import compile_schema
from stonetown.stores.sqlite import SqliteDatastore

SCHEMA = """
use expiration

caveat weekday(day int) {
    day < 6
}

definition user {}

definition team {
    relation member: user | team#member | team#member with weekday
}

definition organization {
    relation member: team#member
    relation admin: user
    permission view = member + admin
}

definition folder {
    relation org: organization
    relation parent: folder
    relation editor: user | team#member
    relation viewer: user | team#member | user:*
    permission edit = editor + parent->edit
    permission view = viewer + edit + parent->view + org->view
}

definition document {
    relation folder: folder
    relation owner: user
    relation viewer: user | team#member | user:*
    relation banned: user
    permission view = (viewer + owner + folder->view) - banned
}
"""

ANA: Subject = ("user", "ana", "")
# f4 under f3 under f2 under f1 under f0; d in f4; ana in t0, nested in t1; o0 with f0..f4;
# o1 elsewhere, whose member team t1 is
BASE = [
    *(f"folder:f{i + 1}#parent@folder:f{i}" for i in range(4)),
    *(f"folder:f{i}#org@organization:o0" for i in range(5)),
    "document:d#folder@folder:f4",
    "document:d#owner@user:bob",
    "team:t0#member@user:ana",
    "team:t1#member@team:t0#member",
    "organization:o1#member@team:t1#member",
    "folder:g0#org@organization:o1",
    "folder:f2#viewer@team:t9#member",
]


def _rel(text: str, **meta: object) -> Relationship:
    rel = Relationship.parse(text)
    if meta:
        rel = Relationship(
            rel.resource_type, rel.resource_id, rel.relation, rel.subject_type, rel.subject_id,
            rel.subject_relation, **meta,  # type: ignore[arg-type]
        )  # fmt: skip
    return rel


class _Pair:
    """An index keeping closures (and subjects' sides) and one without, written alike."""

    def __init__(self, compiled: CompiledSchema, texts: list[str]) -> None:
        self.compiled = compiled
        self.kept = RelationshipIndex(1)
        self.kept.closure = Closures(self.kept)
        self.plain = RelationshipIndex(1)
        for text in texts:
            self.write(text)
        self.kept.closure.prepare(compiled.closure_graphs)

    def write(self, text: str, **meta: object) -> None:
        rel = _rel(text, **meta)
        self.kept.add(rel)
        self.plain.add(rel)

    def delete(self, text: str) -> None:
        rel = _rel(text)
        self.kept.remove(rel)
        self.plain.remove(rel)

    def check(self, resource: str, permission: str, subject: Subject = ANA, max_depth: int = 50) -> object:
        rtype, rid = resource.split(":")
        got = CheckRun(self.compiled, self.kept, max_depth).dispatch(rtype, rid, permission, subject, 0)
        want = CheckRun(self.compiled, self.plain, max_depth).dispatch(rtype, rid, permission, subject, 0)
        assert got == want, (resource, permission, subject, got, want)
        return got

    def kept_ids(self, subject: Subject = ANA) -> dict[str, frozenset[str] | None]:
        """What the closures keep for `subject`, per kind of side."""
        assert self.kept.closure is not None
        out: dict[str, frozenset[str] | None] = {}
        for site, kept in self.kept.closure.sides.items():
            if subject in kept:
                out[type(site).__name__ + ":" + getattr(site, "rtype", "levels")] = kept[subject][0]
        return out


@pytest.fixture
def pair() -> _Pair:
    return _Pair(CompiledSchema(compile_schema(SCHEMA)), BASE)


def test_the_side_is_kept_and_skips_the_levels(pair: _Pair) -> None:
    assert pair.check("document:d", "view") is False
    kept = pair.kept_ids()
    # ana may be granted on no folder of the chain; through o1 on g0 (one folder of o1's)
    assert kept["Levels:levels"] == frozenset({"g0"})
    assert kept["ArrowSide:folder"] == frozenset({"g0"})
    assert kept["Side:organization"] == frozenset({"o1"})
    # no level of the chain is evaluated: the folder's view is called in place of its dispatch
    # (closure_check's `direct`), o0's is not dispatched
    calls: list[str] = []
    original = CheckRun.dispatch

    def counting(run: CheckRun, rtype: str, rid: str, rel: str, subj: Subject, depth: int) -> object:
        calls.append(f"{rtype}:{rid}#{rel}")
        return original(run, rtype, rid, rel, subj, depth)

    CheckRun.dispatch = counting  # type: ignore[method-assign,assignment]
    try:
        assert CheckRun(pair.compiled, pair.kept, 50).dispatch("document", "d", "view", ANA, 0) is False
        with_side = list(calls)
        calls.clear()
        assert CheckRun(pair.compiled, pair.plain, 50).dispatch("document", "d", "view", ANA, 0) is False
    finally:
        CheckRun.dispatch = original  # type: ignore[method-assign]
    assert with_side == ["document:d#view"]
    assert "organization:o0#view" in calls  # the walk asks o0 on the way


@pytest.mark.parametrize(
    ("grant", "revoke"),
    [
        # a team ana is in (nested) stored on an ancestor: a subject set written
        ("folder:f1#viewer@team:t1#member", None),
        # ana joins a team stored on an ancestor: a nested set's relation
        ("team:t9#member@user:ana", "team:t9#member@user:ana"),
        # a team ana is in nested into one stored on an ancestor
        ("team:t9#member@team:t1#member", "team:t9#member@team:t1#member"),
        # the chain's top moves under a folder of o1: a parent link
        ("folder:f0#parent@folder:g0", "folder:f0#parent@folder:g0"),
        # an ancestor in o1 too: a plain subject of an arrow's target type
        ("folder:f3#org@organization:o1", "folder:f3#org@organization:o1"),
        # ana administers o0: her own relationship
        ("organization:o0#admin@user:ana", "organization:o0#admin@user:ana"),
        # o0's members include t0: a subject set on the arrow's target
        ("organization:o0#member@team:t0#member", "organization:o0#member@team:t0#member"),
        # every user views an ancestor: a wildcard
        ("folder:f2#viewer@user:*", "folder:f2#viewer@user:*"),
        # ana edits an ancestor directly
        ("folder:f0#editor@user:ana", "folder:f0#editor@user:ana"),
    ],
)
def test_a_write_that_grants_or_revokes_is_seen_at_once(pair: _Pair, grant: str, revoke: str | None) -> None:
    assert pair.check("document:d", "view") is False
    assert pair.kept_ids(), "the side was kept before the write"
    pair.write(grant)
    assert pair.check("document:d", "view") is True
    assert pair.check("folder:f4", "view") is True
    # banned: refused whatever grants it
    pair.write("document:d#banned@user:ana")
    assert pair.check("document:d", "view") is False
    pair.delete("document:d#banned@user:ana")
    assert pair.check("document:d", "view") is True
    if revoke is not None:
        pair.delete(revoke)
    else:  # the team's nesting goes instead: ana is no longer in t1
        pair.delete("team:t1#member@team:t0#member")
    assert pair.check("document:d", "view") is False
    assert pair.check("folder:f4", "view") is False


def test_a_touch_of_what_is_held_keeps_the_side(pair: _Pair) -> None:
    """Writing a relationship exactly as it is held changes nothing: what the closures keep
    stays (each check after a no-op TOUCH would otherwise scan again); a change of its
    expiration or caveat is a change, and drops it."""
    assert pair.check("document:d", "view") is False
    kept = pair.kept_ids()
    assert kept
    pair.write("team:t0#member@user:ana")
    assert pair.kept_ids() == kept
    later = datetime.now(UTC) + timedelta(days=1)
    pair.write("team:t0#member@user:ana", expiration=later)
    assert pair.kept_ids() == {}
    assert pair.check("document:d", "view") is False
    kept = pair.kept_ids()
    pair.write("team:t0#member@user:ana", expiration=later)
    assert pair.kept_ids() == kept
    pair.write("team:t0#member@user:ana", caveat=ContextualizedCaveat("weekday", {"day": 1}))
    assert pair.kept_ids() == {}
    assert pair.check("document:d", "view") is False
    pair.write("team:t0#member@user:ana")  # plain again
    pair.write("folder:f1#viewer@team:t1#member")
    assert pair.check("document:d", "view") is True
    pair.write("folder:f1#viewer@team:t1#member")
    assert pair.check("document:d", "view") is True


def test_a_deleted_parent_link_takes_the_grant_away(pair: _Pair) -> None:
    pair.write("folder:f1#viewer@team:t0#member")
    assert pair.check("document:d", "view") is True
    pair.delete("folder:f2#parent@folder:f1")
    assert pair.check("document:d", "view") is False
    pair.write("folder:f2#parent@folder:f1")
    assert pair.check("document:d", "view") is True


def test_metadata_and_depth_keep_the_walk(pair: _Pair) -> None:
    # a caveated nesting in the team graph: the side is not used (the walk's caveat stays)
    pair.write("team:t5#member@team:t0#member", caveat=ContextualizedCaveat("weekday", {}))
    pair.write("folder:f1#viewer@team:t5#member")
    got = pair.check("document:d", "view")
    assert got is not True and got is not False  # a caveat expression, as the walk's
    pair.delete("team:t5#member@team:t0#member")
    assert pair.check("document:d", "view") is False
    # an expired direct grant on an ancestor: False, as the walk
    pair.write("folder:f1#viewer@user:ana", expiration=datetime.now(UTC) - timedelta(hours=1))
    assert pair.check("document:d", "view") is False
    # near the depth limit: the same answers and the same refusals as the walk
    pair.write("folder:f0#viewer@team:t1#member")
    answers = []
    for depth in range(1, 12):
        outcomes: list[object] = []
        for index in (pair.kept, pair.plain):
            run = CheckRun(pair.compiled, index, depth)
            try:
                outcomes.append(run.dispatch("document", "d", "view", ANA, 0))
            except DepthExceeded:
                outcomes.append(DepthExceeded)
        assert outcomes[0] == outcomes[1], (depth, outcomes)
        answers.append(outcomes[0])
    assert DepthExceeded in answers and answers[-1] is True


def test_a_subject_with_too_much_is_not_kept(pair: _Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(closure, "MAX_HOLDERS", 2)
    monkeypatch.setattr(closure_graph, "MAX_HOLDERS", 2)
    import stonetown.engine.subject_side as side

    monkeypatch.setattr(side, "MAX_HOLDERS", 2)
    for i in range(5):
        pair.write(f"folder:x{i}#viewer@team:t0#member")
    assert pair.check("document:d", "view") is False
    assert pair.kept_ids().get("Levels:levels", "absent") in (None, "absent")
    pair.write("folder:f3#viewer@team:t0#member")
    assert pair.check("document:d", "view") is True


def test_documents_wildcards_beyond_a_scan_keep_the_folders_side(pair: _Pair) -> None:
    # more documents shared with every user than a side scans (subject_side.MAX_SCAN): the
    # wildcard's entry is grouped by relation, so the folders' side (no wildcard there) is
    # still kept and a wildcard written on a folder is seen at once
    import stonetown.engine.subject_side as side

    for i in range(side.MAX_SCAN + 10):
        pair.write(f"document:shared{i}#viewer@user:*")
    assert pair.check("document:d", "view") is False
    assert pair.kept_ids()["Levels:levels"] == frozenset({"g0"})
    pair.write("folder:f2#viewer@user:*")
    assert pair.check("document:d", "view") is True
    assert pair.kept_ids()["Levels:levels"] == frozenset({"g0", "f2"})
    pair.delete("folder:f2#viewer@user:*")
    assert pair.check("document:d", "view") is False
    assert pair.check("document:shared3", "view") is True


def test_a_wildcard_entry_past_its_bound_keeps_no_side(pair: _Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    import stonetown.engine.subject_side as side

    monkeypatch.setattr(side, "MAX_WILD_SCAN", 3)
    for i in range(4):
        pair.write(f"document:shared{i}#viewer@user:*")
    assert pair.check("document:d", "view") is False
    assert pair.kept_ids().get("Levels:levels", "absent") in (None, "absent")
    assert side.wild_groups((("folder", "a", "viewer"), ("folder", "b", "viewer"))) == {
        ("folder", "viewer"): frozenset({"a", "b"})
    }


def test_openfga_cycles_keep_no_side() -> None:
    compiled = CompiledSchema(compile_schema(SCHEMA), openfga_cycles=True)
    pair = _Pair(compiled, BASE)
    pair.write("folder:f1#viewer@team:t1#member")
    assert pair.check("document:d", "view") is True
    assert pair.kept.closure is not None and not pair.kept.closure.sides


async def test_through_a_server_old_revisions_do_not_see_the_head_side(tmp_path: Path) -> None:
    system = PermissionSystem(SqliteDatastore(str(tmp_path / "s.db")), poll_interval=None, gc_interval=None)
    await system.start()
    try:
        await system.write_schema(SCHEMA)
        before = await system.write_relationships([Update(UpdateOp.TOUCH, _rel(t)) for t in BASE])
        fresh = Consistency.fully_consistent()
        ana, doc = SubjectRef.parse("user:ana"), ObjectRef.parse("document:d")
        assert (await system.check(doc, "view", ana, fresh)).permissionship is Permissionship.DENIED
        assert system.index.closure is not None and system.index.closure.sides
        granted = await system.write_relationships(
            [Update(UpdateOp.TOUCH, _rel("team:t9#member@team:t0#member"))]
        )
        assert (await system.check(doc, "view", ana, fresh)).permissionship is Permissionship.ALLOWED
        old = Consistency.at_exact_snapshot(before)
        assert (await system.check(doc, "view", ana, old)).permissionship is Permissionship.DENIED
        await system.write_relationships([Update(UpdateOp.DELETE, _rel("team:t9#member@team:t0#member"))])
        assert (await system.check(doc, "view", ana, fresh)).permissionship is Permissionship.DENIED
        at_grant = Consistency.at_exact_snapshot(granted)
        assert (await system.check(doc, "view", ana, at_grant)).permissionship is Permissionship.ALLOWED
    finally:
        await system.stop()
