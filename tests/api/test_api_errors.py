"""Every error code the API returns, the field named in INVALID_ARGUMENT, and the limits."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from grpc_harness import SCHEMA, ServerProcess

from stonetown import Client
from stonetown.api.pb import core, permission, permission_grpc
from stonetown.client import ReadConsistency
from stonetown.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef

FRESH = ReadConsistency.fully_consistent()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with small limits and no schema yet."""
    workdir = tmp_path_factory.mktemp("limits")
    proc = ServerProcess(
        workdir,
        "--port", "0",
        "--datastore", str(workdir / "st.db"),
        "--max-updates-per-write", "3",
        "--max-checks-per-bulk", "2",
        "--max-page-size", "5",
        "--max-depth", "3",
        "--max-message-bytes", "65536",
    )  # fmt: skip
    yield proc
    proc.stop()


def test_errors_before_and_after_the_schema(small: ServerProcess) -> None:
    with Client(small.address) as client:
        with pytest.raises(NotFound):
            client.read_schema()
        with pytest.raises(InvalidArgument, match="schema"):
            client.write_schema("definition {")
        client.write_schema(SCHEMA)
        client.write(create=["document:d#viewer@user:ana"])
        with pytest.raises(AlreadyExists):
            client.write(create=["document:d#viewer@user:ana"])
        with pytest.raises(FailedPrecondition):
            client.write_schema("definition user {}\n")  # would orphan document relationships


def test_invalid_argument_names_the_field(client: Client) -> None:
    with pytest.raises(InvalidArgument, match=r"^resource\.object_type: "):
        client.check("Bad-Type:x", "view", "user:ana")
    with pytest.raises(InvalidArgument, match=r"^subject\.object\.object_id: "):
        client.check("document:x", "view", SubjectRef("user", "a b"))
    with pytest.raises(InvalidArgument, match=r"^updates\[1\]\.relationship\.relation: "):
        client.write(touch=["document:x#viewer@user:ana", "document:x#V@user:ana"])
    with pytest.raises(InvalidArgument, match=r"^consistency\.at_least_as_fresh\.token: "):
        client.check(
            "document:x", "view", "user:ana", consistency=ReadConsistency.at_least_as_fresh("nonsense")
        )
    with pytest.raises(InvalidArgument, match="nosuchtype"):
        client.check("nosuchtype:x", "view", "user:ana")
    # `$` would accept a trailing newline; ids, types and relations must match whole
    with pytest.raises(InvalidArgument, match=r"^subject\.object\.object_id: "):
        client.check("document:x", "view", SubjectRef("user", "ana\n"))
    with pytest.raises(InvalidArgument, match=r"^updates\[0\]\.relationship\.resource\.object_id: "):
        client.write(touch=[Relationship("document", "x\n", "viewer", "user", "ana")])
    with pytest.raises(InvalidArgument, match=r"^resource\.object_type: "):
        client.check(ObjectRef("document\n", "x"), "view", "user:ana")


def test_limits_have_clear_errors(small: ServerProcess) -> None:
    with Client(small.address) as client:
        with pytest.raises(InvalidArgument, match=r"^updates: 4 updates and preconditions; the limit is 3"):
            client.write(touch=[f"document:lim#viewer@user:u{n}" for n in range(4)])
        with pytest.raises(InvalidArgument, match=r"^items: 3 checks; the limit is 2"):
            client.check_bulk(["document:a#view@user:a"] * 3)
        with pytest.raises(InvalidArgument, match=r"^optional_limit: 6 results requested; the limit is 5"):
            list(client.read("document", limit=6))
        rels = list(client.read("document", consistency=FRESH))  # unlimited: streamed in pages of 5
        assert len(rels) >= 1
        with pytest.raises(ResourceExhausted):
            client.write_schema("definition user {}\n\ndefinition document {\n    relation viewer: user\n}\n"
                                + "// " + "x" * 70000)  # fmt: skip


def test_depth_limit_is_resource_exhausted(small: ServerProcess) -> None:
    with Client(small.address) as client:
        client.write(touch=[f"team:g{n}#member@team:g{n + 1}#member" for n in range(3)])
        client.write(touch=["team:g3#member@user:deep", "document:deep#viewer@team:g0#member"])
        with pytest.raises(ResourceExhausted):
            client.check("document:deep", "view", "user:deep", consistency=FRESH)


def test_unimplemented_method_and_undecodable_request(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.address) as channel:
        raw = channel.unary_unary("/stonetown.v1.PermissionService/Check")
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\xff\xff\xff\xff", timeout=10)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "request: cannot be decoded" in info.value.details()
        nope = channel.unary_unary("/stonetown.v1.PermissionService/Nope")
        with pytest.raises(grpc.RpcError) as info:
            nope(b"", timeout=10)
        assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
        stub = permission_grpc.PermissionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(permission.CheckRequest(permission="view"), timeout=10)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == "resource: required"
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(
                permission.CheckRequest(
                    resource=core.ObjectReference(object_type="document", object_id="x"),
                    permission="view",
                    subject=core.SubjectReference(
                        object=core.ObjectReference(object_type="user", object_id="a")
                    ),
                    consistency=core.Consistency(at_exact_snapshot=core.ZedToken(token="c3QxLjk5OTk5OTk")),
                ),
                timeout=10,
            )
        assert info.value.code() is not grpc.StatusCode.INTERNAL


def test_the_log_has_a_line_per_failed_rpc_and_no_internal_errors(
    server: ServerProcess, client: Client
) -> None:
    with pytest.raises(InvalidArgument):
        client.check("nosuchtype:x", "view", "user:a")
    client.read_schema()  # a success: logged at debug level only, off the hot path
    log = server.log()
    assert "event=rpc method=/stonetown.v1.PermissionService/Check code=INVALID_ARGUMENT ms=" in log
    assert "method=/stonetown.v1.SchemaService/ReadSchema code=OK" not in log
    assert "level=error" not in log, log
