"""gRPC errors as Stonetown's own exception classes, so callers catch domain errors."""

from __future__ import annotations

import grpc

from stonetown.core import errors as core_errors
from stonetown.core.errors import StonetownError

_BY_CODE: dict[str, type[StonetownError]] = {
    cls.code: cls
    for cls in (
        core_errors.InvalidArgument,
        core_errors.FailedPrecondition,
        core_errors.AlreadyExists,
        core_errors.NotFound,
        core_errors.ResourceExhausted,
        core_errors.Unavailable,
        core_errors.Unauthenticated,
    )
}


class RpcError(StonetownError):
    """A status with no Stonetown class of its own (DEADLINE_EXCEEDED, INTERNAL, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def from_grpc(error: grpc.RpcError) -> StonetownError:
    """The Stonetown exception for a failed call."""
    code_obj = error.code() if hasattr(error, "code") else None
    code = code_obj.name if isinstance(code_obj, grpc.StatusCode) else "UNKNOWN"
    details = error.details() if hasattr(error, "details") else str(error)
    message = details or code
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(message)
    return RpcError(code, message)


def from_item_error(code: str, message: str) -> StonetownError:
    """The Stonetown exception for one failed item of a bulk answer."""
    cls = _BY_CODE.get(code)
    return cls(message) if cls is not None else RpcError(code, message)
