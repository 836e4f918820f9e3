"""LookupResources with several results per stream message (optional_results_per_message):
the same results, caveat info and cursors as one result per message, in fewer messages."""

from __future__ import annotations

import grpc
from grpc_harness import ServerProcess

from stonetown import Client
from stonetown.api.pb import core, permission, permission_grpc
from stonetown.client import ReadConsistency

FRESH = ReadConsistency.fully_consistent()
COUNT = 2_345


def _stream(server: ServerProcess, uid: str, per_message: int) -> list[permission.LookupResourcesResponse]:
    request = permission.LookupResourcesRequest(
        consistency=core.Consistency(fully_consistent=True),
        resource_object_type="document",
        permission="view",
        subject=core.SubjectReference(object=core.ObjectReference(object_type="user", object_id=uid)),
        optional_results_per_message=per_message,
    )
    with grpc.insecure_channel(server.address) as channel:
        return list(permission_grpc.PermissionServiceStub(channel).LookupResources(request, timeout=60))


def _flat(responses: list[permission.LookupResourcesResponse]) -> list[tuple[str, int, tuple[str, ...], str]]:
    return [
        (
            result.resource_object_id,
            result.permissionship,
            tuple(result.partial_caveat_info.missing_required_context),
            result.after_result_cursor.token,
        )
        for response in responses
        for result in (response, *response.additional_results)
    ]


def test_batched_stream_carries_the_same_results(server: ServerProcess, client: Client, uid: str) -> None:
    ids = sorted(f"{uid}_{n:05d}" for n in range(COUNT))
    plain = [f"document:{i}#viewer@user:{uid}" for i in ids[:-3]]
    caveated = [f"document:{i}#viewer@user:{uid}[on_weekday]" for i in ids[-3:]]
    for first in range(0, len(plain), 1000):
        client.write(touch=plain[first : first + 1000])
    client.write(touch=caveated)

    one_each = _stream(server, uid, 0)
    assert len(one_each) == COUNT
    assert all(not r.additional_results for r in one_each)
    batched = _stream(server, uid, 1000)
    assert [1 + len(r.additional_results) for r in batched] == [1000, 1000, COUNT - 2000]
    assert _flat(batched) == _flat(one_each)
    assert [r[0] for r in _flat(batched)] == ids
    conditional = [r for r in _flat(batched) if r[1] == permission.PERMISSIONSHIP_CONDITIONAL_PERMISSION]
    assert [(r[0], r[2]) for r in conditional] == [(i, ("day",)) for i in ids[-3:]]
    # more than the server's page limit is capped, not refused
    capped = _stream(server, uid, 50_000)
    assert max(1 + len(r.additional_results) for r in capped) == 1000
    assert _flat(capped) == _flat(one_each)


def test_client_resumes_from_a_cursor_inside_a_batch(client: Client, uid: str) -> None:
    ids = sorted(f"{uid}_{n:04d}" for n in range(1_500))
    client.write(touch=[f"document:{i}#viewer@user:{uid}" for i in ids[:1000]])
    client.write(touch=[f"document:{i}#viewer@user:{uid}" for i in ids[1000:]])
    found = list(client.lookup_resources("document", "view", f"user:{uid}", consistency=FRESH))
    assert [r.resource_id for r in found] == ids
    assert len({r.cursor for r in found}) == len(ids)
    middle = found[1234]
    rest = list(
        client.lookup_resources(
            "document",
            "view",
            f"user:{uid}",
            cursor=middle.cursor,
            consistency=ReadConsistency.at_exact_snapshot(middle.token),
        )
    )
    assert [r.resource_id for r in rest] == ids[1235:]


def _subjects_stream(
    server: ServerProcess, document: str, per_message: int
) -> list[permission.LookupSubjectsResponse]:
    request = permission.LookupSubjectsRequest(
        consistency=core.Consistency(fully_consistent=True),
        resource=core.ObjectReference(object_type="document", object_id=document),
        permission="view",
        subject_object_type="user",
        optional_results_per_message=per_message,
    )
    with grpc.insecure_channel(server.address) as channel:
        return list(permission_grpc.PermissionServiceStub(channel).LookupSubjects(request, timeout=60))


def _flat_subjects(
    responses: list[permission.LookupSubjectsResponse],
) -> list[tuple[str, str, str, int, tuple[str, ...], tuple[str, ...], str, str]]:
    return [
        (
            result.subject.object.object_type,
            result.subject.object.object_id,
            result.subject.optional_relation,
            result.permissionship,
            tuple(result.partial_caveat_info.missing_required_context),
            tuple(result.excluded_subject_ids),
            result.after_result_cursor.token,
            response.looked_up_at.token,
        )
        for response in responses
        for result in (response, *response.additional_results)
    ]


def test_batched_subjects_stream_carries_the_same_results(
    server: ServerProcess, client: Client, uid: str
) -> None:
    users = [f"{uid}_{n:05d}" for n in range(COUNT)]
    plain = [f"document:{uid}#viewer@user:{u}" for u in users[:-3]]
    for first in range(0, len(plain), 1000):
        client.write(touch=plain[first : first + 1000])
    client.write(touch=[f"document:{uid}#viewer@user:{u}[on_weekday]" for u in users[-3:]])
    # beside a wildcard: the wildcard first, with its exclusion
    open_doc = f"{uid}_open"
    client.write(touch=[f"document:{open_doc}#viewer@user:{u}" for u in users[:900]])
    client.write(touch=[f"document:{open_doc}#viewer@user:*", f"document:{open_doc}#banned@user:{users[7]}"])

    one_each = _subjects_stream(server, uid, 0)
    assert len(one_each) == COUNT
    assert all(not r.additional_results for r in one_each)
    batched = _subjects_stream(server, uid, 1000)
    assert [1 + len(r.additional_results) for r in batched] == [1000, 1000, COUNT - 2000]
    flat = _flat_subjects(batched)
    assert flat == _flat_subjects(one_each)
    assert [r[1] for r in flat] == users
    conditional = [r for r in flat if r[3] == permission.PERMISSIONSHIP_CONDITIONAL_PERMISSION]
    assert [(r[1], r[4]) for r in conditional] == [(u, ("day",)) for u in users[-3:]]
    open_flat = _flat_subjects(_subjects_stream(server, open_doc, 1000))
    assert open_flat == _flat_subjects(_subjects_stream(server, open_doc, 1))
    assert [r[1] for r in open_flat] == ["*", *(u for u in users[:900] if u != users[7])]
    assert open_flat[0][5] == (users[7],)

    # the client reads every result of each message, and resumes from a cursor inside one
    found = list(client.lookup_subjects(f"document:{uid}", "view", "user", consistency=FRESH))
    assert [(s.subject.id, s.cursor, s.conditional, s.missing_parameters) for s in found] == [
        (r[1], r[6], r[3] == permission.PERMISSIONSHIP_CONDITIONAL_PERMISSION, r[4]) for r in flat
    ]
    middle = found[1234]
    rest = client.lookup_subjects(
        f"document:{uid}", "view", "user", cursor=middle.cursor,
        consistency=ReadConsistency.at_exact_snapshot(middle.token),
    )  # fmt: skip
    assert [s.subject.id for s in rest] == users[1235:]
    assert [s.excluded for s in client.lookup_subjects(f"document:{open_doc}", "view", "user", limit=2)] == [
        (users[7],),
        (),
    ]
