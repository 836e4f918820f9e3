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
