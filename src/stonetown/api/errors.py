"""Map exceptions to gRPC status codes, one rule for every RPC.

Stonetown's own errors carry their status name (``InvalidArgument.code == "INVALID_ARGUMENT"``);
a deadline becomes DEADLINE_EXCEEDED; anything else is a bug and becomes INTERNAL with a
generic message (the traceback goes to the server log, not to the caller).
"""

from __future__ import annotations

import traceback

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


def forget_frames(exc: BaseException) -> None:
    """Drop the local variables of the finished frames in the tracebacks of `exc` and of the
    exceptions chained to it (the traceback lines stay), so what they referred to is freed
    now rather than whenever the error is."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        pending += [current.__cause__, current.__context__]
