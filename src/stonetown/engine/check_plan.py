"""Compiling a schema for Check: one evaluation closure per (type, relation or permission).

Unions are flattened (the unions of relations they name spliced in), their operands ordered
cheapest first, operands sharing a factor evaluated once, and evaluations that surely yield
False skipped on the word of a refuter; nested sets and ancestor arrows are answered from the
index's closures where they can be (closure_check.py). The closures themselves are built by
check_stored.py and check_operators.py; check.py runs them.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING

from stonetown.core.object_allocator import objects_in_malloc
from stonetown.engine.check import EXACT_CYCLES, EvalFn, Member, Refuter, Subject, refuter_of, set_refuter
from stonetown.engine.check_operators import (
    compile_arrow,
    compile_exclusion,
    compile_factored,
    compile_intersection,
    compile_union,
    nil,
)
from stonetown.engine.check_stored import (
    allowed_sets,
    chain_shape,
    compile_chain,
    compile_stored,
    compile_this,
)
from stonetown.engine.closure_check import member_shortcuts, wrap_with_closures
from stonetown.engine.conditions import Result
from stonetown.engine.cycle_race import CycleRace
from stonetown.engine.openfga_recursion import simple_recursive_relations
from stonetown.engine.reachability import evaluated_relations, reachable
from stonetown.engine.subject_side import arrow_side
from stonetown.schema import ir
from stonetown.schema.graphs import cyclic_nodes, postorder, strongly_connected_components

if TYPE_CHECKING:
    from stonetown.engine.check import CheckRun

# Bounds on how far compilation inlines relations into one another, so that neither compiling
# nor evaluating a long chain of permissions recurses down the chain: unions spliced into a
# union (levels), unions compiled inside one another, and inline calls an evaluation nests.
MAX_SPLICE_LEVEL = 8
MAX_INLINE_NESTING = 2
MAX_INLINE_DEPTH = 4


class CompiledSchema:
    """A schema turned into evaluation closures, one per (type, relation or permission)."""

    def __init__(
        self, schema: ir.Schema, shortcuts: bool = True, openfga_cycles: bool = False, large: bool = False
    ) -> None:
        """Compile `schema`. `shortcuts` False leaves out the evaluations skipped on the word
        of a refuter (see :meth:`_skips` and :func:`compile_factored`) and the chains of
        nested sets walked as loops (:func:`compile_chain`), for tests comparing them with
        the plain walk. `openfga_cycles` resolves cycles in the data as OpenFGA does (its
        flags and their races, for the OpenFGA-semantics store); otherwise exactly, see
        :meth:`CheckRun._cycle`. `large`: a large schema, whose plain walk (:meth:`walked`)
        takes its objects from malloc as its first compilation did (engine/schema_cache.py)."""
        self.schema = schema
        self.shortcuts = shortcuts
        self.large = large
        self.openfga_cycles = openfga_cycles
        self._walked: CompiledSchema | None = None  # see walked()
        self.functions: dict[tuple[str, str], EvalFn] = {}
        self.allowed_tupleset: dict[tuple[str, str], tuple[frozenset[str], frozenset[tuple[str, str]]]] = {}
        for definition in schema.definitions.values():
            for relation in definition.relations.values():
                if not relation.is_permission:
                    self.allowed_tupleset[(definition.name, relation.name)] = allowed_sets(relation.allowed)[
                        ::2
                    ]
        self.inlinable = _inlinable_targets(schema)
        self.graph = _relation_graph(schema)
        self._refuters: dict[tuple[str, str], Refuter | None] = {}
        # nested sets answered from the index's closures (engine/closure.py; not with OpenFGA's
        # cycle handling, whose answers depend on the walk)
        self._member_shortcuts: dict[tuple[str, str], Member] = {}
        if not openfga_cycles:
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
        # the arrows compiled (with their type), linked to their targets' evaluations once
        # all are compiled
        self._arrows: list[tuple[str, EvalFn]] = []
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
            self._plain_refuters[key] = refuter_of(function)
            if key in self.acyclic and key not in self._refuters:
                self._refuters[key] = self._plain_refuters[key]
            if shortcuts and chain_shape(key[0], relation):
                function = compile_chain(key[0], key[1], relation.rewrite, function)
            self.functions[key] = function
        self.closure_graphs: set[tuple[str, str, str]] = set()
        if not openfga_cycles:
            self.closure_graphs = wrap_with_closures(self)
        self._link_arrows()
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
        # the race a run replays (CheckRun.race): only where a cycle can meet an exclusion
        self.prone_race = self.race if self.race is not None and self.race.prone else None

    def walked(self) -> CompiledSchema:
        """This schema compiled without shortcuts (the plain walk, see check.Rewalk), compiled
        on first use and kept; itself when compiled so. A large schema's is made outside
        pymalloc's arenas, as its first compilation was (core/object_allocator.py: kept as
        long as the schema is cached, its objects would pin arenas once it is dropped)."""
        if not self.shortcuts:
            return self
        plain = self._walked
        if plain is None:
            with objects_in_malloc() if self.large else nullcontext():
                plain = CompiledSchema(self.schema, False, self.openfga_cycles, self.large)
            self._walked = plain
        return plain

    def _link_arrows(self) -> None:
        """Hand each arrow the evaluations of its targets it may call in place of a dispatch
        (check_operators.compile_arrow): only targets from which no relation of the arrow's
        own type can be reached. An evaluation holds only evaluations of its own type (inlined)
        and of the relations it links to, along the relation graph's edges: such a link never
        closes a loop of references back to the arrow (a compiled schema would then be freed
        only by the cyclic collector, see CompiledSchema._compile's computed_inline)."""
        graph = self.graph
        directs = [(key, f) for key, f in self.functions.items() if getattr(f, "direct", False)]
        if not directs:
            return
        # per target, the types of the relations it reaches
        reached = {
            key: {at[0] for at in reachable([key], lambda at: graph.get(at, ()))} for key, _ in directs
        }
        for rtype, arrow in self._arrows:
            allowed = {key: function for key, function in directs if rtype not in reached[key]}
            if allowed:
                arrow.link(allowed)  # type: ignore[attr-defined]

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
                self._refuters[key] = refuter_of(self._compile(rtype, rel, relation.rewrite))
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
            usersets = allowed_sets(node.allowed)[2]
            skips, members = self._skips(usersets), self._members_of(usersets)
            return compile_this(rtype, rel, node, skips=skips, members=members)
        if isinstance(node, ir.ComputedUserset):
            target = node.relation
            key = (rtype, target)
            if key in self.inlinable:
                # Same object, no cycle possible through computed usersets alone: evaluate the
                # target in place, skipping the memo and cycle bookkeeping.
                rewrite = self.schema.definitions[rtype].relations[target].rewrite
                if isinstance(rewrite, ir.This):
                    return compile_this(rtype, target, rewrite, itself=True)
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
                    set_refuter(computed_inline, self._plain_refuters.get(key))
                    return computed_inline

            def computed(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
                return run.dispatch(rtype, rid, target, subj, depth)

            return computed
        if isinstance(node, ir.TupleToUserset):
            allowed = self.allowed_tupleset.get((rtype, node.tupleset), (frozenset(), frozenset()))
            skips = self._skips({(st, node.computed) for st in allowed[0]})
            side = None
            if self._member_shortcuts and not allowed[1]:
                # targets that are unions of stored relations no cycle reaches: what the
                # subject may be granted on through them is kept (subject_side)
                functions, computed = self.functions, node.computed
                sides = {st: getattr(functions.get((st, computed)), "side", None) for st in allowed[0]}
                if all((st, computed) in self.acyclic for st in sides):
                    side = arrow_side(rtype, node.tupleset, sides)
            refuters = {st: refute for (st, _), refute in skips.items()}
            arrow = compile_arrow(rtype, node, allowed, refuters, side)
            if hasattr(arrow, "link"):
                self._arrows.append((rtype, arrow))
            return arrow
        if isinstance(node, ir.Union):
            return self._compile_flat_union(rtype, rel, node)
        if isinstance(node, ir.Intersection):
            # Cheapest operands first: a direct lookup often decides a union (True) or an
            # intersection (False) before any walk. The answer does not depend on the order.
            ordered = sorted(node.children, key=lambda child: self._cost(rtype, child))
            return compile_intersection(tuple(self._compile(rtype, rel, c) for c in ordered))
        if isinstance(node, ir.Exclusion):
            exact = not self.openfga_cycles
            lookup_first = self.shortcuts and exact and self._lookup(rtype, node.subtract)
            stored = self._stored_plain(rtype, node.subtract) if lookup_first else None
            spec = None
            if stored is not None:
                assert isinstance(node.subtract, ir.ComputedUserset)  # see _stored_plain
                spec = (rtype, node.subtract.relation, *allowed_sets(stored.allowed)[:2])
            return compile_exclusion(
                self._compile(rtype, rel, node.base),
                self._compile(rtype, rel, node.subtract),
                marked=exact,
                lookup_first=lookup_first,
                stored=spec,  # type: ignore[arg-type]
            )
        return nil

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
            objects, wildcards, usersets = allowed_sets(node.allowed)
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
        operands, names, split, named = self._flat_union_operands(rtype, rel, node, False, leaf)
        # the walk evaluates the operands before `leaf` on an object first, always: they
        # answer the subject sets `names` make members, the operands after need not
        before = compile_union(tuple(operands[:split]), names, rtype, named)
        return before, compile_union(tuple(operands[split:]), names if not named else frozenset(), rtype)

    def _compile_flat_union(self, rtype: str, rel: str, node: ir.Union, itself: bool = False) -> EvalFn:
        """A union, flattened (see :meth:`_flatten`), arrows that another arrow of the union
        subsumes dropped. `itself`: a subject set naming `rel` on the object is a member."""
        operands, names, _, named = self._flat_union_operands(rtype, rel, node, itself)
        return compile_union(tuple(operands), names, rtype, named)

    def _flat_union_operands(
        self, rtype: str, rel: str, node: ir.Union, itself: bool, without: tuple[object, ...] = ()
    ) -> tuple[list[EvalFn], frozenset[str], int, bool]:
        """The compiled operands of :meth:`_compile_flat_union`, the names of the relations
        it inlines, where the operand `without` (left out) stood among them, and whether the
        first operand answers the subject sets those names make members."""
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
        # The relationships stored under the union's relations: plain subjects and wildcards
        # of each, then subject sets of each, in one closure answering the union's own
        # subject sets (`names`) too: it comes first
        stored = [item for item in ordered if item[0][0] in ("objects", "usersets")]
        merged = len(stored) > 1
        if merged:
            direct = [(owner, child) for key, (_, child, owner) in stored if key[0] == "objects"]
            sets = []
            for key, (_, child, owner) in stored:
                if key[0] == "usersets":
                    usersets = allowed_sets(child.allowed)[2]  # type: ignore[attr-defined]
                    sets.append((owner, child, self._skips(usersets), self._members_of(usersets)))
            compiled.append(compile_stored(rtype, direct, frozenset(names), tuple(sets)))  # type: ignore[arg-type]
        for key, (_, child, owner) in ordered:
            if key == without:
                split = len(compiled)
                continue
            if merged and key[0] in ("objects", "usersets"):
                continue
            if key in factored:
                function = factored[key]
                if function is not None:
                    compiled.append(function)
                continue
            if key[0] in ("objects", "usersets"):
                usersets = allowed_sets(child.allowed)[2] if key[0] == "usersets" else frozenset()  # type: ignore[attr-defined]
                skips, members = self._skips(usersets), self._members_of(usersets)
                compiled.append(compile_this(rtype, owner, child, key[0], skips=skips, members=members))  # type: ignore[arg-type]
            else:
                compiled.append(self._compile(rtype, owner, child))
        return compiled, frozenset(names), split if split >= 0 else len(compiled), merged

    def _flag(self, rtype: str, node: ir.Rewrite) -> bool:
        """Whether `node` names a relation of `rtype` storing plain subjects or wildcards
        only, none with a caveat: one lookup, always True or False."""
        stored = self._stored_plain(rtype, node)
        return stored is not None and all(a.caveat is None for a in stored.allowed)

    def _lookup(self, rtype: str, node: ir.Rewrite) -> bool:
        """Whether `node` names a relation of `rtype` storing plain subjects or wildcards
        only (caveats and expirations allowed): its evaluation is a lookup, which never
        dispatches nor raises."""
        return self._stored_plain(rtype, node) is not None

    def _stored_plain(self, rtype: str, node: ir.Rewrite) -> ir.This | None:
        """The stored rewrite of the inlinable relation of `rtype` that `node` names when it
        admits plain subjects or wildcards only (no subject set); None otherwise."""
        if not isinstance(node, ir.ComputedUserset) or (rtype, node.relation) not in self.inlinable:
            return None
        target = self.schema.relation(rtype, node.relation)
        if target is None or not isinstance(target.rewrite, ir.This):
            return None
        return target.rewrite if all(a.relation is None for a in target.rewrite.allowed) else None

    def _caveat_free(self, rtype: str, node: ir.Rewrite) -> bool:
        """Whether no relation `node` evaluates, however deep, admits a caveated subject (so
        its value is True, False or UNKNOWN, never a caveat expression)."""
        graph = self.graph
        for current in reachable(evaluated_relations(self.schema, rtype, node), lambda at: graph.get(at, ())):
            relation = self.schema.relation(*current)
            if relation is not None and any(a.caveat is not None for a in relation.allowed):
                return False
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
            lookups = compile_stored(rtype, list(flags.items()), frozenset(flags))
            shared = self._compile(rtype, "", common)
            if self.shortcuts:
                out[keys[0]] = compile_factored(lookups, shared)
            else:
                out[keys[0]] = compile_intersection((lookups, shared))
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
