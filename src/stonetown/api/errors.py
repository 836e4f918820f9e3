"""Map exceptions to gRPC status codes, one rule for every RPC.

Stonetown's own errors carry their status name (``InvalidArgument.code == "INVALID_ARGUMENT"``);
a deadline becomes DEADLINE_EXCEEDED; anything else is a bug and becomes INTERNAL with a
generic message (the traceback goes to the server log, not to the caller).
"""

from __future__ import annotations

import grpc

from stonetown.core.errors import StonetownError


class DeadlineExceeded(Exception):
    """The server-side request deadline passed before the call finished."""


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str, bool]:
    """The status code and message for `exc`, and whether it is unexpected (a bug)."""
    if isinstance(exc, StonetownError):
        code = getattr(grpc.StatusCode, exc.code, grpc.StatusCode.UNKNOWN)
        return code, str(exc) or exc.code.lower(), False
    if isinstance(exc, DeadlineExceeded | TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(exc) or "the request deadline passed", False
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the server log", True
