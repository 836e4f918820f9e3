"""The collaboration scenarios of tests/collaboration against PostgreSQL-backed servers.

Two `stonetown serve --datastore postgres` nodes share one fresh database: node A loads
schema/collaboration.yaml with `--bootstrap`, node B starts after it over the same database.
The table-driven checks and flows of tests/collaboration are imported and run here with
PostgreSQL fixtures of the same names, in two topologies:

- ``one_node``: every call on node A (what the SQLite suite does against its server);
- ``two_nodes``: every write goes to node A and every read to node B, at the write's token
  (a real client per node, see :class:`CrossNodeClient`), and the two sides of a race go one
  to each node (`racers`).

Tests written for this module cover what the reused scenarios cannot: the validation file's
assertions answered by both nodes, a write through node B refused after one through node A,
an access request written on one node seen on the other's Watch stream, and so on.
Everything skips when PostgreSQL is not installed (the `pg_cluster` fixture)."""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

import pytest
from pgcluster import PgCluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "collaboration"))

import test_collaboration_flows as flows  # noqa: E402
import test_collaboration_invitations as invitations  # noqa: E402
import test_collaboration_model as model  # noqa: E402
import test_collaboration_service as service  # noqa: E402
from collaboration_support import (  # noqa: E402
    SCHEMA_FILE,
    VALIDATION_FILE,
    load_platform_example,
    transfer,
)
from grpc_harness import ServerProcess, wait_healthy  # noqa: E402

from stonetown import AsyncClient, Client  # noqa: E402
from stonetown.client import CheckOutcome, DeleteOutcome, ReadConsistency, parse_filter  # noqa: E402
from stonetown.client.notation import FilterLike, RelationshipLike  # noqa: E402
from stonetown.core.errors import FailedPrecondition  # noqa: E402
from stonetown.engine.datastore import ChangeOp, Precondition, PreconditionOp  # noqa: E402
from stonetown.engine.types import CheckRequest, Permissionship  # noqa: E402
from stonetown.validation.files import read_validation_file  # noqa: E402

FRESH = ReadConsistency.fully_consistent()
_ids = itertools.count()

# ------------------------------------------------------------------ the reused scenarios
# Collected here as tests of this module, with the fixtures below (same names as the
# collaboration conftest's). Tests that never talk to a server are not repeated.

_REUSED = {
    model: [
        "test_permission_table",
        "test_role_applies_only_to_organization_members",
        "test_team_grants_nest",
        "test_lookup_resources_member_sees_every_org_app_external_only_invited",
        "test_lookup_subjects_managers_and_runners",
        "test_lookup_subjects_follows_new_manager_grant",
        "test_link_sharing_per_resource_wins_both_ways",
        "test_link_restricted_leaves_no_wildcard_in_lookup_subjects",
        "test_link_sharing_does_not_grant_more_than_read",
        "test_server_serves_the_schema_file",
        "test_organization_default_applies_to_organization_resources",
        "test_runs_belong_to_the_account_that_started_them",
    ],
    flows: [
        "test_ownership_transfer_is_atomic_and_second_transfer_changes_nothing",
        "test_concurrent_transfers_exactly_one_wins",
        "test_access_request_reaches_app_owner_watch_then_approval_allows",
        "test_approval_of_a_decided_request_fails_and_grants_nothing",
    ],
    service: [
        "test_platform_service_handlers",
        "test_request_denied_or_withdrawn_grants_nothing",
        "test_transfer_then_back_by_the_new_owner",
        "test_organization_app_transfers_to_members_only",
        "test_concurrent_approvals_grant_once",
        "test_concurrent_transfers_one_owner",
        "test_rule_breaking_flow_is_refused_and_writes_nothing",
        "test_leaving_keeps_only_direct_invitations",
        "test_publish_share_and_link_settings",
        "test_organization_link_settings",
        "test_platform_service_notifications_only_for_the_app_owner",
        "test_platform_service_demo_runs_against_the_server",
    ],
    invitations: [
        "test_past_invitation_grants_nothing_future_one_grants_can_run",
        "test_expired_higher_level_leaves_the_live_lower_one",
        "test_lookup_resources_lists_only_live_invitations",
        "test_read_relationships_hides_expired_invitations",
        "test_invitation_stops_granting_at_its_instant",
        "test_validation_file_invitations_over_grpc",
    ],
}
for _module, _names in _REUSED.items():
    for _name in _names:
        globals()[_name] = getattr(_module, _name)

# ---------------------------------------------------------------------------- nodes


def start_node(workdir: Path, uri: str, *extra: str) -> ServerProcess:
    """A `stonetown serve` node on a free loopback port over the PostgreSQL database `uri`,
    serving schema/collaboration.zed; returns once it answers health checks."""
    node = ServerProcess(
        workdir,
        "--port", "0", "--datastore", "postgres", "--datastore-uri", uri,
        "--schema", str(SCHEMA_FILE),
        *extra,
    )  # fmt: skip
    try:
        wait_healthy(node.address)
    except BaseException:
        node.stop()
        raise
    return node


class Nodes:
    """Two nodes over one database: A (bootstrapped from collaboration.yaml) and B."""

    def __init__(self, a: ServerProcess, b: ServerProcess) -> None:
        """Hold the two running nodes."""
        self.a = a
        self.b = b


@pytest.fixture(scope="module")
def nodes(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    """Node A with `--bootstrap schema/collaboration.yaml` on a fresh database, then node B over
    the same database (it finds the store bootstrapped and loads it)."""
    workdir = tmp_path_factory.mktemp("pg-collaboration")
    uri = pg_cluster.new_database()
    node_a = start_node(workdir, uri, "--bootstrap", str(VALIDATION_FILE))
    try:
        node_b = start_node(workdir, uri, "--bootstrap", str(VALIDATION_FILE))
    except BaseException:
        node_a.stop()
        raise
    yield Nodes(node_a, node_b)
    # Both nodes must shut down cleanly after everything the scenarios did to them.
    assert node_b.stop() == 0, node_b.log()
    assert node_a.stop() == 0, node_a.log()
    for node in (node_a, node_b):
        assert "Traceback" not in node.log(), node.log()


@pytest.fixture(scope="module")
def server(nodes: Nodes) -> ServerProcess:
    """Node A, the server the reused scenarios open their own channels to."""
    return nodes.a


@pytest.fixture
def private_server(pg_cluster: PgCluster, tmp_path: Path) -> Iterator[ServerProcess]:
    """A node over a database of its own, for one test (the demo's cast would meet
    collaboration.yaml's; the Watch tests end their streams on it)."""
    node = start_node(tmp_path, pg_cluster.new_database())
    yield node
    assert node.stop() == 0, node.log()


@pytest.fixture(scope="module")
def acme(nodes: Nodes) -> str:
    """A token at least as fresh as the bootstrap of collaboration.yaml on node A (a write
    touching a relationship the file already holds, so nothing changes)."""
    with Client(nodes.a.address) as client:
        return client.write(touch=["organization:acme#owner@user:olivia"])


class CrossNodeClient(Client):
    """A client that reads from one node and writes through another.

    Checks, lookups, reads, Watch and schema reads go to ``read_endpoint``; writes, deletes
    and schema writes go to ``write_endpoint``. A write returns once the reading node has
    caught up with it (a read there at least as fresh as the write's token, which that node
    must wait for), so a read that names an older token, as some scenarios do right after a
    write, still sees the session's writes, as it does on one node. With read_your_writes,
    reads naming no consistency are at least as fresh as the last write. Both are real
    channels to real servers."""

    def __init__(self, read_endpoint: str, write_endpoint: str) -> None:
        """Open a channel to each node."""
        super().__init__(read_endpoint, read_your_writes=True)
        self.writer = Client(write_endpoint)

    def write(
        self,
        *,
        touch: Iterable[RelationshipLike] = (),
        create: Iterable[RelationshipLike] = (),
        delete: Iterable[RelationshipLike] = (),
        preconditions: Sequence[Precondition] = (),
    ) -> str:
        """WriteRelationships on the writing node; its token."""
        token = self.writer.write(touch=touch, create=create, delete=delete, preconditions=preconditions)
        return self._caught_up(token)

    def delete(
        self, filter: FilterLike, *, preconditions: Sequence[Precondition] = (), limit: int = 0
    ) -> DeleteOutcome:
        """DeleteRelationships on the writing node."""
        outcome = self.writer.delete(filter, preconditions=preconditions, limit=limit)
        self._caught_up(outcome.token)
        return outcome

    def write_schema(self, text: str) -> str:
        """WriteSchema on the writing node; its token."""
        return self._caught_up(self.writer.write_schema(text))

    def _caught_up(self, token: str) -> str:
        """Remember `token` and return it once the reading node is at least as fresh."""
        self.read_page("organization:catch-up", limit=1, consistency=ReadConsistency.at_least_as_fresh(token))
        return self._remember(token)

    def close(self) -> None:
        """Close both channels."""
        self.writer.close()
        super().close()


@pytest.fixture(scope="module", params=["one_node", "two_nodes"])
def topology(request: pytest.FixtureRequest) -> str:
    """Where the reused scenarios' `client` sends its calls (see the module docstring)."""
    return str(request.param)


@pytest.fixture
def client(nodes: Nodes, topology: str) -> Iterator[Client]:
    """A sync client that reads its own writes: on node A, or writing on A and reading on B."""
    made: Client
    if topology == "one_node":
        made = Client(nodes.a.address, read_your_writes=True)
    else:
        made = CrossNodeClient(nodes.b.address, nodes.a.address)
    with made:
        yield made


@pytest.fixture
def uid() -> str:
    """An id suffix unique within this module's database."""
    return f"pg{next(_ids)}"


@pytest.fixture
def racers(nodes: Nodes, topology: str) -> tuple[str, str]:
    """Where the two sides of a race send their calls: node A twice, or one to each node."""
    return nodes.a.address, (nodes.a.address if topology == "one_node" else nodes.b.address)


@pytest.fixture(scope="module")
def platform() -> ModuleType:
    """examples/platform_service.py, imported from its path."""
    return load_platform_example()


# ---------------------------------------------------------------------------- two nodes

_EXPECTED = {
    "assertTrue": Permissionship.ALLOWED,
    "assertFalse": Permissionship.DENIED,
    "assertCaveated": Permissionship.CONDITIONAL,
}


def test_validation_file_assertions_hold_on_both_nodes(nodes: Nodes, acme: str) -> None:
    """Every assertion of collaboration.yaml, asked of each node over gRPC at the bootstrap's
    token, gets the answer the file states."""
    parsed = read_validation_file(VALIDATION_FILE)
    assert len(parsed.assertions) > 50
    checks = [
        CheckRequest(
            item.relationship.resource, item.relationship.relation, item.relationship.subject, item.context
        )
        for item in parsed.assertions
    ]
    at = ReadConsistency.at_least_as_fresh(acme)
    for node in (nodes.a, nodes.b):
        with Client(node.address) as client:
            outcomes = client.check_bulk(checks, consistency=at)
        wrong = [
            f"{item.kind} {item.text} (line {item.line}): {outcome}"
            for item, outcome in zip(parsed.assertions, outcomes, strict=True)
            if not isinstance(outcome, CheckOutcome) or outcome.permissionship is not _EXPECTED[item.kind]
        ]
        assert wrong == [], f"{node.address}: {wrong}"


def test_transfer_on_a_seen_on_b_and_second_transfer_on_b_fails(nodes: Nodes, uid: str) -> None:
    """A transfer written on node A is in force on node B at its token; a second transfer in the
    old owner's name sent to node B fails its precondition and changes nothing on either node."""
    app, ana, bob, carl = f"tool-{uid}", f"ana-{uid}", f"bob-{uid}", f"carl-{uid}"
    with Client(nodes.a.address) as a, Client(nodes.b.address) as b:
        a.write(touch=[f"app:{app}#owner@user:{ana}"])
        token = transfer(a, app, ana, bob)
        at = ReadConsistency.at_least_as_fresh(token)
        assert b.check(f"app:{app}", "transfer_ownership", f"user:{bob}", consistency=at).allowed
        assert not b.check(f"app:{app}", "transfer_ownership", f"user:{ana}", consistency=at).allowed
        assert b.check(f"app:{app}", "manage", f"user:{ana}", consistency=at).allowed
        before = {str(rel) for rel in b.read(f"app:{app}", consistency=at)}
        with pytest.raises(FailedPrecondition):
            transfer(b, app, ana, carl)
        for node in (a, b):
            assert {str(rel) for rel in node.read(f"app:{app}", consistency=FRESH)} == before
            assert not node.check(
                f"app:{app}", "transfer_ownership", f"user:{carl}", consistency=FRESH
            ).allowed


async def test_access_request_on_a_reaches_watch_on_b_approved_on_b_allowed_on_a(
    nodes: Nodes, uid: str
) -> None:
    """A member's access request written on node A arrives on the App Owner's Watch stream on
    node B; the approval written on node B makes the requester's check on node A, at the approval's
    token, allowed (and the request is gone on both nodes)."""
    org, app, request, mia = f"org-{uid}", f"app-{uid}", f"req-{uid}", f"mia-{uid}"
    rows = [
        f"access_request:{request}#app@app:{app}",
        f"access_request:{request}#requester@user:{mia}",
        f"access_request:{request}#level@access_level:edit",
    ]
    async with AsyncClient(nodes.a.address) as a, AsyncClient(nodes.b.address) as b:
        setup = await a.write(
            touch=[
                f"organization:{org}#owner@user:olivia-{uid}",
                f"organization:{org}#admin@user:adam-{uid}",
                f"organization:{org}#member@user:{mia}",
                f"organization:{org}#member@user:sam-{uid}",
                f"app:{app}#account@organization:{org}",
                f"app:{app}#owner@user:sam-{uid}",
            ]
        )
        at_setup = ReadConsistency.at_least_as_fresh(setup)
        assert (await b.check(f"app:{app}", "request_access", f"user:{mia}", consistency=at_setup)).allowed
        arrived: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def watch_requests() -> None:
            """Resolve `arrived` with the event's token when the request shows up on B's stream."""
            async for event in b.watch(["access_request"], after=setup):
                for change in event.changes:
                    rel = change.relationship
                    if (
                        change.op is ChangeOp.TOUCH
                        and rel.relation == "requester"
                        and rel.resource_id == request
                    ):
                        if not arrived.done():
                            arrived.set_result(event.token)

        watcher = asyncio.create_task(watch_requests())
        try:
            await a.write(create=rows)
            event_token = await asyncio.wait_for(arrived, timeout=10)
            at_event = ReadConsistency.at_least_as_fresh(event_token)
            approvers = b.lookup_subjects(
                f"access_request:{request}", "approve", "user", consistency=at_event
            )
            assert {str(found.subject) async for found in approvers} == {
                f"user:olivia-{uid}",
                f"user:sam-{uid}",
            }
            exists = Precondition(
                PreconditionOp.MUST_MATCH, parse_filter(f"access_request:{request}#requester@user:{mia}")
            )
            token = await b.write(touch=[f"app:{app}#editor@user:{mia}"], delete=rows, preconditions=[exists])
            fresh = ReadConsistency.at_least_as_fresh(token)
            assert (await a.check(f"app:{app}", "edit", f"user:{mia}", consistency=fresh)).allowed
            assert not (await a.check(f"app:{app}", "manage", f"user:{mia}", consistency=fresh)).allowed
            for node in (a, b):
                assert [r async for r in node.read(f"access_request:{request}", consistency=fresh)] == []
            with pytest.raises(FailedPrecondition):
                await a.write(touch=[f"app:{app}#manager@user:{mia}"], delete=rows, preconditions=[exists])
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)


def test_lookup_resources_member_vs_external_on_b_after_writes_on_a(nodes: Nodes, uid: str) -> None:
    """Node B lists an organization's apps for a member and only the invited one for an
    external collaborator, as written on node A; a revoked invitation disappears from B's list."""
    org, apps = f"org-{uid}", [f"app{n}-{uid}" for n in range(3)]
    member, external = f"mia-{uid}", f"eve-{uid}"
    with Client(nodes.a.address) as a, Client(nodes.b.address) as b:
        token = a.write(
            touch=[
                f"organization:{org}#owner@user:olivia-{uid}",
                f"organization:{org}#member@user:{member}",
                *(f"app:{app}#account@organization:{org}" for app in apps),
                *(f"app:{app}#owner@user:olivia-{uid}" for app in apps),
                f"app:{apps[1]}#editor@user:{external}",
            ]
        )

        def listed(user: str, permission: str, at: str) -> set[str]:
            """App ids node B lists for `user`, minus the published ones every user sees."""
            found = b.lookup_resources(
                "app", permission, f"user:{user}", consistency=ReadConsistency.at_least_as_fresh(at)
            )
            everyone = b.lookup_resources(
                "app", permission, f"user:nobody-{uid}", consistency=ReadConsistency.at_least_as_fresh(at)
            )
            return {item.resource_id for item in found} - {item.resource_id for item in everyone}

        assert listed(member, "view", token) == set(apps)
        assert listed(external, "view", token) == {apps[1]}
        assert listed(external, "edit", token) == {apps[1]}
        assert listed(member, "edit", token) == set()
        token = a.write(delete=[f"app:{apps[1]}#editor@user:{external}"])
        assert listed(external, "view", token) == set()
        assert listed(member, "view", token) == set(apps)
