"""The datastore contract, run against every implementation (see conftest.STORE_FACTORIES)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from stonetown.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from stonetown.core.relationship import ContextualizedCaveat, Relationship
from stonetown.engine.datastore import (
    BatchedDelete,
    BatchedWrite,
    ChangeOp,
    Datastore,
    DeleteResult,
    Precondition,
    PreconditionOp,
    RelationshipFilter,
    StoredSchema,
    SubjectFilter,
    Update,
    UpdateOp,
)


def rel(text: str) -> Relationship:
    """Parse tuple notation."""
    return Relationship.parse(text)


def creates(*texts: str) -> list[Update]:
    """CREATE updates for each relationship."""
    return [Update(UpdateOp.CREATE, rel(text)) for text in texts]


def touches(*texts: str) -> list[Update]:
    """TOUCH updates for each relationship."""
    return [Update(UpdateOp.TOUCH, rel(text)) for text in texts]


def deletes(*texts: str) -> list[Update]:
    """DELETE updates for each relationship."""
    return [Update(UpdateOp.DELETE, rel(text)) for text in texts]


async def everything(store: Datastore, revision: int | None = None) -> list[str]:
    """All relationships at `revision` (default head) as sorted strings."""
    if revision is None:
        revision = await store.head_revision()
    return [str(r) for r in await store.read(RelationshipFilter(), revision)]


def must_match(**fields: object) -> Precondition:
    """A MUST_MATCH precondition on a filter built from `fields`."""
    return Precondition(PreconditionOp.MUST_MATCH, RelationshipFilter(**fields))  # type: ignore[arg-type]


def must_not_match(**fields: object) -> Precondition:
    """A MUST_NOT_MATCH precondition on a filter built from `fields`."""
    return Precondition(PreconditionOp.MUST_NOT_MATCH, RelationshipFilter(**fields))  # type: ignore[arg-type]


SAMPLE = [
    "document:alpha#viewer@user:ana",
    "document:alpha#viewer@user:bob",
    "document:alpha#editor@user:ana",
    "document:alpha2#viewer@team:data#member",
    "document:beta#viewer@user:*",
    "document:beta#parent@folder:root",
    "folder:root#viewer@user:carl",
    "folder:root#viewer@team:data#member",
    "team:data#member@user:ana",
]


async def test_empty_store(store: Datastore) -> None:
    assert await store.head_revision() == 0
    assert await store.min_revision() == 0
    assert await store.read(RelationshipFilter(), 0) == []
    assert await store.read_schema() is None
    assert await store.changes(0) == []


async def test_revisions_strictly_increase(store: Datastore) -> None:
    seen = [await store.write(creates("document:a#viewer@user:ana"))]
    seen.append(await store.write([]))
    seen.append(await store.write(deletes("document:missing#viewer@user:ana")))
    seen.append(await store.write_schema("definition user {}"))
    seen.append((await store.delete(RelationshipFilter(resource_type="document"))).revision)
    assert seen == [1, 2, 3, 4, 5]
    assert await store.head_revision() == 5


async def test_snapshot_reads_are_exact(store: Datastore) -> None:
    r1 = await store.write(creates("document:a#viewer@user:ana", "document:b#viewer@user:bob"))
    r2 = await store.write(touches('document:a#viewer@user:ana[ip:{"x":1}]'))
    r3 = await store.write(deletes("document:b#viewer@user:bob") + creates("document:c#viewer@user:carl"))
    assert await everything(store, 0) == []
    assert await everything(store, r1) == ["document:a#viewer@user:ana", "document:b#viewer@user:bob"]
    assert await everything(store, r2) == [
        'document:a#viewer@user:ana[ip:{"x":1}]',
        "document:b#viewer@user:bob",
    ]
    assert await everything(store, r3) == [
        'document:a#viewer@user:ana[ip:{"x":1}]',
        "document:c#viewer@user:carl",
    ]


async def test_create_of_existing_fails_atomically(store: Datastore) -> None:
    head = await store.write(creates("document:a#viewer@user:ana"))
    with pytest.raises(AlreadyExists, match="document:a#viewer@user:ana"):
        await store.write(creates("document:b#viewer@user:bob", "document:a#viewer@user:ana"))
    assert await store.head_revision() == head
    assert await everything(store) == ["document:a#viewer@user:ana"]
    # A CREATE after a DELETE of the same relationship works again.
    await store.write(deletes("document:a#viewer@user:ana"))
    await store.write(creates("document:a#viewer@user:ana"))
    assert await everything(store) == ["document:a#viewer@user:ana"]


async def test_touch_replaces_caveat_and_expiration(store: Datastore) -> None:
    await store.write(touches("document:a#viewer@user:ana"))
    await store.write(touches("document:a#viewer@user:ana[expiration:2030-01-02T03:04:05Z]"))
    assert await everything(store) == ["document:a#viewer@user:ana[expiration:2030-01-02T03:04:05Z]"]
    await store.write(touches('document:a#viewer@user:ana[only_ip:{"cidr":"10.0.0.0/8"}]'))
    assert await everything(store) == ['document:a#viewer@user:ana[only_ip:{"cidr":"10.0.0.0/8"}]']
    before = await store.head_revision()
    # Touching an identical relationship is still a write and a TOUCH in the change log.
    revision = await store.write(touches('document:a#viewer@user:ana[only_ip:{"cidr":"10.0.0.0/8"}]'))
    assert revision == before + 1
    [entry] = await store.changes(before)
    assert [(c.op, str(c.relationship)) for c in entry.changes] == [
        (ChangeOp.TOUCH, 'document:a#viewer@user:ana[only_ip:{"cidr":"10.0.0.0/8"}]')
    ]
    assert await everything(store) == ['document:a#viewer@user:ana[only_ip:{"cidr":"10.0.0.0/8"}]']


async def test_delete_of_missing_is_a_noop(store: Datastore) -> None:
    await store.write(creates("document:a#viewer@user:ana"))
    revision = await store.write(deletes("document:zzz#viewer@user:ana"))
    assert revision == 2
    [entry] = await store.changes(1)
    assert entry.revision == 2 and entry.changes == ()
    assert await everything(store) == ["document:a#viewer@user:ana"]


async def test_same_relationship_twice_is_invalid(store: Datastore) -> None:
    with pytest.raises(InvalidArgument, match="more than once"):
        await store.write(creates("document:a#viewer@user:ana") + deletes("document:a#viewer@user:ana[c]"))
    assert await store.head_revision() == 0
    assert await everything(store, 0) == []


async def test_validator_sees_schema_and_can_refuse(store: Datastore) -> None:
    seen: list[tuple[StoredSchema | None, int]] = []

    def record(schema: StoredSchema | None, updates: Sequence[Update]) -> None:
        seen.append((schema, len(updates)))

    await store.write(creates("document:a#viewer@user:ana"), validate=record)
    schema_revision = await store.write_schema("definition user {}")
    await store.write(creates("document:b#viewer@user:ana", "document:c#viewer@user:ana"), validate=record)
    assert seen == [(None, 1), (StoredSchema("definition user {}", schema_revision), 2)]

    def refuse(schema: StoredSchema | None, updates: Sequence[Update]) -> None:
        raise InvalidArgument("relation nope is not defined")

    head = await store.head_revision()
    with pytest.raises(InvalidArgument, match="nope"):
        await store.write(creates("document:d#viewer@user:ana"), validate=refuse)
    assert await store.head_revision() == head
    assert len(await everything(store)) == 3


@pytest.mark.parametrize(
    ("fields", "matches"),
    [
        ({"resource_type": "document"}, True),
        ({"resource_type": "folder"}, True),
        ({"resource_type": "organization"}, False),
        ({"resource_type": "document", "resource_id": "alpha"}, True),
        ({"resource_type": "document", "resource_id": "gamma"}, False),
        ({"resource_type": "document", "resource_id_prefix": "alp"}, True),
        ({"resource_type": "document", "resource_id_prefix": "gam"}, False),
        ({"relation": "editor"}, True),
        ({"relation": "owner"}, False),
        ({"subject": SubjectFilter("team")}, True),
        ({"subject": SubjectFilter("group")}, False),
        ({"subject": SubjectFilter("user", "carl")}, True),
        ({"subject": SubjectFilter("user", "dave")}, False),
        ({"subject": SubjectFilter("team", "data", "member")}, True),
        ({"subject": SubjectFilter("team", "data", "")}, False),
        ({"subject": SubjectFilter("user", "ana", "")}, True),
        (
            {
                "resource_type": "document",
                "resource_id": "alpha",
                "relation": "editor",
                "subject": SubjectFilter("user", "ana", ""),
            },
            True,
        ),
        (
            {
                "resource_type": "document",
                "resource_id": "alpha",
                "relation": "editor",
                "subject": SubjectFilter("user", "bob", ""),
            },
            False,
        ),
    ],
)
async def test_preconditions(store: Datastore, fields: dict[str, object], matches: bool) -> None:
    await store.write(creates(*SAMPLE))
    extra = creates("document:new#viewer@user:zed")
    good, bad = (must_match, must_not_match) if matches else (must_not_match, must_match)
    head = await store.head_revision()
    with pytest.raises(FailedPrecondition, match="precondition"):
        await store.write(extra, [bad(**fields)])
    with pytest.raises(FailedPrecondition, match="precondition"):
        await store.delete(RelationshipFilter(resource_type="document"), [bad(**fields)])
    assert await store.head_revision() == head
    assert len(await everything(store)) == len(SAMPLE)
    assert await store.write(extra, [good(**fields)]) == head + 1


async def test_preconditions_see_the_state_before_the_write(store: Datastore) -> None:
    await store.write(creates("document:a#viewer@user:ana"))
    # The write deletes what the precondition requires, and creates what the other forbids.
    await store.write(
        deletes("document:a#viewer@user:ana") + creates("document:b#viewer@user:bob"),
        [
            must_match(resource_type="document", resource_id="a"),
            must_not_match(resource_type="document", resource_id="b"),
        ],
    )
    assert await everything(store) == ["document:b#viewer@user:bob"]


async def test_failed_precondition_names_the_filter(store: Datastore) -> None:
    with pytest.raises(FailedPrecondition, match=r"document:a#viewer@user:ana"):
        await store.write(
            creates("document:b#viewer@user:bob"),
            [
                must_match(
                    resource_type="document",
                    resource_id="a",
                    relation="viewer",
                    subject=SubjectFilter("user", "ana"),
                )
            ],
        )


async def test_delete_by_filter(store: Datastore) -> None:
    await store.write(creates(*SAMPLE))
    head = await store.head_revision()
    result = await store.delete(RelationshipFilter(resource_type="organization"))
    assert (result.revision, result.deleted, result.limit_reached) == (head, 0, False)
    assert await store.head_revision() == head

    result = await store.delete(RelationshipFilter(resource_type="document", resource_id="alpha"), limit=2)
    assert (result.revision, result.deleted, result.limit_reached) == (head + 1, 2, True)
    # Deleted in key order: editor@ana, then viewer@ana.
    assert [
        str(r)
        for r in await store.read(
            RelationshipFilter(resource_id="alpha", resource_type="document"), result.revision
        )
    ] == ["document:alpha#viewer@user:bob"]
    result = await store.delete(RelationshipFilter(subject=SubjectFilter("team", "data", "member")), limit=5)
    assert (result.deleted, result.limit_reached) == (2, False)
    [entry] = await store.changes(result.revision - 1)
    assert {(c.op, str(c.relationship)) for c in entry.changes} == {
        (ChangeOp.DELETE, "document:alpha2#viewer@team:data#member"),
        (ChangeOp.DELETE, "folder:root#viewer@team:data#member"),
    }
    result = await store.delete(RelationshipFilter())
    assert result.deleted == len(SAMPLE) - 4
    assert await everything(store) == []


async def test_delete_limit_exactly_reached(store: Datastore) -> None:
    await store.write(creates("document:a#viewer@user:ana", "document:a#viewer@user:bob"))
    result = await store.delete(RelationshipFilter(resource_type="document"), limit=2)
    assert (result.deleted, result.limit_reached) == (2, False)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, SAMPLE),
        (
            {"resource_type": "folder"},
            ["folder:root#viewer@user:carl", "folder:root#viewer@team:data#member"],
        ),
        ({"resource_type": "document", "resource_id": "alpha"}, SAMPLE[:3]),
        ({"resource_type": "document", "resource_id_prefix": "alpha"}, SAMPLE[:4]),
        ({"resource_type": "document", "resource_id_prefix": "b"}, SAMPLE[4:6]),
        ({"resource_type": "document", "relation": "viewer"}, [SAMPLE[0], SAMPLE[1], SAMPLE[3], SAMPLE[4]]),
        ({"relation": "member"}, [SAMPLE[8]]),
        (
            {"subject": SubjectFilter("user")},
            [SAMPLE[0], SAMPLE[1], SAMPLE[2], SAMPLE[4], SAMPLE[6], SAMPLE[8]],
        ),
        ({"subject": SubjectFilter("user", "ana")}, [SAMPLE[0], SAMPLE[2], SAMPLE[8]]),
        ({"subject": SubjectFilter("user", "*")}, [SAMPLE[4]]),
        ({"subject": SubjectFilter("team", None, "member")}, [SAMPLE[3], SAMPLE[7]]),
        ({"subject": SubjectFilter("team", "data", "")}, []),
        ({"resource_type": "folder", "subject": SubjectFilter("team")}, [SAMPLE[7]]),
        ({"subject_is_set": True}, [SAMPLE[3], SAMPLE[7]]),
        ({"resource_type": "folder", "subject_is_set": False}, [SAMPLE[6]]),
        ({"resource_type": "document", "subject_is_set": False}, [*SAMPLE[:3], *SAMPLE[4:6]]),
        ({"subject": SubjectFilter("team"), "subject_is_set": False}, []),
        (
            {
                "resource_type": "document",
                "resource_id": "alpha",
                "relation": "viewer",
                "subject": SubjectFilter("user", "bob", ""),
            },
            [SAMPLE[1]],
        ),
    ],
)
async def test_read_filters(store: Datastore, fields: dict[str, object], expected: list[str]) -> None:
    await store.write(creates(*reversed(SAMPLE)))
    got = await store.read(RelationshipFilter(**fields), 1)  # type: ignore[arg-type]
    assert [str(r) for r in got] == sorted(expected, key=lambda t: rel(t).key)
    # Paging with every page size gives the same relationships, in the same order.
    for size in (1, 2, 3):
        paged: list[Relationship] = []
        after: tuple[str, ...] | None = None
        while True:
            page = await store.read(RelationshipFilter(**fields), 1, after=after, limit=size)  # type: ignore[arg-type]
            paged.extend(page)
            if len(page) < size:
                break
            after = page[-1].key
        assert paged == got


async def test_read_rejects_bad_arguments(store: Datastore) -> None:
    await store.write(creates("document:a#viewer@user:ana"))
    with pytest.raises(InvalidArgument):
        await store.read(
            RelationshipFilter(resource_type="document", resource_id="a", resource_id_prefix="a"), 1
        )
    with pytest.raises(FailedPrecondition, match="newer than the head"):
        await store.read(RelationshipFilter(), 2)
    with pytest.raises(FailedPrecondition, match="newer than the head"):
        await store.read_schema(2)


async def test_change_log(store: Datastore) -> None:
    r1 = await store.write(creates("document:a#viewer@user:ana", "document:b#viewer@user:bob"))
    r2 = await store.write(touches("document:a#viewer@user:ana[c1]") + deletes("document:b#viewer@user:bob"))
    r3 = await store.write_schema("definition user {}")
    r4 = (await store.delete(RelationshipFilter(resource_type="document"))).revision
    log = await store.changes(0)
    assert [entry.revision for entry in log] == [r1, r2, r3, r4]
    assert [entry.schema_changed for entry in log] == [False, False, True, False]
    as_text = [[(c.op, str(c.relationship)) for c in entry.changes] for entry in log]
    assert as_text == [
        [(ChangeOp.TOUCH, "document:a#viewer@user:ana"), (ChangeOp.TOUCH, "document:b#viewer@user:bob")],
        [(ChangeOp.TOUCH, "document:a#viewer@user:ana[c1]"), (ChangeOp.DELETE, "document:b#viewer@user:bob")],
        [],
        [(ChangeOp.DELETE, "document:a#viewer@user:ana[c1]")],
    ]
    timestamps = [entry.timestamp for entry in log]
    assert all(t.tzinfo is not None for t in timestamps)
    assert timestamps == sorted(timestamps)
    assert abs(timestamps[-1] - datetime.now(UTC)) < timedelta(minutes=1)
    assert [e.revision for e in await store.changes(r2)] == [r3, r4]
    assert [e.revision for e in await store.changes(r1, limit=2)] == [r2, r3]
    assert await store.changes(r4) == []


async def test_schema_storage(store: Datastore) -> None:
    assert await store.read_schema() is None
    r1 = await store.write_schema("definition user {}")
    r2 = await store.write(creates("document:a#viewer@user:ana"))
    r3 = await store.write_schema("definition user {}\ndefinition document {}")
    assert await store.read_schema() == StoredSchema("definition user {}\ndefinition document {}", r3)
    assert await store.read_schema(r2) == StoredSchema("definition user {}", r1)
    assert await store.read_schema(r1) == StoredSchema("definition user {}", r1)
    assert await store.read_schema(0) is None


async def test_schema_validator_gets_one_example_per_shape(store: Datastore) -> None:
    await store.write(
        creates(
            "document:a#viewer@user:ana",
            "document:b#viewer@user:bob",  # same shape as the one above
            "document:a#viewer@user:*",
            "document:a#viewer@team:data#member",
            "document:a#viewer@team:eng#member",  # same shape
            "document:c#viewer@user:carl[only_ip]",
            "document:d#viewer@user:dan[expiration:2030-01-01T00:00:00Z]",
            "document:e#viewer@user:eve[only_ip][expiration:2030-01-01T00:00:00Z]",
            "document:a#editor@user:ana",
            "folder:x#viewer@user:ana",
            "folder:y#owner@user:ana",
        )
    )
    await store.write(deletes("folder:y#owner@user:ana"))  # deleted rows have no shape
    received: list[Relationship] = []
    await store.write_schema("definition user {}", validate=received.extend)
    shapes = sorted(
        (
            r.resource_type,
            r.relation,
            r.subject_type,
            r.subject_relation,
            r.subject_id == "*",
            r.caveat.name if r.caveat else "",
            r.expiration is not None,
        )
        for r in received
    )
    assert shapes == [
        ("document", "editor", "user", "", False, "", False),
        ("document", "viewer", "team", "member", False, "", False),
        ("document", "viewer", "user", "", False, "", False),
        ("document", "viewer", "user", "", False, "", True),
        ("document", "viewer", "user", "", False, "only_ip", False),
        ("document", "viewer", "user", "", False, "only_ip", True),
        ("document", "viewer", "user", "", True, "", False),
        ("folder", "viewer", "user", "", False, "", False),
    ]
    live = set(await everything(store))
    assert all(str(r) in live for r in received)

    def refuse(examples: Sequence[Relationship]) -> None:
        raise FailedPrecondition("relation viewer is still used")

    head = await store.head_revision()
    with pytest.raises(FailedPrecondition, match="still used"):
        await store.write_schema("definition other {}", validate=refuse)
    assert await store.head_revision() == head
    assert (await store.read_schema()) == StoredSchema("definition user {}", head)


async def test_gc_window_and_min_revision(store: Datastore) -> None:
    r1 = await store.write(creates("document:a#viewer@user:ana", "document:b#viewer@user:bob"))
    r2 = await store.write_schema("definition user {}")
    r3 = await store.write(deletes("document:a#viewer@user:ana") + touches("document:b#viewer@user:bob[c]"))
    r4 = await store.write_schema("definition user {}\n")
    await asyncio.sleep(0.002)  # keep r4 and r5 apart even on a coarse clock
    r5 = await store.write(creates("document:c#viewer@user:carl"))
    assert await store.gc(datetime.now(UTC) - timedelta(hours=1)) == 0
    assert await store.min_revision() == 0

    log = await store.changes(0)
    # Collect everything committed up to r4 (a timestamp strictly between r4 and r5 is not
    # reliable on coarse clocks, so cut at r5's timestamp: revisions before it are old).
    removed = await store.gc(log[r5 - 1].timestamp)
    assert removed >= 2  # the deleted a@ana and the replaced b@bob row
    assert await store.min_revision() == r4
    with pytest.raises(FailedPrecondition, match="garbage collected"):
        await store.read(RelationshipFilter(), r3)
    with pytest.raises(FailedPrecondition, match="garbage collected"):
        await store.changes(r1)
    with pytest.raises(FailedPrecondition, match="garbage collected"):
        await store.read_schema(r2)
    assert await everything(store, r4) == ["document:b#viewer@user:bob[c]"]
    assert await everything(store, r5) == ["document:b#viewer@user:bob[c]", "document:c#viewer@user:carl"]
    assert await store.read_schema(r4) == StoredSchema("definition user {}\n", r4)
    assert [e.revision for e in await store.changes(r4)] == [r5]
    assert await store.head_revision() == r5
    # GC with the same horizon again removes nothing; writes continue from the head.
    assert await store.gc(log[r5 - 1].timestamp) == 0
    assert await store.write([]) == r5 + 1


async def test_gc_keeps_head_readable(store: Datastore) -> None:
    await store.write(creates("document:a#viewer@user:ana"))
    head = await store.write(deletes("document:a#viewer@user:ana"))
    assert await store.gc(datetime.now(UTC) + timedelta(hours=1)) == 1
    assert await store.min_revision() == head
    assert await everything(store) == []
    assert await store.changes(head) == []
    assert await store.write(creates("document:a#viewer@user:ana")) == head + 1


async def test_gc_removes_relationships_expired_before_the_cutoff(store: Datastore) -> None:
    head = await store.write(
        creates(
            "document:a#viewer@user:old[expiration:2020-01-01T00:00:00Z]",
            "document:a#viewer@user:soon[expiration:2020-01-01T00:00:00.5Z]",
            "document:a#viewer@user:later[expiration:2300-01-01T00:00:00Z]",
            "document:a#viewer@user:forever",
        )
    )
    assert await store.gc(datetime(2020, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)) == 1
    assert await everything(store, head) == [
        "document:a#viewer@user:forever",
        "document:a#viewer@user:later[expiration:2300-01-01T00:00:00Z]",
        "document:a#viewer@user:soon[expiration:2020-01-01T00:00:00.500000Z]",
    ]
    assert await store.gc(datetime(2021, 1, 1, tzinfo=UTC)) == 1
    assert len(await everything(store, head)) == 2


async def test_gc_of_an_expired_relationship_removes_it_everywhere(store: Datastore) -> None:
    """After GC an expired relationship is gone for good: not read, not blocking a CREATE of
    the same relationship, a MUST_NOT_MATCH precondition or a schema change that would
    orphan it (issue #18, item 17: the memory store kept it live)."""
    await store.write_schema("definition user {}\ndefinition document { relation viewer: user }")
    expired = "document:a#viewer@user:old[expiration:2020-01-01T00:00:00Z]"
    await store.write(creates(expired, "folder:f#viewer@user:kept"))
    for _ in range(2):  # the second pass must not resurrect or trip over it
        await store.gc(datetime(2021, 1, 1, tzinfo=UTC))
        assert await everything(store) == ["folder:f#viewer@user:kept"]
    assert (await store.delete(RelationshipFilter(resource_type="document"))).deleted == 0
    await store.write(
        [], [must_not_match(resource_type="document", resource_id="a", relation="viewer")]
    )

    def refuse_documents(examples: Sequence[Relationship]) -> None:
        stale = [str(r) for r in examples if r.resource_type == "document"]
        if stale:
            raise FailedPrecondition(f"stored relationship {stale[0]} would no longer be valid")

    await store.write_schema("definition user {}", validate=refuse_documents)
    head = await store.write(creates("document:a#viewer@user:old"))
    assert await everything(store, head) == ["document:a#viewer@user:old", "folder:f#viewer@user:kept"]


async def test_caveat_and_expiration_round_trip(store: Datastore) -> None:
    expiry = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    original = Relationship(
        "document",
        "a",
        "viewer",
        "user",
        "ana",
        caveat=ContextualizedCaveat(
            "only_ip", {"cidr": "10.0.0.0/8", "n": [1, 2.5, None, True], "o": {"k": "v"}}
        ),
        expiration=expiry,
    )
    r1 = await store.write([Update(UpdateOp.CREATE, original)])
    [back] = await store.read(RelationshipFilter(), r1)
    assert back == original
    assert back.expiration == expiry and back.caveat is not None
    assert back.caveat.context == original.caveat.context  # type: ignore[union-attr]
    plain = Relationship("document", "a", "viewer", "user", "ana")
    r2 = await store.write([Update(UpdateOp.TOUCH, plain)])
    assert await store.read(RelationshipFilter(), r2) == [plain]
    assert await store.read(RelationshipFilter(), r1) == [original]
    [entry] = await store.changes(r1)
    assert entry.changes[0].relationship == plain
    async for batch in store.iter_all(r1):
        assert batch == [original]


async def test_long_ids(store: Datastore) -> None:
    long_a = "a" * 1024
    long_b = "b" * 1023 + "="
    r = Relationship("document", long_a, "viewer", "user", long_b)
    await store.write([Update(UpdateOp.CREATE, r)])
    assert await store.read(RelationshipFilter(resource_type="document", resource_id=long_a), 1) == [r]
    assert await store.read(
        RelationshipFilter(resource_type="document", resource_id_prefix="a" * 1000), 1
    ) == [r]
    assert await store.read(RelationshipFilter(subject=SubjectFilter("user", long_b)), 1) == [r]
    assert (await store.delete(RelationshipFilter(resource_type="document", resource_id=long_a))).deleted == 1


async def test_iter_all_matches_read(store: Datastore) -> None:
    texts = [f"document:d{i:04d}#viewer@user:u{i % 7}" for i in range(250)]
    r1 = await store.write(creates(*texts))
    r2 = await store.write(deletes(*texts[::3]))
    for revision in (r1, r2):
        expected = await store.read(RelationshipFilter(), revision)
        batches = [batch async for batch in store.iter_all(revision, batch=40)]
        assert all(0 < len(batch) <= 40 for batch in batches)
        assert sorted((r for batch in batches for r in batch), key=lambda r: r.key) == expected
    with pytest.raises(FailedPrecondition):
        async for _ in store.iter_all(r2 + 1):
            pass


async def test_iter_fields_matches_read(store: Datastore) -> None:
    """A load's fields are the relationships read: a batch holds plain relationships as six
    fields or any as eight (caveat, expiration as POSIX seconds), at the head and before."""
    expiry = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)

    def ip(n: int) -> ContextualizedCaveat:
        return ContextualizedCaveat("ip", {"n": n})

    rels = [rel(f"document:d{i:03d}#viewer@user:u{i % 7}") for i in range(120)]
    rels += [
        Relationship("document", f"c{i}", "viewer", "team", f"t{i % 3}", "member", caveat=ip(i))
        for i in range(15)
    ]
    rels += [Relationship("document", f"e{i}", "viewer", "user", "ana", expiration=expiry) for i in range(15)]
    r1 = await store.write([Update(UpdateOp.CREATE, r) for r in rels])
    r2 = await store.write([Update(UpdateOp.DELETE, r) for r in rels[::4]])
    for revision in (r1, r2):
        expected = await store.read(RelationshipFilter(), revision)
        fields = []
        async for batch in store.iter_fields(revision, batch=40):
            assert 0 < len(batch) <= 40 and len({len(row) for row in batch}) == 1
            assert len(batch[0]) in (6, 8)
            fields += [(*row, None, None) if len(row) == 6 else row for row in batch]
        assert sorted(fields, key=lambda f: f[:6]) == [
            (*r.key, r.caveat, None if r.expiration is None else r.expiration.timestamp()) for r in expected
        ]


async def test_bulk_write_and_paging(store: Datastore) -> None:
    texts = [f"document:doc{i:05d}#viewer@user:user{i % 97}" for i in range(10_000)]
    revision = await store.write(creates(*texts))
    after: tuple[str, ...] | None = None
    total = 0
    while True:
        page = await store.read(
            RelationshipFilter(resource_type="document"), revision, after=after, limit=1000
        )
        total += len(page)
        if len(page) < 1000:
            break
        after = page[-1].key
    assert total == 10_000
    by_subject = await store.read(RelationshipFilter(subject=SubjectFilter("user", "user5")), revision)
    assert len(by_subject) == len(range(5, 10_000, 97))


async def test_random_history_matches_a_model(store: Datastore) -> None:
    """Random writes and deletes; every revision must read exactly as a plain dict model says."""
    rng = random.Random(7)
    resources = [f"document:d{i}" for i in range(6)] + [f"folder:f{i}" for i in range(3)]
    subjects = ["user:ana", "user:bob", "user:*", "team:t1#member", "team:t2#member"]
    relations = ["viewer", "editor"]
    model: dict[tuple[str, ...], Relationship] = {}
    snapshots: dict[int, list[Relationship]] = {0: []}

    def random_rel() -> Relationship:
        base = f"{rng.choice(resources)}#{rng.choice(relations)}@{rng.choice(subjects)}"
        if rng.random() < 0.3:
            base += f'[c{rng.randint(1, 2)}:{{"v":{rng.randint(0, 3)}}}]'
        return rel(base)

    for _ in range(60):
        if rng.random() < 0.8:
            updates: dict[tuple[str, ...], Update] = {}
            for _ in range(rng.randint(0, 6)):
                r = random_rel()
                op = rng.choice([UpdateOp.TOUCH, UpdateOp.DELETE, UpdateOp.CREATE])
                if op is UpdateOp.CREATE and r.key in model:
                    op = UpdateOp.TOUCH
                updates[r.key] = Update(op, r)
            revision = await store.write(list(updates.values()))
            for update in updates.values():
                if update.op is UpdateOp.DELETE:
                    model.pop(update.relationship.key, None)
                else:
                    model[update.relationship.key] = update.relationship
        else:
            rtype = rng.choice(["document", "folder"])
            result = await store.delete(
                RelationshipFilter(resource_type=rtype, relation=rng.choice(relations)),
                limit=rng.choice([None, 1, 2]),
            )
            revision = result.revision
            gone = [k for k in sorted(model) if k[0] == rtype and k[2] in relations]
            deleted_now = (
                {c.relationship.key for e in await store.changes(revision - 1) for c in e.changes}
                if result.deleted
                else set()
            )
            assert len(deleted_now) == result.deleted
            assert deleted_now <= set(gone)
            for key in deleted_now:
                del model[key]
        snapshots[revision] = [model[k] for k in sorted(model)]
    for revision, expected in snapshots.items():
        assert await store.read(RelationshipFilter(), revision) == expected
        for resource in resources[:3]:
            rtype, rid = resource.split(":")
            got = await store.read(RelationshipFilter(resource_type=rtype, resource_id=rid), revision)
            assert got == [r for r in expected if r.resource_type == rtype and r.resource_id == rid]
        got = await store.read(RelationshipFilter(subject=SubjectFilter("user", "ana")), revision)
        assert got == [r for r in expected if r.subject_type == "user" and r.subject_id == "ana"]


async def test_write_batch_gives_each_item_its_own_verdict_and_revision(store: Datastore) -> None:
    await store.write(creates("document:old#viewer@user:ana", "document:gone#viewer@user:bob"))
    head = await store.head_revision()
    results = await store.write_batch(
        [
            BatchedWrite(creates("document:a#viewer@user:ana")),
            # sees the item before it: its precondition holds
            BatchedWrite(creates("document:b#viewer@user:bob"), [must_match(resource_id="a")]),
            BatchedWrite(creates("document:c#viewer@user:carl"), [must_match(resource_id="nowhere")]),
            BatchedWrite(creates("document:d#viewer@user:dan", "document:old#viewer@user:ana")),
            BatchedDelete(RelationshipFilter(resource_type="document", resource_id="nowhere")),
            BatchedDelete(RelationshipFilter(resource_type="document", resource_id="gone")),
            BatchedWrite(touches("document:e#viewer@user:eve", "document:e#viewer@user:eve")),
            BatchedWrite(deletes("document:a#viewer@user:ana")),
        ]
    )
    assert results[0] == head + 1
    assert results[1] == head + 2
    assert isinstance(results[2], FailedPrecondition)
    assert isinstance(results[3], AlreadyExists) and "document:old#viewer@user:ana" in str(results[3])
    assert results[4] == DeleteResult(head + 2, 0)
    assert results[5] == DeleteResult(head + 3, 1)
    assert isinstance(results[6], InvalidArgument)
    assert results[7] == head + 4
    assert await store.head_revision() == head + 4
    # failed items changed nothing: no c, no d
    assert await everything(store) == ["document:b#viewer@user:bob", "document:old#viewer@user:ana"]
    log = await store.changes(head)
    assert [(entry.revision, [(c.op, str(c.relationship)) for c in entry.changes]) for entry in log] == [
        (head + 1, [(ChangeOp.TOUCH, "document:a#viewer@user:ana")]),
        (head + 2, [(ChangeOp.TOUCH, "document:b#viewer@user:bob")]),
        (head + 3, [(ChangeOp.DELETE, "document:gone#viewer@user:bob")]),
        (head + 4, [(ChangeOp.DELETE, "document:a#viewer@user:ana")]),
    ]
    assert await everything(store, head + 1) == [
        "document:a#viewer@user:ana",
        "document:gone#viewer@user:bob",
        "document:old#viewer@user:ana",
    ]


async def test_write_batch_validator_refuses_one_item_only(store: Datastore) -> None:
    await store.write_schema("definition user {}")

    def validate(schema: StoredSchema | None, updates: Sequence[Update]) -> None:
        assert schema is not None and schema.text == "definition user {}"
        for update in updates:
            if update.relationship.resource_id == "bad":
                raise InvalidArgument("bad is refused")

    results = await store.write_batch(
        [
            BatchedWrite(creates("document:good#viewer@user:ana")),
            BatchedWrite(creates("document:x#viewer@user:ana", "document:bad#viewer@user:ana")),
            BatchedWrite(creates("document:fine#viewer@user:ana")),
        ],
        validate,
    )
    assert results[0] == 2 and results[2] == 3
    assert isinstance(results[1], InvalidArgument)
    assert await everything(store) == ["document:fine#viewer@user:ana", "document:good#viewer@user:ana"]


async def test_write_batch_of_nothing_and_of_failures_only(store: Datastore) -> None:
    assert await store.write_batch([]) == []
    [result] = await store.write_batch([BatchedWrite(creates("a:b#c@d:e"), [must_match(resource_type="x")])])
    assert isinstance(result, FailedPrecondition)
    assert await store.head_revision() == 0
    assert await store.changes(0) == []


async def test_import_is_one_revision(store: Datastore) -> None:
    await store.write(creates("document:first#viewer@user:ana"))
    rels = [rel(f"document:d{i:04d}#viewer@user:u{i % 7}") for i in range(1500, 0, -1)]
    rels.append(rel('document:c#viewer@user:ana[only_ip:{"cidr":"10.0.0.0/8"}]'))
    rels.append(rel("document:e#viewer@user:bob[expiration:2300-01-02T03:04:05Z]"))
    revision = await store.import_relationships(rels)
    assert revision == 2 == await store.head_revision()
    stored = await everything(store)
    assert len(stored) == 1503
    assert 'document:c#viewer@user:ana[only_ip:{"cidr":"10.0.0.0/8"}]' in stored
    assert "document:e#viewer@user:bob[expiration:2300-01-02T03:04:05Z]" in stored
    [entry] = await store.changes(1)
    assert entry.revision == 2
    assert sorted(str(c.relationship) for c in entry.changes) == sorted(str(r) for r in rels)
    assert {c.op for c in entry.changes} == {ChangeOp.TOUCH}
    assert await everything(store, 1) == ["document:first#viewer@user:ana"]


async def test_import_is_all_or_nothing(store: Datastore) -> None:
    await store.write(creates("document:there#viewer@user:ana"))
    fresh = [rel(f"document:n{i}#viewer@user:ana") for i in range(50)]
    with pytest.raises(AlreadyExists, match="document:there#viewer@user:ana"):
        await store.import_relationships([*fresh, rel("document:there#viewer@user:ana")])
    with pytest.raises(InvalidArgument, match=r"relationships\[50\].*more than once"):
        await store.import_relationships([*fresh, fresh[3]])

    def refuse(schema: StoredSchema | None, rels: Sequence[Relationship]) -> None:
        assert len(rels) == 50
        raise InvalidArgument("relationships[7]: refused")

    with pytest.raises(InvalidArgument, match="refused"):
        await store.import_relationships(fresh, refuse)
    assert await store.head_revision() == 1
    assert await everything(store) == ["document:there#viewer@user:ana"]
    assert len(await store.changes(0)) == 1


async def test_released_memory_leaves_every_answer(store: Datastore) -> None:
    """The idle hook's release_memory (SQLite: page caches emptied; the others: nothing to
    give back) changes no answer, also while reads are running."""
    first = await store.write(creates(*SAMPLE))
    before = await everything(store)
    reads = [everything(store, first) for _ in range(4)]
    released, *during = await asyncio.gather(store.release_memory(), *reads)
    assert released >= 0 and during == [before] * 4
    assert await store.release_memory() >= 0
    second = await store.write(deletes(SAMPLE[0]))
    assert await everything(store, first) == before
    assert await everything(store, second) == sorted(set(before) - {SAMPLE[0]})
    assert [change.revision for change in await store.changes(0)] == [first, second]
