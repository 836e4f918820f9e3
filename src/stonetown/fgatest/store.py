"""An OpenFGA-semantics store over Stonetown's engine.

:class:`FgaStore` holds one authorization model (OpenFGA DSL, imported with
:func:`~stonetown.schema.fga.import_fga`) and the tuples written so far, named as OpenFGA
names them (visible relation names). It answers Check, ListObjects and ListUsers the way the
OpenFGA API does: Check and ListObjects with the engine's check and LookupResources,
ListUsers with a replay of OpenFGA's own ListUsers walk (:mod:`stonetown.fgatest.list_users`,
quirks included, never the engine's LookupSubjects):

* writing a new model keeps the stored tuples; each query maps them onto the current model
  (:func:`~stonetown.schema.fga.fga_write_relation`) and ignores those the model no longer
  admits, as OpenFGA does;
* contextual tuples are validated against the model (error 2027) and overlaid on the index;
* requests naming unknown types or relations fail with OpenFGA's error codes (2000, 2021,
  2022), a condition missing a parameter with 2000;
* resolution too deep fails with 2002 where OpenFGA's does: Check takes the verdict from a
  replay of OpenFGA's walk (:mod:`stonetown.engine.cycle_race`, depth counted OpenFGA's way),
  ListObjects from an estimate of its expansion (:func:`list_objects_too_deep`), ListUsers
  from its replayed walk; a ListUsers filter the model gives no path to is empty;
* list results are sets of strings: `type:id` objects, `type:id`, `type:*` and
  `type:id#relation` users.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stonetown.core.errors import InvalidArgument
from stonetown.core.relationship import ContextualizedCaveat, Relationship
from stonetown.engine.admission import admission_error
from stonetown.engine.check import CheckRun, DepthExceeded, Subject
from stonetown.engine.check_plan import CompiledSchema
from stonetown.engine.conditions import CaveatLeaf, Result
from stonetown.engine.index import RelationshipIndex, overlay
from stonetown.engine.lookup_resources import lookup_resources
from stonetown.engine.reachability import Reachability, evaluated_relations
from stonetown.fgatest.conditions import ConditionOutcome, make_evaluator, resolve_condition
from stonetown.fgatest.list_users import ListUsersFailure, ListUsersWalk
from stonetown.schema import ir
from stonetown.schema.fga import HIDDEN_SUFFIX, fga_write_relation, import_fga
from stonetown.schema.fga.to_ir import split_part

MAX_RESOLUTION_DEPTH = 25
# The engine's own depth limit when OpenFGA's resolution depth is judged by replaying
# OpenFGA's walk (the engine counts every dispatch; OpenFGA counts fewer).
ENGINE_DEPTH = 100

VALIDATION_ERROR = 2000
RESOLUTION_TOO_COMPLEX = 2002
TYPE_NOT_FOUND = 2021
RELATION_NOT_FOUND = 2022
INVALID_TUPLE = 2027


class FgaRequestError(Exception):
    """A request OpenFGA would refuse or fail; ``code`` is OpenFGA's numeric error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class FgaTuple:
    """An OpenFGA relationship tuple as written: `object`, `relation`, `user` and an optional
    condition (name and context)."""

    object: str
    relation: str
    user: str
    condition: str | None = None
    condition_context: tuple[tuple[str, Any], ...] = ()

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity of the tuple (OpenFGA refuses two tuples differing only by condition)."""
        return (self.object, self.relation, self.user)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FgaTuple:
        """Build from `{object, relation, user, condition?: {name, context?}}`."""
        try:
            obj, relation, user = str(data["object"]), str(data["relation"]), str(data["user"])
        except KeyError as exc:
            raise FgaRequestError(VALIDATION_ERROR, f"tuple {dict(data)!r} lacks {exc}") from None
        condition = data.get("condition") or None
        if condition is None:
            return cls(obj, relation, user)
        context = condition.get("context") or {}
        return cls(obj, relation, user, str(condition["name"]), tuple(sorted(context.items())))

    def __str__(self) -> str:
        text = f"{self.object}#{self.relation}@{self.user}"
        return text + (f"[{self.condition}]" if self.condition else "")


def parse_object(text: str) -> tuple[str, str]:
    """`type:id` → (type, id); raises FgaRequestError(2000) for anything else."""
    otype, sep, oid = text.partition(":")
    if not sep or not otype or not oid or ":" in oid or "#" in text or any(c.isspace() for c in text):
        raise FgaRequestError(VALIDATION_ERROR, f"invalid object {text!r}")
    return otype, oid


def parse_user(text: str) -> Subject:
    """`type:id`, `type:*` or `type:id#relation` → (type, id, relation or "");
    raises FgaRequestError(2000) for anything else."""
    obj, sep, rel = text.partition("#")
    if (sep and not rel) or "#" in rel or text.count(":") != 1:
        raise FgaRequestError(VALIDATION_ERROR, f"invalid user {text!r}")
    utype, uid = parse_object(obj)
    if rel and uid == "*":
        raise FgaRequestError(VALIDATION_ERROR, f"invalid user {text!r}")
    return utype, uid, rel


def _grantable_reach(schema: ir.Schema) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """Per (type, relation): the subject types (type, "") and subject sets (type, relation)
    it can grant, as OpenFGA's model graph sees it: through unions, every operand of an
    intersection, and only the base of an exclusion."""
    # a relation holds its own subject set (`doc:1#viewer` is a viewer of doc:1)
    reach: dict[tuple[str, str], set[tuple[str, str]]] = {
        (d.name, r.name): {(d.name, r.name)}
        for d in schema.definitions.values()
        for r in d.relations.values()
    }

    def of(rtype: str, node: ir.Rewrite) -> set[tuple[str, str]]:
        if isinstance(node, ir.This):
            found: set[tuple[str, str]] = set()
            for a in node.allowed:
                found.add((a.type, a.relation or ""))
                if a.relation is not None:
                    found |= reach.get((a.type, a.relation), set())
            return found
        if isinstance(node, ir.ComputedUserset):
            return reach.get((rtype, node.relation), set())
        if isinstance(node, ir.TupleToUserset):
            tupleset = schema.relation(rtype, node.tupleset)
            found = set()
            for a in tupleset.allowed if tupleset is not None else ():
                if (a.type, node.computed) in reach:
                    found |= reach[(a.type, node.computed)]
            return found
        if isinstance(node, ir.Union):
            return set().union(*(of(rtype, c) for c in node.children))
        if isinstance(node, ir.Intersection):
            sets = [of(rtype, c) for c in node.children]
            return set.intersection(*sets) if sets else set()
        if isinstance(node, ir.Exclusion):
            return of(rtype, node.base)
        return set()

    changed = True
    while changed:
        changed = False
        for key in reach:
            relation = schema.relation(*key)
            assert relation is not None
            found = of(key[0], relation.rewrite)
            if not found <= reach[key]:
                reach[key] |= found
                changed = True
    return reach


def _reverse_expanded(schema: ir.Schema, target: tuple[str, str]) -> set[tuple[str, str]]:
    """The (type, relation) pairs OpenFGA's ListObjects expands for `target` (see
    :func:`list_objects_too_deep`), `target` included."""

    def edges(rtype: str, node: ir.Rewrite) -> set[tuple[str, str]]:
        if isinstance(node, ir.Exclusion):
            return edges(rtype, node.base)
        if isinstance(node, ir.Intersection):
            # one operand is expanded, the others checked: the first (observed)
            return edges(rtype, node.children[0]) if node.children else set()
        if isinstance(node, ir.Union):
            return set().union(*(edges(rtype, c) for c in node.children))
        return evaluated_relations(schema, rtype, node)

    seen = {target}
    todo = [target]
    while todo:
        current = todo.pop()
        relation = schema.relation(*current)
        for nxt in edges(current[0], relation.rewrite) if relation is not None else ():
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def list_objects_too_deep(
    schema: ir.Schema,
    facts: Reachability,
    index: RelationshipIndex,
    target: tuple[str, str],
    subject: Subject,
) -> bool:
    """Whether OpenFGA's ListObjects would fail with 2002 for `subject` and `target`
    (type, relation).

    Its reverse expansion climbs from the subject's relationships towards the target, one
    level per subject-set relationship, tuple-to-userset relationship and computed userset
    (the hidden `__direct` half of a split definition is free), only through relations the
    target depends on that way (the base of an exclusion, the first operand of an
    intersection: the other operands are checked, not expanded), and fails on reaching
    depth 25.
    """
    relevant = _reverse_expanded(schema, target)
    stype, sid, srel = subject
    starts = set(index.reverse.get((stype, sid, srel), ()))
    if not srel:
        starts.update(index.reverse.get((stype, "*", ""), ()))
    depth_of: dict[tuple[str, str, str], int] = {}
    todo: list[tuple[int, tuple[str, str, str]]] = [(0, key) for key in starts if key[::2] in relevant]
    heapq.heapify(todo)
    while todo:
        depth, (rtype, rid, rel) = heapq.heappop(todo)
        if depth_of.get((rtype, rid, rel), MAX_RESOLUTION_DEPTH + 1) <= depth:
            continue
        depth_of[(rtype, rid, rel)] = depth
        if depth >= MAX_RESOLUTION_DEPTH:
            return True
        steps: list[tuple[tuple[str, str, str], int]] = []
        for parent in facts.computed_parents.get((rtype, rel), ()):
            free = rel == parent + HIDDEN_SUFFIX
            steps.append(((rtype, rid, parent), depth if free else depth + 1))
        for holder in index.reverse.get((rtype, rid, rel), ()):
            steps.append((holder, depth + 1))
        for ptype, tupleset, perm in facts.arrow_parents.get((rtype, rel), ()):
            for holder in index.reverse.get((rtype, rid, ""), ()):
                if holder[0] == ptype and holder[2] == tupleset:
                    steps.append(((ptype, holder[1], perm), depth + 1))
        for step in steps:
            if step[0][::2] in relevant:
                if step[1] >= MAX_RESOLUTION_DEPTH:
                    return True  # also when it closes a cycle: OpenFGA counts before it looks
                heapq.heappush(todo, (step[1], step[0]))
    return False


@dataclass
class _Model:
    schema: ir.Schema
    compiled: CompiledSchema
    facts: Reachability
    evaluator: Any


@dataclass
class FgaStore:
    """One OpenFGA store: the current model and every tuple written (see module docstring)."""

    max_depth: int = MAX_RESOLUTION_DEPTH
    tuples: dict[tuple[str, str, str], FgaTuple] = field(default_factory=dict)
    _model: _Model | None = None
    _index: RelationshipIndex | None = None

    # ---- writes -------------------------------------------------------------------------

    def write_model(self, text: str) -> None:
        """Replace the model (raises FgaSyntaxError / FgaValidationError for bad models).
        Stored tuples are kept."""
        self.write_schema(import_fga(text))

    def write_schema(self, schema: ir.Schema) -> None:
        """Replace the model with an already imported one (e.g. from OpenFGA's JSON form)."""
        compiled = CompiledSchema(schema, openfga_cycles=True)
        self._model = _Model(schema, compiled, Reachability.of(schema), make_evaluator(schema))
        self._index = None
        needed = 8 * ENGINE_DEPTH + 500  # a few Python frames per level of depth
        if sys.getrecursionlimit() < needed:
            sys.setrecursionlimit(needed)

    @property
    def schema(self) -> ir.Schema:
        """The current model as a schema IR."""
        return self._require_model().schema

    def write_tuples(self, tuples: Iterable[FgaTuple | Mapping[str, Any]]) -> None:
        """Write tuples, validated against the current model (error 2027 when refused)."""
        model = self._require_model()
        batch = [t if isinstance(t, FgaTuple) else FgaTuple.from_mapping(t) for t in tuples]
        for tup in batch:
            self._to_relationship(model.schema, tup, INVALID_TUPLE)
        for tup in batch:
            self.tuples[tup.key] = tup
        self._index = None

    def delete_tuples(self, tuples: Iterable[FgaTuple | Mapping[str, Any]]) -> None:
        """Delete tuples by key (absent ones are ignored)."""
        for tup in tuples:
            fga = tup if isinstance(tup, FgaTuple) else FgaTuple.from_mapping(tup)
            self.tuples.pop(fga.key, None)
        self._index = None

    # ---- queries ------------------------------------------------------------------------

    def check(
        self,
        object: str,
        relation: str,
        user: str,
        contextual_tuples: Sequence[FgaTuple | Mapping[str, Any]] = (),
        context: Mapping[str, Any] | None = None,
    ) -> bool:
        """OpenFGA Check: does `user` have `relation` on `object`?"""
        model = self._require_model()
        try:
            otype, oid = parse_object(object)
            self._require_relation(model.schema, otype, relation, VALIDATION_ERROR, VALIDATION_ERROR)
            subject = parse_user(user)
            self._require_user(model.schema, subject, VALIDATION_ERROR)
        except FgaRequestError as exc:
            raise FgaRequestError(VALIDATION_ERROR, exc.message) from None
        index = self._query_index(model, contextual_tuples)
        depth = self.max_depth
        race = model.compiled.race
        assert race is not None  # compiled with OpenFGA's cycle rule
        if race.recursive:
            # OpenFGA's depth counting: replay its walk (see cycle_race); the engine then
            # answers with room to spare. Unreplayable checks (conditions) keep the engine's.
            outcome = race.replay(
                index.objects, index.usersets, otype, oid, relation, subject, self.max_depth
            )
            if outcome is not None and outcome.error:
                raise FgaRequestError(
                    RESOLUTION_TOO_COMPLEX,
                    f"resolution of {object}#{relation} exceeded depth {self.max_depth}",
                )
            if outcome is not None:
                depth = ENGINE_DEPTH
        run = CheckRun(model.compiled, index, depth)
        try:
            result = run.dispatch(otype, oid, relation, subject, 0)
        except DepthExceeded as exc:
            raise FgaRequestError(RESOLUTION_TOO_COMPLEX, str(exc)) from None
        return self._decide(model, result, context)

    def list_objects(
        self,
        user: str,
        type: str,
        relation: str,
        contextual_tuples: Sequence[FgaTuple | Mapping[str, Any]] = (),
        context: Mapping[str, Any] | None = None,
    ) -> set[str]:
        """OpenFGA ListObjects: every `type:id` on which `user` has `relation`."""
        model = self._require_model()
        self._require_relation(model.schema, type, relation, TYPE_NOT_FOUND, RELATION_NOT_FOUND)
        subject = parse_user(user)
        self._require_user(model.schema, subject, VALIDATION_ERROR)
        index = self._query_index(model, contextual_tuples)
        if list_objects_too_deep(model.schema, model.facts, index, (type, relation), subject):
            raise FgaRequestError(
                RESOLUTION_TOO_COMPLEX, f"list objects exceeded depth {MAX_RESOLUTION_DEPTH}"
            )
        try:
            found = lookup_resources(
                model.compiled, model.facts, index, type, relation, subject, self.max_depth
            )
        except DepthExceeded as exc:
            raise FgaRequestError(RESOLUTION_TOO_COMPLEX, str(exc)) from None
        return {f"{type}:{rid}" for rid, result in found if self._decide(model, result, context, strict=True)}

    def list_users(
        self,
        object: str,
        relation: str,
        filters: Sequence[str],
        contextual_tuples: Sequence[FgaTuple | Mapping[str, Any]] = (),
        context: Mapping[str, Any] | None = None,
    ) -> set[str]:
        """OpenFGA ListUsers: users of the filter types (`type` or `type#relation`) that have
        `relation` on `object`; a wildcard is reported as `type:*`."""
        model = self._require_model()
        schema = model.schema
        try:
            otype, oid = parse_object(object)
        except FgaRequestError:
            raise
        self._require_relation(schema, otype, relation, TYPE_NOT_FOUND, RELATION_NOT_FOUND)
        parsed: list[tuple[str, str]] = []
        for text in filters:
            ftype, _, frel = text.partition("#")
            if ftype not in schema.definitions:
                raise FgaRequestError(TYPE_NOT_FOUND, f"type {ftype!r} not found")
            if frel:
                self._require_relation(schema, ftype, frel, TYPE_NOT_FOUND, RELATION_NOT_FOUND)
            parsed.append((ftype, frel))
        index = self._query_index(model, contextual_tuples)
        # OpenFGA expands nothing for a filter the model gives no path to (PathExists)
        reach = _grantable_reach(schema).get((otype, relation), set())
        users: set[str] = set()
        for ftype, frel in parsed:
            if (ftype, frel) not in reach:
                continue
            walk = ListUsersWalk(
                schema,
                index,
                ftype,
                frel,
                lambda caveat: self._condition_holds(model, caveat, context),
                self.max_depth,
            )
            try:
                users |= walk.users(otype, oid, relation)
            except ListUsersFailure as exc:
                raise FgaRequestError(exc.code, exc.message) from None
        return users

    # ---- helpers ------------------------------------------------------------------------

    def _require_model(self) -> _Model:
        if self._model is None:
            raise FgaRequestError(VALIDATION_ERROR, "no authorization model written")
        return self._model

    @staticmethod
    def _visible(schema: ir.Schema, type_name: str, relation: str) -> bool:
        """Whether `relation` is a relation of `type_name` as OpenFGA names them (the hidden
        `__direct` halves of split definitions are not)."""
        if schema.relation(type_name, relation) is None:
            return False
        if relation.endswith(HIDDEN_SUFFIX):
            return split_part(schema, type_name, relation[: -len(HIDDEN_SUFFIX)]) is None
        return True

    def _require_relation(
        self, schema: ir.Schema, type_name: str, relation: str, type_code: int, relation_code: int
    ) -> None:
        if type_name not in schema.definitions:
            raise FgaRequestError(type_code, f"type {type_name!r} not found")
        if not self._visible(schema, type_name, relation):
            raise FgaRequestError(relation_code, f"relation '{type_name}#{relation}' not found")

    def _require_user(self, schema: ir.Schema, subject: Subject, code: int) -> None:
        stype, _sid, srel = subject
        if stype not in schema.definitions:
            raise FgaRequestError(code, f"type {stype!r} not found")
        if srel and not self._visible(schema, stype, srel):
            raise FgaRequestError(code, f"relation '{stype}#{srel}' not found")

    def _to_relationship(self, schema: ir.Schema, tup: FgaTuple, code: int) -> Relationship:
        """The stored relationship for `tup` under `schema`; FgaRequestError(code) if the
        model does not admit it."""
        try:
            rtype, rid = parse_object(tup.object)
            stype, sid, srel = parse_user(tup.user)
            if tup.user == f"{tup.object}#{tup.relation}":
                raise InvalidArgument("cannot write a tuple that is implicit")
            if not self._visible(schema, rtype, tup.relation):
                raise InvalidArgument(f"relation '{rtype}#{tup.relation}' not found")
            stored = fga_write_relation(schema, rtype, tup.relation)
        except (FgaRequestError, InvalidArgument) as exc:
            raise FgaRequestError(code, f"invalid tuple {tup}: {exc}") from None
        caveat = ContextualizedCaveat(tup.condition, dict(tup.condition_context)) if tup.condition else None
        rel = Relationship(rtype, rid, stored, stype, sid, srel, caveat)
        error = admission_error(schema, rel)
        if error is not None:
            raise FgaRequestError(code, f"invalid tuple {tup}: {error}")
        return rel

    def _stored_index(self, model: _Model) -> RelationshipIndex:
        if self._index is None:
            kept: list[Relationship] = []
            for tup in self.tuples.values():
                try:
                    kept.append(self._to_relationship(model.schema, tup, INVALID_TUPLE))
                except FgaRequestError:
                    continue  # written under an earlier model that admitted it: ignored now
            self._index = RelationshipIndex.build(kept, 0)
        return self._index

    def _query_index(
        self, model: _Model, contextual: Sequence[FgaTuple | Mapping[str, Any]]
    ) -> RelationshipIndex:
        base = self._stored_index(model)
        if not contextual:
            return base
        extra = [
            self._to_relationship(
                model.schema, t if isinstance(t, FgaTuple) else FgaTuple.from_mapping(t), INVALID_TUPLE
            )
            for t in contextual
        ]
        return overlay(base, extra)

    @staticmethod
    def _condition_holds(
        model: _Model, caveat: ContextualizedCaveat, context: Mapping[str, Any] | None
    ) -> bool:
        """Whether one tuple's condition holds for the request (ListUsers evaluates each tuple
        it reads); a missing parameter or a bad context value fails the request (2000)."""
        leaf = CaveatLeaf(caveat.name, tuple(sorted(caveat.context.items())))
        try:
            outcome = resolve_condition(model.schema, leaf, context or {}, model.evaluator, True)
        except InvalidArgument as exc:
            raise ListUsersFailure(VALIDATION_ERROR, str(exc)) from None
        if outcome is ConditionOutcome.MISSING:
            raise ListUsersFailure(VALIDATION_ERROR, f"condition {caveat.name!r} is missing parameters")
        return outcome is ConditionOutcome.TRUE

    @staticmethod
    def _decide(
        model: _Model, result: Result, context: Mapping[str, Any] | None, strict: bool = False
    ) -> bool:
        if result is True or result is False:
            return result
        try:
            outcome = resolve_condition(model.schema, result, context or {}, model.evaluator, strict)
        except InvalidArgument as exc:
            raise FgaRequestError(VALIDATION_ERROR, str(exc)) from None
        if outcome is ConditionOutcome.MISSING:
            raise FgaRequestError(VALIDATION_ERROR, "a condition is missing parameters")
        return outcome is ConditionOutcome.TRUE
