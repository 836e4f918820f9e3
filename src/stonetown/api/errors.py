"""Map exceptions to gRPC status codes, one rule for every RPC.

Stonetown's own errors carry their status name (``InvalidArgument.code == "INVALID_ARGUMENT"``);
a deadline becomes DEADLINE_EXCEEDED; anything else is a bug and becomes INTERNAL with a
generic message (the traceback goes to the server log, not to the caller). Every message is
cut to :data:`MAX_DETAILS_BYTES`: it travels in a header, and gRPC turns a header over its
metadata limit into RESOURCE_EXHAUSTED, hiding the real status.
"""

from __future__ import annotations

import traceback

import grpc

from stonetown.core.errors import StonetownError

# UTF-8 bytes of a status message; percent-encoded on the wire (at most 3x), well under gRPC's
# default 8 KiB metadata limit.
MAX_DETAILS_BYTES = 2048


class DeadlineExceeded(Exception):
    """The server-side request deadline passed before the call finished."""


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str, bool]:
    """The status code and message for `exc`, and whether it is unexpected (a bug)."""
    if isinstance(exc, StonetownError):
        code = getattr(grpc.StatusCode, exc.code, grpc.StatusCode.UNKNOWN)
        return code, bounded(str(exc) or exc.code.lower()), False
    if isinstance(exc, DeadlineExceeded | TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, bounded(str(exc) or "the request deadline passed"), False
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the server log", True


def bounded(message: str, limit: int = MAX_DETAILS_BYTES) -> str:
    """`message` cut to at most `limit` UTF-8 bytes, saying how much was left out."""
    encoded = message.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return message
    kept = encoded[: limit - 40].decode("utf-8", "ignore")  # 40: room for the note
    omitted = len(encoded) - len(kept.encode("utf-8"))
    return f"{kept} ... ({omitted} more bytes)"


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
