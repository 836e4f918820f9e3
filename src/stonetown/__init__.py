"""Stonetown: a Zanzibar-style, relationship-based authorization server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from stonetown.client import AsyncClient, Client

__all__ = ["AsyncClient", "Client", "__version__"]


def __getattr__(name: str) -> Any:
    # The clients pull in grpc; import them only when asked for (the CLI's `schema fmt` and
    # the engine do not need it).
    if name in ("Client", "AsyncClient"):
        from stonetown import client

        return getattr(client, name)
    raise AttributeError(f"module 'stonetown' has no attribute {name!r}")
