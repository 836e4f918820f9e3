"""The deadline of the request being served, so abandoned work stops.

The API layer sets :data:`request_deadline` (a `time.monotonic()` instant) for the duration of
a call; long engine loops (check dispatch, lookup walks) call :func:`check_deadline` every so
often and stop with DeadlineExceeded once it has passed. Outside a request it is None and
costs nothing.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

from stonetown.core.errors import DeadlineExceeded

request_deadline: ContextVar[float | None] = ContextVar("stonetown_request_deadline", default=None)

# How many units of work (dispatches, walk steps) run between two looks at the clock.
CHECK_EVERY = 512


def check_deadline(deadline: float | None) -> None:
    """Raise DeadlineExceeded if `deadline` (monotonic seconds) has passed."""
    if deadline is not None and time.monotonic() > deadline:
        raise DeadlineExceeded("the request deadline passed before the engine finished; work was abandoned")
