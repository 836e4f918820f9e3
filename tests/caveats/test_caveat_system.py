"""Caveats and expiration through PermissionSystem: writes, checks, lookups, reads, expand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from stonetown.core.errors import InvalidArgument
from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine.datastore import RelationshipFilter, Update, UpdateOp
from stonetown.engine.expand import evaluate
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import CheckRequest, CheckResult, Consistency, Permissionship
from stonetown.stores.memory import MemoryDatastore

FRESH = Consistency.fully_consistent()
ALLOWED, DENIED, CONDITIONAL = Permissionship.ALLOWED, Permissionship.DENIED, Permissionship.CONDITIONAL

SCHEMA = """
use expiration

definition user {}

caveat on_weekday(day string) { day != 'sat' && day != 'sun' }
caveat from_network(user_ip ipaddress, cidr string) { user_ip.in_cidr(cidr) }
caveat typed_params(count int, ratio double, tags list<string>, limits map<int>, at timestamp, ttl duration) {
    count > 0
}

definition group {
    relation member: user | user with on_weekday
}

definition document {
    relation viewer: user | user with on_weekday | user:* with on_weekday | group#member
        | user with expiration
    relation banned: user with from_network
    relation typed: user with typed_params
    permission view = viewer - banned
}
"""


@pytest.fixture
async def system() -> AsyncIterator[PermissionSystem]:
    permission_system = PermissionSystem(MemoryDatastore())
    await permission_system.start()
    await permission_system.write_schema(SCHEMA)
    yield permission_system
    await permission_system.stop()


async def touch(system: PermissionSystem, *texts: str) -> None:
    await system.write_relationships([Update(UpdateOp.TOUCH, Relationship.parse(t)) for t in texts])


async def check(
    system: PermissionSystem, subject: str, context: dict | None = None, doc: str = "doc"
) -> CheckResult:
    return await system.check(ObjectRef("document", doc), "view", SubjectRef.parse(subject), FRESH, context)


async def resources(system: PermissionSystem, subject: str, context: dict | None = None) -> dict[str, bool]:
    return {
        found.resource_id: found.conditional
        async for found, _ in system.lookup_resources(
            "document", "view", SubjectRef.parse(subject), FRESH, context
        )
    }


async def subjects(
    system: PermissionSystem, context: dict | None = None, doc: str = "doc"
) -> dict[str, tuple]:
    return {
        found.subject.id: (found.conditional, found.excluded, found.missing_parameters)
        async for found, _ in system.lookup_subjects(
            ObjectRef("document", doc), "view", "user", "", FRESH, context
        )
    }


# ---- writes -------------------------------------------------------------------------------


async def test_write_accepts_a_well_typed_context(system: PermissionSystem) -> None:
    await touch(
        system,
        'document:doc#typed@user:ana[typed_params:{"count":1,"ratio":0.5,"tags":["a"],"limits":{"x":1},'
        '"at":"2024-01-01T00:00:00Z","ttl":"1h"}]',
    )
    result = await system.check(ObjectRef("document", "doc"), "typed", SubjectRef("user", "ana"), FRESH)
    assert result.permissionship is ALLOWED


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'document:doc#viewer@user:ana[on_weekday:{"weekday":"mon"}]',
            r"`weekday` is not a parameter of caveat",
        ),
        ('document:doc#viewer@user:ana[on_weekday:{"day":3}]', r"parameter `day` of caveat `on_weekday`"),
        ('document:doc#typed@user:ana[typed_params:{"count":1.5}]', r"parameter `count`"),
        ('document:doc#typed@user:ana[typed_params:{"tags":["a",1]}]', r"parameter `tags`.*item 1"),
        ('document:doc#typed@user:ana[typed_params:{"limits":{"a":"b"}}]', r"parameter `limits`.*key `a`"),
        ('document:doc#typed@user:ana[typed_params:{"at":"yesterday"}]', r"parameter `at`"),
        ('document:doc#typed@user:ana[typed_params:{"ttl":"1 day"}]', r"parameter `ttl`"),
        ('document:doc#banned@user:ana[from_network:{"user_ip":"10.0.0"}]', r"parameter `user_ip`"),
        ("document:doc#banned@user:ana[on_weekday]", r"not allowed on relation `document#banned`"),
        ("document:doc#banned@user:ana", r"not allowed on relation `document#banned`"),
        ("document:doc#viewer@user:ana[no_such_caveat]", r"caveat `no_such_caveat` not found"),
    ],
)
async def test_write_rejects_bad_caveats(system: PermissionSystem, text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as raised:
        await touch(system, text)
    assert "document:doc#" in str(raised.value)  # the message names the relationship
    assert [r async for r in _read_all(system)] == []


async def test_write_rejects_an_oversized_context(system: PermissionSystem) -> None:
    huge = '{"day":"' + "x" * 5000 + '"}'
    with pytest.raises(InvalidArgument, match="bytes, more than the maximum of 4096"):
        await touch(system, f"document:doc#viewer@user:ana[on_weekday:{huge}]")
    await touch(system, 'document:doc#viewer@user:ana[on_weekday:{"day":"' + "x" * 3000 + '"}]')


async def _read_all(system: PermissionSystem) -> AsyncIterator[Relationship]:
    result = await system.read_relationships(RelationshipFilter(resource_type="document"), FRESH)
    for rel in result.relationships:
        yield rel


# ---- check, check bulk --------------------------------------------------------------------


async def test_check_evaluates_the_request_context(system: PermissionSystem) -> None:
    await touch(system, "document:doc#viewer@user:ana[on_weekday]")
    conditional = await check(system, "user:ana")
    assert (conditional.permissionship, conditional.missing_parameters) == (CONDITIONAL, ("day",))
    assert (await check(system, "user:ana", {"day": "mon"})).permissionship is ALLOWED
    assert (await check(system, "user:ana", {"day": "sun"})).permissionship is DENIED
    with pytest.raises(InvalidArgument, match="on_weekday"):
        await check(system, "user:ana", {"day": 7})


async def test_exclusion_with_a_caveated_subtraction(system: PermissionSystem) -> None:
    await touch(
        system,
        "document:doc#viewer@user:ana",
        'document:doc#banned@user:ana[from_network:{"cidr":"10.0.0.0/8"}]',
    )
    result = await check(system, "user:ana")
    assert (result.permissionship, result.missing_parameters) == (CONDITIONAL, ("user_ip",))
    assert (await check(system, "user:ana", {"user_ip": "10.1.1.1"})).permissionship is DENIED
    assert (await check(system, "user:ana", {"user_ip": "192.168.1.1"})).permissionship is ALLOWED


async def test_caveat_through_a_subject_set(system: PermissionSystem) -> None:
    await touch(system, "document:doc#viewer@group:eng#member", "group:eng#member@user:bo[on_weekday]")
    assert (await check(system, "user:bo")).permissionship is CONDITIONAL
    assert (await check(system, "user:bo", {"day": "tue"})).permissionship is ALLOWED
    assert (await check(system, "user:bo", {"day": "sat"})).permissionship is DENIED


async def test_check_bulk_uses_each_items_context(system: PermissionSystem) -> None:
    await touch(system, "document:doc#viewer@user:ana[on_weekday]")
    resource, subject = ObjectRef("document", "doc"), SubjectRef("user", "ana")
    results = await system.check_bulk(
        [
            CheckRequest(resource, "view", subject, {"day": "mon"}),
            CheckRequest(resource, "view", subject, {"day": "sat"}),
            CheckRequest(resource, "view", subject),
            CheckRequest(resource, "view", subject, {"day": []}),
        ],
        FRESH,
    )
    assert [r.permissionship for r in results[:3]] == [ALLOWED, DENIED, CONDITIONAL]  # type: ignore[union-attr]
    assert results[2].missing_parameters == ("day",)  # type: ignore[union-attr]
    assert isinstance(results[3], InvalidArgument)


async def test_uncaveated_checks_do_not_touch_the_caveat_evaluator(system: PermissionSystem) -> None:
    await touch(system, "document:doc#viewer@user:ana")
    # a context of the wrong type for every caveat is never looked at when no caveat is met
    assert (await check(system, "user:ana", {"day": 7})).permissionship is ALLOWED
    assert system.state is not None and system.state.caveats._compiled == {}


# ---- lookups ------------------------------------------------------------------------------


async def test_lookup_resources_evaluates_context(system: PermissionSystem) -> None:
    await touch(
        system,
        "document:plain#viewer@user:ana",
        "document:weekday#viewer@user:ana[on_weekday]",
        'document:stored_sunday#viewer@user:ana[on_weekday:{"day":"sun"}]',
    )
    assert await resources(system, "user:ana") == {"plain": False, "weekday": True}
    assert await resources(system, "user:ana", {"day": "mon"}) == {"plain": False, "weekday": False}
    assert await resources(system, "user:ana", {"day": "sat"}) == {"plain": False}


async def test_lookup_subjects_evaluates_context_and_wildcard_exclusions(system: PermissionSystem) -> None:
    await touch(
        system,
        "document:doc#viewer@user:*[on_weekday]",
        "document:doc#viewer@user:ana",
        "document:doc#viewer@user:bo[on_weekday]",
        'document:doc#banned@user:cy[from_network:{"cidr":"10.0.0.0/8"}]',
        "document:doc#viewer@user:cy",
    )
    unevaluated = await subjects(system)
    assert unevaluated["*"][0] and unevaluated["*"][2] == ("day",)
    assert unevaluated["ana"] == (False, (), ())
    assert unevaluated["bo"] == (True, (), ("day",))
    assert unevaluated["cy"][0] is True
    weekday = await subjects(system, {"day": "mon", "user_ip": "10.9.9.9"})
    # cy is banned from 10/8: not an answer, and excluded from the wildcard
    assert weekday == {"*": (False, ("cy",), ()), "ana": (False, (), ()), "bo": (False, (), ())}
    weekend = await subjects(system, {"day": "sun", "user_ip": "1.1.1.1"})
    assert weekend == {"ana": (False, (), ()), "cy": (False, (), ())}


async def test_lookup_subjects_wildcard_excludes_conditional_subjects(system: PermissionSystem) -> None:
    await touch(
        system,
        'document:doc#viewer@user:*[on_weekday:{"day":"mon"}]',
        'document:doc#banned@user:cy[from_network:{"cidr":"10.0.0.0/8"}]',
    )
    assert (await check(system, "user:cy")).permissionship is CONDITIONAL
    assert (await check(system, "user:anyone")).permissionship is ALLOWED
    # the wildcard grants everyone but cy outright; as SpiceDB shapes it, cy (named only by the
    # exclusion) is not listed on its own: the wildcard excludes it, conditionally
    assert await subjects(system) == {"*": (False, ("cy",), ())}
    doc = ObjectRef("document", "doc")
    found = [f async for f, _ in system.lookup_subjects(doc, "view", "user", "", FRESH)]
    assert found[0].conditionally_excluded == ("cy",)
    assert await subjects(system, {"user_ip": "10.0.0.1"}) == {"*": (False, ("cy",), ())}
    assert await subjects(system, {"user_ip": "8.8.8.8"}) == {"*": (False, (), ())}


# ---- expiration ---------------------------------------------------------------------------


async def test_expired_relationships_are_hidden_everywhere(system: PermissionSystem) -> None:
    past = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    await touch(
        system,
        f"document:doc#viewer@user:old[expiration:{past}]",
        f"document:doc#viewer@user:new[expiration:{future}]",
        "document:other#viewer@user:new",
    )
    assert (await check(system, "user:old")).permissionship is DENIED
    assert (await check(system, "user:new")).permissionship is ALLOWED
    read = [str(r.subject) async for r in _read_all(system)]
    assert sorted(read) == ["user:new", "user:new"]
    tree, _ = await system.expand(ObjectRef("document", "doc"), "view", FRESH, recursive=True)
    assert {s.id for s in evaluate(tree).concrete} == {"new"}
    assert await resources(system, "user:old") == {}
    assert await resources(system, "user:new") == {"doc": False, "other": False}
    assert set(await subjects(system)) == {"new"}


async def test_a_relationship_stops_counting_at_its_expiration(system: PermissionSystem) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=1.2)
    rel = Relationship("document", "doc", "viewer", "user", "eve", expiration=soon)
    await system.write_relationships([Update(UpdateOp.TOUCH, rel)])
    assert (await check(system, "user:eve")).permissionship is ALLOWED
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.05)
    assert (await check(system, "user:eve")).permissionship is DENIED
    assert [r async for r in _read_all(system)] == []
    assert await resources(system, "user:eve") == {}
