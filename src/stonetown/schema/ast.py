"""The syntax tree of a schema file. Every node keeps the line and column where it starts.

The parser builds it; the compiler turns it into :mod:`stonetown.schema.ir`. Chains of the
same operator are kept as one :class:`OperatorExpr` with all operands, so a long `a + b + ...`
never makes a deep tree; `a - b - c` is one node meaning `(a - b) - c`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from stonetown.schema.ir import Position


@dataclass(frozen=True, slots=True)
class Name:
    """An identifier or `/`-separated type path, with its position."""

    value: str
    line: int
    column: int

    @property
    def pos(self) -> Position:
        """The position as an IR :class:`Position`."""
        return Position(self.line, self.column)


# ---- expressions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IdentifierExpr:
    """A relation or permission of the same object: `viewer`."""

    name: Name
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class NilExpr:
    """`nil`."""

    line: int
    column: int


@dataclass(frozen=True, slots=True)
class ArrowExpr:
    """`left->right`, `left.any(right)` or `left.all(right)`; ``function`` is None for `->`."""

    left: Name
    right: Name
    function: Literal["any", "all"] | None
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class OperatorExpr:
    """Operands joined by one operator: `+` union, `&` intersection, `-` exclusion."""

    operator: Literal["+", "&", "-"]
    operands: tuple[Expr, ...]
    line: int
    column: int


Expr = IdentifierExpr | NilExpr | ArrowExpr | OperatorExpr


# ---- declarations --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TypeRef:
    """One allowed subject type: `user`, `user:*`, `group#member`, `user with cav and expiration`."""

    type_name: Name
    relation: Name | None
    wildcard: bool
    caveat: Name | None
    expiration: Name | None
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class RelationDecl:
    """`relation name: type | type ...`."""

    name: Name
    types: tuple[TypeRef, ...]
    doc: str | None
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class PermissionDecl:
    """`permission name = expression`."""

    name: Name
    expression: Expr
    doc: str | None
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class DefinitionDecl:
    """`definition name { relations and permissions }`."""

    name: Name
    members: tuple[RelationDecl | PermissionDecl, ...]
    doc: str | None
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class CaveatType:
    """A caveat parameter type: `int`, `list<string>`, `map<list<int>>`."""

    name: Name
    arguments: tuple[CaveatType, ...] = ()

    def __str__(self) -> str:
        if self.arguments:
            return f"{self.name.value}<{', '.join(str(a) for a in self.arguments)}>"
        return self.name.value


@dataclass(frozen=True, slots=True)
class CaveatParam:
    """`name type` in a caveat's parameter list."""

    name: Name
    type: CaveatType
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class CaveatDecl:
    """`caveat name(params) { expression }`; the expression is raw CEL text."""

    name: Name
    parameters: tuple[CaveatParam, ...]
    expression: str
    expression_line: int
    expression_column: int
    doc: str | None
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class UseDecl:
    """`use expiration`."""

    flag: Name
    line: int
    column: int


TopLevel = DefinitionDecl | CaveatDecl | UseDecl


@dataclass(frozen=True, slots=True)
class SchemaFile:
    """A whole parsed schema file, top-level items in source order."""

    items: tuple[TopLevel, ...] = field(default=())
