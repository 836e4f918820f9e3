"""Check: does a subject hold a permission on a resource?

The schema is compiled once into one closure per (type, relation); a check walks them over
an index. Within one run, identical sub-problems are answered once (memo), cycles in the data
terminate (a sub-problem already on the stack contributes nothing), and a depth limit turns
runaway recursion into ResourceExhausted. Results are three-valued (see conditions.py).

Depth errors are deferred inside unions: another branch may still grant, and a grant found by
any branch is a true grant however deep the other branches go.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from stonetown.core.errors import ResourceExhausted
from stonetown.engine.closure import Closures
from stonetown.engine.conditions import UNKNOWN, CaveatLeaf, Result, all_of, any_of, negate
from stonetown.engine.cycle_race import CycleRace
from stonetown.engine.deadline import CHECK_EVERY, check_deadline, request_deadline
from stonetown.engine.index import RelationshipIndex, RelMeta
from stonetown.engine.reachability import evaluated_relations, reads_direct_only
from stonetown.schema import ir
from stonetown.schema.graphs import cyclic_nodes, postorder, strongly_connected_components

Subject = tuple[str, str, str]  # (type, id, relation or "")
EvalFn = Callable[["CheckRun", str, Subject, int], Result]
# True when an evaluation surely yields False for a plain subject, read from lookups alone: the
# evaluation it stands for dispatches nothing, raises nothing and reads no metadata (see
# _refuter_of)
Refuter = Callable[["CheckRun", str, Subject], bool]
# A nested set's answer from a closure for a dispatch at the given depth, None when the
# closure cannot give it (see closure_check.member_shortcut)
Member = Callable[["CheckRun", str, Subject, int], "bool | None"]

# Bounds on how far compilation inlines relations into one another, so that neither compiling
# nor evaluating a long chain of permissions recurses down the chain: unions spliced into a
# union (levels), unions compiled inside one another, and inline calls an evaluation nests.
MAX_SPLICE_LEVEL = 8
MAX_INLINE_NESTING = 2
MAX_INLINE_DEPTH = 4

_MISSING = object()
_NO_PLAN = (None, True)  # a relation the schema does not define: evaluates to False
_EMPTY: dict[tuple[str, str], RelMeta | None] = {}


class DepthExceeded(ResourceExhausted):
    """The walk went deeper than the configured limit."""


class CompiledSchema:
    """A schema turned into evaluation closures, one per (type, relation or permission)."""

    def __init__(self, schema: ir.Schema, shortcuts: bool = True, openfga_cycles: bool = False) -> None:
        """Compile `schema`. `shortcuts` False leaves out the evaluations skipped on the word
        of a refuter (see :meth:`_skips` and :func:`_compile_factored`) and the chains of
        nested sets walked as loops (:func:`_compile_chain`), for tests comparing them with
        the plain walk. `openfga_cycles` resolves cycles in the data as OpenFGA does (its
        flags and their races, for the OpenFGA-semantics store); otherwise exactly, see
        :meth:`CheckRun._cycle`."""
        self.schema = schema
        self.shortcuts = shortcuts
        self.openfga_cycles = openfga_cycles
        self.functions: dict[tuple[str, str], EvalFn] = {}
        self.allowed_tupleset: dict[tuple[str, str], tuple[frozenset[str], frozenset[tuple[str, str]]]] = {}
        for definition in schema.definitions.values():
            for relation in definition.relations.values():
                if not relation.is_permission:
                    self.allowed_tupleset[(definition.name, relation.name)] = _allowed_sets(relation.allowed)[
                        ::2
                    ]
        self.inlinable = _inlinable_targets(schema)
        self.graph = _relation_graph(schema)
        self._refuters: dict[tuple[str, str], Refuter | None] = {}
        # nested sets answered from the index's closures (engine/closure.py; not with OpenFGA's
        # cycle handling, whose answers depend on the walk)
        self._member_shortcuts: dict[tuple[str, str], Member] = {}
        if not openfga_cycles:
            from stonetown.engine.closure_check import member_shortcuts  # it imports this module

            self._member_shortcuts = member_shortcuts(schema)
        # relations no walk leads back to: never on the stack twice, so their dispatches
        # skip the stack (no cycle can pass through them)
        self.acyclic = frozenset(self.graph.keys() - cyclic_nodes(self.graph))
        self._component = strongly_connected_components(self.graph)
        self._flat_names_of: dict[tuple[str, str], set[str] | None] = {}
        # how many inline calls deep an evaluation of each compiled relation can go
        self._inline_depth: dict[tuple[str, str], int] = {}
        self._inline_level = 0
        self._nesting = 0
        # each relation's refuter as compiled (before a chain loop wraps it)
        self._plain_refuters: dict[tuple[str, str], Refuter | None] = {}
        # Compiled in an order where what a relation inlines and the acyclic relations whose
        # refuters it asks for come first: each is then found compiled, and compiling a long
        # chain of relations never recurses down the chain.
        for key in self._compile_order():
            relation = schema.relation(*key)
            if relation is None:
                continue
            self._inline_level = 0
            function = self._compile(key[0], key[1], relation.rewrite)
            self._inline_depth[key] = self._inline_level
            self._plain_refuters[key] = _refuter_of(function)
            if key in self.acyclic and key not in self._refuters:
                self._refuters[key] = self._plain_refuters[key]
            if shortcuts and _chain_shape(key[0], relation):
                function = _compile_chain(key[0], key[1], relation.rewrite, function)
            self.functions[key] = function
        self.closure_graphs: set[tuple[str, str, str]] = set()
        if not openfga_cycles:
            from stonetown.engine.closure_check import wrap_with_closures

            self.closure_graphs = wrap_with_closures(self)
        # (function, whether it can be met again while evaluated) per relation: one lookup
        # per dispatch
        self.plans: dict[tuple[str, str], tuple[EvalFn, bool]] = {
            key: (function, key not in self.acyclic) for key, function in self.functions.items()
        }
        self.simple_recursive: set[tuple[str, str]] | frozenset[tuple[str, str]] = EXACT_CYCLES
        self.race: CycleRace | None = None
        if openfga_cycles:
            self.simple_recursive = simple_recursive_relations(schema)
            self.race = CycleRace(schema, self.simple_recursive)

    def _compile_order(self) -> list[tuple[str, str]]:
        """Every relation after the relations it inlines and the acyclic relations it
        evaluates (the two kinds of relation a compilation looks up)."""
        needs: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for key, edges in self.graph.items():
            relation = self.schema.relation(*key)
            inlined = [
                (key[0], name)
                for name in (_computed_targets(relation.rewrite) if relation is not None else ())
                if (key[0], name) in self.inlinable
            ]
            needs[key] = inlined + [edge for edge in edges if edge in self.acyclic]
        return postorder(needs)

    def _cost(self, rtype: str, node: ir.Rewrite) -> int:
        """A rough rank of how much work evaluating `node` takes (0 = one dict lookup)."""
        if isinstance(node, ir.This | ir.Nil):
            return 0
        if isinstance(node, ir.ComputedUserset):
            target = self.schema.relation(rtype, node.relation)
            if target is not None and isinstance(target.rewrite, ir.This):
                return 1 if all(a.relation is None for a in target.allowed) else 2
            return 3
        if isinstance(node, ir.TupleToUserset):
            return 4
        return 5

    def _relation_refuter(self, rtype: str, rel: str) -> Refuter | None:
        """The refuter of `rtype#rel` as its dispatch evaluates it (None if it has none)."""
        key = (rtype, rel)
        if key not in self._refuters:
            self._refuters[key] = None  # no re-entry (refuters are asked for acyclic relations)
            relation = self.schema.relation(rtype, rel)
            if relation is not None:
                self._refuters[key] = _refuter_of(self._compile(rtype, rel, relation.rewrite))
        return self._refuters[key]

    def _skips(self, targets: set[tuple[str, str]]) -> dict[tuple[str, str], Refuter]:
        """Refuters of the dispatch targets a closure may skip: a dispatch of an acyclic
        relation (never on the stack, so no cycle value) below the depth limit whose refuter
        holds yields False with no other effect than its memo entry."""
        out: dict[tuple[str, str], Refuter] = {}
        for target in targets:
            if self.shortcuts and target in self.acyclic:
                refute = self._relation_refuter(*target)
                if refute is not None:
                    out[target] = refute
        return out

    def _members_of(self, targets: frozenset[tuple[str, str]]) -> dict[tuple[str, str], Member]:
        """The nested sets among `targets` a closure can answer without a dispatch."""
        shortcuts = self._member_shortcuts
        return {target: shortcuts[target] for target in targets if target in shortcuts}

    def _compile(self, rtype: str, rel: str, node: ir.Rewrite) -> EvalFn:
        if isinstance(node, ir.This):
            usersets = _allowed_sets(node.allowed)[2]
            skips, members = self._skips(usersets), self._members_of(usersets)
            return _compile_this(rtype, rel, node, skips=skips, members=members)
        if isinstance(node, ir.ComputedUserset):
            target = node.relation
            key = (rtype, target)
            if key in self.inlinable:
                # Same object, no cycle possible through computed usersets alone: evaluate the
                # target in place, skipping the memo and cycle bookkeeping.
                rewrite = self.schema.definitions[rtype].relations[target].rewrite
                if isinstance(rewrite, ir.This):
                    return _compile_this(rtype, target, rewrite, itself=True)
                if isinstance(rewrite, ir.Union) and self._nesting < MAX_INLINE_NESTING:
                    self._nesting += 1
                    try:
                        return self._compile_flat_union(rtype, target, rewrite, itself=True)
                    finally:
                        self._nesting -= 1
                # Compiled before (see _compile_order); past a few inline calls, a dispatch
                # (which counts against the depth limit) keeps evaluation off deep recursion.
                hops = self._inline_depth.get(key)
                if key in self.functions and hops is not None and hops < MAX_INLINE_DEPTH:
                    self._inline_level = max(self._inline_level, hops + 1)
                    # the function itself, not the table: a closure over the table would make
                    # every compiled schema a reference cycle, freed only by full collections
                    # (each walking the whole heap with the GIL held) instead of at once
                    inlined = self.functions[key]  # compiled before, never replaced

                    def computed_inline(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
                        if subj[2] == target and subj[1] == rid and subj[0] == rtype:
                            return True  # a subject set is a member of itself
                        return inlined(run, rid, subj, depth)

                    # functions[key] is compiled from the same rewrite: the same refuter
                    _set_refuter(computed_inline, self._plain_refuters.get(key))
                    return computed_inline

            def computed(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
                return run.dispatch(rtype, rid, target, subj, depth)

            return computed
        if isinstance(node, ir.TupleToUserset):
            allowed = self.allowed_tupleset.get((rtype, node.tupleset), (frozenset(), frozenset()))
            skips = self._skips({(st, node.computed) for st in allowed[0]})
            return _compile_arrow(rtype, node, allowed, {st: refute for (st, _), refute in skips.items()})
        if isinstance(node, ir.Union):
            return self._compile_flat_union(rtype, rel, node)
        if isinstance(node, ir.Intersection):
            # Cheapest operands first: a direct lookup often decides a union (True) or an
            # intersection (False) before any walk. The answer does not depend on the order.
            ordered = sorted(node.children, key=lambda child: self._cost(rtype, child))
            return _compile_intersection(tuple(self._compile(rtype, rel, c) for c in ordered))
        if isinstance(node, ir.Exclusion):
            return _compile_exclusion(
                self._compile(rtype, rel, node.base),
                self._compile(rtype, rel, node.subtract),
                marked=not self.openfga_cycles,
            )
        return _nil

    def _flatten(
        self,
        rtype: str,
        rel: str,
        node: ir.Rewrite,
        names: set[str],
        leaves: dict[tuple[object, ...], tuple[int, ir.Rewrite, str]],
        level: int = 0,
    ) -> None:
        """The operands of a union, with the unions of inlinable computed usersets spliced in
        (`own = owner + org->owner` inside `manage = own + manager`): one flat union instead
        of a call per level. `names` collects the relations inlined (a subject set naming one
        of them is a member of itself); `leaves` maps an operand's identity to (rank, node,
        relation whose rewrite holds it), so an operand reached twice is evaluated once. The
        rank orders by kind (lookups, subject sets, dispatches, arrows, the rest), then by
        nesting `level`: relations written closer to the top come first."""
        if isinstance(node, ir.Union):
            for child in node.children:
                self._flatten(rtype, rel, child, names, leaves, level)
        elif (
            isinstance(node, ir.ComputedUserset)
            and (rtype, node.relation) in self.inlinable
            and level < MAX_SPLICE_LEVEL
        ):
            target = self.schema.relation(rtype, node.relation)
            assert target is not None  # inlinable relations are defined
            names.add(node.relation)
            self._flatten(rtype, node.relation, target.rewrite, names, leaves, level + 1)
        elif isinstance(node, ir.This):
            objects, wildcards, usersets = _allowed_sets(node.allowed)
            if objects or wildcards:
                leaves.setdefault(("objects", rel), (level, node, rel))
            if usersets:
                leaves.setdefault(("usersets", rel), (200 + level, node, rel))
        elif isinstance(node, ir.TupleToUserset):
            leaves.setdefault(("arrow", node.tupleset, node.computed, node.mode), (400 + level, node, rel))
        elif isinstance(node, ir.ComputedUserset):
            leaves.setdefault(("computed", node.relation), (300 + level, node, rel))
        elif not isinstance(node, ir.Nil):
            leaves.setdefault(("node", rel, id(node)), (500 + level, node, rel))

    def _flat_names(self, rtype: str, relation: str) -> set[str] | None:
        """`relation` and the relations of `rtype` its flattened union inlines (None when
        `rtype` has no such relation)."""
        key = (rtype, relation)
        if key not in self._flat_names_of:
            found = self.schema.relation(rtype, relation)
            names: set[str] | None = None
            if found is not None:
                names = {relation}
                self._flatten(rtype, relation, found.rewrite, names, {})
            self._flat_names_of[key] = names
        return self._flat_names_of[key]

    def _subsumed(self, rtype: str, tupleset: str, smaller: str, larger: str) -> bool:
        """Whether the arrow `tupleset->smaller` adds nothing to a union that also holds
        `tupleset->larger`: on every type the tupleset admits, `larger` is a union that
        inlines `smaller` (so `smaller` is evaluated inside it, at the same depth), and
        `larger` is not reachable from `smaller` (so no cycle cut can make `smaller`'s value
        differ between the two places)."""
        tupleset_relation = self.schema.relation(rtype, tupleset)
        if tupleset_relation is None:
            return False
        for target_type in {a.type for a in tupleset_relation.allowed}:
            names = self._flat_names(target_type, larger)
            if names is None or smaller not in names:
                return False
            # `larger` reaches `smaller` (it inlines it): the way back exists when both
            # share a strongly connected component
            if self._component.get((target_type, smaller)) == self._component.get((target_type, larger)):
                return False
        return True

    def compile_union_split(
        self, rtype: str, rel: str, node: ir.Union, leaf: tuple[object, ...]
    ) -> tuple[EvalFn, EvalFn]:
        """The union `node` of `rtype#rel` as :meth:`_compile_flat_union` compiles it, less
        its operand `leaf` (a key of :meth:`_flatten`), as two unions: the operands it
        evaluates before `leaf` and those after (what an ancestor arrow evaluates on each
        ancestor, in the walk's order: engine/closure_check.py)."""
        operands, names, split = self._flat_union_operands(rtype, rel, node, False, leaf)
        return _compile_union(tuple(operands[:split]), names, rtype), _compile_union(
            tuple(operands[split:]), names, rtype
        )

    def _compile_flat_union(self, rtype: str, rel: str, node: ir.Union, itself: bool = False) -> EvalFn:
        """A union, flattened (see :meth:`_flatten`), arrows that another arrow of the union
        subsumes dropped. `itself`: a subject set naming `rel` on the object is a member."""
        operands, names, _ = self._flat_union_operands(rtype, rel, node, itself)
        return _compile_union(tuple(operands), names, rtype)

    def _flat_union_operands(
        self, rtype: str, rel: str, node: ir.Union, itself: bool, without: tuple[object, ...] = ()
    ) -> tuple[list[EvalFn], frozenset[str], int]:
        """The compiled operands of :meth:`_compile_flat_union`, the names of the relations
        it inlines, and where the operand `without` (left out) stood among them."""
        names: set[str] = {rel} if itself else set()
        leaves: dict[tuple[object, ...], tuple[int, ir.Rewrite, str]] = {}
        self._flatten(rtype, rel, node, names, leaves)
        arrows = [k for k in leaves if k[0] == "arrow" and k[3] == "any"]
        for key in arrows:
            if any(
                other[1] == key[1]
                and other[2] != key[2]
                and other in leaves
                and self._subsumed(rtype, key[1], key[2], other[2])  # type: ignore[arg-type]
                for other in arrows
            ):
                del leaves[key]
        compiled: list[EvalFn] = []
        split = -1
        # The direct lookups of plain subjects, all in one closure, then the other operands
        # cheapest first: a direct lookup often decides the union before any walk. The
        # answer does not depend on the order.
        ordered = sorted(leaves.items(), key=lambda item: item[1][0])
        factored = self._factor(rtype, ordered)
        direct = [(owner, child) for key, (_, child, owner) in ordered if key[0] == "objects"]
        if len(direct) > 1:
            compiled.append(_compile_objects(rtype, direct))  # type: ignore[arg-type]
        for key, (_, child, owner) in ordered:
            if key == without:
                split = len(compiled)
                continue
            if key[0] == "objects" and len(direct) > 1:
                continue
            if key in factored:
                function = factored[key]
                if function is not None:
                    compiled.append(function)
                continue
            if key[0] in ("objects", "usersets"):
                usersets = _allowed_sets(child.allowed)[2] if key[0] == "usersets" else frozenset()  # type: ignore[attr-defined]
                skips, members = self._skips(usersets), self._members_of(usersets)
                compiled.append(_compile_this(rtype, owner, child, key[0], skips=skips, members=members))  # type: ignore[arg-type]
            else:
                compiled.append(self._compile(rtype, owner, child))
        return compiled, frozenset(names), split if split >= 0 else len(compiled)

    def _flag(self, rtype: str, node: ir.Rewrite) -> bool:
        """Whether `node` names a relation of `rtype` storing plain subjects or wildcards
        only, none with a caveat: one lookup, always True or False."""
        if not isinstance(node, ir.ComputedUserset) or (rtype, node.relation) not in self.inlinable:
            return False
        target = self.schema.relation(rtype, node.relation)
        return (
            target is not None
            and isinstance(target.rewrite, ir.This)
            and all(a.relation is None and a.caveat is None for a in target.rewrite.allowed)
        )

    def _caveat_free(self, rtype: str, node: ir.Rewrite) -> bool:
        """Whether no relation `node` evaluates, however deep, admits a caveated subject (so
        its value is True, False or UNKNOWN, never a caveat expression)."""
        seen: set[tuple[str, str]] = set()
        todo = list(evaluated_relations(self.schema, rtype, node))
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            relation = self.schema.relation(*current)
            if relation is not None and any(a.caveat is not None for a in relation.allowed):
                return False
            todo.extend(self.graph.get(current, ()))
        return True

    def _factor(
        self, rtype: str, ordered: list[tuple[tuple[object, ...], tuple[int, ir.Rewrite, str]]]
    ) -> dict[tuple[object, ...], EvalFn | None]:
        """Union operands `c & f1`, `c & f2`, ... sharing an operand `c`, each other operand
        a flag (see :meth:`_flag`), evaluated as one `c & (f1 + f2 + ...)`: the flags in one
        closure, `c` at most once (`member & grants_run` on each level of a role's grants).
        Exact: with the flags plainly True or False and `c` free of caveats, both forms have
        the value of `c` when a flag is set, else False. Maps the first operand of each group
        (in `ordered`) to the evaluation of the group, the others to None."""
        pairs: dict[tuple[object, ...], tuple[ir.Rewrite, ir.Rewrite]] = {}
        for key, (_, node, _owner) in ordered:
            if key[0] != "node" or not isinstance(node, ir.Intersection) or len(node.children) != 2:
                continue
            first, second = node.children
            # the shared operand must not depend on the relation holding the operand (a
            # direct `[user]` would): a computed userset or an arrow
            for common, flag in ((first, second), (second, first)):
                if (
                    isinstance(common, ir.ComputedUserset | ir.TupleToUserset)
                    and self._flag(rtype, flag)
                    and not self._flag(rtype, common)
                ):
                    pairs[key] = (common, flag)
                    break
        groups: dict[ir.Rewrite, list[tuple[object, ...]]] = {}
        for key, (common, _flag) in pairs.items():
            groups.setdefault(common, []).append(key)
        out: dict[tuple[object, ...], EvalFn | None] = {}
        for common, keys in groups.items():
            if len(keys) < 2 or not self._caveat_free(rtype, common):
                continue
            flags: dict[str, ir.This] = {}
            for key in keys:
                flag = pairs[key][1]
                assert isinstance(flag, ir.ComputedUserset)  # see _flag
                target = self.schema.relation(rtype, flag.relation)
                assert target is not None and isinstance(target.rewrite, ir.This)
                flags[flag.relation] = target.rewrite
            # the flags first, as each intersection would (a lookup before a walk); a flag
            # named by a subject set is a member of itself, as inlined
            lookups = _compile_objects(rtype, list(flags.items()), frozenset(flags))
            shared = self._compile(rtype, "", common)
            if self.shortcuts:
                out[keys[0]] = _compile_factored(lookups, shared)
            else:
                out[keys[0]] = _compile_intersection((lookups, shared))
            for key in keys[1:]:
                out[key] = None
        return out


def _relation_graph(schema: ir.Schema) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """(type, relation) -> the (type, relation) pairs its rewrite evaluates directly."""
    return {
        (definition.name, relation.name): evaluated_relations(schema, definition.name, relation.rewrite)
        for definition in schema.definitions.values()
        for relation in definition.relations.values()
    }


def _computed_targets(node: ir.Rewrite) -> set[str]:
    """Relations of the same object a rewrite refers to by name."""
    if isinstance(node, ir.ComputedUserset):
        return {node.relation}
    if isinstance(node, ir.Union | ir.Intersection):
        return set().union(*(_computed_targets(c) for c in node.children))
    if isinstance(node, ir.Exclusion):
        return _computed_targets(node.base) | _computed_targets(node.subtract)
    return set()


def _inlinable_targets(schema: ir.Schema) -> set[tuple[str, str]]:
    """(type, relation) pairs that no chain of computed usersets leads back to, so a computed
    userset naming them can be evaluated inline without risking endless recursion."""
    found: set[tuple[str, str]] = set()
    for definition in schema.definitions.values():
        graph = {name: _computed_targets(r.rewrite) for name, r in definition.relations.items()}
        cyclic = cyclic_nodes(graph)
        found.update((definition.name, name) for name in definition.relations if name not in cyclic)
    return found


# Put in place of a compiled schema's simple recursive relations, makes every cycle plainly
# False: OpenFGA's ListUsers expands that way, without cycle flags.
PLAIN_CYCLES: frozenset[tuple[str, str]] = frozenset({("", "")})
# A compiled schema's simple recursive relations when cycles are resolved exactly (not
# OpenFGA's way): see CheckRun._cycle.
EXACT_CYCLES: frozenset[tuple[str, str]] = frozenset({("", "exact")})


def simple_recursive_relations(schema: ir.Schema) -> set[tuple[str, str]]:
    """Relations whose only way back to themselves is one plain recursive edge, every other
    operand assigned directly: a relation admitting its own subject set besides plain subjects
    (`member: user | group#member`), or a permission that is a union with one arrow to itself
    (`view = viewer + parent->view`). A cycle through such a relation alone is resolved
    exactly (it adds nothing); OpenFGA does the same for these shapes (its recursive strategy)
    and flags other cycles as unresolved. None in a model where a relation reaches itself
    through an intersection or exclusion operand: OpenFGA then resolves every cycle by
    dispatch and flags it (observed with `fga model test`, OpenFGA v1.22)."""
    graph: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            graph[(definition.name, relation.name)] = evaluated_relations(
                schema, definition.name, relation.rewrite
            )

    component = strongly_connected_components(graph)

    def reaches(start: set[tuple[str, str]], goal: tuple[str, str]) -> bool:
        # `start` holds edges out of `goal`: one leads back to it when both share a component
        return any(node == goal or component.get(node) == component[goal] for node in start)

    # OpenFGA does not use its flag-free recursive strategy at all in a model in which a
    # relation reaches itself through an intersection or exclusion operand (observed).
    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            key = (definition.name, relation.name)
            for operand in _set_operation_operands(relation.rewrite):
                if reaches(evaluated_relations(schema, key[0], operand), key):
                    return set()

    found: set[tuple[str, str]] = set()
    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            key = (definition.name, relation.name)
            rewrite = relation.rewrite
            if isinstance(rewrite, ir.This):
                # OpenFGA's recursive strategy also needs every other operand to be assigned
                # directly (weight 1): another subject set makes it dispatch, cycles flagged
                # (nor is it used for a relation admitting a wildcard: observed)
                others = {edge for edge in evaluated_relations(schema, key[0], rewrite) if edge != key}
                wildcard = any(a.wildcard for a in rewrite.allowed)
                if key in evaluated_relations(schema, key[0], rewrite) and not others and not wildcard:
                    found.add(key)
                continue
            children = list(rewrite.children) if isinstance(rewrite, ir.Union) else [rewrite]
            recursive = [
                c
                for c in children
                if isinstance(c, ir.TupleToUserset) and c.computed == key[1] and c.mode == "any"
            ]
            rest = [c for c in children if c not in recursive]
            if len(recursive) != 1:
                continue
            arrow_edges = evaluated_relations(schema, key[0], recursive[0]) - {key}
            rest_edges = (
                set().union(*(evaluated_relations(schema, key[0], c) for c in rest)) if rest else set()
            )
            if not reaches(arrow_edges | rest_edges, key) and all(
                reads_direct_only(schema, key[0], c) for c in rest
            ):
                found.add(key)
    return found


def _set_operation_operands(node: ir.Rewrite) -> list[ir.Rewrite]:
    """The operands of every intersection and exclusion within a rewrite."""
    if isinstance(node, ir.Intersection):
        return [*node.children, *(o for c in node.children for o in _set_operation_operands(c))]
    if isinstance(node, ir.Exclusion):
        children = [node.base, node.subtract]
        return [*children, *(o for c in children for o in _set_operation_operands(c))]
    if isinstance(node, ir.Union):
        return [o for c in node.children for o in _set_operation_operands(c)]
    return []


def _allowed_sets(
    allowed: tuple[ir.AllowedSubject, ...],
) -> tuple[frozenset[str], frozenset[str], frozenset[tuple[str, str]]]:
    """(object types, wildcard types, (type, relation) subject sets) a relation admits."""
    objects = frozenset(a.type for a in allowed if a.relation is None and not a.wildcard)
    wildcards = frozenset(a.type for a in allowed if a.wildcard)
    usersets = frozenset((a.type, a.relation) for a in allowed if a.relation is not None)
    return objects, wildcards, usersets


def _nil(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
    return False


def _set_refuter(function: EvalFn, refute: Refuter | None) -> None:
    if refute is not None:
        function.refute = refute  # type: ignore[attr-defined]


def _refuter_of(function: EvalFn) -> Refuter | None:
    """The refuter of a compiled closure: a test, from lookups alone, that the closure yields
    False for a plain subject without dispatching, raising or reading metadata (so skipping it
    changes nothing). None when the closure has none."""
    return getattr(function, "refute", None)


def _skipped(run: CheckRun, key: tuple[str, str, str, Subject]) -> None:
    """What the dispatch of `key` would leave when its refuter holds (a plain subject, an
    acyclic relation, below the depth limit): its memo entry, False, and one dispatch off the
    deadline budget (none when the memo already answers)."""
    memo = run.memo
    if key not in memo:
        memo[key] = False
        run.budget -= 1
        if not run.budget:
            run.budget = CHECK_EVERY
            check_deadline(run.deadline)


def _compile_factored(lookups: EvalFn, shared: EvalFn) -> EvalFn:
    """`lookups & shared` (flags and their shared operand, see CompiledSchema._factor), with
    the shared operand's refuter as its own: it costs one lookup where the flags cost one
    each, and when it holds the intersection is False whatever the flags (which never raise
    nor dispatch, and whose metadata cannot change that answer)."""
    evaluate = _compile_intersection((lookups, shared))
    _set_refuter(evaluate, _refuter_of(shared))
    return evaluate


def _compile_this(
    rtype: str,
    rel: str,
    node: ir.This,
    part: str = "all",
    itself: bool = False,
    skips: dict[tuple[str, str], Refuter] | None = None,
    members: dict[tuple[str, str], Member] | None = None,
) -> EvalFn:
    """The relationships stored under `rtype#rel`: `part` "objects" looks up plain subjects
    and wildcards only, "usersets" walks subject sets only, "all" does both. `itself`: the
    subject set `rtype:rid#rel` is a member (for a relation evaluated inline). `skips`:
    refuters of subject-set relations whose dispatch may be skipped (CompiledSchema._skips)."""
    object_types, wildcard_types, userset_types = _allowed_sets(node.allowed)
    if part == "usersets":
        object_types = wildcard_types = frozenset()
    elif part == "objects":
        userset_types = frozenset()
    has_objects = bool(object_types or wildcard_types)
    skips = skips or {}

    def this(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        key = (rtype, rid, rel)
        stype, sid, srel = subj
        if itself and srel == rel and sid == rid and stype == rtype:
            return True
        result: Result = False
        if has_objects and not srel:
            # the subject's own short list of holders answers "not stored here" without a
            # probe of the big forward map; the map is read only for a hit (its metadata)
            held = run.held if subj is run.held_subject else run.held_by(subj)
            if stype in object_types and key in held:
                meta = run.objects.get(key, _EMPTY).get((stype, sid), _MISSING)
                if meta is None:
                    return True
                if meta is not _MISSING:
                    result = run.meta_result(meta)  # type: ignore[arg-type]
                    if result is True:
                        return True
            if stype in wildcard_types:
                # the keys storing `stype:*` (a set far smaller than the forward map) answer
                # most lookups without a probe of that map
                wild = run.wild
                if wild is None:
                    wild = run.wild_of(stype)
                bucket = run.objects.get(key) if key in wild else None
                if bucket is not None:
                    meta = bucket.get((stype, "*"), _MISSING)
                    if meta is None:
                        return True
                    if meta is not _MISSING:
                        result = any_of(result, run.meta_result(meta))  # type: ignore[arg-type]
                        if result is True:
                            return True
        if userset_types:
            ubucket = run.usersets.get(key)
            if ubucket:
                deferred: DepthExceeded | None = None
                for (ustype, usid, usrel), meta in ubucket.items():
                    if (ustype, usrel) not in userset_types:
                        continue
                    edge: Result = True
                    if meta is not None:
                        edge = run.meta_result(meta)
                        if edge is False:
                            continue
                    if skips and not srel and depth < run.max_depth:
                        refute = skips.get((ustype, usrel))
                        if refute is not None and refute(run, usid, subj):
                            _skipped(run, (ustype, usid, usrel, subj))
                            continue
                    # a nested set answered by its closure, without a dispatch (closure_check)
                    member = members.get((ustype, usrel)) if members and not srel else None
                    found = member(run, usid, subj, depth) if member is not None else None
                    if found is False:
                        continue
                    if found is None:
                        try:
                            found = run.dispatch(ustype, usid, usrel, subj, depth)
                        except DepthExceeded as exc:
                            deferred = exc
                            continue
                    if edge is not True:
                        found = all_of(edge, found)
                    if found is True:
                        return True
                    if found is not False:
                        result = any_of(result, found)
                if deferred is not None:
                    raise deferred
        return result

    def refute(run: CheckRun, rid: str, subj: Subject) -> bool:
        stype, sid, srel = subj
        if srel:
            return False
        key = (rtype, rid, rel)
        if has_objects:
            held = run.held if subj is run.held_subject else run.held_by(subj)
            if stype in object_types and key in held:
                return False
            if stype in wildcard_types:
                wild = run.wild
                if wild is None:
                    wild = run.wild_of(stype)
                if key in wild:
                    return False
        return not (userset_types and run.usersets.get(key))

    _set_refuter(this, refute)
    return this


def _chain_shape(rtype: str, relation: ir.Relation) -> bool:
    """Whether `relation` stores plain subjects and subject sets of itself only (`member:
    user | team#member`), no wildcard: nested teams (see :func:`_compile_chain`)."""
    rewrite = relation.rewrite
    if not isinstance(rewrite, ir.This):
        return False
    objects, wildcards, usersets = _allowed_sets(rewrite.allowed)
    return bool(objects) and not wildcards and usersets == {(rtype, relation.name)}


def _compile_chain(rtype: str, rel: str, node: ir.This, walk: EvalFn) -> EvalFn:
    """A relation of :func:`_chain_shape` for a plain subject, where its subject sets form a
    chain (each set holds at most one set of this relation: team in team in team): the
    walk's dispatches down the chain replayed as one loop, with `walk` (the plain evaluation)
    wherever the chain branches or a relationship has a caveat or an expiration.

    Step for step what the walk does: each set of the chain is looked up in the memo, cut
    as a cycle when already on the stack (the value CheckRun._cycle gives; the loop's own
    sets are all of this relation, so they would not change it), refused at the depth limit
    (the walk's DepthExceeded, raised through every set above it), counted against the
    deadline budget, and memoized with the value it hands up unless a cycle was cut below
    it. Nothing is written before the loop knows it can answer: a fallback to `walk` starts
    from an unchanged run."""
    object_types = _allowed_sets(node.allowed)[0]
    pair = (rtype, rel)

    def chain(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        stype, sid, srel = subj
        if srel or stype not in object_types:
            return walk(run, rid, subj, depth)
        held = run.held if subj is run.held_subject else run.held_by(subj)
        objects, usersets, memo = run.objects, run.usersets, run.memo
        skey = (stype, sid)
        # past the first set: the sets of this relation holding the subject directly, and
        # those on the stack for it, read once, then one probe of a small set per step
        direct: set[str] | None = None
        outer: set[str] | None = None
        path: list[tuple[str, str, str, Subject]] = []  # memo keys of the sets dispatched
        inner = {rid}  # rid and the sets of `path`: the walk's frames of this loop
        current = rid
        cut = False
        error: DepthExceeded | None = None
        while True:
            key = (rtype, current, rel)
            if current in direct if direct is not None else key in held:  # type: ignore[operator]
                meta = objects.get(key, _EMPTY).get(skey, _MISSING)
                if meta is None:
                    value: Result = True
                    break
                if meta is not _MISSING:
                    return walk(run, rid, subj, depth)
            ubucket = usersets.get(key)
            child = None
            if ubucket:
                for (ustype, usid, usrel), meta in ubucket.items():
                    if usrel != rel or ustype != rtype:
                        continue
                    if child is not None or meta is not None:
                        return walk(run, rid, subj, depth)  # a branch, or metadata
                    child = usid
            if child is None:
                value = False
                break
            # run.dispatch(rtype, child, rel, subj, depth + len(path)), unrolled
            if outer is None:
                outer = {k[1] for k in run.stack if k[2] == rel and k[0] == rtype and k[3] == subj}
                if type(held) is tuple:
                    direct = {k[1] for k in held if k[2] == rel and k[0] == rtype}
            dkey = (rtype, child, rel, subj)
            known = memo.get(dkey)
            if known is not None:
                value = known
                break
            if child in inner:
                # met again within the loop: _cycle over frames all of this relation
                cycles = run.simple_recursive
                cut = True
                plain = cycles is PLAIN_CYCLES or cycles is EXACT_CYCLES
                value = False if plain or pair in cycles else UNKNOWN
                break
            if child in outer:
                cut, value = True, run._cycle(dkey, rtype, rel)
                break
            if depth + len(path) >= run.max_depth:
                error = DepthExceeded(
                    f"check exceeded the maximum depth of {run.max_depth} at {rtype}:{child}#{rel}"
                )
                break
            path.append(dkey)
            inner.add(child)
            current = child
        for _ in path:
            run.budget -= 1
            if not run.budget:
                run.budget = CHECK_EVERY
                check_deadline(run.deadline)
        if error is not None:
            raise error
        if cut:
            run.cut = True
        else:
            for dkey in path:
                memo[dkey] = value
        return value

    return chain


def _compile_objects(
    rtype: str, direct: list[tuple[str, ir.This]], itself: frozenset[str] = frozenset()
) -> EvalFn:
    """The plain-subject and wildcard lookups of several relations of one union (the
    "objects" part of :func:`_compile_this` for each), in one closure. `itself`: relations
    whose subject set on the object is a member (relations evaluated inline)."""
    specs = tuple((rel, *_allowed_sets(node.allowed)[:2]) for rel, node in direct)

    def objects(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        stype, sid, srel = subj
        if srel:
            return srel in itself and sid == rid and stype == rtype
        result: Result = False
        get = run.objects.get
        held = run.held if subj is run.held_subject else run.held_by(subj)
        for rel, object_types, wildcard_types in specs:
            key = (rtype, rid, rel)
            if stype in object_types and key in held:
                meta = get(key, _EMPTY).get((stype, sid), _MISSING)
                if meta is None:
                    return True
                if meta is not _MISSING:
                    result = any_of(result, run.meta_result(meta))  # type: ignore[arg-type]
                    if result is True:
                        return True
            if stype in wildcard_types:
                wild = run.wild
                if wild is None:
                    wild = run.wild_of(stype)
                if key not in wild:
                    continue
                bucket = get(key)
                if bucket is None:
                    continue
                meta = bucket.get((stype, "*"), _MISSING)
                if meta is None:
                    return True
                if meta is not _MISSING:
                    result = any_of(result, run.meta_result(meta))  # type: ignore[arg-type]
                    if result is True:
                        return True
        return result

    def refute(run: CheckRun, rid: str, subj: Subject) -> bool:
        stype, sid, srel = subj
        if srel:
            return False
        held = run.held if subj is run.held_subject else run.held_by(subj)
        for rel, object_types, wildcard_types in specs:
            key = (rtype, rid, rel)
            if stype in object_types and key in held:
                return False
            if stype in wildcard_types:
                wild = run.wild
                if wild is None:
                    wild = run.wild_of(stype)
                if key in wild:
                    return False
        return True

    _set_refuter(objects, refute)
    return objects


def _compile_arrow(
    rtype: str,
    node: ir.TupleToUserset,
    allowed: tuple[frozenset[str], frozenset[tuple[str, str]]],
    skips: dict[str, Refuter] | None = None,
) -> EvalFn:
    """`tupleset->computed` (any target, or every target for `all`). `skips`: per target
    type, the refuter of `computed` when its dispatch may be skipped (CompiledSchema._skips)."""
    tupleset, computed, every = node.tupleset, node.computed, node.mode == "all"
    skips = skips or {}
    object_types, userset_types = allowed

    def targets(run: CheckRun, rid: str) -> list[tuple[str, str, RelMeta | None]]:
        key = (rtype, rid, tupleset)
        found: list[tuple[str, str, RelMeta | None]] = []
        # only the maps the tupleset admits subjects from: one dict probe less per arrow
        if object_types:
            bucket = run.objects.get(key)
            if bucket:
                for (st, sid), meta in bucket.items():
                    if st in object_types and sid != "*":
                        found.append((st, sid, meta))
        if userset_types:
            ubucket = run.usersets.get(key)
            if ubucket:
                for (st, sid, srel), meta in ubucket.items():
                    if (st, srel) in userset_types:
                        found.append((st, sid, meta))
        return found

    def arrow_any(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        result: Result = False
        deferred: DepthExceeded | None = None
        for st, sid, meta in targets(run, rid):
            edge: Result = True
            if meta is not None:
                edge = run.meta_result(meta)
                if edge is False:
                    continue
            try:
                found = run.dispatch(st, sid, computed, subj, depth)
            except DepthExceeded as exc:
                deferred = exc
                continue
            if edge is not True:
                found = all_of(edge, found)
            if found is True:
                return True
            if found is not False:
                result = any_of(result, found)
        if deferred is not None:
            raise deferred
        return result

    def arrow_any_objects(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        # arrow_any over a tupleset of plain objects only (nearly every arrow): the bucket
        # is walked in place, no list of targets is built
        bucket = run.objects.get((rtype, rid, tupleset))
        if not bucket:
            return False
        result: Result = False
        deferred: DepthExceeded | None = None
        for (st, sid), meta in bucket.items():
            if st not in object_types or sid == "*":
                continue
            edge: Result = True
            if meta is not None:
                edge = run.meta_result(meta)
                if edge is False:
                    continue
            if skips and not subj[2] and depth < run.max_depth:
                refute = skips.get(st)
                if refute is not None and refute(run, sid, subj):
                    _skipped(run, (st, sid, computed, subj))
                    continue
            try:
                found = run.dispatch(st, sid, computed, subj, depth)
            except DepthExceeded as exc:
                deferred = exc
                continue
            if edge is not True:
                found = all_of(edge, found)
            if found is True:
                return True
            if found is not False:
                result = any_of(result, found)
        if deferred is not None:
            raise deferred
        return result

    def arrow_all(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        result: Result = True
        seen = False
        for st, sid, meta in targets(run, rid):
            edge: Result = True
            if meta is not None:
                edge = run.meta_result(meta)
                if edge is False:
                    continue
            seen = True
            found = run.dispatch(st, sid, computed, subj, depth)
            result = all_of(result, all_of(edge, found))
            if result is False:
                return False
        return result if seen else False

    if every:
        return arrow_all
    if userset_types:
        return arrow_any

    def refute(run: CheckRun, rid: str, subj: Subject) -> bool:
        return not subj[2] and not run.objects.get((rtype, rid, tupleset))

    _set_refuter(arrow_any_objects, refute)
    return arrow_any_objects


def _compile_union(
    children: tuple[EvalFn, ...], names: frozenset[str] = frozenset(), rtype: str = ""
) -> EvalFn:
    def union(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        if subj[2] in names and subj[1] == rid and subj[0] == rtype:
            return True  # a subject set is a member of itself (an inlined relation)
        result: Result = False
        deferred: DepthExceeded | None = None
        for child in children:
            try:
                found = child(run, rid, subj, depth)
            except DepthExceeded as exc:
                deferred = exc
                continue
            if found is True:
                return True
            if found is not False:
                result = any_of(result, found)
        if deferred is not None:
            raise deferred
        return result

    # a union of one operand (the factored grants of a role) has its refuter; a longer union
    # has none: its refuter, inconclusive at its last operand, would cost as many lookups
    # again as the evaluation it stands for
    if len(children) == 1:
        _set_refuter(union, _refuter_of(children[0]))
    return union


def _compile_intersection(children: tuple[EvalFn, ...]) -> EvalFn:
    def intersection(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        result: Result = True
        for child in children:
            found = child(run, rid, subj, depth)
            if found is False:
                return False
            if found is not True:
                result = all_of(result, found)
        return result

    # the first operand is evaluated first: when it yields False, nothing else is evaluated
    if children:
        _set_refuter(intersection, _refuter_of(children[0]))
    return intersection


def _compile_exclusion(base: EvalFn, subtract: EvalFn, marked: bool = False) -> EvalFn:
    """`base - subtract`. `marked`: the subtracted side's evaluation is noted on the run (the
    stack height it starts at), so a cycle can tell whether it passes through it."""

    def exclusion(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        granted = base(run, rid, subj, depth)
        if granted is False:
            return False
        # an UNKNOWN base still yields False when the subtracted side surely holds
        return all_of(granted, negate(subtract(run, rid, subj, depth)))

    def marked_exclusion(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        granted = base(run, rid, subj, depth)
        if granted is False:
            return False
        marks = run.negations
        marks.append(len(run.stack))
        try:
            subtracted = subtract(run, rid, subj, depth)
        finally:
            marks.pop()
        return all_of(granted, negate(subtracted))

    return marked_exclusion if marked else exclusion


class CheckRun:
    """The state of one evaluation (one Check, or one CheckBulk sharing its memo)."""

    __slots__ = (
        "plans",
        "simple_recursive",
        "objects",
        "usersets",
        "memo",
        "stack",
        "cut",
        "max_depth",
        "now",
        "volatile",
        "deadline",
        "budget",
        "race",
        "racing",
        "reverse",
        "held_subject",
        "held",
        "wild",
        "negations",
        "closure",
        "closure_sets",
    )

    def __init__(self, compiled: CompiledSchema, index: RelationshipIndex, max_depth: int) -> None:
        self.plans = compiled.plans
        self.simple_recursive = compiled.simple_recursive
        self.objects = index.objects
        self.usersets = index.usersets
        self.reverse = index.reverse
        # the resource keys holding `held_subject` directly (see held_by)
        self.held_subject: Subject | None = None
        self.held: tuple[tuple[str, str, str], ...] | set[tuple[str, str, str]] = ()
        # the resource keys storing the wildcard of its type (see wild_of), None until asked
        self.wild: tuple[tuple[str, str, str], ...] | set[tuple[str, str, str]] | None = None
        self.memo: dict[tuple[str, str, str, Subject], Result] = {}
        # sub-problems being evaluated, outermost first (a dict keeps insertion order), each
        # with its height on the stack
        self.stack: dict[tuple[str, str, str, Subject], int] = {}
        # the stack heights at which the subtracted sides being evaluated started (see _cycle)
        self.negations: list[int] = []
        self.cut = False
        self.max_depth = max_depth
        self.now = time.time()
        # set once a caveat or an expiration took part: the answer may change without a write
        self.volatile = False
        self.deadline = request_deadline.get()
        self.budget = CHECK_EVERY  # dispatches left before the next look at the deadline
        self.race = compiled.race if compiled.race is not None and compiled.race.prone else None
        self.racing = False
        # the closures of recursive sets (the head index only) and what they gave this run
        self.closure: Closures | None = getattr(index, "closure", None)
        self.closure_sets: dict[tuple[str, str, Subject], object] | None = None

    def _cycle(self, key: tuple[str, str, str, Subject], rtype: str, rel: str) -> Result:
        """The value of a sub-problem met again while it is being evaluated.

        Exactly (the server's rule): a cycle that does not pass through the subtracted side
        of an exclusion adds nothing: False, which gives the least fixpoint, the one answer
        derivable from the data (nothing is memoized below a cut). A cycle through a
        subtracted side (`read = owner - banned`, `banned` containing `read`) may have no
        consistent answer: UNKNOWN, False in unions and intersections, never a grant under an
        exclusion, so an answer stands only where it does not depend on the cycle.

        OpenFGA's way (`openfga_cycles`): a cycle through one simply recursive relation only
        (group A member of B member of A, folder A parent of B parent of A) is False; any
        other cycle is UNKNOWN (its recursive strategy for the first kind, a cycle flag for
        the rest; see simple_recursive_relations for when it applies which, and cycle_race
        for how its flags race under exclusions).
        """
        if self.simple_recursive is EXACT_CYCLES:
            negations = self.negations
            return UNKNOWN if negations and negations[-1] > self.stack[key] else False
        if self.simple_recursive is PLAIN_CYCLES:
            return False
        if (rtype, rel) not in self.simple_recursive:
            return UNKNOWN
        inside = False
        for frame in self.stack:
            if inside and (frame[0] != rtype or frame[2] != rel):
                return UNKNOWN
            inside = inside or frame == key
        return False

    def held_by(self, subj: Subject) -> tuple[tuple[str, str, str], ...] | set[tuple[str, str, str]]:
        """The (type, id, relation) keys storing the plain subject `subj` directly (its
        reverse entry: a few keys, unlike the forward map), remembered for the whole run."""
        self.held_subject = subj
        self.held = self.reverse.get((subj[0], subj[1], ""), ())
        self.wild = None
        return self.held

    def wild_of(self, stype: str) -> tuple[tuple[str, str, str], ...] | set[tuple[str, str, str]]:
        """The (type, id, relation) keys storing the wildcard `stype:*` (its reverse entry: a
        set far smaller than the forward map, so a miss costs no probe of that map), for the
        subject of :meth:`held_by`, whose type is `stype`; remembered until it changes."""
        self.wild = self.reverse.get((stype, "*", ""), ())
        return self.wild

    def meta_result(self, meta: RelMeta) -> Result:
        """What one relationship's caveat and expiration contribute: False once expired,
        a caveat leaf when caveated, True otherwise."""
        self.volatile = True
        if meta.expires_at is not None and meta.expires_at <= self.now:
            return False
        if meta.caveat is not None:
            return CaveatLeaf(meta.caveat.name, tuple(sorted(meta.caveat.context.items())))
        return True

    def _raced(self, rtype: str, rid: str, rel: str, subj: Subject) -> Result:
        """A top-level evaluation of a relation whose cycles can meet an exclusion: the
        three-valued answer, except a grant OpenFGA denies because a cycle flag won a race
        (see cycle_race). The replay never grants what the evaluation does not."""
        assert self.race is not None
        self.racing = True
        try:
            result = self.dispatch(rtype, rid, rel, subj, 0)
        finally:
            self.racing = False
        if result is True and self.race.allowed(self.objects, self.usersets, rtype, rid, rel, subj) is False:
            return False
        return result

    def dispatch(self, rtype: str, rid: str, rel: str, subj: Subject, depth: int) -> Result:
        """Evaluate `rtype:rid#rel` for `subj`, with memo, cycle cut and depth limit."""
        if not depth and self.race is not None and not self.racing and (rtype, rel) in self.race.prone:
            return self._raced(rtype, rid, rel, subj)
        if subj[2] == rel and subj[1] == rid and subj[0] == rtype:
            return True  # a subject set is a member of itself
        key = (rtype, rid, rel, subj)
        known = self.memo.get(key)
        if known is not None:
            return known
        stack = self.stack
        # an acyclic relation is never met again while being evaluated, and never lies between
        # two frames of a cycle (_cycle's frames): it needs no place on the stack
        function, cyclic = self.plans.get((rtype, rel), _NO_PLAN)
        if cyclic and key in stack:
            self.cut = True
            return self._cycle(key, rtype, rel)
        if depth >= self.max_depth:
            raise DepthExceeded(
                f"check exceeded the maximum depth of {self.max_depth} at {rtype}:{rid}#{rel}"
            )
        if function is None:
            return False
        self.budget -= 1
        if not self.budget:
            self.budget = CHECK_EVERY
            check_deadline(self.deadline)
        outer_cut = self.cut
        self.cut = False
        if cyclic:
            stack[key] = len(stack)
        try:
            result = function(self, rid, subj, depth + 1)
        finally:
            if cyclic:
                del stack[key]
            inner_cut = self.cut
            self.cut = outer_cut or inner_cut
        if not inner_cut:
            self.memo[key] = result
        return result
