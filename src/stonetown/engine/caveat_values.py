"""Caveat parameter values: SpiceDB's parameter types, the conversion of JSON-like context
values to CEL values of those types, and the bounds on contexts.

Parameter types follow SpiceDB: int, uint, double, bool, string, bytes (base64 text),
duration (Go syntax, "1h30m"), timestamp (RFC 3339), list<T>, map<T> (string keys),
ipaddress (with the member function `in_cidr(string)`) and any. A relationship stores at most
:data:`MAX_CONTEXT_BYTES` of context and a request sends at most
:data:`MAX_REQUEST_CONTEXT_BYTES`, as in SpiceDB.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import celpy.celtypes as ct

from stonetown.core.errors import InvalidArgument
from stonetown.schema import ir

MAX_CONTEXT_BYTES = 4096
"""The largest context (serialized as compact JSON) a relationship may store, as in SpiceDB."""

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UINT64_MAX = 2**64 - 1
_BASIC_TYPES = frozenset(
    {"int", "uint", "double", "bool", "string", "bytes", "duration", "timestamp", "ipaddress", "any"}
)
_GENERIC_TYPES = frozenset({"list", "map"})


# ---- parameter types --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaveatType:
    """A parameter type: a basic kind, or `list` / `map` with an element type."""

    kind: str
    element: CaveatType | None = None

    def __str__(self) -> str:
        return f"{self.kind}<{self.element}>" if self.element is not None else self.kind


@lru_cache(maxsize=256)
def parse_type(text: str) -> CaveatType:
    """The CaveatType written as `text` (`int`, `list<string>`, `map<list<int>>`, ...);
    ValueError for an unknown type."""
    compact = text.replace(" ", "")
    match = re.fullmatch(r"([a-z]+)(?:<(.+)>)?", compact)
    if match is None:
        raise ValueError(f"unknown caveat parameter type `{text}`")
    kind, inner = match.group(1), match.group(2)
    if inner is None:
        if kind not in _BASIC_TYPES:
            raise ValueError(f"unknown caveat parameter type `{text}`")
        return CaveatType(kind)
    if kind not in _GENERIC_TYPES:
        raise ValueError(f"unknown caveat parameter type `{text}`")
    return CaveatType(kind, parse_type(inner))


class IPAddressValue:
    """A CEL value of SpiceDB's `ipaddress` type (wraps Python's ipaddress objects)."""

    __slots__ = ("address",)

    def __init__(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        self.address = address

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IPAddressValue) and self.address == other.address

    def __hash__(self) -> int:
        return hash(self.address)

    def __repr__(self) -> str:
        return f"IPAddressValue({str(self.address)!r})"


def in_cidr(address: Any, cidr: Any) -> ct.BoolType:
    """CEL member function `ipaddress.in_cidr(string)`: is the address inside the network?
    Raises (a CEL error) for a non-address receiver or an invalid CIDR string."""
    if not isinstance(address, IPAddressValue):
        raise TypeError(f"in_cidr needs an ipaddress receiver, found {type(address).__name__}")
    if not isinstance(cidr, str):
        raise TypeError(f"in_cidr needs a CIDR string, found {type(cidr).__name__}")
    try:
        network = ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        raise ValueError(f"invalid CIDR string: `{cidr}`") from None
    # An IPv4 address is never inside an IPv6 network and vice versa (`in` says False).
    return ct.BoolType(address.address in network)


_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)")
_DURATION_NANOS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def parse_duration(text: str) -> timedelta:
    """A duration in Go's `time.ParseDuration` syntax ("1h30m", "-1.5h", "300ms", "0")."""
    body = text
    negative = False
    if body[:1] in "+-" and body:
        negative = body[0] == "-"
        body = body[1:]
    if body == "0":
        return timedelta(0)
    if not body:
        raise ValueError(f"invalid duration `{text}`")
    nanos = Decimal(0)
    position = 0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if match is None or (not match.group(1) and not match.group(2)):
            raise ValueError(f"invalid duration `{text}`")
        number = Decimal(f"{match.group(1) or '0'}.{match.group(2) or '0'}")
        nanos += number * _DURATION_NANOS[match.group(3)]
        position = match.end()
    total = int(nanos)
    if total > _INT64_MAX:
        raise ValueError(f"invalid duration `{text}`: out of range")
    micros = total // 1000  # Python keeps microseconds; finer digits are truncated toward zero
    return timedelta(microseconds=-micros if negative else micros)


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", re.IGNORECASE)


def parse_timestamp(text: str) -> datetime:
    """A timezone-aware datetime from an RFC 3339 timestamp ("2024-01-01T00:00:00Z")."""
    if not _RFC3339.fullmatch(text):
        raise ValueError(f"could not parse RFC 3339 formatted timestamp string `{text}`")
    normalized = text.upper()
    fraction = re.search(r"\.(\d+)", normalized)
    if fraction is not None and len(fraction.group(1)) > 6:
        # Python keeps microseconds; nanosecond digits are truncated.
        normalized = normalized.replace(fraction.group(0), "." + fraction.group(1)[:6], 1)
    return datetime.fromisoformat(normalized)


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(value: Any, kind: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"a {kind} value is required, but found {_describe(value)}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a {kind} value is required, but found {_describe(value)}")
        return Decimal(value)
    if isinstance(value, str):
        try:
            parsed = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"a {kind} value is required, but found {_describe(value)}") from None
        if not parsed.is_finite():
            raise ValueError(f"a {kind} value is required, but found {_describe(value)}")
        return parsed
    raise ValueError(f"a {kind} value is required, but found {_describe(value)}")


def _json_to_cel(value: Any) -> Any:
    """An untyped (`any`) JSON value as CEL."""
    if value is None:
        return None
    if isinstance(value, bool):
        return ct.BoolType(value)
    if isinstance(value, int):
        return ct.IntType(value)
    if isinstance(value, float):
        return ct.DoubleType(value)
    if isinstance(value, str):
        return ct.StringType(value)
    if isinstance(value, list):
        return ct.ListType([_json_to_cel(item) for item in value])
    if isinstance(value, dict):
        return ct.MapType({ct.StringType(str(k)): _json_to_cel(v) for k, v in value.items()})
    raise ValueError(f"unsupported value {_describe(value)}")


def convert_value(value: Any, ctype: CaveatType) -> Any:
    """`value` (JSON-like) as a CEL value of type `ctype`; ValueError saying what is wrong."""
    kind = ctype.kind
    if kind == "any":
        return _json_to_cel(value)
    if kind == "int" or kind == "uint":
        number = _number(value, kind)
        if number != number.to_integral_value():
            raise ValueError(f"a {kind} value is required, but found numeric value {_describe(value)}")
        integer = int(number)
        low, high = (0, _UINT64_MAX) if kind == "uint" else (_INT64_MIN, _INT64_MAX)
        if not low <= integer <= high:
            raise ValueError(f"a {kind} value is required, but {integer} is out of range")
        # SpiceDB declares `uint` parameters as CEL ints, so they compare with int literals.
        return ct.IntType(integer)
    if kind == "double":
        number = float(_number(value, kind))
        if not math.isfinite(number):
            raise ValueError(f"a double value is required, but {_describe(value)} is out of range")
        return ct.DoubleType(number)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"a bool value is required, but found {_describe(value)}")
        return ct.BoolType(value)
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError(f"a string value is required, but found {_describe(value)}")
        return ct.StringType(value)
    if kind == "bytes":
        if not isinstance(value, str):
            raise ValueError(f"bytes requires a base64 string, but found {_describe(value)}")
        try:
            return ct.BytesType(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise ValueError(f"bytes requires a base64 encoded string, found {_describe(value)}") from None
    if kind == "duration":
        if not isinstance(value, str):
            raise ValueError(f"a duration string is required, but found {_describe(value)}")
        try:
            return ct.DurationType(parse_duration(value))
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"could not parse duration string {_describe(value)}: {exc}") from None
    if kind == "timestamp":
        if not isinstance(value, str):
            raise ValueError(f"an RFC 3339 timestamp string is required, but found {_describe(value)}")
        return ct.TimestampType(parse_timestamp(value))
    if kind == "ipaddress":
        if not isinstance(value, str):
            raise ValueError(f"an ipaddress string is required, but found {_describe(value)}")
        try:
            return IPAddressValue(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(f"could not parse ip address string {_describe(value)}") from None
    element = ctype.element
    assert element is not None
    if kind == "list":
        if not isinstance(value, list):
            raise ValueError(f"a list is required, but found {_describe(value)}")
        items = []
        for position, item in enumerate(value):
            try:
                items.append(convert_value(item, element))
            except ValueError as exc:
                raise ValueError(f"item {position}: {exc}") from None
        return ct.ListType(items)
    if kind == "map":
        if not isinstance(value, dict):
            raise ValueError(f"a map is required, but found {_describe(value)}")
        entries = {}
        for key, item in value.items():
            try:
                entries[ct.StringType(str(key))] = convert_value(item, element)
            except ValueError as exc:
                raise ValueError(f"key `{key}`: {exc}") from None
        return ct.MapType(entries)
    raise ValueError(f"unknown caveat parameter type `{ctype}`")


def context_error(caveat: ir.Caveat, context: Mapping[str, Any]) -> str | None:
    """Why `context` cannot be stored with a relationship using `caveat` (a key that is not a
    parameter, a value of the wrong type, too large), or None when it can."""
    if not context:
        return None
    try:
        size = len(json.dumps(context, separators=(",", ":"), ensure_ascii=False).encode())
    except (TypeError, ValueError) as exc:
        return f"context of caveat `{caveat.name}` is not JSON: {exc}"
    if size > MAX_CONTEXT_BYTES:
        return (
            f"context of caveat `{caveat.name}` is {size} bytes, more than the maximum of {MAX_CONTEXT_BYTES}"
        )
    types = {p.name: p.type for p in caveat.parameters}
    for name, value in context.items():
        if name not in types:
            return f"`{name}` is not a parameter of caveat `{caveat.name}`"
        try:
            convert_value(value, parse_type(types[name]))
        except ValueError as exc:
            return f"parameter `{name}` of caveat `{caveat.name}` ({types[name]}): {exc}"
    return None


MAX_REQUEST_CONTEXT_BYTES = 4096
"""The largest caveat context a request may send (compact JSON), SpiceDB's default
`--max-caveat-context-size`."""

def require_request_context(context: Mapping[str, Any] | None, field: str = "context") -> None:
    """Raise InvalidArgument when a request's caveat context is larger than allowed."""
    if not context or _obviously_small(context):
        return
    try:
        size = len(json.dumps(context, separators=(",", ":"), ensure_ascii=False).encode())
    except (TypeError, ValueError):
        raise InvalidArgument(f"{field}: the caveat context is not JSON") from None
    if size > MAX_REQUEST_CONTEXT_BYTES:
        raise InvalidArgument(
            f"{field}: request caveat context should have less than {MAX_REQUEST_CONTEXT_BYTES} bytes "
            f"but had {size}"
        )


def _obviously_small(context: Mapping[str, Any]) -> bool:
    """Whether `context` is certainly under the limit without serializing it (the usual few
    scalar parameters): at most 8 entries, numbers, and at most 600 characters of keys and
    strings (JSON escapes a character in at most 6 bytes: 3,600 + 8 * 32 < 4,096)."""
    if len(context) > 8:
        return False
    characters = 0
    for key, value in context.items():
        characters += len(key)
        kind = type(value)
        if kind is str:
            characters += len(value)
        elif kind is int:
            if not -(10**18) < value < 10**18:
                return False
        elif kind is not bool and kind is not float and value is not None:
            return False
    return characters <= 600
