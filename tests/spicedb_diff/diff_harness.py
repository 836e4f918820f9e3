"""The two sides of the SpiceDB comparison and what is compared of their answers.

`SpiceDBSide` drives spicedb_worker.py (the real SpiceDB v1.54, embedded) in the venv that
../shared/tools/spicedb/spice_env.sh sets up; `StonetownSide` calls a `stonetown serve-testing`
over gRPC with the authzed stubs, a fresh bearer token (so a fresh, empty store) per scenario.
Both take the same authzed.api.v1 request messages; `normal` turns either side's answer into
a plain value that is equal when the answers agree (order-insensitive where SpiceDB's order is
unspecified).
"""

from __future__ import annotations

import base64
import json
import re
import select
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import authzed.api.v1 as v1
import grpc
from authzed.api.v1 import permission_service_pb2 as permission
from authzed.api.v1.permission_service_pb2_grpc import PermissionsServiceStub
from authzed.api.v1.schema_service_pb2_grpc import SchemaServiceStub
from google.protobuf.json_format import MessageToDict
from google.rpc import error_details_pb2, status_pb2

WORKER = Path(__file__).resolve().with_name("spicedb_worker.py")
CALL_TIMEOUT = 20.0
WORKER_TIMEOUT = 60.0
STREAMING = frozenset({"LookupResources", "LookupSubjects", "ReadRelationships"})
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
SCHEMA_METHODS = frozenset({"WriteSchema", "ReadSchema", "ReflectSchema", "DiffSchema"})

# The embedded library's FFI (unary calls) loses the status details: SpiceDB's ErrorReason for
# such an error is read from its message, by the rules of SpiceDB v1.54's own error types
# (internal/services/v1/errors.go, internal/relationships/errors.go, internal/caveats/errors.go,
# internal/services/shared/errors.go: the message each type formats and the reason it attaches).
# An FFI error matching none of these fails the comparison (the table must be extended).
# test_spicedb_scenarios.py checks the table against the status details of streaming calls where one
# produces the same error.
REASON_BY_SPICEDB_MESSAGE: tuple[tuple[re.Pattern[str], str | None], ...] = tuple(
    (re.compile(pattern), reason)
    for pattern, reason in (
        (r"^object definition `[^`]*` not found", "ERROR_REASON_UNKNOWN_DEFINITION"),
        (
            r"^relation/permission `[^`]*` not found under definition",
            "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION",
        ),
        (r"^subjects of type `[^`]*` are not allowed on relation", "ERROR_REASON_INVALID_SUBJECT_TYPE"),
        (r"^cannot write a relationship to permission", "ERROR_REASON_CANNOT_UPDATE_PERMISSION"),
        (r"^the caveat `[^`]*` was not found for relationship", "ERROR_REASON_UNKNOWN_CAVEAT"),
        (r"^unable to satisfy write precondition", "ERROR_REASON_WRITE_OR_DELETE_PRECONDITION_FAILURE"),
        (r"^too many updates \(\d+\) for WriteRelationships", "ERROR_REASON_TOO_MANY_UPDATES_IN_REQUEST"),
        (
            r"^precondition count of \d+ is greater than maximum",
            "ERROR_REASON_TOO_MANY_PRECONDITIONS_IN_REQUEST",
        ),
        (r"^found more than one update with relationship", "ERROR_REASON_UPDATES_ON_SAME_RELATIONSHIP"),
        (
            r"^provided limit \d+ is greater than maximum allowed",
            "ERROR_REASON_EXCEEDS_MAXIMUM_ALLOWABLE_LIMIT",
        ),
        (r"^check count of \d+ is greater than maximum allowed", "ERROR_REASON_UNSPECIFIED"),
        (
            r"^found more than \d+ relationships to be deleted",
            "ERROR_REASON_TOO_MANY_RELATIONSHIPS_FOR_TRANSACTIONAL_DELETE",
        ),
        (r"^the relationship filter provided is not valid", "ERROR_REASON_INVALID_FILTER"),
        (r"^the relation `[^`]*` is not a permission", "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION"),
        (r"^type error for parameters for caveat", "ERROR_REASON_CAVEAT_PARAMETER_TYPE_ERROR"),
        (r"^evaluation error for caveat", "ERROR_REASON_CAVEAT_EVALUATION_ERROR"),
        (
            r"^the (?:check )?request has exceeded the allowable maximum depth",
            "ERROR_REASON_MAXIMUM_DEPTH_EXCEEDED",
        ),
        (r"^max depth exceeded", "ERROR_REASON_MAXIMUM_DEPTH_EXCEEDED"),
        (r"^(?:parse error in|error in) `?schema", "ERROR_REASON_SCHEMA_PARSE_ERROR"),
        (
            r"^cannot delete (?:relation|object definition) .* as at least one relationship exists",
            "ERROR_REASON_SCHEMA_TYPE_ERROR",
        ),
        (
            r"^could not CREATE relationship `[^`]*`, as it already existed",
            "ERROR_REASON_ATTEMPT_TO_RECREATE_RELATIONSHIP",
        ),
        (r"cannot perform check on wildcard subject", "ERROR_REASON_WILDCARD_NOT_ALLOWED"),
        # a caveat context of the wrong type in a written relationship: a plain error, UNKNOWN
        (r"^could not convert context parameter", None),
        (r"^no schema has been defined", None),  # ReadSchema: a plain NOT_FOUND
        (r"^invalid revision requested", None),  # a ZedToken it cannot read: a plain INVALID_ARGUMENT
        # protovalidate's request validation attaches no ErrorInfo
        (r"^invalid [A-Za-z]+(?:Request|Reference)\.|^validation error", None),
    )
)


@dataclass(frozen=True)
class Failure:
    """A call's error: status code and ErrorReason (None: no ErrorInfo)."""

    code: str
    reason: str | None
    message: str = field(compare=False)


@dataclass
class Outcome:
    """A call's answer: its response messages (one for a unary call) or its failure."""

    responses: list[Any]
    failure: Failure | None = None


def message_class(name: str) -> Any:
    """An authzed.api.v1 message class by name."""
    return getattr(v1, name, None) or getattr(permission, name)


def reason_from_spicedb_message(message: str, method: str = "", code: str = "") -> str | None:
    """SpiceDB's ErrorReason for an FFI error's message (see REASON_BY_SPICEDB_MESSAGE).
    WriteSchema's FAILED_PRECONDITION errors are all schema.TypeError, whatever they wrap
    (shared.RewriteError tests for a TypeError first): SCHEMA_TYPE_ERROR."""
    if method == "WriteSchema" and code == "FAILED_PRECONDITION":
        return "ERROR_REASON_SCHEMA_TYPE_ERROR"
    for pattern, reason in REASON_BY_SPICEDB_MESSAGE:
        if pattern.search(message):
            return reason
    return "UNRECOGNISED SpiceDB message: extend REASON_BY_SPICEDB_MESSAGE"


class SpiceDBSide:
    """The embedded SpiceDB in its own process (the SpiceDB venv's python)."""

    name = "spicedb"

    def __init__(self, python: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [python, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        # the FFI calls take no deadline: a SpiceDB that stops answering fails the test
        ready, _, _ = select.select([self.process.stdout], [], [], WORKER_TIMEOUT)
        if not ready:
            self.process.kill()
            asked = command.get("method", command["op"])
            raise RuntimeError(f"the SpiceDB worker did not answer {asked} within {WORKER_TIMEOUT} s")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the SpiceDB worker exited ({self.process.poll()})")
        return json.loads(line)

    def reset(self) -> None:
        """A new, empty SpiceDB instance."""
        self._ask({"op": "reset"})

    def call(self, method: str, request: Any) -> Outcome:
        """One call's outcome."""
        request_b64 = base64.b64encode(request.SerializeToString()).decode()
        answer = self._ask({"op": "call", "method": method, "request": request_b64, "timeout": CALL_TIMEOUT})
        if "error" in answer:
            error = answer["error"]
            reason = error["reason"]
            if error["source"] == "ffi":
                reason = reason_from_spicedb_message(error["message"], method, error["code"])
            return Outcome([], Failure(error["code"], reason, error["message"]))
        response_class = message_class(f"{method}Response")
        return Outcome([response_class.FromString(base64.b64decode(raw)) for raw in answer["responses"]])

    def close(self) -> None:
        """Stop the worker."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _grpc_failure(error: grpc.RpcError) -> Failure:
    reason = None
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    reason = info.reason
    return Failure(error.code().name, reason, error.details() or "")


class StonetownSide:
    """A `stonetown serve-testing` reached with the authzed stubs; `reset` takes a new token."""

    name = "stonetown"

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.metadata: tuple[tuple[str, str], ...] = ()
        self.permissions = PermissionsServiceStub(self.channel)
        self.schema = SchemaServiceStub(self.channel)

    def reset(self) -> None:
        """A new token: a new, empty store."""
        self.metadata = (("authorization", f"Bearer diff-{uuid.uuid4().hex}"),)

    def call(self, method: str, request: Any) -> Outcome:
        """One call's outcome."""
        stub = self.schema if method in SCHEMA_METHODS else self.permissions
        try:
            answer = getattr(stub, method)(request, timeout=CALL_TIMEOUT, metadata=self.metadata)
            return Outcome(list(answer) if method in STREAMING else [answer])
        except grpc.RpcError as error:
            return Outcome([], _grpc_failure(error))

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()


# ---- what is compared ----------------------------------------------------------------------


def _relationship(rel: Any) -> str:
    text = f"{rel.resource.object_type}:{rel.resource.object_id}#{rel.relation}@"
    text += f"{rel.subject.object.object_type}:{rel.subject.object.object_id}"
    if rel.subject.optional_relation:
        text += f"#{rel.subject.optional_relation}"
    if rel.HasField("optional_caveat"):
        context = json.dumps(_struct(rel.optional_caveat.context), sort_keys=True)
        text += f"[{rel.optional_caveat.caveat_name}:{context}]"
    if rel.HasField("optional_expires_at"):
        text += f"[expiration:{rel.optional_expires_at.ToJsonString()}]"
    return text


def _struct(value: Any) -> Any:
    return MessageToDict(value)


def _missing(response: Any) -> tuple[str, ...]:
    return tuple(sorted(response.partial_caveat_info.missing_required_context))


def _bulk_pair(pair: Any) -> Any:
    if pair.WhichOneof("response") == "error":
        reason = None
        for detail in pair.error.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reason = info.reason
        return ("error", CODE_NAMES.get(pair.error.code, str(pair.error.code)), reason)
    item = pair.item
    return (permission.CheckPermissionResponse.Permissionship.Name(item.permissionship), _missing(item))


def _expand(tree: Any) -> Any:
    """The tree with children and leaf subjects order-free, each node with what it expands."""
    expanded = f"{tree.expanded_object.object_type}:{tree.expanded_object.object_id}#{tree.expanded_relation}"
    if tree.WhichOneof("tree_type") == "leaf":
        subjects = sorted(
            f"{s.object.object_type}:{s.object.object_id}"
            + (f"#{s.optional_relation}" if s.optional_relation else "")
            for s in tree.leaf.subjects
        )
        return ("leaf", expanded, tuple(subjects))
    operation = v1.AlgebraicSubjectSet.Operation.Name(tree.intermediate.operation)
    children = [_expand(child) for child in tree.intermediate.children]
    if operation != "OPERATION_EXCLUSION":
        children.sort(key=repr)
    return (operation, expanded, tuple(children))


def normal(method: str, outcome: Outcome) -> Any:
    """The comparable value of an outcome."""
    if outcome.failure is not None:
        return ("error", outcome.failure.code, outcome.failure.reason)
    responses = outcome.responses
    if method == "CheckPermission":
        (response,) = responses
        name = permission.CheckPermissionResponse.Permissionship.Name(response.permissionship)
        return (name, _missing(response))
    if method == "CheckBulkPermissions":
        return [_bulk_pair(pair) for pair in responses[0].pairs]
    if method == "LookupResources":
        return sorted(
            (r.resource_object_id, permission.LookupPermissionship.Name(r.permissionship), _missing(r))
            for r in responses
        )
    if method == "LookupSubjects":
        return sorted(
            (
                r.subject.subject_object_id,
                permission.LookupPermissionship.Name(r.subject.permissionship),
                _missing(r.subject),
                tuple(sorted(e.subject_object_id for e in r.excluded_subjects)),
            )
            for r in responses
        )
    if method == "ReadRelationships":
        return sorted(_relationship(r.relationship) for r in responses)
    if method == "DeleteRelationships":
        (response,) = responses
        progress = permission.DeleteRelationshipsResponse.DeletionProgress.Name(response.deletion_progress)
        return (progress, response.relationships_deleted_count)
    if method == "ExpandPermissionTree":
        return _expand(responses[0].tree_root)
    return "ok"  # WriteSchema, WriteRelationships: success is what is compared
