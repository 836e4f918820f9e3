"""Python clients for a Stonetown server: blocking `Client` and asyncio `AsyncClient`."""

from stonetown.client.aio import AsyncClient
from stonetown.client.errors import RpcError
from stonetown.client.notation import parse_filter
from stonetown.client.results import (
    CheckOutcome,
    DeleteOutcome,
    ExpandOutcome,
    FoundResource,
    FoundSubject,
    ReadConsistency,
    ReadPage,
    SchemaOutcome,
    WatchEvent,
)
from stonetown.client.sync import Client

__all__ = [
    "AsyncClient",
    "CheckOutcome",
    "Client",
    "DeleteOutcome",
    "ExpandOutcome",
    "FoundResource",
    "FoundSubject",
    "ReadConsistency",
    "ReadPage",
    "RpcError",
    "SchemaOutcome",
    "WatchEvent",
    "parse_filter",
]
