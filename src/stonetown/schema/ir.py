"""The compiled schema: Zanzibar userset rewrites, the form the engine evaluates.

The compiler turns the parsed AST into these immutable objects. Every node keeps the
source position it came from so later stages (type checker, warnings, Expand) can point
back at the schema text.

A *relation* stores relationships directly; its rewrite is always :class:`This` with the
subject types it admits. A *permission* is computed; its rewrite is an expression of
:class:`ComputedUserset`, :class:`TupleToUserset`, :class:`Union`, :class:`Intersection`,
:class:`Exclusion` and :class:`Nil`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Position:
    """A 1-based line and column in schema text."""

    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


NOWHERE = Position(0, 0)


@dataclass(frozen=True, slots=True)
class AllowedSubject:
    """One subject type a relation admits: `user`, `user:*`, `group#member`, `user with cav`.

    ``relation`` is None for a plain object subject (`user`), the relation name for a subject
    set (`group#member`). ``wildcard`` marks `user:*`. ``caveat`` names a caveat that must be
    attached (`with caveat`), ``expiration`` marks `with expiration`. A subject type may allow
    both the plain and the caveated form; each is its own AllowedSubject.
    """

    type: str
    relation: str | None = None
    wildcard: bool = False
    caveat: str | None = None
    expiration: bool = False
    pos: Position = field(default=NOWHERE, compare=False)

    def __str__(self) -> str:
        text = self.type
        if self.wildcard:
            text += ":*"
        elif self.relation is not None:
            text += f"#{self.relation}"
        traits = []
        if self.caveat:
            traits.append(self.caveat)
        if self.expiration:
            traits.append("expiration")
        if traits:
            text += " with " + " and ".join(traits)
        return text


# ---- rewrite nodes -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class This:
    """The relationships stored directly under a relation (Zanzibar's `_this`)."""

    allowed: tuple[AllowedSubject, ...]
    pos: Position = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class ComputedUserset:
    """Another relation or permission of the same object: `viewer` in `permission v = viewer`."""

    relation: str
    pos: Position = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class TupleToUserset:
    """An arrow: follow `tupleset` to its subjects, then evaluate `computed` on each of them.

    ``mode`` is ``"any"`` for `parent->view` and `parent.any(view)`, ``"all"`` for
    `parent.all(view)` (every subject of the tupleset must grant the permission).
    """

    tupleset: str
    computed: str
    mode: Literal["any", "all"] = "any"
    pos: Position = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class Union:
    """`a + b + ...`: any child grants."""

    children: tuple[Rewrite, ...]
    pos: Position = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class Intersection:
    """`a & b & ...`: every child must grant."""

    children: tuple[Rewrite, ...]
    pos: Position = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class Exclusion:
    """`base - subtract`: granted by base and not by subtract."""

    base: Rewrite
    subtract: Rewrite
    pos: Position = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class Nil:
    """`nil`: grants nothing."""

    pos: Position = field(default=NOWHERE, compare=False)


Rewrite = This | ComputedUserset | TupleToUserset | Union | Intersection | Exclusion | Nil


# ---- definitions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Relation:
    """A relation (stored) or permission (computed) of a definition.

    ``is_permission`` tells which keyword declared it; relations always have a :class:`This`
    rewrite. ``doc`` holds the `/** doc */` comments written just before it.
    """

    name: str
    rewrite: Rewrite
    is_permission: bool
    doc: str | None = None
    pos: Position = field(default=NOWHERE, compare=False)

    @property
    def allowed(self) -> tuple[AllowedSubject, ...]:
        """The subject types this relation admits (empty for a permission)."""
        if isinstance(self.rewrite, This):
            return self.rewrite.allowed
        return ()


@dataclass(frozen=True, slots=True)
class Definition:
    """An object type: `definition docs/document { ... }`. Relations keep source order."""

    name: str
    relations: dict[str, Relation]
    doc: str | None = None
    pos: Position = field(default=NOWHERE, compare=False)

    def __hash__(self) -> int:
        return hash(self.name)


@dataclass(frozen=True, slots=True)
class CaveatParameter:
    """One typed parameter of a caveat, e.g. `allowed_ip ipaddress` or `tags list<string>`."""

    name: str
    type: str
    pos: Position = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class Caveat:
    """`caveat name(param type, ...) { expression }`; the CEL expression is kept as text."""

    name: str
    parameters: tuple[CaveatParameter, ...]
    expression: str
    doc: str | None = None
    pos: Position = field(default=NOWHERE, compare=False)
    expression_pos: Position = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class Schema:
    """A whole compiled schema: definitions and caveats by name, in source order."""

    definitions: dict[str, Definition]
    caveats: dict[str, Caveat]
    uses_expiration: bool = False

    def __hash__(self) -> int:
        return id(self)

    def relation(self, type_name: str, relation: str) -> Relation | None:
        """The relation or permission `relation` of `type_name`, or None."""
        definition = self.definitions.get(type_name)
        if definition is None:
            return None
        return definition.relations.get(relation)
