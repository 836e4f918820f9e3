"""Platform flows over gRPC: atomic ownership transfer (and its reversal), access requests
seen by the App Owner on a Watch stream and approved once, atomically. The example service's
handlers are in test_collaboration_service.py."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
from collaboration_support import transfer
from grpc_harness import ServerProcess

from stonetown import AsyncClient, Client
from stonetown.client import ReadConsistency, parse_filter
from stonetown.core.errors import FailedPrecondition, StonetownError
from stonetown.engine.datastore import ChangeOp, Precondition, PreconditionOp

FRESH = ReadConsistency.fully_consistent()


def _rows(client: Client, filter: str | None = None) -> set[str]:
    return {str(rel) for rel in client.read(filter, consistency=FRESH)}


# ---------------------------------------------------------------------------- ownership transfer


def test_ownership_transfer_is_atomic_and_second_transfer_changes_nothing(client: Client, uid: str) -> None:
    """The transfer moves ownership and downgrades the old owner to Can Manage in one write; a
    second transfer in the old owner's name fails its precondition and leaves the store as it was."""
    app, ana, bob, carl = f"tool-{uid}", f"ana-{uid}", f"bob-{uid}", f"carl-{uid}"
    client.write(touch=[f"app:{app}#owner@user:{ana}", f"app:{app}#editor@user:{carl}"])
    token = transfer(client, app, ana, bob)
    at = ReadConsistency.at_least_as_fresh(token)

    def has(permission: str, user: str) -> bool:
        """Does `user` have `permission` on the app, as of the transfer?"""
        return client.check(f"app:{app}", permission, f"user:{user}", consistency=at).allowed

    assert has("transfer_ownership", bob) and has("delete", bob)
    assert not has("transfer_ownership", ana) and has("manage", ana) and has("delete", ana)
    assert _rows(client, f"app:{app}") == {
        f"app:{app}#owner@user:{bob}",
        f"app:{app}#manager@user:{ana}",
        f"app:{app}#editor@user:{carl}",
    }

    # A second transfer still made in ana's name: its precondition no longer holds.
    everything_before = _rows(client)
    with pytest.raises(FailedPrecondition):
        transfer(client, app, ana, carl)
    assert _rows(client) == everything_before
    assert not client.check(f"app:{app}", "transfer_ownership", f"user:{carl}", consistency=FRESH).allowed


def test_concurrent_transfers_exactly_one_wins(racers: tuple[str, str], client: Client, uid: str) -> None:
    """Two transfers racing in the old owner's name (on two nodes, one through each): one
    commits, the other gets FAILED_PRECONDITION."""
    app, ana, bob, carl = f"race-{uid}", f"ana-{uid}", f"bob-{uid}", f"carl-{uid}"
    client.write(touch=[f"app:{app}#owner@user:{ana}"])
    barrier = threading.Barrier(2)
    outcomes: dict[str, str | StonetownError] = {}

    def attempt(address: str, new_owner: str) -> None:
        """One transfer on a channel of its own, released together with the other."""
        with Client(address) as own_channel:
            barrier.wait()
            try:
                outcomes[new_owner] = transfer(own_channel, app, ana, new_owner)
            except StonetownError as exc:
                outcomes[new_owner] = exc

    threads = [threading.Thread(target=attempt, args=pair) for pair in zip(racers, (bob, carl), strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [name for name, result in outcomes.items() if isinstance(result, str)]
    losers = [result for result in outcomes.values() if not isinstance(result, str)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    assert isinstance(losers[0], FailedPrecondition)
    assert _rows(client, f"app:{app}") == {
        f"app:{app}#owner@user:{winners[0]}",
        f"app:{app}#manager@user:{ana}",
    }


# ---------------------------------------------------------------------------- access requests


def _org_with_app(client: Client, uid: str) -> tuple[str, str]:
    """An organization (owner, admin, three members, one of them the App Owner, an external
    editor) with one app; the app and the setup token."""
    org, app = f"org-{uid}", f"app-{uid}"
    token = client.write(
        touch=[
            f"organization:{org}#owner@user:olivia-{uid}",
            f"organization:{org}#admin@user:adam-{uid}",
            f"organization:{org}#member@user:sam-{uid}",
            f"organization:{org}#member@user:mia-{uid}",
            f"organization:{org}#member@user:max-{uid}",
            f"app:{app}#account@organization:{org}",
            f"app:{app}#owner@user:sam-{uid}",
            f"app:{app}#editor@user:eve-{uid}",
        ]
    )
    return app, token


def _request_rows(request: str, app: str, requester: str, level: str) -> list[str]:
    return [
        f"access_request:{request}#app@app:{app}",
        f"access_request:{request}#requester@user:{requester}",
        f"access_request:{request}#level@access_level:{level}",
    ]


def _approve(client: Client, request: str, app: str, requester: str, level: str, grant: str) -> str:
    """Approval as one write: grant touched, request deleted, only if the request still exists."""
    exists = Precondition(
        PreconditionOp.MUST_MATCH, parse_filter(f"access_request:{request}#requester@user:{requester}")
    )
    return client.write(
        touch=[f"app:{app}#{grant}@user:{requester}"],
        delete=_request_rows(request, app, requester, level),
        preconditions=[exists],
    )


async def test_access_request_reaches_app_owner_watch_then_approval_allows(
    private_server: ServerProcess,
    uid: str,
    capsys: pytest.CaptureFixture[str],
    record_property: Callable[[str, object], None],
) -> None:
    """B13 B14 B15: a member's access request shows up on the App Owner's Watch stream; the
    approval write grants the level and removes the request, and the requester's next check at
    its token is allowed."""
    address, request, mia = private_server.address, f"req-{uid}", f"mia-{uid}"
    async with AsyncClient(address) as manager_side, AsyncClient(address) as requester_side:
        with Client(address) as setup:
            app, setup_token = _org_with_app(setup, uid)
        assert (await requester_side.check(f"app:{app}", "request_access", f"user:{mia}")).allowed
        assert not (await requester_side.check(f"app:{app}", "edit", f"user:{mia}")).allowed

        arrived: asyncio.Future[tuple[float, str]] = asyncio.get_running_loop().create_future()

        async def watch_requests() -> None:
            """Resolve `arrived` when the request shows up on the stream."""
            # Starting after the setup token, the stream cannot miss the request however late
            # it is established. It stays open until the test ends (see `private_server`).
            async for event in manager_side.watch(["access_request"], after=setup_token):
                for change in event.changes:
                    rel = change.relationship
                    is_request = change.op is ChangeOp.TOUCH and rel.relation == "requester"
                    if is_request and rel.resource_id == request and not arrived.done():
                        arrived.set_result((time.perf_counter(), event.token))

        watcher = asyncio.create_task(watch_requests())
        try:
            sent = time.perf_counter()
            await requester_side.write(create=_request_rows(request, app, mia, "edit"))
            # The issue asks for 100 ms. That is reported, not asserted: a loaded 2-core box can
            # stall a process for longer. The generous 5 s bound still fails a stream that only
            # delivers on some later write or after a long poll.
            received, event_token = await asyncio.wait_for(arrived, timeout=5)
            latency_ms = (received - sent) * 1000
            record_property("watch_latency_ms", round(latency_ms, 1))
            with capsys.disabled():
                print(f"\n[collaboration] access request on the App Owner's Watch after {latency_ms:.1f} ms")

            # the App Owner is notified; the App Owner and the organization's owner decide
            at_event = ReadConsistency.at_least_as_fresh(event_token)
            notified = manager_side.lookup_subjects(
                f"access_request:{request}", "notified", "user", consistency=at_event
            )
            assert {str(found.subject) async for found in notified} == {f"user:sam-{uid}"}
            approvers = manager_side.lookup_subjects(
                f"access_request:{request}", "approve", "user", consistency=at_event
            )
            assert {str(found.subject) async for found in approvers} == {
                f"user:olivia-{uid}",
                f"user:sam-{uid}",
            }
            for outsider in (f"eve-{uid}", f"max-{uid}", f"adam-{uid}"):
                check = await manager_side.check(
                    f"access_request:{request}", "view", f"user:{outsider}", consistency=at_event
                )
                assert not check.allowed

            with Client(address) as owner_side:
                token = _approve(owner_side, request, app, mia, "edit", "editor")
            # the requester's next check, at least as fresh as the approval: allowed
            fresh = ReadConsistency.at_least_as_fresh(token)
            assert (
                await requester_side.check(f"app:{app}", "edit", f"user:{mia}", consistency=fresh)
            ).allowed
            manage = await requester_side.check(f"app:{app}", "manage", f"user:{mia}", consistency=fresh)
            assert not manage.allowed
            assert [
                r async for r in requester_side.read(f"access_request:{request}", consistency=fresh)
            ] == []
        finally:
            watcher.cancel()


def test_approval_of_a_decided_request_fails_and_grants_nothing(client: Client, uid: str) -> None:
    """Approving a request that was already denied fails its precondition and grants nothing."""
    app, _token = _org_with_app(client, uid)
    request, max_ = f"req-{uid}", f"max-{uid}"
    client.write(create=_request_rows(request, app, max_, "run"))
    # denied: the request is removed (with the same existence precondition), nothing granted
    client.write(
        delete=_request_rows(request, app, max_, "run"),
        preconditions=[
            Precondition(
                PreconditionOp.MUST_MATCH, parse_filter(f"access_request:{request}#requester@user:{max_}")
            )
        ],
    )
    before = _rows(client)
    with pytest.raises(FailedPrecondition):
        _approve(client, request, app, max_, "run", "runner")
    assert _rows(client) == before
    assert not client.check(f"app:{app}", "run", f"user:{max_}", consistency=FRESH).allowed
