"""Errors as SpiceDB reports them: its gRPC status code and, in the status details
(`grpc-status-details-bin`), a google.rpc.ErrorInfo with the `authzed.api.v1.ErrorReason`
name, domain `authzed.com` and SpiceDB's metadata keys.

The engine's errors are Stonetown's (api/errors.py maps them for stonetown.v1); their
messages follow SpiceDB's wording, and :func:`classify` reads the reason from them. The
authzed servicers raise :class:`SpiceError` directly where the adapter itself knows the
reason (limits, cursors, deletes). Codes differ from stonetown.v1 where SpiceDB's do: an
unknown definition is FAILED_PRECONDITION there, INVALID_ARGUMENT in stonetown.v1, and
so is too deep a walk (RESOURCE_EXHAUSTED in stonetown.v1).
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from stonetown.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    StonetownError,
)

DOMAIN = "authzed.com"
STATUS_DETAILS_KEY = "grpc-status-details-bin"


class SpiceError(StonetownError):
    """An error with SpiceDB's status code, ErrorReason name and metadata."""

    def __init__(self, code: str, message: str, reason: str | None = None, **metadata: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.metadata = metadata


def unknown_definition(name: str) -> SpiceError:
    """SpiceDB's error for a definition the schema does not have."""
    return SpiceError(
        "FAILED_PRECONDITION",
        f"object definition `{name}` not found",
        "ERROR_REASON_UNKNOWN_DEFINITION",
        definition_name=name,
    )


def unknown_relation(definition: str, name: str) -> SpiceError:
    """SpiceDB's error for a relation or permission a definition does not have."""
    return SpiceError(
        "FAILED_PRECONDITION",
        f"relation/permission `{name}` not found under definition `{definition}`",
        "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION",
        definition_name=definition,
        relation_or_permission_name=name,
    )


# (pattern over the message, SpiceDB code, reason, metadata keys for the pattern's groups).
# Checked in order: the first pattern found in the message decides.
_RULES: tuple[tuple[type[Exception], re.Pattern[str], str, str, tuple[str, ...]], ...] = tuple(
    (kind, re.compile(pattern), code, reason, keys)
    for kind, pattern, code, reason, keys in (
        # first: its message quotes the stored relationship's own error
        (
            FailedPrecondition,
            r"the new schema cannot be written",
            "INVALID_ARGUMENT",
            "ERROR_REASON_SCHEMA_TYPE_ERROR",
            (),
        ),
        (
            Exception,
            r"relation/permission `([^`]*)` not found under definition `([^`]*)`",
            "FAILED_PRECONDITION",
            "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION",
            ("relation_or_permission_name", "definition_name"),
        ),
        (
            Exception,
            r"object definition `([^`]*)` not found",
            "FAILED_PRECONDITION",
            "ERROR_REASON_UNKNOWN_DEFINITION",
            ("definition_name",),
        ),
        (
            InvalidArgument,
            r"cannot write a relationship to permission `([^`]*)` of `([^`]*)`",
            "INVALID_ARGUMENT",
            "ERROR_REASON_CANNOT_UPDATE_PERMISSION",
            ("relation_name", "definition_name"),
        ),
        (
            # a relationship naming a caveat the schema lacks: SpiceDB checks the allowed
            # types first, and none can name a missing caveat
            InvalidArgument,
            r"caveat `([^`]*)` not found",
            "INVALID_ARGUMENT",
            "ERROR_REASON_INVALID_SUBJECT_TYPE",
            ("caveat_name",),
        ),
        (
            InvalidArgument,
            r"subjects of type `([^`]*)` are not allowed on relation `([^`]*)`",
            "INVALID_ARGUMENT",
            "ERROR_REASON_INVALID_SUBJECT_TYPE",
            ("subject_type", "relation"),
        ),
        (
            InvalidArgument,
            r"evaluation error for caveat `([^`]*)`"
            r"|caveat `([^`]*)` (?:failed to evaluate|cannot be evaluated|evaluated to)",
            "INVALID_ARGUMENT",
            "ERROR_REASON_CAVEAT_EVALUATION_ERROR",
            ("caveat_name",),
        ),
        (
            InvalidArgument,
            r"(?:of|for) caveat `([^`]*)`|caveat `([^`]*)`: context parameter",
            "INVALID_ARGUMENT",
            "ERROR_REASON_CAVEAT_PARAMETER_TYPE_ERROR",
            ("caveat_name",),
        ),
        (
            InvalidArgument,
            # a wildcard resource id is refused by SpiceDB's request validation: no reason
            r"^([\w.\[\]]+): cannot check a wildcard subject",
            "INVALID_ARGUMENT",
            "ERROR_REASON_WILDCARD_NOT_ALLOWED",
            ("field",),
        ),
        (
            InvalidArgument,
            r"more than once in one write|appears more than once",
            "INVALID_ARGUMENT",
            "ERROR_REASON_UPDATES_ON_SAME_RELATIONSHIP",
            (),
        ),
        (
            InvalidArgument,
            r"not a cursor of this call",
            "INVALID_ARGUMENT",  # SpiceDB v1.54's cursor.InvalidCursorError, whatever the cause
            "ERROR_REASON_INVALID_CURSOR",
            (),
        ),
        (
            FailedPrecondition,
            r"^precondition failed",
            "FAILED_PRECONDITION",
            "ERROR_REASON_WRITE_OR_DELETE_PRECONDITION_FAILURE",
            (),
        ),
        (
            Exception,  # NotFound from reads, FailedPrecondition from writes
            r"no schema has been written yet",
            "FAILED_PRECONDITION",
            "ERROR_REASON_UNKNOWN_DEFINITION",
            (),
        ),
        (
            AlreadyExists,
            r"relationship (\S+) already exists",
            "ALREADY_EXISTS",
            "ERROR_REASON_ATTEMPT_TO_RECREATE_RELATIONSHIP",
            ("relationship",),
        ),
        (
            # SpiceDB (since v1.50) reports its dispatcher's max-depth error as it is:
            # FAILED_PRECONDITION; RESOURCE_EXHAUSTED was older versions' code
            ResourceExhausted,
            r"maximum depth of (\d+)",
            "FAILED_PRECONDITION",
            "ERROR_REASON_MAXIMUM_DEPTH_EXCEEDED",
            ("maximum_depth_allowed",),
        ),
    )
)

# Token revisions the store cannot serve: SpiceDB answers OUT_OF_RANGE ("invalid zedtoken").
_OUT_OF_RANGE = re.compile(
    r"newer than (?:this store's head|the head revision)|older than the oldest readable"
)


def classify(exc: BaseException) -> SpiceError | None:
    """SpiceDB's code, reason and metadata for a Stonetown error (None: not a Stonetown error)."""
    if isinstance(exc, SpiceError):
        return exc
    if not isinstance(exc, StonetownError):
        return None
    message = str(exc)
    for kind, pattern, code, reason, keys in _RULES:
        if not isinstance(exc, kind):
            continue
        found = pattern.search(message)
        if found is not None:
            values = [group for group in found.groups() if group is not None]
            return SpiceError(code, message, reason, **dict(zip(keys, values, strict=False)))
    if _OUT_OF_RANGE.search(message):
        return SpiceError("OUT_OF_RANGE", f"invalid zedtoken: {message}")
    return SpiceError(exc.code, message)


def status_details(error: SpiceError, code: grpc.StatusCode) -> bytes | None:
    """The serialized google.rpc.Status carrying the error's ErrorInfo (None without a reason)."""
    if error.reason is None:
        return None
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    return status_pb2.Status(code=code.value[0], message=str(error), details=[detail]).SerializeToString()


def rpc_status(exc: BaseException) -> status_pb2.Status:
    """A per-item google.rpc.Status (CheckBulkPermissions pairs) for an error."""
    error = classify(exc) or SpiceError("INTERNAL", f"internal error ({type(exc).__name__})")
    code = getattr(grpc.StatusCode, error.code, grpc.StatusCode.UNKNOWN)
    status = status_pb2.Status(code=code.value[0], message=str(error))
    if error.reason is not None:
        detail = status.details.add()
        detail.Pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata))
    return status


async def abort(context: aio.ServicerContext, exc: BaseException) -> None:
    """End the call with SpiceDB's status for `exc` (a non-Stonetown error is re-raised, and
    the serving layer reports it as INTERNAL)."""
    error = classify(exc)
    if error is None:
        raise exc
    code = getattr(grpc.StatusCode, error.code, grpc.StatusCode.UNKNOWN)
    details = status_details(error, code)
    metadata = ((STATUS_DETAILS_KEY, details),) if details is not None else ()
    await context.abort(code, str(error), metadata)


T = TypeVar("T")


def unary(
    method: Callable[[Any, Any, aio.ServicerContext], Awaitable[T]],
) -> Callable[[Any, Any, aio.ServicerContext], Awaitable[T]]:
    """A servicer method that answers once, with its errors reported as SpiceDB's."""

    @functools.wraps(method)
    async def handle(self: Any, request: Any, context: aio.ServicerContext) -> T:
        try:
            return await method(self, request, context)
        except StonetownError as exc:
            await abort(context, exc)
            raise  # unreachable: abort raises

    return handle


def streaming(
    method: Callable[[Any, Any, aio.ServicerContext], AsyncGenerator[T, None]],
) -> Callable[[Any, Any, aio.ServicerContext], AsyncGenerator[T, None]]:
    """A servicer method that streams, with its errors reported as SpiceDB's."""

    @functools.wraps(method)
    async def handle(self: Any, request: Any, context: aio.ServicerContext) -> AsyncGenerator[T, None]:
        items = method(self, request, context)
        try:
            async for item in items:
                yield item
        except StonetownError as exc:
            await abort(context, exc)
        finally:
            await items.aclose()  # a cancelled stream (a Watch) stops its work now, not at GC

    return handle


__all__ = [
    "NotFound",
    "SpiceError",
    "abort",
    "classify",
    "rpc_status",
    "streaming",
    "unary",
    "unknown_definition",
    "unknown_relation",
]
