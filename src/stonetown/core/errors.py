"""Domain errors. The API layer maps each class to one gRPC status code."""

from __future__ import annotations


class StonetownError(Exception):
    """Base class of every error Stonetown reports to a caller."""

    code = "UNKNOWN"


class InvalidArgument(StonetownError):
    """Malformed input, or a name the schema does not know (gRPC INVALID_ARGUMENT)."""

    code = "INVALID_ARGUMENT"


class FailedPrecondition(StonetownError):
    """A write precondition failed, or a schema change was refused (gRPC FAILED_PRECONDITION)."""

    code = "FAILED_PRECONDITION"


class AlreadyExists(StonetownError):
    """A CREATE write found the relationship already stored (gRPC ALREADY_EXISTS)."""

    code = "ALREADY_EXISTS"


class NotFound(StonetownError):
    """No schema written yet, or a requested object is unknown (gRPC NOT_FOUND)."""

    code = "NOT_FOUND"


class ResourceExhausted(StonetownError):
    """A limit was hit: depth, sizes, counts (gRPC RESOURCE_EXHAUSTED)."""

    code = "RESOURCE_EXHAUSTED"


class Unavailable(StonetownError):
    """The store cannot serve right now, or a revision was not reached in time (gRPC UNAVAILABLE)."""

    code = "UNAVAILABLE"


class Unauthenticated(StonetownError):
    """Missing or wrong preshared key (gRPC UNAUTHENTICATED)."""

    code = "UNAUTHENTICATED"


class StoreError(StonetownError):
    """The datastore failed (read-only file, disk full, corrupt file); nothing was changed."""

    code = "UNAVAILABLE"


class DeadlineExceeded(StonetownError):
    """The request's deadline passed while the engine was still working (gRPC DEADLINE_EXCEEDED)."""

    code = "DEADLINE_EXCEEDED"
