"""Syntax tree of an OpenFGA model (DSL or JSON), with a source span on every node.

This is the form validation works on; :mod:`.to_ir` turns a valid tree into the schema IR.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of source text: 1-based line and column, ``end_column`` exclusive.

    All zeros means "no place in the text" (models given as JSON). ``file`` names the module
    file the text belongs to in a modular model (empty otherwise).
    """

    line: int = 0
    column: int = 0
    end_line: int = 0
    end_column: int = 0
    file: str = ""


NO_SPAN = Span()


@dataclass(frozen=True, slots=True)
class TypeRestriction:
    """One entry of a direct assignment: `user`, `user:*`, `group#member`, `user with cond`."""

    type: str
    relation: str | None = None
    wildcard: bool = False
    condition: str | None = None
    span: Span = field(default=NO_SPAN, compare=False)
    type_span: Span = field(default=NO_SPAN, compare=False)
    base_span: Span = field(default=NO_SPAN, compare=False)
    condition_span: Span = field(default=NO_SPAN, compare=False)

    def key(self) -> str:
        """The restriction as OpenFGA prints it, e.g. ``group#member with cond``."""
        text = self.type
        if self.wildcard:
            text += ":*"
        elif self.relation is not None:
            text += f"#{self.relation}"
        if self.condition is not None:
            text += f" with {self.condition}"
        return text


@dataclass(frozen=True, slots=True)
class Direct:
    """`[user, group#member, ...]`: the relationships stored under the relation itself."""

    restrictions: tuple[TypeRestriction, ...]
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class Computed:
    """`editor`: another relation of the same object."""

    relation: str
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class FromTupleset:
    """`viewer from parent`: ``computed`` on every object reached through ``tupleset``."""

    computed: str
    tupleset: str
    span: Span = field(default=NO_SPAN, compare=False)
    computed_span: Span = field(default=NO_SPAN, compare=False)
    tupleset_span: Span = field(default=NO_SPAN, compare=False)

    def label(self) -> str:
        """The rewrite as written: ``viewer from parent``."""
        return f"{self.computed} from {self.tupleset}"


OperatorKind = Literal["union", "intersection", "difference"]


@dataclass(frozen=True, slots=True)
class Operation:
    """`a or b ...`, `a and b ...` or `a but not b` (difference always has two children)."""

    kind: OperatorKind
    children: tuple[Expr, ...]
    span: Span = field(default=NO_SPAN, compare=False)


Expr = Direct | Computed | FromTupleset | Operation


@dataclass(frozen=True, slots=True)
class RelationDef:
    """`define name: expr` inside a type's `relations` block."""

    name: str
    expr: Expr
    name_span: Span = field(default=NO_SPAN, compare=False)
    module: str | None = field(default=None, compare=False)

    def direct(self) -> Direct | None:
        """The direct assignment of this relation wherever it sits in the expression, or None."""
        return find_direct(self.expr)

    def restrictions(self) -> tuple[TypeRestriction, ...]:
        """The type restrictions of the direct assignment (empty when there is none)."""
        direct = self.direct()
        return direct.restrictions if direct is not None else ()


@dataclass(frozen=True, slots=True)
class TypeDef:
    """`type name` (or `extend type name` in a module) with its relations in source order."""

    name: str
    relations: tuple[RelationDef, ...]
    extend: bool = False
    name_span: Span = field(default=NO_SPAN, compare=False)
    module: str | None = None


@dataclass(frozen=True, slots=True)
class ConditionParam:
    """`name: type` in a condition's parameter list; ``type`` is OpenFGA's spelling."""

    name: str
    type: str
    name_span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class ConditionDef:
    """`condition name(params) { expression }`; the CEL expression is kept as trimmed text."""

    name: str
    params: tuple[ConditionParam, ...]
    expression: str
    name_span: Span = field(default=NO_SPAN, compare=False)
    span: Span = field(default=NO_SPAN, compare=False)
    expression_span: Span = field(default=NO_SPAN, compare=False)
    module: str | None = None


@dataclass(frozen=True, slots=True)
class Model:
    """A parsed model file: `model` + schema version, or a `module` file of a modular model."""

    schema_version: str | None
    types: tuple[TypeDef, ...]
    conditions: tuple[ConditionDef, ...]
    module: str | None = None
    version_span: Span = field(default=NO_SPAN, compare=False)


def find_direct(expr: Expr) -> Direct | None:
    """The first direct assignment inside ``expr`` (OpenFGA allows at most one per relation)."""
    if isinstance(expr, Direct):
        return expr
    if isinstance(expr, Operation):
        for child in expr.children:
            found = find_direct(child)
            if found is not None:
                return found
    return None


def count_direct(expr: Expr) -> int:
    """How many direct assignments ``expr`` holds."""
    if isinstance(expr, Direct):
        return 1
    if isinstance(expr, Operation):
        return sum(count_direct(child) for child in expr.children)
    return 0
