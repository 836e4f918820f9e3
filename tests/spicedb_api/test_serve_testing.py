"""`stonetown serve-testing`: each bearer token its own empty store, for both APIs; the number
of stores is bounded with an error naming the bound."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from authzed.api.v1 import (
    BulkExportRelationshipsRequest,
    Consistency,
    ReadSchemaRequest,
    SyncClient,
    WriteSchemaRequest,
)
from grpcutil import insecure_bearer_token_credentials

from stonetown import Client
from stonetown.client import ReadConsistency
from stonetown.core.errors import ResourceExhausted
from stonetown.testing import TestingServer, stonetown_testing_server  # noqa: F401 - the fixture

SCHEMA = "definition user {}\n\ndefinition doc {\n    relation reader: user\n}\n"


@pytest.fixture(scope="module")
def testing() -> Iterator[TestingServer]:
    """A serve-testing server holding at most 3 stores."""
    with TestingServer(max_stores=3) as server:
        yield server


def test_each_token_gets_its_own_empty_store_in_both_apis(testing: TestingServer) -> None:
    first = SyncClient(testing.address, insecure_bearer_token_credentials("first"))
    first.WriteSchema(WriteSchemaRequest(schema=SCHEMA))
    with Client(testing.address, preshared_key="first") as own:
        own.write(touch=["doc:d1#reader@user:ana"])  # stonetown.v1, same token: same store
        assert own.check(
            "doc:d1", "reader", "user:ana", consistency=ReadConsistency.fully_consistent()
        ).allowed
    exported = first.BulkExportRelationships(
        BulkExportRelationshipsRequest(consistency=Consistency(fully_consistent=True))
    )
    assert sum(len(batch.relationships) for batch in exported) == 1
    second = SyncClient(testing.address, insecure_bearer_token_credentials("second"))
    with pytest.raises(grpc.RpcError) as caught:
        second.ReadSchema(ReadSchemaRequest())
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # nothing of "first" is seen
    second.WriteSchema(WriteSchemaRequest(schema="definition user {}"))
    assert "doc" in first.ReadSchema(ReadSchemaRequest()).schema_text


def test_stores_are_bounded_with_an_error_naming_the_bound(testing: TestingServer) -> None:
    for token in ("first", "second", "third"):
        SyncClient(testing.address, insecure_bearer_token_credentials(token)).WriteSchema(
            WriteSchemaRequest(schema=SCHEMA)
        )
    with pytest.raises(grpc.RpcError) as caught:
        SyncClient(testing.address, insecure_bearer_token_credentials("fourth")).ReadSchema(
            ReadSchemaRequest()
        )
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "at most 3 stores" in caught.value.details()
    with Client(testing.address, preshared_key="fifth") as own, pytest.raises(ResourceExhausted):
        own.read_schema()
    # the stores already made keep working
    assert (
        "doc"
        in SyncClient(testing.address, insecure_bearer_token_credentials("third"))
        .ReadSchema(ReadSchemaRequest())
        .schema_text
    )


def test_the_pytest_fixture_serves_testing_stores(stonetown_testing_server: TestingServer) -> None:  # noqa: F811
    client = SyncClient(stonetown_testing_server.address, insecure_bearer_token_credentials("fixture"))
    client.WriteSchema(WriteSchemaRequest(schema=SCHEMA))
    assert "doc" in client.ReadSchema(ReadSchemaRequest()).schema_text
    other = SyncClient(stonetown_testing_server.address, insecure_bearer_token_credentials("fixture-2"))
    with pytest.raises(grpc.RpcError) as caught:
        other.ReadSchema(ReadSchemaRequest())
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_watch_reports_schema_updates_when_asked(testing: TestingServer) -> None:
    from authzed.api.v1 import WatchRequest
    from authzed.api.v1.watch_service_pb2 import WATCH_KIND_INCLUDE_SCHEMA_UPDATES

    client = SyncClient(testing.address, insecure_bearer_token_credentials("first"))
    start = client.WriteSchema(WriteSchemaRequest(schema=SCHEMA)).written_at
    client.WriteSchema(WriteSchemaRequest(schema=SCHEMA + "\ndefinition team {}\n"))
    stream = client.Watch(
        WatchRequest(optional_start_cursor=start, optional_update_kinds=[WATCH_KIND_INCLUDE_SCHEMA_UPDATES]),
        timeout=15,
    )
    first = next(iter(stream))
    stream.cancel()
    assert first.schema_updated and not first.updates


def test_a_schema_that_would_orphan_relationships_is_refused_as_spicedb_does(testing: TestingServer) -> None:
    from authzed_support import error_info

    client = SyncClient(testing.address, insecure_bearer_token_credentials("second"))
    client.WriteSchema(WriteSchemaRequest(schema=SCHEMA))
    with Client(testing.address, preshared_key="second") as own:
        own.write(touch=["doc:kept#reader@user:ana"])
    with pytest.raises(grpc.RpcError) as caught:
        client.WriteSchema(WriteSchemaRequest(schema="definition user {}\n\ndefinition doc {}\n"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(caught.value)
    assert info is not None and info.reason == "ERROR_REASON_SCHEMA_TYPE_ERROR"
    assert "relation reader" in client.ReadSchema(ReadSchemaRequest()).schema_text


def test_calls_before_any_schema_fail_as_spicedbs_do(stonetown_testing_server: TestingServer) -> None:  # noqa: F811
    from authzed.api.v1 import CheckPermissionRequest, ObjectReference, SubjectReference
    from authzed_support import error_info

    client = SyncClient(stonetown_testing_server.address, insecure_bearer_token_credentials("no-schema"))
    with pytest.raises(grpc.RpcError) as caught:
        client.ReadSchema(ReadSchemaRequest())
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        client.CheckPermission(
            CheckPermissionRequest(
                resource=ObjectReference(object_type="doc", object_id="d"),
                permission="reader",
                subject=SubjectReference(object=ObjectReference(object_type="user", object_id="u")),
            )
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "ERROR_REASON_UNKNOWN_DEFINITION"
