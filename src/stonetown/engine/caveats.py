"""Caveat evaluation: the CEL expressions of a schema's caveats, run against request context.

Every caveat is compiled once per schema with cel-python (`celpy`) and cached on the
evaluator the schema state owns. A condition tree (see conditions.py) is evaluated with
three-valued logic: each leaf merges the request context with the context stored on the
relationship (stored values win, as in SpiceDB), converts the values to the caveat's declared
parameter types and runs the expression. A leaf whose outcome depends on a parameter absent
from the merged context is *unknown*, carrying the missing names; CEL's commutative `&&` and
`||` absorb such a gap when the other side decides (`false && x` is false without `x`).

Parameter types follow SpiceDB: int, uint, double, bool, string, bytes (base64 text),
duration (Go syntax, "1h30m"), timestamp (RFC 3339), list<T>, map<T> (string keys),
ipaddress (with the member function `in_cidr(string)`) and any.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import celpy
import celpy.celtypes as ct
from celpy.celparser import CELParseError

from stonetown.core.errors import InvalidArgument
from stonetown.engine.cel_unknowns import missing_parameters
from stonetown.engine.conditions import CaveatAnd, CaveatLeaf, CaveatNot, CaveatOr, Condition
from stonetown.engine.types import Permissionship
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


# ---- compilation ------------------------------------------------------------------------

_environment: celpy.Environment | None = None


def _cel_environment() -> celpy.Environment:
    global _environment
    if _environment is None:
        limit = sys.getrecursionlimit()
        _environment = celpy.Environment()
        # celpy's Environment sets the recursion limit to 2500; never lower what was there.
        sys.setrecursionlimit(max(limit, sys.getrecursionlimit()))
    return _environment


_FUNCTIONS = {"in_cidr": in_cidr}
_OUTCOME_CACHE = 4096


Outcome = bool | frozenset[str]
"""True, False, or (unknown) the non-empty set of parameter names it is missing."""


class CompiledCaveat:
    """One caveat compiled to a CEL program, with its parameter types."""

    __slots__ = ("name", "types", "program", "referenced", "compile_error", "_outcomes")

    def __init__(self, caveat: ir.Caveat) -> None:
        self.name = caveat.name
        self.types: dict[str, CaveatType] = {}
        self.program: Any = None
        self.referenced: frozenset[str] = frozenset()
        self.compile_error: str | None = None
        # Outcomes by the JSON of the parameter values: the expression is a pure function of
        # them, and lookups meet the same stored context and request context many times.
        self._outcomes: dict[str, Outcome] = {}
        try:
            for parameter in caveat.parameters:
                self.types[parameter.name] = parse_type(parameter.type)
            environment = _cel_environment()
            tree = environment.compile(caveat.expression)
            self.program = environment.program(tree, functions=_FUNCTIONS)
        except (ValueError, CELParseError) as exc:
            self.compile_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return
        identifiers = {
            str(node.children[0]) for node in tree.iter_subtrees() if node.data == "ident" and node.children
        }
        self.referenced = frozenset(identifiers & self.types.keys())

    def evaluate(self, context: Mapping[str, Any]) -> Outcome:
        """Run the expression over `context` (request and stored values already merged)."""
        if self.compile_error is not None:
            raise InvalidArgument(f"caveat `{self.name}` cannot be evaluated: {self.compile_error}")
        try:
            key = json.dumps([[n, context[n]] for n in self.types if n in context], allow_nan=False)
        except (TypeError, ValueError):
            return self._evaluate(context)
        known = self._outcomes.get(key)
        if known is None:
            known = self._evaluate(context)
            if len(self._outcomes) >= _OUTCOME_CACHE:
                self._outcomes.clear()
            self._outcomes[key] = known
        return known

    def _evaluate(self, context: Mapping[str, Any]) -> Outcome:
        activation: dict[str, Any] = {}
        missing: set[str] = set()
        for name, ctype in self.types.items():
            if name not in context:
                missing.add(name)
                continue
            try:
                activation[name] = convert_value(context[name], ctype)
            except ValueError as exc:
                raise InvalidArgument(
                    f"caveat `{self.name}`: context parameter `{name}` ({ctype}): {exc}"
                ) from None
        try:
            value = self.program.evaluate(activation)
        except Exception as exc:  # noqa: BLE001 - CEL errors surface as several exception types
            gaps = missing & self.referenced
            if gaps:
                return missing_parameters(self.program, activation, frozenset(gaps))
            raise InvalidArgument(f"caveat `{self.name}` failed to evaluate: {_cel_message(exc)}") from None
        if isinstance(value, ct.BoolType | bool):
            return bool(value)
        raise InvalidArgument(f"caveat `{self.name}` evaluated to {type(value).__name__}, not a boolean")


def _cel_message(exc: Exception) -> str:
    args = getattr(exc, "args", ())
    text = str(args[0]) if args else str(exc)
    return text if len(text) <= 200 else text[:197] + "..."


# ---- condition trees --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaveatVerdict:
    """The outcome of a condition for a request: ALLOWED, DENIED or CONDITIONAL with the
    parameters that were missing (sorted)."""

    permissionship: Permissionship
    missing_parameters: tuple[str, ...] = ()


class CaveatEvaluator:
    """The caveats of one schema, compiled on first use and kept for the schema's lifetime."""

    def __init__(self, schema: ir.Schema) -> None:
        self.schema = schema
        self._compiled: dict[str, CompiledCaveat] = {}

    def compiled(self, name: str) -> CompiledCaveat:
        """The compiled caveat `name` (InvalidArgument if the schema has no such caveat)."""
        found = self._compiled.get(name)
        if found is None:
            caveat = self.schema.caveats.get(name)
            if caveat is None:
                raise InvalidArgument(f"caveat `{name}` not found in the schema")
            found = CompiledCaveat(caveat)
            self._compiled[name] = found
        return found

    def outcome(self, condition: Condition, context: Mapping[str, Any] | None) -> Outcome:
        """Three-valued value of `condition` under the request `context`."""
        return _Evaluation(self, context or {}).value(condition)

    def verdict(self, condition: Condition, context: Mapping[str, Any] | None) -> CaveatVerdict:
        """ALLOWED, DENIED or CONDITIONAL (with the sorted missing parameter names)."""
        result = self.outcome(condition, context)
        if result is True:
            return CaveatVerdict(Permissionship.ALLOWED)
        if result is False:
            return CaveatVerdict(Permissionship.DENIED)
        return CaveatVerdict(Permissionship.CONDITIONAL, tuple(sorted(result)))


class _Evaluation:
    """One evaluation of a tree: leaves met twice (the same relationship reached by two
    paths) are evaluated once."""

    __slots__ = ("evaluator", "context", "seen")

    def __init__(self, evaluator: CaveatEvaluator, context: Mapping[str, Any]) -> None:
        self.evaluator = evaluator
        self.context = context
        self.seen: dict[int, tuple[CaveatLeaf, Outcome]] = {}

    def value(self, node: Condition) -> Outcome:
        if isinstance(node, CaveatLeaf):
            return self.leaf(node)
        if isinstance(node, CaveatNot):
            inner = self.value(node.child)
            return inner if isinstance(inner, frozenset) else not inner
        if isinstance(node, CaveatOr):
            gaps: set[str] = set()
            for child in node.children:
                found = self.value(child)
                if found is True:
                    return True
                if isinstance(found, frozenset):
                    gaps |= found
            return frozenset(gaps) if gaps else False
        if isinstance(node, CaveatAnd):
            gaps = set()
            for child in node.children:
                found = self.value(child)
                if found is False:
                    return False
                if isinstance(found, frozenset):
                    gaps |= found
            return frozenset(gaps) if gaps else True
        raise TypeError(f"not a caveat condition: {node!r}")

    def leaf(self, leaf: CaveatLeaf) -> Outcome:
        known = self.seen.get(id(leaf))
        if known is not None and known[0] is leaf:
            return known[1]
        if leaf.context:
            merged: Mapping[str, Any] = {**self.context, **dict(leaf.context)}
        else:
            merged = self.context
        result = self.evaluator.compiled(leaf.name).evaluate(merged)
        self.seen[id(leaf)] = (leaf, result)
        return result
