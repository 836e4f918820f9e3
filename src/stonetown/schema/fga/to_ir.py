"""Turn a validated OpenFGA model into the schema IR, and map OpenFGA tuples onto it.

OpenFGA lets one definition mix directly assigned types with operators
(`define viewer: [user] or editor`); SpiceDB does not. Such a definition is split in two:

* a stored relation ``viewer__direct`` (:data:`HIDDEN_SUFFIX`) holding the direct part,
  `relation viewer__direct: user`;
* the visible name becomes a permission in which the direct part is replaced by a
  reference to it: `permission viewer = viewer__direct + editor`.

OpenFGA tuples name the visible relation, so a tuple `document:1#viewer@user:anne` must be
stored under ``viewer__direct``: :func:`fga_write_relation` gives the storage relation and
:func:`fga_visible_relation` the reverse. A model defining both `x` and `x__direct` in one
type is refused so the convention stays unambiguous (see :func:`hidden_relation_name`).
"""

from __future__ import annotations

from stonetown.core.errors import InvalidArgument
from stonetown.schema import ir
from stonetown.schema.fga.errors import FgaErrorDetail, FgaValidationError
from stonetown.schema.fga.nodes import (
    Computed,
    ConditionDef,
    Direct,
    Expr,
    FromTupleset,
    Model,
    RelationDef,
    Span,
    TypeRestriction,
)

HIDDEN_SUFFIX = "__direct"
HIDDEN_RELATION_CONFLICT = "hidden-relation-conflict"

_PARAM_TYPES = {
    "bool": "bool",
    "string": "string",
    "int": "int",
    "uint": "uint",
    "double": "double",
    "duration": "duration",
    "timestamp": "timestamp",
    "ipaddress": "ipaddress",
    "any": "any",
}


def hidden_relation_name(relation: str) -> str:
    """The stored relation holding the direct part of a split OpenFGA definition."""
    return relation + HIDDEN_SUFFIX


def _pos(span: Span) -> ir.Position:
    return ir.Position(span.line, span.column) if span.line else ir.NOWHERE


def _allowed(restriction: TypeRestriction) -> ir.AllowedSubject:
    return ir.AllowedSubject(
        type=restriction.type,
        relation=restriction.relation,
        wildcard=restriction.wildcard,
        caveat=restriction.condition,
        pos=_pos(restriction.span),
    )


def _rewrite(expr: Expr, hidden: str | None) -> ir.Rewrite:
    if isinstance(expr, Direct):
        assert hidden is not None
        return ir.ComputedUserset(hidden, _pos(expr.span))
    if isinstance(expr, Computed):
        return ir.ComputedUserset(expr.relation, _pos(expr.span))
    if isinstance(expr, FromTupleset):
        return ir.TupleToUserset(expr.tupleset, expr.computed, "any", _pos(expr.span))
    children = tuple(_rewrite(child, hidden) for child in expr.children)
    if expr.kind == "union":
        return ir.Union(children, _pos(expr.span))
    if expr.kind == "intersection":
        return ir.Intersection(children, _pos(expr.span))
    return ir.Exclusion(children[0], children[1], _pos(expr.span))


def _relations(relation: RelationDef) -> list[ir.Relation]:
    direct = relation.direct()
    pos = _pos(relation.name_span)
    if isinstance(relation.expr, Direct):
        allowed = tuple(_allowed(r) for r in relation.expr.restrictions)
        return [ir.Relation(relation.name, ir.This(allowed, _pos(relation.expr.span)), False, pos=pos)]
    if direct is None:
        return [ir.Relation(relation.name, _rewrite(relation.expr, None), True, pos=pos)]
    hidden = hidden_relation_name(relation.name)
    allowed = tuple(_allowed(r) for r in direct.restrictions)
    return [
        ir.Relation(hidden, ir.This(allowed, _pos(direct.span)), False, pos=_pos(direct.span)),
        ir.Relation(relation.name, _rewrite(relation.expr, hidden), True, pos=pos),
    ]


def param_type_to_ir(fga_type: str) -> str:
    """OpenFGA's parameter type (``list<string>``) in SpiceDB's spelling (the same words)."""
    if "<" in fga_type:
        container, inner = fga_type.rstrip(">").split("<", 1)
        return f"{container}<{param_type_to_ir(inner)}>"
    return _PARAM_TYPES[fga_type]


def _caveat(condition: ConditionDef) -> ir.Caveat:
    return ir.Caveat(
        name=condition.name,
        parameters=tuple(
            ir.CaveatParameter(p.name, param_type_to_ir(p.type), _pos(p.name_span)) for p in condition.params
        ),
        expression=condition.expression,
        pos=_pos(condition.span),
        expression_pos=_pos(condition.expression_span),
    )


def _check_hidden_names(model: Model) -> None:
    errors = []
    for type_def in model.types:
        names = {r.name for r in type_def.relations}
        for relation in type_def.relations:
            if relation.name.endswith(HIDDEN_SUFFIX) and relation.name[: -len(HIDDEN_SUFFIX)] in names:
                span = relation.name_span
                errors.append(
                    FgaErrorDetail(
                        f"relation `{relation.name}` of type `{type_def.name}` clashes with the stored "
                        f"relation Stonetown creates for the direct part of "
                        f"`{relation.name[: -len(HIDDEN_SUFFIX)]}`; rename it.",
                        HIDDEN_RELATION_CONFLICT,
                        span.line,
                        span.column,
                        span.end_line,
                        span.end_column,
                        relation.name,
                    )
                )
    if errors:
        raise FgaValidationError(errors)


def model_to_ir(model: Model) -> ir.Schema:
    """Convert a model that passed :func:`~.validate.validate_model` into an :class:`ir.Schema`."""
    _check_hidden_names(model)
    definitions: dict[str, ir.Definition] = {}
    for type_def in model.types:
        relations: dict[str, ir.Relation] = {}
        for relation in type_def.relations:
            for converted in _relations(relation):
                relations[converted.name] = converted
        definitions[type_def.name] = ir.Definition(type_def.name, relations, pos=_pos(type_def.name_span))
    caveats = {c.name: _caveat(c) for c in model.conditions}
    return ir.Schema(definitions, caveats)


def _references(rewrite: ir.Rewrite, relation: str) -> bool:
    if isinstance(rewrite, ir.ComputedUserset):
        return rewrite.relation == relation
    if isinstance(rewrite, ir.Union | ir.Intersection):
        return any(_references(child, relation) for child in rewrite.children)
    if isinstance(rewrite, ir.Exclusion):
        return _references(rewrite.base, relation) or _references(rewrite.subtract, relation)
    return False


def split_part(schema: ir.Schema, type_name: str, relation: str) -> ir.Relation | None:
    """The hidden stored relation holding the direct part of permission ``relation``, if split."""
    visible = schema.relation(type_name, relation)
    hidden = schema.relation(type_name, hidden_relation_name(relation))
    if visible is None or hidden is None or not visible.is_permission or hidden.is_permission:
        return None
    return hidden if _references(visible.rewrite, hidden.name) else None


def fga_write_relation(schema: ir.Schema, type_name: str, relation: str) -> str:
    """The relation a tuple written in OpenFGA as `type:id#relation@...` is stored under.

    That is ``relation`` itself for a plain directly assignable relation, and the hidden
    ``relation__direct`` when the definition mixed direct types with operators. Raises
    :class:`InvalidArgument` when the relation does not exist or admits no direct tuples.
    """
    found = schema.relation(type_name, relation)
    if found is None:
        raise InvalidArgument(f"relation `{type_name}#{relation}` is not defined")
    if not found.is_permission:
        return relation
    hidden = split_part(schema, type_name, relation)
    if hidden is None:
        raise InvalidArgument(f"relation `{type_name}#{relation}` is not directly assignable")
    return hidden.name


def fga_visible_relation(schema: ir.Schema, type_name: str, stored_relation: str) -> str:
    """The OpenFGA relation name of a stored relation: the inverse of :func:`fga_write_relation`."""
    if stored_relation.endswith(HIDDEN_SUFFIX):
        visible = stored_relation[: -len(HIDDEN_SUFFIX)]
        if split_part(schema, type_name, visible) is not None:
            return visible
    return stored_relation
