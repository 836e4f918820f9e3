"""The compact index layout (shared single-entry buckets, tuple reverse entries) is
invisible: after any sequence of adds and removes the index holds exactly the live
relationships, forward and reverse, and an overlay never changes its base."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stonetown.core.relationship import ContextualizedCaveat, Relationship
from stonetown.engine.datastore import Update, UpdateOp
from stonetown.engine.index import RelationshipIndex, overlay
from stonetown.engine.writes import _load_index
from stonetown.stores.sqlite import SqliteDatastore


def _random_relationship(rng: random.Random) -> Relationship:
    subject_relation = rng.choice(["", "", "member"])
    caveat = ContextualizedCaveat("ip", {"n": rng.randrange(3)}) if rng.random() < 0.1 else None
    expiration = datetime(2030, 1, 1, tzinfo=UTC) if rng.random() < 0.05 else None
    return Relationship(
        rng.choice(["app", "team"]),
        f"r{rng.randrange(6)}",
        rng.choice(["runner", "org"]),
        rng.choice(["user", "team"]),
        f"s{rng.randrange(12)}",  # few subjects, so buckets share and reverse entries grow
        subject_relation,
        caveat,
        expiration,
    )


def _expected_reverse(
    live: dict[tuple[str, ...], Relationship],
) -> dict[tuple[str, str, str], set[tuple[str, str, str]]]:
    reverse: dict[tuple[str, str, str], set[tuple[str, str, str]]] = {}
    for rel in live.values():
        subject = (rel.subject_type, rel.subject_id, rel.subject_relation)
        reverse.setdefault(subject, set()).add((rel.resource_type, rel.resource_id, rel.relation))
    return reverse


def _expected_with_meta(live: dict[tuple[str, ...], Relationship]) -> dict[tuple[str, str, str], int]:
    """Per subject, how many of its live relationships have a caveat or an expiration."""
    counts: dict[tuple[str, str, str], int] = {}
    for rel in live.values():
        if rel.caveat is not None or rel.expiration is not None:
            subject = (rel.subject_type, rel.subject_id, rel.subject_relation)
            counts[subject] = counts.get(subject, 0) + 1
    return counts


def _state(
    index: RelationshipIndex,
) -> tuple[set[Relationship], dict[tuple[str, str, str], set[tuple[str, str, str]]]]:
    reverse = {key: set(holders) for key, holders in dict.items(index.reverse)}
    return set(index.relationships()), reverse


def test_adds_and_removes_keep_exactly_the_live_relationships() -> None:
    for seed in range(30):
        rng = random.Random(seed)
        index = RelationshipIndex()
        live: dict[tuple[str, ...], Relationship] = {}
        for _ in range(400):
            rel = _random_relationship(rng)
            if rng.random() < 0.35:
                index.remove(rel)
                live.pop(rel.key, None)
            else:
                index.add(rel)
                live[rel.key] = rel
        assert set(index.relationships()) == set(live.values()), seed
        assert index.count == len(live)
        assert {k: set(v) for k, v in index.reverse.items()} == _expected_reverse(live), seed
        # what Check reads to skip the forward map's metadata probe (exact, never fewer)
        assert index.with_meta == _expected_with_meta(live), seed
        for holders in index.reverse.values():
            assert len(set(holders)) == len(holders)  # no resource key twice
        for forward in (index.objects, index.usersets):
            assert all(forward.values())  # no empty bucket left behind


def test_overlay_never_changes_a_shared_bucket_of_its_base() -> None:
    base = RelationshipIndex()
    for app in ("a1", "a2", "a3"):
        base.add(Relationship("app", app, "org", "organization", "o1"))  # one shared bucket
    base.add(Relationship("team", "t1", "member", "user", "u1"))
    assert base.objects[("app", "a1", "org")] is base.objects[("app", "a2", "org")]  # shared
    before = _state(base)
    extra = [
        Relationship("app", "a1", "org", "organization", "o2"),
        Relationship("team", "t2", "member", "user", "u1"),
    ]
    view = overlay(base, extra)
    assert _state(base) == before
    assert set(view.objects.get(("app", "a1", "org"), {})) == {("organization", "o1"), ("organization", "o2")}
    assert set(view.objects.get(("app", "a2", "org"), {})) == {("organization", "o1")}
    assert set(view.reverse.get(("user", "u1", ""), ())) == {
        ("team", "t1", "member"),
        ("team", "t2", "member"),
    }
    # changing one app of the shared bucket leaves the others alone
    base.add(Relationship("app", "a2", "org", "organization", "o3"))
    base.remove(Relationship("app", "a3", "org", "organization", "o1"))
    assert set(base.objects[("app", "a1", "org")]) == {("organization", "o1")}
    assert set(base.objects[("app", "a2", "org")]) == {("organization", "o1"), ("organization", "o3")}
    assert ("app", "a3", "org") not in base.objects


def test_add_all_matches_add() -> None:
    rng = random.Random(7)
    rels = [_random_relationship(rng) for _ in range(300)]
    one = RelationshipIndex.build(rels, 1)
    fields = RelationshipIndex(1)
    fields.add_all(
        (*r.key, r.caveat, None if r.expiration is None else r.expiration.timestamp()) for r in rels
    )
    fields.loaded()
    assert _state(one) == _state(fields)
    assert one.count == fields.count
    assert one.with_meta == fields.with_meta == _expected_with_meta({r.key: r for r in rels})


def test_subjects_no_longer_named_leave_no_shared_state() -> None:
    index = RelationshipIndex()
    for n in range(50):
        rel = Relationship("app", f"a{n}", "runner", "user", f"u{n}")
        index.add(rel)
        index.add(Relationship("app", f"a{n}", "org", "team", f"t{n}", "member"))
        index.remove(rel)
        index.remove(Relationship("app", f"a{n}", "org", "team", f"t{n}", "member"))
    assert index.count == 0 and not index.objects and not index.usersets and not index.reverse


def _fresh(text: str) -> str:
    """An equal string that is a new object (as each row read from a store is)."""
    return "".join(list(text))


def test_a_load_shares_its_strings_and_then_drops_its_table() -> None:
    rels = [Relationship("document", f"d{n // 3}", "viewer", "user", f"u{n % 5}") for n in range(60)]
    expected = RelationshipIndex.build(rels, 1)
    index = RelationshipIndex(1)
    for start in range(0, len(rels), 7):  # batches, as a store yields them
        index.add_all([(*map(_fresh, r.key), None, None) for r in rels[start : start + 7]])
    index.loaded()
    assert index._ids is None
    assert _state(index) == _state(expected) and index.count == expected.count
    keys = list(index.objects)
    assert all(k[0] is keys[0][0] and k[2] is keys[0][2] for k in keys)  # one string each
    rid = {id(k[1]) for k in keys} | {id(rk[1]) for held in index.reverse.values() for rk in held}
    assert len(rid) == 20  # one string per document, wherever it is held
    # the reverse entries hold the forward map's own key tuples (no copy per relationship)
    forward = {id(k) for k in keys}
    assert all(id(rk) in forward for held in index.reverse.values() for rk in held)


def test_large_reverse_entries_answer_like_small_ones() -> None:
    """Past a few resource keys a reverse entry changes representation; membership,
    iteration, removal and overlays see the same keys."""
    index = RelationshipIndex()
    rels = [Relationship("document", f"d{n}", "viewer", "user", "ana") for n in range(20)]
    wild = [Relationship("document", f"d{n}", "viewer", "user", "*") for n in range(12)]
    for rel in rels + wild:
        index.add(rel)
    held = index.reverse[("user", "ana", "")]
    assert ("document", "d19", "viewer") in held and ("document", "d20", "viewer") not in held
    assert sorted(held) == sorted(r.key[:3] for r in rels)
    for rel in rels[5:]:
        index.remove(rel)
    assert set(index.reverse[("user", "ana", "")]) == {r.key[:3] for r in rels[:5]}
    index.add(rels[7])
    before = _state(index)
    view = overlay(index, [Relationship("document", "x", "viewer", "user", "*")])
    assert ("document", "x", "viewer") in view.reverse.get(("user", "*", ""), ())
    assert len(set(view.reverse.get(("user", "*", ""), ()))) == 13
    assert _state(index) == before


def _fields(rel: Relationship) -> tuple[object, ...]:
    """`rel` as a store's load yields it: six fresh strings, plus caveat and expiration
    unless it has neither."""
    key = tuple(map(_fresh, rel.key))
    if rel.caveat is None and rel.expiration is None:
        return key
    return (*key, rel.caveat, None if rel.expiration is None else rel.expiration.timestamp())


def _loaded(rels: list[Relationship], batch: int = 9) -> RelationshipIndex:
    """An index loaded as a store's rows arrive: batches of six-field rows (the plain
    relationships, rows repeated too), then batches of eight-field ones."""
    index = RelationshipIndex(1)
    plain = [_fields(r) for r in rels if len(_fields(r)) == 6]
    other = [_fields(r) for r in rels if len(_fields(r)) == 8]
    for rows in (plain, other):
        for start in range(0, len(rows), batch):
            index.add_all(rows[start : start + batch])
    index.loaded()
    return index


def test_a_load_of_plain_and_other_rows_then_writes_keep_exactly_the_live_relationships() -> None:
    """A load (plain rows first, as the SQLite store yields them, a relationship given twice
    too), then random writes on the loaded index: every shared bucket a write touches is
    copied first, and the reverse entries the load left follow each write."""
    for seed in range(30):
        rng = random.Random(seed)
        rels = [_random_relationship(rng) for _ in range(300)]
        rels += [Relationship("app", f"r{n}", "org", "team", "big", "member") for n in range(20)]
        live = {r.key: r for r in rels}  # the last of a key wins, as in the store
        index = _loaded(list(live.values()) + rng.sample(list(live.values()), 10))
        assert _state(index) == _state(RelationshipIndex.build(live.values(), 1)), seed
        assert index.count == len(live)
        assert index.with_meta == _expected_with_meta(live), seed
        big = index.reverse[("team", "big", "member")]
        assert type(big) is dict and len(big) >= 20  # a list while the load lasted
        for holders in index.reverse.values():
            assert type(holders) in (tuple, dict) and len(set(holders)) == len(holders)
        for _ in range(300):
            rel = _random_relationship(rng) if rng.random() < 0.8 else rng.choice(rels)
            if rng.random() < 0.4:
                index.remove(rel)
                live.pop(rel.key, None)
            else:
                index.add(rel)
                live[rel.key] = rel
            assert index.count == len(live)
        assert set(index.relationships()) == set(live.values()), seed
        assert {k: set(v) for k, v in index.reverse.items()} == _expected_reverse(live), seed
        assert index.with_meta == _expected_with_meta(live), seed
        for forward in (index.objects, index.usersets):
            assert all(forward.values())


def test_a_load_shares_one_bucket_per_subject_and_writes_never_change_it() -> None:
    rels = [Relationship("app", f"a{n}", "org", "organization", "o1") for n in range(5)]
    index = _loaded(rels)
    buckets = [index.objects[("app", f"a{n}", "org")] for n in range(5)]
    assert all(b is buckets[0] for b in buckets)  # one shared bucket
    index.add(Relationship("app", "a1", "org", "organization", "o2"))
    expiring = datetime(2030, 1, 1, tzinfo=UTC)
    index.add(Relationship("app", "a2", "org", "organization", "o1", expiration=expiring))
    index.add(Relationship("app", "a9", "org", "organization", "o1"))  # a new key: the same bucket
    assert buckets[0] == {("organization", "o1"): None}
    assert index.objects[("app", "a9", "org")] is buckets[0]
    assert set(index.objects[("app", "a1", "org")]) == {("organization", "o1"), ("organization", "o2")}
    assert index.objects[("app", "a2", "org")][("organization", "o1")] is not None
    assert index.objects[("app", "a3", "org")] is buckets[0]


def test_a_load_is_refused_once_closures_are_attached() -> None:
    from stonetown.engine.closure import Closures

    index = RelationshipIndex(1)
    index.closure = Closures(index)
    with pytest.raises(RuntimeError):
        index.add_all([("app", "a", "org", "organization", "o1", "")])
    assert not index.objects


async def test_reverse_entries_are_tuples_up_to_ten_keys_for_plain_subjects(tmp_path: Path) -> None:
    """A plain subject's reverse entry stays a tuple up to 10 resource keys (a dict of 9-10
    keys takes three times a tuple's memory), a subject set's up to 8: whether written one by
    one or loaded from a SQLite file, and membership, iteration and removal see the same
    keys in either form."""
    rels: list[Relationship] = []
    for k in (9, 10, 11):
        rels += [Relationship("document", f"d{n}", "viewer", "user", f"u{k}") for n in range(k)]
    for k in (8, 9):
        rels += [Relationship("document", f"d{n}", "editor", "team", f"t{k}", "member") for n in range(k)]
    store = SqliteDatastore(str(tmp_path / "layout.db"))
    await store.open()
    try:
        head = await store.write([Update(UpdateOp.CREATE, rel) for rel in rels])
        loaded = await _load_index(store, head)
    finally:
        await store.close()
    written = RelationshipIndex.build(rels, head)
    for index in (loaded, written):
        forms = {key[1]: type(held) for key, held in index.reverse.items()}
        assert forms == {"u9": tuple, "u10": tuple, "u11": dict, "t8": tuple, "t9": dict}
        assert {k: set(v) for k, v in index.reverse.items()} == _expected_reverse({r.key: r for r in rels})
    index = written
    index.add(Relationship("document", "d10", "viewer", "user", "u10"))
    assert type(index.reverse[("user", "u10", "")]) is dict
    index.remove(Relationship("document", "d0", "viewer", "user", "u9"))
    held = index.reverse[("user", "u9", "")]
    assert type(held) is tuple and ("document", "d0", "viewer") not in held and len(held) == 8
