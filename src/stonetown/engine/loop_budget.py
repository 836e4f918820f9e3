"""Work started on the event loop that finds, part-way, that it is too long for it.

A store's short write transaction runs its body on the event loop (see
:meth:`stonetown.stores.sqlite.SqliteDatastore._in_write`): most bodies are a few statements,
and on the writer's thread each would wait for the GIL. Some turn out long only once they
run: a delete by filter that matches thousands of rows, a validator whose stored schema is
not compiled yet. Such a body calls :func:`leave_loop_if`; under :func:`movable_off_loop`
(the caller can undo the work so far and run it again on a thread) it raises
:class:`TooLongForLoop`, elsewhere (a thread, or a caller that cannot move it) nothing
happens and the work goes on where it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# Rows one statement may change on the event loop (SQLite: ~10-40 µs each with its indexes).
LOOP_ROWS = 200

_movable: ContextVar[bool] = ContextVar("stonetown_movable_off_loop", default=False)


class TooLongForLoop(BaseException):  # noqa: N818 - a signal to the caller, not an error
    """The work running under :func:`movable_off_loop` would hold the event loop too long:
    the caller undoes it and runs it again on a thread. A BaseException, so that handlers of
    one item's errors (``except Exception``) let it through."""


@contextmanager
def movable_off_loop() -> Iterator[None]:
    """Run the block as work its caller will undo and run again on a thread if it raises
    :class:`TooLongForLoop` (the flag does not follow the work onto another thread)."""
    token = _movable.set(True)
    try:
        yield
    finally:
        _movable.reset(token)


def leave_loop_if(too_long: bool) -> None:
    """Raise :class:`TooLongForLoop` when `too_long` and the running work can be moved off
    the event loop (see :func:`movable_off_loop`)."""
    if too_long and _movable.get():
        raise TooLongForLoop
