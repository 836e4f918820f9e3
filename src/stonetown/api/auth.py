"""Preshared-key authentication: `authorization: bearer KEY` metadata on every call."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

# Services a caller may use without the key (load balancers and orchestrators probe them).
OPEN_SERVICE_PREFIXES: tuple[str, ...] = ("/grpc.health.v1.Health/",)


def requires_key(method: str) -> bool:
    """Whether calls to the full method name `method` need the preshared key."""
    return not method.startswith(OPEN_SERVICE_PREFIXES)


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of the first `authorization: bearer ...` entry, if any."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() == "bearer":
            return token.strip()
        return None
    return None


def is_authorized(metadata: Iterable[tuple[str, str | bytes]] | None, key: str) -> bool:
    """Whether the metadata carries `key`, compared in constant time."""
    token = bearer_token(metadata)
    if token is None:
        return False
    return hmac.compare_digest(token.encode(), key.encode())
