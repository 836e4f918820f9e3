"""Check evaluations that answer recursive sets from the index's closures (engine/closure.py).

Two shapes of relation are evaluated through a closure instead of one dispatch per hop:

- a **nested set**, `member: user | team#member` (plain subjects and wildcards, and subject
  sets of the relation itself only): is a plain subject in `team:g#member`? The teams it is
  stored in directly (its reverse entry) plus what they are nested in (their closures) are
  gathered once (kept on the graph for later runs until a relationship of the relation storing
  that subject, a subject set or a wildcard changes: closure_graph.Graph.remember, Closures.touched);
  then each team asked about is one set lookup;
- an **ancestor arrow**, `view = viewer + edit + parent->view + org->view` (a union holding
  one arrow back to itself over a tupleset admitting plain objects of its own type only, its
  other operands never leading back to it): `view` on a folder is the union of the other
  operands on the folder and on each of its ancestors, one loop over the closure instead of
  a dispatch per level.

Each falls back to the ordinary walk wherever the closure is not the whole story: no closure
(an old revision, contextual relationships, the closure given up), a subject set, an edge
with a caveat or an expiration that the walk would meet, or a chain that could reach the
depth limit. So answers are the walk's: True where the walk finds a grant (a closure holds
unconditional paths only), False where it explores everything and finds none. Depth: the
closure is used only where every simple path through the graph stays under the limit, so a
walk would not have raised either; ancestors are evaluated at the depth of their position in
the closure (their distance, for a tree).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stonetown.engine.check import CheckRun, DepthExceeded, EvalFn, Member, Subject, negation_marks
from stonetown.engine.closure_graph import ARROW, SET, GraphKey, Reach
from stonetown.engine.conditions import Result, all_of, any_of, negate
from stonetown.engine.reachability import evaluated_relations
from stonetown.engine.subject_side import SCAN_LIMIT, NestedShape, level_sides, reach_of
from stonetown.schema import ir

if TYPE_CHECKING:
    from stonetown.engine.check_plan import CompiledSchema

_MISSING = object()
_EMPTY: dict[object, object] = {}


def wrap_with_closures(compiled: CompiledSchema) -> set[GraphKey]:
    """Replace the evaluations of `compiled`'s nested sets and ancestor arrows with ones
    answering from closures (falling back to the compiled walk); the graphs they read."""
    graphs: set[GraphKey] = set()
    for definition in compiled.schema.definitions.values():
        for relation in definition.relations.values():
            key = (definition.name, relation.name)
            walk = compiled.functions.get(key)
            if walk is None:
                continue
            known = compiled._member_shortcuts.get(key)
            if known is not None:
                compiled.functions[key] = _compile_member(known, walk)
                graphs.add((SET, key[0], key[1]))
                continue
            rewrite = relation.rewrite
            union, subtract = (rewrite, None)
            if isinstance(rewrite, ir.Exclusion):
                union, subtract = rewrite.base, rewrite.subtract
            tupleset = _ancestor_arrow(compiled, key[0], key[1], union, subtract)
            if tupleset is not None:
                assert isinstance(union, ir.Union)  # see _ancestor_arrow
                before, after = compiled.compile_union_split(
                    key[0], key[1], union, ("arrow", tupleset, key[1], "any")
                )
                if subtract is None:
                    function = _compile_ancestors(key[0], key[1], tupleset, before, after, walk)
                else:
                    minus = compiled._compile(key[0], key[1], subtract)
                    function = _compile_chain_exclusion(key[0], key[1], tupleset, before, after, minus, walk)
                compiled.functions[key] = function
                graphs.add((ARROW, key[0], tupleset))
    return graphs


def _nested_set(rtype: str, relation: ir.Relation) -> tuple[frozenset[str], frozenset[str]] | None:
    """(object types, wildcard types) of a relation storing plain subjects or wildcards and
    subject sets of itself only; None for any other relation."""
    rewrite = relation.rewrite
    if relation.is_permission or not isinstance(rewrite, ir.This):
        return None
    objects = frozenset(a.type for a in rewrite.allowed if a.relation is None and not a.wildcard)
    wildcards = frozenset(a.type for a in rewrite.allowed if a.wildcard)
    usersets = {(a.type, a.relation) for a in rewrite.allowed if a.relation is not None}
    if usersets != {(rtype, relation.name)} or not (objects or wildcards):
        return None
    return objects, wildcards


def _ancestor_arrow(
    compiled: CompiledSchema, rtype: str, name: str, union: ir.Rewrite, subtract: ir.Rewrite | None
) -> str | None:
    """The tupleset of a permission `union` or `union - subtract` whose union holds one arrow
    back to itself over a tupleset of plain objects of its own type (`view = viewer +
    parent->view`, `view = (viewer + parent->view) - blocked`), nothing else (the union's other
    operands as flattened, see CompiledSchema._flatten, and `subtract`) leading back to it;
    else None."""
    if not isinstance(union, ir.Union):
        return None
    leaves: dict[tuple[object, ...], tuple[int, ir.Rewrite, str]] = {}
    compiled._flatten(rtype, name, union, {name}, leaves)
    component = compiled._component.get((rtype, name))
    recursive: list[str] = []
    others = [node for _, node, _owner in leaves.values()] + ([subtract] if subtract is not None else [])
    for node in others:
        if isinstance(node, ir.TupleToUserset) and node.computed == name and node.mode == "any":
            tupleset = compiled.schema.relation(rtype, node.tupleset)
            if (
                tupleset is not None
                and not tupleset.is_permission
                and tupleset.allowed
                and all(a.type == rtype and a.relation is None and not a.wildcard for a in tupleset.allowed)
            ):
                recursive.append(node.tupleset)
                continue
        for edge in evaluated_relations(compiled.schema, rtype, node):
            if edge == (rtype, name) or compiled._component.get(edge) == component:
                return None  # another way back: the closure would not be the whole story
    return recursive[0] if len(recursive) == 1 else None


def member_shortcuts(schema: ir.Schema) -> dict[tuple[str, str], Member]:
    """The answer from a closure of each nested set of `schema` (see :func:`member_shortcut`)."""
    out: dict[tuple[str, str], Member] = {}
    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            shape = _nested_set(definition.name, relation)
            if shape is not None:
                key = (definition.name, relation.name)
                out[key] = member_shortcut(*key, *shape)
    return out


def member_shortcut(
    rtype: str, rel: str, object_types: frozenset[str], wildcard_types: frozenset[str]
) -> Member:
    """Whether a plain subject is in the nested set `rtype:rid#rel` (see :func:`_nested_set`),
    answered from the closure for a dispatch at `depth`: True or False as the walk would
    answer, None when the closure is not the whole story (the walk must answer)."""
    key: GraphKey = (SET, rtype, rel)

    def known(run: CheckRun, rid: str, subj: Subject, depth: int) -> bool | None:
        closures = run.closure
        if closures is None or subj[2] or depth >= run.max_depth:
            return None  # (at the limit the dispatch raises)
        graph = closures.graphs.get(key)
        reach: Reach | None = None
        if graph is not None and depth + 1 + graph.longest < run.max_depth:
            reach = graph.reaches.get(subj)  # kept from an earlier run until the relation changes
        if reach is None:
            held = run.held if subj is run.held_subject else run.held_by(subj)
            if subj[0] in object_types and (rtype, rid, rel) in held:
                # stored directly, as the walk looks first: no closure needed
                with_meta = run.with_meta
                if (
                    not with_meta
                    or (subj[0], subj[1], "") not in with_meta
                    or run.objects.get((rtype, rid, rel), _EMPTY).get(subj[:2], _MISSING) is None
                ):
                    return True
            graph = graph or closures.graph(key)
            # past `longest` hops no simple path goes: the walk below rid cannot reach the limit
            if graph is None or depth + 1 + graph.longest >= run.max_depth:
                return None
            sets = run.closure_sets
            if sets is None:
                sets = run.closure_sets = {}
            if sets.get((rtype, rel, subj)) in (None, rid) and len(held) > SCAN_LIMIT:
                # a subject holding many relationships: its reach costs a scan of them all,
                # more than one walk; taken once a second set of this relation is asked
                sets[(rtype, rel, subj)] = rid
                return None
            reach = graph.remember(subj, reach_of(run, graph, subj, object_types, wildcard_types))
        if rid in reach[0]:
            return True
        if reach[1] and (not graph.conditional or rid not in graph.covered()):
            return False
        return None

    # what engine/subject_side.py reads the subject's holders with
    known.shape = NestedShape(key, object_types, wildcard_types)  # type: ignore[attr-defined]
    return known


def _compile_member(known: Member, walk: EvalFn) -> EvalFn:
    """A nested set's evaluation: from the closure (`known`) where it can, else `walk`."""

    def member(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        found = known(run, rid, subj, depth - 1)  # `depth` is one below its dispatch's
        return walk(run, rid, subj, depth) if found is None else found

    return member


def _usable_ancestors(run: CheckRun, key: GraphKey, rid: str, depth: int) -> tuple[str, ...] | None:
    """The closure of `rid` in the graph `key` when it is the whole story for an evaluation at
    `depth`: None without closures, without ancestors, near the depth limit, or where an edge
    with metadata leaves `rid` or one of its ancestors (the walk follows it too)."""
    closures = run.closure
    if closures is None:
        return None
    graph = closures.graphs.get(key) or closures.graph(key)  # (built on first use)
    up = graph.up.get(rid) if graph is not None else None
    if up is None or depth + len(up) >= run.max_depth:
        return None
    assert graph is not None
    if graph.conditional and (rid in graph.tainted() or not graph.tainted().isdisjoint(up)):
        return None
    return up


def _compile_ancestors(
    rtype: str, rel: str, tupleset: str, before: EvalFn, after: EvalFn, walk: EvalFn
) -> EvalFn:
    """An ancestor arrow (see :func:`_ancestor_arrow`), from the closure: the union without
    the arrow on the object and on each ancestor, in the walk's order for a tree: the
    operands the union evaluates `before` the arrow going up (nearest ancestor first), then
    those `after` it coming back down (from the farthest); an object with no parent at all is a
    chain of one. Where both keep what they may grant a plain subject on
    (engine/subject_side.py), only the levels among those objects are evaluated: on the
    others, both would yield False without a dispatch, a depth error or a metadata read.

    Called `direct` (by an arrow, in place of its dispatch: check_operators.compile_arrow),
    it yields None where the closure is not the whole story, for the dispatch to walk. That
    dispatch's stack entry is needed only by that walk: nothing the closure path evaluates
    leads back to this relation (see :func:`_ancestor_arrow`), so no cycle meets it."""
    key: GraphKey = (ARROW, rtype, tupleset)
    levels = level_sides((before, after))

    def ancestors(run: CheckRun, rid: str, subj: Subject, depth: int, direct: bool = False) -> Result | None:
        # _usable_ancestors written out (a call per check), but for an object with no parent:
        # a node has a closure exactly when it has an unconditional edge (Graph._store), and
        # is tainted when it has one with metadata; neither, it has no parent at all, and is
        # a chain of one
        closures = run.closure
        graph = None if closures is None else closures.graphs.get(key) or closures.graph(key)
        up = None if graph is None else graph.up.get(rid, ())
        if (
            up is None
            or depth + len(up) >= run.max_depth
            or (graph.conditional and (rid in graph.tainted() or not graph.tainted().isdisjoint(up)))  # type: ignore[union-attr]
        ):
            return None if direct else walk(run, rid, subj, depth)
        stype, sid, srel = subj
        ids = None
        if levels is not None and not srel:
            # the levels that may grant, asked at the deepest (what holds there holds above;
            # levels.ids_of's kept entry read in place: a call per check)
            entry = closures.sides.get(levels, _EMPTY).get(subj)  # type: ignore[union-attr]
            if entry is not None and depth + len(up) + entry[1] < run.max_depth:
                ids = entry[0]
            else:
                ids = levels.ids_of(run, subj, depth + len(up))
            if ids is not None and rid not in ids and ids.isdisjoint(up):
                return False  # no level may grant (nothing evaluated, as below)
        # (object, depth its union is evaluated at); a cycle back to the object is left out
        # (the walk cuts it: False)
        chain = [(rid, depth)] if ids is None or rid in ids else []
        for hops, node in enumerate(up, 1):
            if node != rid and (ids is None or node in ids):
                if srel == rel and sid == node and stype == rtype:
                    return True  # the subject set is this ancestor's (as its dispatch answers)
                chain.append((node, depth + hops))
        result: Result = False
        deferred: DepthExceeded | None = None
        # any-of loop written out in each operator: a shared helper is a call per operand (5-10 % of a Check)
        for part, nodes in ((before, chain), (after, reversed(chain))):
            for node, at in nodes:
                try:
                    found = part(run, node, subj, at)
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

    # an arrow to it may call it in place of a dispatch, `direct` (check_operators.compile_arrow)
    ancestors.direct = True  # type: ignore[attr-defined]
    return ancestors  # type: ignore[return-value]


def _compile_chain_exclusion(
    rtype: str, rel: str, tupleset: str, before: EvalFn, after: EvalFn, subtract: EvalFn, walk: EvalFn
) -> EvalFn:
    """`(union) - subtract` whose union holds the ancestor arrow (see :func:`_ancestor_arrow`),
    from the closure where the ancestors form one chain (each object has one parent, no
    metadata): each level is `(before + <the level above> + after) - subtract`, evaluated in
    the walk's order without a dispatch per level. Going up, `before` on each level until one
    grants outright; coming down, the level above, `after`, then `subtract` where the union
    is not False. A level whose evaluation went past the depth limit raises into the level
    below it, which answers only if it grants without it (as the walk's union defers it)."""
    key: GraphKey = (ARROW, rtype, tupleset)

    def chain(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        errors: dict[int, DepthExceeded] = {}
        try:
            found = before(run, rid, subj, depth)
        except DepthExceeded as exc:
            found, errors[0] = False, exc
        nodes, firsts = [rid], [found]
        above: Result = False  # the value of the level above the highest evaluated
        if found is not True:  # (a grant on the object itself needs no closure)
            up = _usable_ancestors(run, key, rid, depth)
            if up is None:
                return walk(run, rid, subj, depth)
            objects = run.objects
            stype, sid, srel = subj
            node, level = rid, 0
            # the top's parents, if any, are on the walk's stack: cut, False
            for following in up:
                if len(objects.get((rtype, node, tupleset), ())) > 1:
                    # a branch (looked at only when going past it): not one chain; what was
                    # evaluated is in the memo
                    return walk(run, rid, subj, depth)
                if following == rid:
                    break  # back to the object: a cycle the walk cuts (False)
                if srel == rel and sid == following and stype == rtype:
                    above = True  # the subject set is this ancestor's (as its dispatch answers)
                    break
                node, level = following, level + 1
                try:
                    found = before(run, node, subj, depth + level)
                except DepthExceeded as exc:
                    found, errors[level] = False, exc
                nodes.append(node)
                firsts.append(found)
                if found is True:
                    break
        value, error = above, None
        for level in range(len(firsts) - 1, -1, -1):
            node, at = nodes[level], depth + level
            union, failed = firsts[level], errors.get(level)
            if union is not True:
                if error is not None:
                    failed = error  # the level above raised: deferred, as the walk's union does
                else:
                    union = any_of(union, value)
                if union is not True:
                    try:
                        union = any_of(union, after(run, node, subj, at))
                    except DepthExceeded as exc:
                        failed = exc
            if union is not True and failed is not None:
                value, error = False, failed
                continue
            error = None
            if union is False:
                value = False
                continue
            marks = negation_marks(run)  # as a marked exclusion (check_operators.compile_exclusion)
            marks.append(len(run.stack))
            try:
                excluded = subtract(run, node, subj, at)
            except DepthExceeded as exc:
                value, error = False, exc
                continue
            finally:
                marks.pop()
            value = all_of(union, negate(excluded))
        if error is not None:
            raise error
        return value

    return chain
