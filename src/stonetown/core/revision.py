"""Revisions and the opaque tokens (ZedTokens) that carry them to clients."""

from __future__ import annotations

import base64
import binascii

from stonetown.core.errors import InvalidArgument

_PREFIX = "st1."


def encode_token(revision: int) -> str:
    """The opaque token a client gets back for `revision`."""
    raw = f"{_PREFIX}{revision}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, field: str = "token") -> int:
    """The revision inside a token; raise InvalidArgument naming `field` if it is not ours."""
    padded = token + "=" * (-len(token) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument(f"{field}: {token!r} is not a Stonetown revision token") from None
    if not raw.startswith(_PREFIX) or not raw[len(_PREFIX) :].isdigit():
        raise InvalidArgument(f"{field}: {token!r} is not a Stonetown revision token")
    return int(raw[len(_PREFIX) :])
