"""A progress line on stderr for bulk import and export."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Redraws `label [#####.....] 50% 500/1000` (or `label 500` without a total) on stderr,
    at most ten times a second when stderr is a terminal; a final line either way."""

    def __init__(
        self, label: str, total: int | None = None, *, enabled: bool = True, stream: TextIO | None = None
    ):
        self.label = label
        self.total = total
        self.count = 0
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._interactive = self.stream.isatty()
        self._last_draw = 0.0

    def _line(self) -> str:
        if self.total:
            fraction = min(self.count / self.total, 1.0)
            bar = "#" * int(fraction * 30)
            return f"{self.label} [{bar:<30}] {fraction:4.0%} {self.count}/{self.total}"
        return f"{self.label} {self.count}"

    def advance(self, amount: int) -> None:
        """Count `amount` more items done."""
        self.count += amount
        now = time.monotonic()
        if self.enabled and self._interactive and now - self._last_draw > 0.1:
            self._last_draw = now
            self.stream.write("\r" + self._line())
            self.stream.flush()

    def finish(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self.stream.write(("\r" if self._interactive else "") + self._line() + "\n")
            self.stream.flush()
