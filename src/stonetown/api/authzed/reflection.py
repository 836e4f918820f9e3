"""SpiceDB's schema reflection over Stonetown's compiled schema (schema/ir.py):
ReflectSchema's messages, DependentRelations, ComputablePermissions and DiffSchema.

Dependencies follow the schema as the engine walks it: a relation depends on the subject
sets it admits (`group#member`), a permission on the relations and permissions its
expression names, and an arrow `parent->view` on `parent` and on `view` of every type
`parent` admits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from stonetown.api.authzed.errors import SpiceError, unknown_definition, unknown_relation
from stonetown.api.authzed.pb import schema as pb
from stonetown.schema import ir

ELLIPSIS = "..."
Node = tuple[str, str]  # (definition, relation or permission; "..." for the object itself)


def _comment(doc: str | None) -> str:
    return doc or ""


def type_reference(allowed: ir.AllowedSubject) -> pb.ReflectionTypeReference:
    """The reflection of one subject type a relation admits."""
    ref = pb.ReflectionTypeReference(
        subject_definition_name=allowed.type, optional_caveat_name=allowed.caveat or ""
    )
    if allowed.wildcard:
        ref.is_public_wildcard = True
    elif allowed.relation is not None:
        ref.optional_relation_name = allowed.relation
    else:
        ref.is_terminal_subject = True
    return ref


def relation_message(definition: ir.Definition, relation: ir.Relation) -> pb.ReflectionRelation:
    """The reflection of a relation."""
    return pb.ReflectionRelation(
        name=relation.name,
        comment=_comment(relation.doc),
        parent_definition_name=definition.name,
        subject_types=[type_reference(allowed) for allowed in relation.allowed],
    )


def permission_message(definition: ir.Definition, relation: ir.Relation) -> pb.ReflectionPermission:
    """The reflection of a permission."""
    return pb.ReflectionPermission(
        name=relation.name, comment=_comment(relation.doc), parent_definition_name=definition.name
    )


def caveat_message(caveat: ir.Caveat) -> pb.ReflectionCaveat:
    """The reflection of a caveat."""
    return pb.ReflectionCaveat(
        name=caveat.name,
        comment=_comment(caveat.doc),
        expression=caveat.expression,
        parameters=[
            pb.ReflectionCaveatParameter(name=p.name, type=p.type, parent_caveat_name=caveat.name)
            for p in caveat.parameters
        ],
    )


def _prefixed(name: str, prefix: str) -> bool:
    return name.startswith(prefix)


def reflect(schema: ir.Schema, filters: Iterable[Any]) -> tuple[list[Any], list[Any]]:
    """ReflectSchema's definitions and caveats, narrowed by the request's filters (name
    prefixes, as SpiceDB's; no filter: everything)."""
    filters = list(filters)
    definitions = []
    def_filters = [f for f in filters if f.optional_definition_name_filter]
    for definition in schema.definitions.values():
        names = (f.optional_definition_name_filter for f in def_filters)
        if def_filters and not any(_prefixed(definition.name, prefix) for prefix in names):
            continue
        message = pb.ReflectionDefinition(name=definition.name, comment=_comment(definition.doc))
        for relation in definition.relations.values():
            wanted = _member_filters(def_filters, definition.name, relation.is_permission)
            if wanted and not any(_prefixed(relation.name, prefix) for prefix in wanted):
                continue
            if relation.is_permission:
                message.permissions.append(permission_message(definition, relation))
            else:
                message.relations.append(relation_message(definition, relation))
        definitions.append(message)
    caveat_filters = [f.optional_caveat_name_filter for f in filters if f.optional_caveat_name_filter]
    caveats = [
        caveat_message(caveat)
        for caveat in schema.caveats.values()
        if not caveat_filters or any(_prefixed(caveat.name, prefix) for prefix in caveat_filters)
    ]
    return definitions, caveats


def _member_filters(filters: list[Any], definition: str, is_permission: bool) -> list[str]:
    field = "optional_permission_name_filter" if is_permission else "optional_relation_name_filter"
    return [
        getattr(f, field)
        for f in filters
        if getattr(f, field) and _prefixed(definition, f.optional_definition_name_filter)
    ]


# ---- dependencies ---------------------------------------------------------------------------


def _reads(schema: ir.Schema, definition: ir.Definition, rewrite: ir.Rewrite) -> Iterator[Node]:
    """What evaluating `rewrite` on an object of `definition` reads directly."""
    if isinstance(rewrite, ir.This):
        for allowed in rewrite.allowed:
            if allowed.relation is not None:
                yield (allowed.type, allowed.relation)
    elif isinstance(rewrite, ir.ComputedUserset):
        yield (definition.name, rewrite.relation)
    elif isinstance(rewrite, ir.TupleToUserset):
        yield (definition.name, rewrite.tupleset)
        tupleset = definition.relations.get(rewrite.tupleset)
        for allowed in tupleset.allowed if tupleset is not None else ():
            target = schema.definitions.get(allowed.type)
            if target is not None and rewrite.computed in target.relations:
                yield (allowed.type, rewrite.computed)
    elif isinstance(rewrite, ir.Union | ir.Intersection):
        for child in rewrite.children:
            yield from _reads(schema, definition, child)
    elif isinstance(rewrite, ir.Exclusion):
        yield from _reads(schema, definition, rewrite.base)
        yield from _reads(schema, definition, rewrite.subtract)


def _edges(schema: ir.Schema) -> dict[Node, set[Node]]:
    """Each relation or permission to what it reads (plain subject types included as
    `(type, "...")`, the node ComputablePermissions starts from for an object type)."""
    edges: dict[Node, set[Node]] = defaultdict(set)
    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            node = (definition.name, relation.name)
            edges[node].update(_reads(schema, definition, relation.rewrite))
            for allowed in relation.allowed:
                if allowed.relation is None:
                    edges[node].add((allowed.type, ELLIPSIS))
    return edges


def _closure(start: Node, edges: dict[Node, set[Node]]) -> set[Node]:
    seen: set[Node] = set()
    pending = [start]
    while pending:
        for nxt in edges.get(pending.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                pending.append(nxt)
    seen.discard(start)
    return seen


def _references(schema: ir.Schema, nodes: Iterable[Node]) -> list[pb.ReflectionRelationReference]:
    found = []
    for type_name, name in sorted(nodes):
        relation = schema.relation(type_name, name)
        if relation is not None:
            found.append(
                pb.ReflectionRelationReference(
                    definition_name=type_name, relation_name=name, is_permission=relation.is_permission
                )
            )
    return found


def _require_definition(schema: ir.Schema, name: str) -> ir.Definition:
    definition = schema.definitions.get(name)
    if definition is None:
        raise unknown_definition(name)
    return definition


def _require_relation(definition: ir.Definition, name: str) -> ir.Relation:
    relation = definition.relations.get(name)
    if relation is None:
        raise unknown_relation(definition.name, name)
    return relation


def dependent_relations(schema: ir.Schema, definition_name: str, permission_name: str) -> list[Any]:
    """Every relation and permission evaluating `definition#permission` may read, sorted."""
    definition = _require_definition(schema, definition_name)
    if not _require_relation(definition, permission_name).is_permission:
        raise SpiceError(
            "INVALID_ARGUMENT",
            f"the relation `{permission_name}` is not a permission",
            "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION",
            relationName=permission_name,
        )
    return _references(schema, _closure((definition_name, permission_name), _edges(schema)))


def computable_permissions(
    schema: ir.Schema, definition_name: str, relation_name: str, definition_prefix: str
) -> list[Any]:
    """Every relation and permission whose answer `definition#relation` (or, for "", objects
    of `definition` as subjects) may change, sorted, narrowed to definitions with the prefix."""
    definition = _require_definition(schema, definition_name)
    if relation_name:
        _require_relation(definition, relation_name)
    reverse: dict[Node, set[Node]] = defaultdict(set)
    for node, reads in _edges(schema).items():
        for read in reads:
            reverse[read].add(node)
    found = _closure((definition_name, relation_name or ELLIPSIS), reverse)
    return _references(schema, (n for n in found if n[0].startswith(definition_prefix)))


# ---- diff -----------------------------------------------------------------------------------


def diff(existing: ir.Schema, comparison: ir.Schema) -> list[pb.ReflectionSchemaDiff]:
    """What changes from `existing` (the stored schema) to `comparison` (the request's)."""
    out: list[pb.ReflectionSchemaDiff] = []
    for name, old in existing.definitions.items():
        new = comparison.definitions.get(name)
        if new is None:
            out.append(pb.ReflectionSchemaDiff(definition_removed=_definition(old)))
            continue
        if (old.doc or "") != (new.doc or ""):
            out.append(pb.ReflectionSchemaDiff(definition_doc_comment_changed=_definition(new)))
        out.extend(_relation_diffs(old, new))
    for name, new in comparison.definitions.items():
        if name not in existing.definitions:
            out.append(pb.ReflectionSchemaDiff(definition_added=_definition(new)))
    for name, old_caveat in existing.caveats.items():
        new_caveat = comparison.caveats.get(name)
        if new_caveat is None:
            out.append(pb.ReflectionSchemaDiff(caveat_removed=caveat_message(old_caveat)))
        else:
            out.extend(_caveat_diffs(old_caveat, new_caveat))
    for name, new_caveat in comparison.caveats.items():
        if name not in existing.caveats:
            out.append(pb.ReflectionSchemaDiff(caveat_added=caveat_message(new_caveat)))
    return out


def _definition(definition: ir.Definition) -> pb.ReflectionDefinition:
    return pb.ReflectionDefinition(name=definition.name, comment=_comment(definition.doc))


def _member(definition: ir.Definition, relation: ir.Relation, change: str) -> pb.ReflectionSchemaDiff:
    kind = "permission" if relation.is_permission else "relation"
    message = (permission_message if relation.is_permission else relation_message)(definition, relation)
    return pb.ReflectionSchemaDiff(**{f"{kind}_{change}": message})


def _relation_diffs(old: ir.Definition, new: ir.Definition) -> Iterator[pb.ReflectionSchemaDiff]:
    for name, before in old.relations.items():
        after = new.relations.get(name)
        if after is None or after.is_permission != before.is_permission:
            yield _member(old, before, "removed")
            continue
        if (before.doc or "") != (after.doc or ""):
            yield _member(new, after, "doc_comment_changed")
        if after.is_permission:
            if before.rewrite != after.rewrite:
                yield _member(new, after, "expr_changed")
            continue
        message = relation_message(new, after)
        for allowed in after.allowed:
            if allowed not in before.allowed:
                change = pb.ReflectionRelationSubjectTypeChange(
                    relation=message, changed_subject_type=type_reference(allowed)
                )
                yield pb.ReflectionSchemaDiff(relation_subject_type_added=change)
        for allowed in before.allowed:
            if allowed not in after.allowed:
                change = pb.ReflectionRelationSubjectTypeChange(
                    relation=message, changed_subject_type=type_reference(allowed)
                )
                yield pb.ReflectionSchemaDiff(relation_subject_type_removed=change)
    for name, after in new.relations.items():
        before = old.relations.get(name)
        if before is None or before.is_permission != after.is_permission:
            yield _member(new, after, "added")


def _caveat_diffs(old: ir.Caveat, new: ir.Caveat) -> Iterator[pb.ReflectionSchemaDiff]:
    message = caveat_message(new)
    if (old.doc or "") != (new.doc or ""):
        yield pb.ReflectionSchemaDiff(caveat_doc_comment_changed=message)
    if old.expression.strip() != new.expression.strip():
        yield pb.ReflectionSchemaDiff(caveat_expr_changed=message)
    before = {p.name: p.type for p in old.parameters}
    after = {p.name: p.type for p in new.parameters}
    for name, kind in after.items():
        parameter = pb.ReflectionCaveatParameter(name=name, type=kind, parent_caveat_name=new.name)
        if name not in before:
            yield pb.ReflectionSchemaDiff(caveat_parameter_added=parameter)
        elif before[name] != kind:
            change = pb.ReflectionCaveatParameterTypeChange(parameter=parameter, previous_type=before[name])
            yield pb.ReflectionSchemaDiff(caveat_parameter_type_changed=change)
    for name, kind in before.items():
        if name not in after:
            parameter = pb.ReflectionCaveatParameter(name=name, type=kind, parent_caveat_name=old.name)
            yield pb.ReflectionSchemaDiff(caveat_parameter_removed=parameter)
