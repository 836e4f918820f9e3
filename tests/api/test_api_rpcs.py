"""Every RPC through the sync client against a real server with a SQLite file."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from grpc_harness import SCHEMA

from stonetown import Client
from stonetown.client import ReadConsistency, WatchEvent
from stonetown.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine.datastore import ChangeOp, Precondition, PreconditionOp, RelationshipFilter
from stonetown.engine.types import CheckRequest, ExpandOp, Permissionship

FRESH = ReadConsistency.fully_consistent()


def test_check_in_every_notation(client: Client, uid: str) -> None:
    token = client.write(touch=[f"document:{uid}#viewer@user:ana"])
    assert token
    assert client.check(f"document:{uid}", "view", "user:ana", consistency=FRESH).allowed
    assert client.check(f"document:{uid}#view@user:ana", consistency=FRESH).allowed
    typed = client.check(ObjectRef("document", uid), "view", SubjectRef("user", "ana"), consistency=FRESH)
    assert typed.allowed and typed.permissionship is Permissionship.ALLOWED
    denied = client.check(f"document:{uid}", "view", "user:bob", consistency=FRESH)
    assert denied.permissionship is Permissionship.DENIED and not denied.allowed
    assert denied.token


def test_check_through_subject_sets_arrows_and_exclusion(client: Client, uid: str) -> None:
    client.write(
        touch=[
            f"team:{uid}#member@user:ana",
            f"team:{uid}#member@user:bob",
            f"folder:{uid}#viewer@team:{uid}#member",
            f"document:{uid}#parent@folder:{uid}",
            f"document:{uid}#banned@user:bob",
        ]
    )
    assert client.check(f"document:{uid}", "view", "user:ana", consistency=FRESH).allowed
    assert not client.check(f"document:{uid}", "view", "user:bob", consistency=FRESH).allowed


def test_check_with_caveat_context(client: Client, uid: str) -> None:
    client.write(touch=[f"document:{uid}#viewer@user:cat[on_weekday]"])
    conditional = client.check(f"document:{uid}", "view", "user:cat", consistency=FRESH)
    assert conditional.conditional
    assert conditional.missing_parameters == ("day",)
    assert client.check(
        f"document:{uid}", "view", "user:cat", context={"day": "mon"}, consistency=FRESH
    ).allowed
    assert not client.check(
        f"document:{uid}", "view", "user:cat", context={"day": "sat"}, consistency=FRESH
    ).allowed


def test_check_with_contextual_relationships(client: Client, uid: str) -> None:
    contextual = [f"document:{uid}#editor@user:dan"]
    assert client.check(
        f"document:{uid}", "edit", "user:dan", contextual=contextual, consistency=FRESH
    ).allowed
    assert not client.check(f"document:{uid}", "edit", "user:dan", consistency=FRESH).allowed
    assert list(client.read(f"document:{uid}", consistency=FRESH)) == []


def test_check_bulk_answers_in_order_with_per_item_errors(client: Client, uid: str) -> None:
    client.write(touch=[f"document:{uid}#owner@user:ana"])
    results = client.check_bulk(
        [
            f"document:{uid}#edit@user:ana",
            (f"document:{uid}", "edit", "user:bob"),
            CheckRequest(ObjectRef("document", uid), "nosuchperm", SubjectRef("user", "ana")),
            f"document:{uid}#view@user:ana",
        ],
        consistency=FRESH,
    )
    assert len(results) == 4
    assert results[0].allowed  # type: ignore[union-attr]
    assert not results[1].allowed  # type: ignore[union-attr]
    assert isinstance(results[2], InvalidArgument)
    assert results[3].allowed  # type: ignore[union-attr]


def test_expand_shallow_and_recursive(client: Client, uid: str) -> None:
    client.write(
        touch=[
            f"document:{uid}#owner@user:ana",
            f"document:{uid}#editor@team:{uid}#member",
            f"team:{uid}#member@user:bob",
        ]
    )
    shallow = client.expand(f"document:{uid}", "edit", consistency=FRESH).tree
    assert shallow.op is ExpandOp.UNION
    leaves = {str(s) for child in shallow.children for s in child.subjects}
    assert leaves == {"user:ana", f"team:{uid}#member"}
    deep = client.expand(f"document:{uid}", "edit", recursive=True, consistency=FRESH).tree

    def subjects(node: object) -> set[str]:
        found = {str(s) for s in node.subjects}  # type: ignore[attr-defined]
        for child in node.children:  # type: ignore[attr-defined]
            found |= subjects(child)
        return found

    assert "user:bob" in subjects(deep)


def test_lookup_resources_streams_and_pages(client: Client, uid: str) -> None:
    ids = [f"{uid}_{n}" for n in range(5)]
    client.write(touch=[f"document:{i}#viewer@user:{uid}" for i in ids])
    found = [
        r.resource_id for r in client.lookup_resources("document", "view", f"user:{uid}", consistency=FRESH)
    ]
    assert found == sorted(ids)
    first = list(client.lookup_resources("document", "view", f"user:{uid}", limit=2, consistency=FRESH))
    assert [r.resource_id for r in first] == sorted(ids)[:2]
    rest = list(
        client.lookup_resources(
            "document",
            "view",
            f"user:{uid}",
            cursor=first[-1].cursor,
            consistency=ReadConsistency.at_exact_snapshot(first[-1].token),
        )
    )
    assert [r.resource_id for r in rest] == sorted(ids)[2:]


def test_lookup_subjects_with_wildcard_exclusions(client: Client, uid: str) -> None:
    client.write(
        touch=[
            f"document:{uid}#viewer@user:*",
            f"document:{uid}#viewer@user:ana",
            f"document:{uid}#banned@user:bob",
        ]
    )
    found = list(client.lookup_subjects(f"document:{uid}", "view", "user", consistency=FRESH))
    by_id = {f.subject.id: f for f in found}
    assert set(by_id) == {"*", "ana"}
    assert by_id["*"].excluded == ("bob",)
    assert all(f.token for f in found)


def test_write_create_touch_delete_and_preconditions(client: Client, uid: str) -> None:
    rel = f"document:{uid}#owner@user:ana"
    client.write(create=[rel])
    with pytest.raises(AlreadyExists):
        client.write(create=[rel])
    client.write(touch=[rel])
    must_not = Precondition(
        PreconditionOp.MUST_NOT_MATCH, RelationshipFilter("document", uid, relation="owner")
    )
    with pytest.raises(FailedPrecondition):
        client.write(touch=[f"document:{uid}#editor@user:bob"], preconditions=[must_not])
    assert [str(r) for r in client.read(f"document:{uid}", consistency=FRESH)] == [rel]
    must = Precondition(PreconditionOp.MUST_MATCH, RelationshipFilter("document", uid, relation="owner"))
    client.write(delete=[rel], touch=[f"document:{uid}#editor@user:bob"], preconditions=[must])
    assert [str(r) for r in client.read(f"document:{uid}", consistency=FRESH)] == [
        f"document:{uid}#editor@user:bob"
    ]


def test_write_is_atomic(client: Client, uid: str) -> None:
    with pytest.raises(InvalidArgument):
        client.write(touch=[f"document:{uid}#owner@user:ana", f"document:{uid}#nosuchrelation@user:ana"])
    assert list(client.read(f"document:{uid}", consistency=FRESH)) == []


def test_caveat_and_expiration_round_trip(client: Client, uid: str) -> None:
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    rel = Relationship("document", uid, "guest", "user", "eve", expiration=expires)
    client.write(touch=[rel, f'document:{uid}#viewer@user:fay[on_weekday:{{"day":"tue"}}]'])
    stored = {r.subject_id: r for r in client.read(f"document:{uid}", consistency=FRESH)}
    assert stored["eve"].expiration == expires
    assert stored["fay"].caveat is not None and stored["fay"].caveat.context == {"day": "tue"}


def test_read_filters_and_cursor_paging(client: Client, uid: str) -> None:
    rels = [f"document:{uid}{n}#viewer@user:u{n}" for n in range(7)] + [f"document:{uid}0#owner@user:u0"]
    client.write(touch=rels)
    everything = [str(r) for r in client.read(f"document:{uid}*", consistency=FRESH)]
    assert sorted(everything) == sorted(rels)
    assert [str(r) for r in client.read(f"document:{uid}0#owner", consistency=FRESH)] == [rels[-1]]
    assert [str(r) for r in client.read(f"document:{uid}*@user:u3", consistency=FRESH)] == [rels[3]]
    collected: list[Relationship] = []
    cursor: str | None = None
    consistency = FRESH
    while True:
        page = client.read_page(f"document:{uid}*", limit=3, cursor=cursor, consistency=consistency)
        assert len(page.relationships) <= 3
        collected.extend(page.relationships)
        if len(page.relationships) < 3:
            break
        cursor, consistency = page.cursor, ReadConsistency.at_exact_snapshot(page.token)
    assert len(collected) == len(rels)
    assert sorted(str(r) for r in collected) == sorted(rels)


def test_delete_by_filter_with_limit(client: Client, uid: str) -> None:
    client.write(touch=[f"document:{uid}#viewer@user:u{n}" for n in range(5)])
    partial = client.delete(f"document:{uid}#viewer", limit=2)
    assert partial.deleted == 2 and partial.partial
    rest = client.delete(f"document:{uid}#viewer")
    assert rest.deleted == 3 and not rest.partial
    assert list(client.read(f"document:{uid}", consistency=FRESH)) == []
    with pytest.raises(FailedPrecondition):
        client.delete(
            f"document:{uid}",
            preconditions=[Precondition(PreconditionOp.MUST_MATCH, RelationshipFilter("document", uid))],
        )


def test_watch_streams_changes_after_a_token(client: Client, server: object, uid: str) -> None:
    start = client.write(touch=[f"folder:{uid}#viewer@user:start"])
    events: list[WatchEvent] = []
    done = threading.Event()

    def consume() -> None:
        with Client(server.address) as watcher:  # type: ignore[attr-defined]
            for event in watcher.watch(["document"], after=start):
                events.append(event)
                if len(events) == 2:
                    break
        done.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    client.write(touch=[f"folder:{uid}#viewer@user:ignored"])  # other type: filtered out
    client.write(touch=[f"document:{uid}#owner@user:ana"])
    client.write(delete=[f"document:{uid}#owner@user:ana"])
    assert done.wait(30)
    changes = [(c.op, str(c.relationship)) for e in events for c in e.changes]
    assert changes == [
        (ChangeOp.TOUCH, f"document:{uid}#owner@user:ana"),
        (ChangeOp.DELETE, f"document:{uid}#owner@user:ana"),
    ]
    assert all(e.token for e in events)


def test_read_schema_returns_the_schema_and_its_token(client: Client) -> None:
    outcome = client.read_schema()
    assert outcome.text.strip() == SCHEMA.strip()
    assert outcome.token


def test_read_your_writes_sends_the_last_token(server: object, uid: str) -> None:
    with Client(server.address, read_your_writes=True) as ryw:  # type: ignore[attr-defined]
        token = ryw.write(touch=[f"document:{uid}#owner@user:ana"])
        assert ryw.last_write_token == token
        outcome = ryw.check(f"document:{uid}", "edit", "user:ana")
        assert outcome.allowed
