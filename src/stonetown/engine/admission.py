"""Whether a schema admits a relationship: the type check every write goes through.

Messages follow SpiceDB's wording so schema authors recognise them.
"""

from __future__ import annotations

from stonetown.core.errors import FailedPrecondition, InvalidArgument
from stonetown.core.relationship import WILDCARD, Relationship
from stonetown.engine.caveat_values import context_error
from stonetown.schema import ir


def admission_error(schema: ir.Schema, rel: Relationship) -> str | None:
    """Why `schema` does not admit `rel`, or None when it does."""
    definition = schema.definitions.get(rel.resource_type)
    if definition is None:
        return f"object definition `{rel.resource_type}` not found"
    relation = definition.relations.get(rel.relation)
    if relation is None:
        return f"relation/permission `{rel.relation}` not found under definition `{rel.resource_type}`"
    if relation.is_permission:
        return f"cannot write a relationship to permission `{rel.relation}` of `{rel.resource_type}`"
    subject_definition = schema.definitions.get(rel.subject_type)
    if subject_definition is None:
        return f"object definition `{rel.subject_type}` not found"
    if rel.subject_relation and rel.subject_relation not in subject_definition.relations:
        return f"relation/permission `{rel.subject_relation}` not found under definition `{rel.subject_type}`"
    wildcard = rel.subject_id == WILDCARD
    caveat = rel.caveat.name if rel.caveat is not None else None
    if caveat is not None and caveat not in schema.caveats:
        return f"caveat `{caveat}` not found"
    expiring = rel.expiration is not None
    shape = ir.AllowedSubject(rel.subject_type, rel.subject_relation or None, wildcard, caveat, expiring)
    if shape not in relation.allowed:
        return f"subjects of type `{shape}` are not allowed on relation `{rel.resource_type}#{rel.relation}`"
    if rel.caveat is not None:
        return context_error(schema.caveats[rel.caveat.name], rel.caveat.context)
    return None


def require_admitted(schema: ir.Schema, rel: Relationship, where: str) -> None:
    """Raise InvalidArgument naming `where` unless `schema` admits `rel`."""
    error = admission_error(schema, rel)
    if error is not None:
        raise InvalidArgument(f"{where}: {rel}: {error}")


def require_kept(schema: ir.Schema, examples: list[Relationship] | tuple[Relationship, ...]) -> None:
    """Raise FailedPrecondition if the new `schema` would orphan a stored relationship."""
    for rel in examples:
        error = admission_error(schema, rel)
        if error is not None:
            raise FailedPrecondition(
                f"the new schema cannot be written: stored relationship {rel} "
                f"would no longer be valid ({error})"
            )
