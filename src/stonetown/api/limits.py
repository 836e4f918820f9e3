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


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Bounds on every connection, whoever opened it and whether or not it sent the key: a
    connection that never completes its handshake, sits idle, or stalls without answering
    the server's pings (a half-sent request) is closed after a bounded time."""

    handshake_timeout: float = 10.0  # seconds to finish TLS and the HTTP/2 preface + SETTINGS
    idle_timeout: float = 300.0  # seconds without a call in flight, then GOAWAY
    keepalive_interval: float = 30.0  # seconds between the server's pings to a quiet peer ...
    keepalive_timeout: float = 10.0  # ... which must answer within this many, or is closed
    max_streams: int = 1000  # calls at once on one connection (HTTP/2 MAX_CONCURRENT_STREAMS)
    max_health_watches: int = 100  # open health Watch streams, apart from --max-concurrent-rpcs

    def grpc_options(self) -> list[tuple[str, int]]:
        """The grpc server options that enforce these bounds."""
        return [
            ("grpc.server_handshake_timeout_ms", _ms(self.handshake_timeout)),
            ("grpc.max_connection_idle_ms", _ms(self.idle_timeout)),
            ("grpc.keepalive_time_ms", _ms(self.keepalive_interval)),
            ("grpc.keepalive_timeout_ms", _ms(self.keepalive_timeout)),
            # any ping (keepalive, or grpc's flow-control probe on received data) left
            # unanswered this long closes the connection; grpc's default is a minute
            ("grpc.http2.ping_timeout_ms", _ms(self.keepalive_timeout)),
            ("grpc.max_concurrent_streams", self.max_streams),
        ]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
