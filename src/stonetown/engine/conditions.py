"""Three-valued results of permission evaluation: True, False, or a caveat expression.

A relationship with a caveat grants only if its caveat holds. The engine carries such
grants as small expression trees (leaf = one caveat with its stored context) combined with
and / or / not as the rewrite is evaluated, and evaluates the tree at the end against the
request's context. Plain booleans stay plain, so the common uncaveated path pays nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CaveatLeaf:
    """One caveat of one relationship: its name and the context stored with it."""

    name: str
    context: tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class CaveatAnd:
    """All children must hold."""

    children: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class CaveatOr:
    """At least one child must hold."""

    children: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class CaveatNot:
    """The child must not hold."""

    child: Condition


class Unknown:
    """The value of a sub-problem cut short because it is already being evaluated further up
    (a cycle in the data: group A in B in A). In unions and intersections it acts as False,
    which is exact there; it stays UNKNOWN through negation, so an exclusion whose subtracted
    side ran into a cycle never grants. That is OpenFGA's rule, and it is the safe one: a
    permission that excludes itself through the data has no consistent answer."""

    _instance: Unknown | None = None

    def __new__(cls) -> Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = Unknown()

Condition = CaveatLeaf | CaveatAnd | CaveatOr | CaveatNot
Result = bool | Unknown | Condition


def granted(value: Result) -> bool:
    """True for a grant or a caveat-dependent grant; False for False and UNKNOWN."""
    return value is True or not (value is False or value is UNKNOWN)


def any_of(left: Result, right: Result) -> Result:
    """Union of two results."""
    if left is True or right is True:
        return True
    if left is False or left is UNKNOWN:
        if right is False:
            return left
        return right
    if right is False or right is UNKNOWN:
        return left
    return CaveatOr((left, right))  # type: ignore[arg-type]


def all_of(left: Result, right: Result) -> Result:
    """Intersection of two results."""
    if left is False or right is False:
        return False
    if left is UNKNOWN or right is UNKNOWN:
        return UNKNOWN
    if left is True:
        return right
    if right is True:
        return left
    return CaveatAnd((left, right))  # type: ignore[arg-type]


def negate(value: Result) -> Result:
    """Complement of a result (UNKNOWN stays UNKNOWN)."""
    if value is True:
        return False
    if value is False:
        return True
    if value is UNKNOWN:
        return UNKNOWN
    return CaveatNot(value)  # type: ignore[arg-type]


def leaf_names(value: Result) -> set[str]:
    """The caveat names a result depends on."""
    if isinstance(value, bool | Unknown):
        return set()
    if isinstance(value, CaveatLeaf):
        return {value.name}
    if isinstance(value, CaveatNot):
        return leaf_names(value.child)
    names: set[str] = set()
    for child in value.children:
        names |= leaf_names(child)
    return names
