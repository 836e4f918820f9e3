"""Request limits the server enforces, with errors that name the field and the limit."""

from __future__ import annotations

from dataclasses import dataclass

from stonetown.core.errors import InvalidArgument

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-request limits."""

    max_updates_per_write: int = 1000  # updates + preconditions of one write
    max_checks_per_bulk: int = 1000
    max_page_size: int = 1000  # largest optional_limit a caller may ask for
    max_contextual_relationships: int = 1000
    # one ImportRelationships call is held in memory whole (all or nothing): ~0.5 KB each
    max_relationships_per_import: int = 1_000_000
    request_timeout: float = 30.0  # seconds; Watch is exempt
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    def check_count(self, field: str, count: int, limit: int, what: str) -> None:
        """Raise InvalidArgument when `count` exceeds `limit`."""
        if count > limit:
            raise InvalidArgument(f"{field}: {count} {what}; the limit is {limit}")

    def page_size(self, field: str, requested: int) -> int | None:
        """The page size to use for a requested `optional_limit` (0: no limit)."""
        if requested == 0:
            return None
        self.check_count(field, requested, self.max_page_size, "results requested")
        return requested
