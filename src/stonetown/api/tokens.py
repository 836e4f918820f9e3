"""The opaque values a caller passes back, both ways: ZedTokens (a revision), the
consistency choice made of them, and cursors (a position in a paged result).

A malformed one raises InvalidArgument naming the path of the field, as in
:mod:`stonetown.api.convert`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from stonetown.api.pb import core
from stonetown.core.errors import InvalidArgument
from stonetown.core.revision import decode_token, encode_token
from stonetown.engine.types import Consistency, ConsistencyMode

_last_token: tuple[int, str] = (-1, "")


def token_text(revision: int) -> str:
    """The token string for a revision (stonetown.v1 and authzed.api.v1 tokens alike)."""
    global _last_token
    last, text = _last_token
    if last != revision:  # nearly every response carries the head revision: encode it once
        text = encode_token(revision)
        _last_token = (revision, text)
    return text


def token_to_proto(revision: int) -> core.ZedToken:
    """The token message for a revision."""
    return core.ZedToken(token=token_text(revision))


def token_from_proto(message: core.ZedToken, path: str) -> int:
    """The revision inside a token message."""
    if not message.token:
        raise InvalidArgument(f"{path}.token: required")
    return decode_token(message.token, f"{path}.token")


# Immutable, so the two token-less choices are shared by every request.
_MINIMIZE_LATENCY = Consistency.minimize_latency()
_FULLY_CONSISTENT = Consistency.fully_consistent()


def consistency_from_proto(message: core.Consistency, has: bool, path: str = "consistency") -> Consistency:
    """The engine's consistency choice; unset (`has` False) means minimize_latency."""
    if not has or message.minimize_latency:  # the usual choice, without WhichOneof
        return _MINIMIZE_LATENCY
    which = message.WhichOneof("requirement")
    if which is None or which == "minimize_latency":
        return _MINIMIZE_LATENCY
    if which == "fully_consistent":
        return _FULLY_CONSISTENT
    if which == "at_least_as_fresh":
        return Consistency.at_least_as_fresh(token_from_proto(message.at_least_as_fresh, f"{path}.{which}"))
    return Consistency.at_exact_snapshot(token_from_proto(message.at_exact_snapshot, f"{path}.{which}"))


def consistency_to_proto(consistency: Consistency) -> core.Consistency:
    """The message for an engine consistency choice (used by clients)."""
    mode = consistency.mode
    if mode is ConsistencyMode.FULLY_CONSISTENT:
        return core.Consistency(fully_consistent=True)
    if mode is ConsistencyMode.MINIMIZE_LATENCY or consistency.revision is None:
        return core.Consistency(minimize_latency=True)
    token = token_to_proto(consistency.revision)
    if mode is ConsistencyMode.AT_LEAST_AS_FRESH:
        return core.Consistency(at_least_as_fresh=token)
    return core.Consistency(at_exact_snapshot=token)


# One encoder for every cursor: json.dumps with options builds a new one on each call.
_CURSOR_JSON = json.JSONEncoder(separators=(",", ":")).encode


def encode_cursor(kind: str, values: list[str]) -> str:
    """An opaque cursor: which stream it belongs to and the position after the last result."""
    return base64.urlsafe_b64encode(_CURSOR_JSON([kind, *values]).encode()).decode().rstrip("=")


def encode_cursors(kind: str, values: list[str]) -> list[str]:
    """``encode_cursor(kind, [value])`` for each of `values` (a lookup's cursor per result),
    the JSON written directly for values it would not escape: a third of the cost."""
    head = _CURSOR_JSON([kind, ""])[:-2]  # '["kind","' : the value and its '"]' follow
    to_text, urlsafe = binascii.b2a_base64, _URLSAFE
    return [
        to_text(f'{head}{value}"]'.encode(), newline=False).translate(urlsafe).decode().rstrip("=")
        if _PLAIN_JSON(value)
        else encode_cursor(kind, [value])
        for value in values
    ]


_URLSAFE = bytes.maketrans(b"+/", b"-_")
# what JSON writes as it is: printable ASCII but the quote and the backslash
_PLAIN_JSON = re.compile(r'[ !#-\[\]-~]*').fullmatch


def decode_cursor(token: str, kind: str, length: int, path: str) -> list[str]:
    """The position inside a cursor made by :func:`encode_cursor` for the same `kind`."""
    padded = token + "=" * (-len(token) % 4)
    try:
        loaded = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        loaded = None
    if (
        not isinstance(loaded, list)
        or len(loaded) != length + 1
        or loaded[0] != kind
        or not all(isinstance(item, str) for item in loaded)
    ):
        raise InvalidArgument(f"{path}: not a cursor of this call")
    return loaded[1:]


def cursor_from_proto(message: core.Cursor, has: bool, kind: str, length: int, path: str) -> list[str] | None:
    """Decode an optional cursor field; None when unset or empty."""
    if not has or not message.token:
        return None
    return decode_cursor(message.token, kind, length, f"{path}.token")
