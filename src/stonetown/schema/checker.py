"""The type checker: SpiceDB's validation rules on a compiled IR schema.

Works on the IR alone (positions come from the IR), so it also checks schemas built in code.
Messages follow SpiceDB's wording. Rules:

* every subject type, subject relation, caveat, relation and arrow tupleset must exist;
* no subject type is listed twice on one relation;
* the left side of an arrow must be a relation (not a permission) with no wildcard,
  directly or through subject sets;
* a subject set on another definition must not bring in a wildcard transitively;
* permissions that merely alias each other must not form a cycle;
* an arrow's target must exist on at least one subject type of its tupleset;
* arrows may name at most :data:`MAX_ARROW_TARGETS` targets in all (each arrow counts the
  subject types of its tupleset: what the engine expands it to);
* caveat expressions parse, stay within the evaluator's depth and type-check to bool
  (:mod:`.cel_check`), for schemas being written (a stored one is trusted as it was accepted).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from stonetown.schema import ir
from stonetown.schema.cel_check import caveat_diagnostics
from stonetown.schema.diagnostics import Diagnostic, sort_diagnostics

MAX_ARROW_TARGETS = 50_000


def check_schema(schema: ir.Schema, *, limits: bool = True) -> list[Diagnostic]:
    """Every type error in ``schema``, in source order (empty when the schema is valid).
    `limits` False skips the size budget (a schema accepted before)."""
    return _Checker(schema, limits).run()


def walk_rewrite(rewrite: ir.Rewrite) -> Iterator[ir.Rewrite]:
    """Every node of a rewrite tree, parents before children, without recursion."""
    stack: list[ir.Rewrite] = [rewrite]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ir.Union | ir.Intersection):
            stack.extend(reversed(node.children))
        elif isinstance(node, ir.Exclusion):
            stack.append(node.subtract)
            stack.append(node.base)


class _Checker:
    def __init__(self, schema: ir.Schema, limits: bool = True) -> None:
        self.schema = schema
        self.limits = limits
        self.arrow_targets = 0
        self.diagnostics: list[Diagnostic] = []
        self._wildcard_origins: dict[tuple[str, str], tuple[str, str, str]] | None = None

    def _report(self, pos: ir.Position, message: str) -> None:
        self.diagnostics.append(Diagnostic.at(pos, message))

    def run(self) -> list[Diagnostic]:
        for definition in self.schema.definitions.values():
            for relation in definition.relations.values():
                if relation.is_permission:
                    self._check_permission(definition, relation)
                else:
                    self._check_relation(definition, relation)
            self._check_alias_cycles(definition)
        if self.limits:
            self.diagnostics.extend(caveat_diagnostics(self.schema))
        return sort_diagnostics(self.diagnostics)

    # ---- relations -------------------------------------------------------------------------

    def _check_relation(self, definition: ir.Definition, relation: ir.Relation) -> None:
        if not relation.allowed:
            self._report(
                relation.pos,
                "at least one allowed relation/permission is required to be defined for relation "
                f"`{relation.name}`",
            )
        seen: set[str] = set()
        for allowed in relation.allowed:
            source = str(allowed)
            if source in seen:
                self._report(
                    allowed.pos,
                    f"found duplicate allowed subject type `{source}` on relation `{relation.name}` "
                    f"under definition `{definition.name}`",
                )
                continue
            seen.add(source)
            self._check_allowed(definition, relation, allowed)

    def _check_allowed(
        self, definition: ir.Definition, relation: ir.Relation, allowed: ir.AllowedSubject
    ) -> None:
        subject_def = self.schema.definitions.get(allowed.type)
        if subject_def is None:
            self._report(
                allowed.pos,
                f"could not lookup definition `{allowed.type}` for relation `{relation.name}`: "
                f"object definition `{allowed.type}` not found",
            )
        elif allowed.relation is not None:
            if allowed.relation not in subject_def.relations:
                self._report(
                    allowed.pos,
                    f"relation/permission `{allowed.relation}` not found under definition `{allowed.type}`",
                )
            elif allowed.type != definition.name:
                # As in SpiceDB, only subject sets on *other* definitions are checked.
                found = self._references_wildcard(allowed.type, allowed.relation)
                if found is not None:
                    wildcard_type, via_type, via_relation = found
                    self._report(
                        allowed.pos,
                        f"for relation `{relation.name}`: relation/permission "
                        f"`{allowed.type}#{allowed.relation}` "
                        f"includes wildcard type `{wildcard_type}` via relation `{via_type}#{via_relation}`: "
                        "wildcard relations cannot be transitively included",
                    )
        if allowed.caveat is not None and allowed.caveat not in self.schema.caveats:
            self._report(
                allowed.pos,
                f"could not lookup caveat `{allowed.caveat}` for relation `{relation.name}`: "
                f"caveat `{allowed.caveat}` not found",
            )

    def _references_wildcard(self, type_name: str, relation_name: str) -> tuple[str, str, str] | None:
        """(wildcard type, type, relation) if `type#relation` admits a wildcard, maybe via subject sets."""
        if self._wildcard_origins is None:
            self._wildcard_origins = self._find_wildcard_origins()
        return self._wildcard_origins.get((type_name, relation_name))

    def _find_wildcard_origins(self) -> dict[tuple[str, str], tuple[str, str, str]]:
        # Breadth-first from every relation that admits a wildcard, backwards over subject sets:
        # linear in the schema, where a search per relation would be quadratic on long chains.
        origins: dict[tuple[str, str], tuple[str, str, str]] = {}
        admitted_by: dict[tuple[str, str], list[tuple[str, str]]] = {}
        queue: deque[tuple[str, str]] = deque()
        for definition in self.schema.definitions.values():
            for relation in definition.relations.values():
                node = (definition.name, relation.name)
                for allowed in relation.allowed:
                    if allowed.wildcard and node not in origins:
                        origins[node] = (allowed.type, definition.name, relation.name)
                        queue.append(node)
                    elif allowed.relation is not None:
                        admitted_by.setdefault((allowed.type, allowed.relation), []).append(node)
        while queue:
            node = queue.popleft()
            for holder in admitted_by.get(node, ()):
                if holder not in origins:
                    origins[holder] = origins[node]
                    queue.append(holder)
        return origins

    # ---- permissions -----------------------------------------------------------------------

    def _check_permission(self, definition: ir.Definition, permission: ir.Relation) -> None:
        for node in walk_rewrite(permission.rewrite):
            if isinstance(node, ir.ComputedUserset):
                if node.relation not in definition.relations:
                    self._report(
                        node.pos,
                        f"relation/permission `{node.relation}` not found "
                        f"under definition `{definition.name}`",
                    )
            elif isinstance(node, ir.TupleToUserset):
                self._check_arrow(definition, permission, node)
            elif isinstance(node, ir.This):
                self._report(node.pos, f"permission `{permission.name}` cannot store relationships directly")

    def _check_arrow(
        self, definition: ir.Definition, permission: ir.Relation, arrow: ir.TupleToUserset
    ) -> None:
        tupleset = definition.relations.get(arrow.tupleset)
        if tupleset is None:
            self._report(
                arrow.pos,
                f"relation/permission `{arrow.tupleset}` not found under definition `{definition.name}`",
            )
            return
        if tupleset.is_permission:
            self._report(
                arrow.pos,
                f"under permission `{permission.name}` under definition `{definition.name}`: "
                f"permissions cannot be used on the left hand side of an arrow (found `{arrow.tupleset}`)",
            )
            return
        self._count_arrow_targets(arrow, tupleset)
        found = self._references_wildcard(definition.name, arrow.tupleset)
        if found is not None:
            wildcard_type, via_type, via_relation = found
            self._report(
                arrow.pos,
                f"for arrow under permission `{permission.name}`: "
                f"relation `{definition.name}#{arrow.tupleset}` "
                f"includes wildcard type `{wildcard_type}` via relation `{via_type}#{via_relation}`: "
                "wildcard relations cannot be used on the left side of arrows",
            )
            return

    def _count_arrow_targets(self, arrow: ir.TupleToUserset, tupleset: ir.Relation) -> None:
        before = self.arrow_targets
        self.arrow_targets += len(tupleset.allowed)
        if self.limits and before <= MAX_ARROW_TARGETS < self.arrow_targets:
            self._report(
                arrow.pos,
                f"too many arrow targets in the schema: the limit is {MAX_ARROW_TARGETS} "
                f"(each arrow counts the subject types of its relation, `{arrow.tupleset}` has "
                f"{len(tupleset.allowed)})",
            )

    def _check_alias_cycles(self, definition: ir.Definition) -> None:
        """Permissions whose whole rewrite names another permission must not loop (SpiceDB's rule)."""
        aliases: dict[str, str] = {}
        for relation in definition.relations.values():
            rewrite = relation.rewrite
            if (
                relation.is_permission
                and isinstance(rewrite, ir.ComputedUserset)
                and rewrite.relation in definition.relations
            ):
                aliases[relation.name] = rewrite.relation
        resolved: set[str] = {name for name in definition.relations if name not in aliases}
        changed = True
        while changed:
            changed = False
            for name, target in aliases.items():
                if name not in resolved and target in resolved:
                    resolved.add(name)
                    changed = True
        # What is left cannot reach a non-alias: keep only the members of the cycles themselves.
        unresolved = {name for name in aliases if name not in resolved}
        in_cycle: set[str] = set()
        for start in unresolved:
            current = aliases[start]
            for _ in range(len(unresolved)):
                if current == start:
                    in_cycle.add(start)
                    break
                current = aliases[current]
        if in_cycle:
            names = sorted(in_cycle)
            first = min((definition.relations[n] for n in names), key=lambda r: (r.pos.line, r.pos.column))
            self._report(
                first.pos,
                f"under definition `{definition.name}`, "
                f"there exists a cycle in permissions: {', '.join(names)}",
            )
