"""OpenFGA's semantic validation of a parsed model, with its error categories and messages.

The phases and their order follow openfga/language's validator:

1. names: reserved type/relation names (`self`, `this`) and the naming rules;
2. schema version (`1.1`, or `1.2` for models combined from modules);
3. references: types, relations and conditions named by each definition must exist, and the
   tupleset of a `from` must be a purely direct relation without wildcards or usersets;
4. duplicates: types, type restrictions, and repeated operands of a definition's top-level
   operator (as upstream: `r1 or ((r0 or r0) or r1)` passes);
5. entry points: every relation must be reachable from some directly assignable type;
6. the OpenFGA server's own checks (pkg/typesystem `validateRelation`, which the language
   validator does not run): its entry-point walk, which differs from the language's in which
   visited relations it remembers, and its ban on cycles of computed usersets
   (`define a: b or [user]` with `define b: a`);
7. every condition must be used;
8. a file of a modular model holds one module only (nodes that name their file).

Phases 3-6 run only while no error has been found, as upstream does, because one broken
reference would otherwise cascade into many entry-point errors.
"""

from __future__ import annotations

import re

from stonetown.schema.fga.errors import FgaErrorDetail
from stonetown.schema.fga.nodes import (
    Computed,
    Direct,
    Expr,
    FromTupleset,
    Model,
    Operation,
    RelationDef,
    Span,
    TypeDef,
)

SUPPORTED_SCHEMA_VERSIONS = ("1.1", "1.2")
TYPE_NAME_RULE = r"^[^:#@\*\s]{1,254}$"
RELATION_NAME_RULE = r"^[^:#@\*\s]{1,50}$"
RESERVED_NAMES = ("self", "this")

_TYPE_RE = re.compile(TYPE_NAME_RULE)
_RELATION_RE = re.compile(RELATION_NAME_RULE)

_Visited = frozenset[tuple[str, str]]


class _Collector:
    def __init__(self) -> None:
        self.errors: list[FgaErrorDetail] = []

    def add(self, message: str, category: str, span: Span, symbol: str = "") -> None:
        self.errors.append(
            FgaErrorDetail(
                message, category, span.line, span.column, span.end_line, span.end_column, symbol, span.file
            )
        )


class _Types:
    """Type name → relation name → definition; a repeated type name keeps its last definition."""

    def __init__(self, model: Model) -> None:
        self.relations: dict[str, dict[str, RelationDef]] = {}
        for type_def in model.types:
            self.relations[type_def.name] = {r.name: r for r in type_def.relations}

    def get(self, type_name: str, relation: str) -> RelationDef | None:
        return self.relations.get(type_name, {}).get(relation)


def validate_model(model: Model, server_rules: bool = True) -> list[FgaErrorDetail]:
    """Every validation error of ``model`` in OpenFGA's order (empty when the model is valid).

    With ``server_rules`` false only openfga/language's validator runs (what its DSL test
    cases describe); by default the OpenFGA server's own checks follow, so that no model the
    server refuses is accepted. (The language's duplicate rules refuse a few models the server
    would store, e.g. `define p: r0 or r0`; they stay, as the DSL test cases require them.)
    """
    out = _Collector()
    _check_names(model, out)
    if model.schema_version is None:
        out.add("schema version required", "schema-version-required", Span(1, 1, 1, 1))
        return out.errors
    if model.schema_version not in SUPPORTED_SCHEMA_VERSIONS:
        out.add(
            f"invalid schema {model.schema_version}",
            "invalid-schema",
            model.version_span,
            model.schema_version,
        )
    if out.errors:
        return out.errors

    types = _Types(model)
    conditions = {c.name for c in model.conditions}
    for type_def in model.types:
        for relation in type_def.relations:
            current = types.get(type_def.name, relation.name)
            if current is not None:
                _check_references(type_def.name, current, types, conditions, out)
    if not out.errors:
        _check_duplicates(model, out)
    if not out.errors:
        for type_def in model.types:
            for relation in type_def.relations:
                has_entry, loop = _entry_point(
                    types, type_def.name, relation.name, relation.expr, frozenset()
                )
                if not has_entry:
                    reason = "potential loop" if loop else "no entrypoint"
                    out.add(
                        f"`{relation.name}` is an impossible relation for `{type_def.name}` ({reason}).",
                        "relation-no-entry-point",
                        relation.name_span,
                        relation.name,
                    )
    if server_rules and not out.errors:
        _check_server_rules(model, types, out)
    used = {
        r.condition
        for type_def in model.types
        for relation in type_def.relations
        for r in relation.restrictions()
        if r.condition is not None
    }
    for condition in model.conditions:
        if condition.name not in used:
            out.add(
                f"`{condition.name}` condition is not used in the model.",
                "condition-not-used",
                condition.name_span,
                condition.name,
            )
    _check_files(model, out)
    return out.errors


def _check_files(model: Model, out: _Collector) -> None:
    """A file of a modular model can hold one module only (checked where nodes name files)."""
    modules: dict[str, list[str]] = {}

    def note(file: str, module: str | None) -> None:
        if file and module:
            names = modules.setdefault(file, [])
            if module not in names:
                names.append(module)

    for type_def in model.types:
        note(type_def.name_span.file, type_def.module)
        for relation in type_def.relations:
            note(relation.name_span.file or type_def.name_span.file, relation.module or type_def.module)
    for condition in model.conditions:
        note(condition.name_span.file, condition.module)
    for file, names in modules.items():
        if len(names) > 1:
            out.add(
                f"file {file} would contain multiple module definitions ({', '.join(names)}) when "
                "transforming to DSL. Only one module can be defined per file.",
                "multiple-modules-in-file",
                Span(),
                file,
            )


def _check_names(model: Model, out: _Collector) -> None:
    for type_def in model.types:
        if type_def.name in RESERVED_NAMES:
            out.add(
                "a type cannot be named 'self' or 'this'.",
                "reserved-type-keywords",
                type_def.name_span,
                type_def.name,
            )
        if not _TYPE_RE.match(type_def.name):
            out.add(
                f"type '{type_def.name}' does not match naming rule: '{TYPE_NAME_RULE}'.",
                "invalid-name",
                type_def.name_span,
                type_def.name,
            )
        for relation in type_def.relations:
            if relation.name in RESERVED_NAMES:
                out.add(
                    "a relation cannot be named 'self' or 'this'.",
                    "reserved-relation-keywords",
                    relation.name_span,
                    relation.name,
                )
            elif not _RELATION_RE.match(relation.name):
                out.add(
                    f"relation '{relation.name}' of type '{type_def.name}' does not match naming rule: "
                    f"'{RELATION_NAME_RULE}'.",
                    "invalid-name",
                    relation.name_span,
                    relation.name,
                )


def _leaves(expr: Expr) -> list[Expr]:
    """The operands of ``expr`` in breadth-first order, as upstream walks them."""
    queue: list[Expr] = [expr]
    leaves: list[Expr] = []
    while queue:
        node = queue.pop(0)
        if isinstance(node, Operation):
            queue.extend(node.children)
        else:
            leaves.append(node)
    return leaves


def _check_references(
    type_name: str, relation: RelationDef, types: _Types, conditions: set[str], out: _Collector
) -> None:
    for leaf in _leaves(relation.expr):
        if isinstance(leaf, Direct):
            for r in leaf.restrictions:
                if r.type not in types.relations:
                    out.add(f"`{r.type}` is not a valid type.", "invalid-type", r.type_span, r.type)
                if r.condition is not None and r.condition not in conditions:
                    out.add(
                        f"`{r.condition}` is not a defined condition in the model.",
                        "condition-not-defined",
                        r.condition_span,
                        r.condition,
                    )
                if r.relation is not None and types.get(r.type, r.relation) is None:
                    out.add(
                        f"`{r.relation}` is not a valid relation for `{r.type}`.",
                        "invalid-relation-type",
                        r.base_span,
                        f"{r.type}#{r.relation}",
                    )
        elif isinstance(leaf, Computed):
            if types.get(type_name, leaf.relation) is None:
                out.add(
                    f"the relation `{leaf.relation}` does not exist.",
                    "missing-definition",
                    leaf.span,
                    leaf.relation,
                )
        else:
            _check_tupleset(type_name, leaf, types, out)


def _check_tupleset(type_name: str, ttu: FromTupleset, types: _Types, out: _Collector) -> None:
    tupleset = types.get(type_name, ttu.tupleset)
    if tupleset is None:
        out.add(
            f"`{ttu.tupleset}` is not a valid relation for `{type_name}`.",
            "invalid-relation-type",
            ttu.span,
            ttu.label(),
        )
        return
    expr = tupleset.expr
    if not isinstance(expr, Direct) or any(r.wildcard or r.relation is not None for r in expr.restrictions):
        out.add(
            f"`{ttu.tupleset}` relation used inside from allows only direct relation.",
            "tupleuserset-not-direct",
            ttu.tupleset_span,
            ttu.tupleset,
        )
        return
    missing = [r.type for r in expr.restrictions if types.get(r.type, ttu.computed) is None]
    # Valid as long as one of the tupleset's types has the relation.
    if len(missing) == len(expr.restrictions):
        for target_type in missing:
            out.add(
                f"the `{ttu.computed}` relation definition on type `{type_name}` is not valid: "
                f"`{ttu.computed}` does not exist on `{ttu.tupleset}`, which is of type `{target_type}`.",
                "invalid-relation-on-tupleset",
                ttu.span,
                ttu.label(),
            )


def _operand_name(expr: Expr) -> str | None:
    if isinstance(expr, Computed):
        return expr.relation
    if isinstance(expr, FromTupleset):
        return expr.label()
    return None


def _check_duplicates(model: Model, out: _Collector) -> None:
    first_type: dict[str, TypeDef] = {}
    for type_def in model.types:
        if type_def.name in first_type:
            out.add(
                f"the type `{type_def.name}` is a duplicate.",
                "duplicated-error",
                first_type[type_def.name].name_span,
                type_def.name,
            )
        else:
            first_type[type_def.name] = type_def
        for relation in type_def.relations:
            first_restriction: dict[str, Span] = {}
            for r in relation.restrictions():
                key = r.key()
                if key in first_restriction:
                    out.add(
                        f"the type restriction `{key}` is a duplicate in the relation `{relation.name}`.",
                        "duplicated-error",
                        first_restriction[key],
                        key,
                    )
                else:
                    first_restriction[key] = r.span
            expr = relation.expr
            if not isinstance(expr, Operation):
                continue
            first_operand: dict[str, Span] = {}
            operands = expr.children
            for child in operands:
                name = _operand_name(child)
                if name is None:
                    continue
                if name in first_operand:
                    out.add(
                        f"the partial relation definition `{name}` is a duplicate in the relation "
                        f"`{relation.name}`.",
                        "duplicated-error",
                        first_operand[name],
                        name,
                    )
                else:
                    first_operand[name] = child.span


def _entry_point(
    types: _Types, type_name: str, relation_name: str, expr: Expr, seen: _Visited
) -> tuple[bool, bool]:
    """(has an entry point, a loop was met) for ``expr`` evaluated as ``type_name#relation_name``.

    A faithful port of upstream's `hasEntryPointOrLoop`, including which branches see the
    current relation as visited, so that the same models are accepted and rejected.
    """
    visited = seen | {(type_name, relation_name)}
    relations = types.relations.get(type_name, {})
    current = relations.get(relation_name)
    if current is None:
        return False, False
    if isinstance(expr, Direct):
        for r in current.restrictions():
            if r.relation is None or r.wildcard:
                return True, False
            target = types.get(r.type, r.relation)
            if target is None:
                return False, False
            if (r.type, r.relation) in visited:
                continue
            if _entry_point(types, r.type, r.relation, target.expr, visited)[0]:
                return True, False
        return False, False
    if isinstance(expr, Computed):
        target = relations.get(expr.relation)
        if target is None:
            return False, False
        if (type_name, expr.relation) in visited:
            return False, True
        return _entry_point(types, type_name, expr.relation, target.expr, visited)
    if isinstance(expr, FromTupleset):
        tupleset = relations.get(expr.tupleset)
        if tupleset is None:
            return False, False
        for r in tupleset.restrictions():
            target = types.get(r.type, expr.computed)
            if target is None or (r.type, expr.computed) in visited:
                continue
            if _entry_point(types, r.type, expr.computed, target.expr, visited)[0]:
                return True, False
        return False, False
    if expr.kind == "union":
        loop = False
        for child in expr.children:
            has_entry, child_loop = _entry_point(types, type_name, relation_name, child, visited)
            if has_entry:
                return True, False
            loop = loop or child_loop
        return False, loop
    if expr.kind == "intersection":
        for child in expr.children:
            has_entry, child_loop = _entry_point(types, type_name, relation_name, child, visited)
            if not has_entry:
                return False, child_loop
        return True, False
    # Upstream evaluates both sides of a difference without marking the current relation.
    for child in expr.children:
        has_entry, child_loop = _entry_point(types, type_name, relation_name, child, seen)
        if not has_entry:
            return False, child_loop
    return True, False


# ---- the OpenFGA server's checks (openfga/openfga pkg/typesystem) ---------------------------

# Relation name → has an entry point, per type name. The outer dict is copied per call while the
# inner dicts are shared, reproducing Go's shallow `maps.Clone` of upstream's
# `map[string]map[string]bool`: marks made in a shared inner map are seen by callers and
# siblings, which decides some verdicts.
_ServerVisited = dict[str, dict[str, bool]]

SERVER_NO_ENTRYPOINTS = "no entrypoints defined"
SERVER_LOOP = "potential loop"
SERVER_CYCLE = "an authorization model cannot contain a cycle"
SERVER_SELF_REFERENCE = "invalid userset rewrite definition"

_SERVER_CATEGORIES = {
    SERVER_NO_ENTRYPOINTS: "relation-no-entry-point",
    SERVER_LOOP: "relation-no-entry-point",
    SERVER_CYCLE: "relation-cycle",
    SERVER_SELF_REFERENCE: "invalid-userset-rewrite",
}


def _check_server_rules(model: Model, types: _Types, out: _Collector) -> None:
    """The server's per-relation checks in its order (types, then relations, sorted by name;
    per relation: self-reference, entry points, cycles); every failing relation is reported
    at its name."""
    spans = {(t.name, r.name): r.name_span for t in model.types for r in t.relations}
    for type_name in sorted(types.relations):
        relations = types.relations[type_name]
        for relation_name in sorted(relations):
            relation = relations[relation_name]
            has_entry, loop = _server_entrypoints(types, type_name, relation_name, relation.expr, {})
            if any(
                isinstance(leaf, Computed) and leaf.relation == relation_name
                for leaf in _leaves(relation.expr)
            ):
                # `isUsersetRewriteValid`: a definition may not name itself, at any depth.
                cause = SERVER_SELF_REFERENCE
            elif not has_entry:
                cause = SERVER_LOOP if loop else SERVER_NO_ENTRYPOINTS
            elif _server_cycle(types, type_name, relation_name, relation.expr, set()):
                cause = SERVER_CYCLE
            else:
                continue
            out.add(
                f"the definition of relation '{relation_name}' in object type '{type_name}' "
                f"is invalid: {cause}",
                _SERVER_CATEGORIES[cause],
                spans.get((type_name, relation_name), relation.name_span),
                relation_name,
            )


def _server_entrypoints(
    types: _Types, type_name: str, relation_name: str, expr: Expr, visited: _ServerVisited
) -> tuple[bool, bool]:
    """A port of upstream's `hasEntrypoints`: (has an entry point, a loop was met)."""
    v = dict(visited)
    if type_name in v:
        v[type_name][relation_name] = False
    else:
        v[type_name] = {relation_name: False}
    relations = types.relations[type_name]
    relation = relations[relation_name]
    if isinstance(expr, Direct):
        for r in relation.restrictions():
            if r.relation is None or r.wildcard:
                v[type_name][relation_name] = True
                return True, False
            if r.relation in v.get(r.type, {}):
                continue
            target = types.relations[r.type][r.relation]
            if _server_entrypoints(types, r.type, r.relation, target.expr, v)[0]:
                return True, False
        return False, False
    if isinstance(expr, Computed):
        seen = v[type_name]
        if expr.relation in seen:
            return seen[expr.relation], True
        return _server_entrypoints(types, type_name, expr.relation, relations[expr.relation].expr, v)
    if isinstance(expr, FromTupleset):
        for r in relations[expr.tupleset].restrictions():
            target = types.get(r.type, expr.computed)
            if target is None:
                continue
            known = v.get(r.type, {})
            if expr.computed in known:
                if known[expr.computed]:
                    return True, False
                continue
            if _server_entrypoints(types, r.type, expr.computed, target.expr, v)[0]:
                return True, False
        return False, False
    # Upstream hands the operands the map it was given, not its own copy.
    if expr.kind == "union":
        loop = False
        for child in expr.children:
            has_entry, child_loop = _server_entrypoints(types, type_name, relation_name, child, visited)
            if has_entry:
                return True, False
            loop = loop or child_loop
        return False, loop
    for child in expr.children:
        has_entry, child_loop = _server_entrypoints(types, type_name, relation_name, child, visited)
        if not has_entry:
            return False, child_loop
    return True, False


def _server_cycle(types: _Types, type_name: str, relation_name: str, expr: Expr, visited: set[str]) -> bool:
    """A port of upstream's `hasCycle`: does following computed usersets (anywhere in the
    rewrite, not through `from`) lead back to a relation already on the path?"""
    visited.add(f"{type_name}#{relation_name}")
    copy = set(visited)
    if isinstance(expr, Direct | FromTupleset):
        return False
    if isinstance(expr, Computed):
        if f"{type_name}#{expr.relation}" in visited:
            return True
        target = types.relations[type_name][expr.relation]
        return _server_cycle(types, type_name, expr.relation, target.expr, copy)
    return any(_server_cycle(types, type_name, relation_name, child, copy) for child in expr.children)
