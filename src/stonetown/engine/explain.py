"""Why a check is answered as it is: the resolution tree of one Check.

The tree follows the schema's rewrite of the permission (union, intersection, exclusion,
arrows, relations) down to the stored relationships, and gives every node the engine's own
value for it: relation and permission nodes are answered by the engine's dispatch (the same
:class:`CheckRun` a Check uses, so the same memo, cycle and depth rules), relationship nodes
by the engine's rule for one relationship's caveat and expiration (``meta_result``), and the
operator nodes combine their children with the engine's three-valued ``any_of`` / ``all_of`` /
``negate``. Nothing of the semantics is written here a second time; the root's answer is the
Check's answer.

For a grant, the granting branch is the path of relationships from the subject to the
resource (:func:`granting_path`); for a denial every branch tried is there with why it failed
(no such relationship, excluded, caveat false or missing context, expired, a cycle).
The tree is bounded (``max_nodes``; a subtree past the bound keeps its value and says that it
was not expanded) and so is the fan-out shown under one node (``max_children``).

The tree answers whenever Check does, and fails with Check's depth error where Check fails:
the root's value is the Check's (its run, or the plain walk's where that run met the limit,
check.Rewalk). The tree shows branches Check skips (the subtracted side of an exclusion whose
base does not hold, the operands after a failing one), evaluated one by one from the node
they belong to, so one may meet the depth limit where Check answers. Such a branch is shown
``skipped`` (not evaluated) when the others decide its operator's value (a granting operand
of a union or of a relation's relationships, a failing operand of an intersection, a base
that does not hold or a subtracted side that does, an arrow's deciding target); otherwise
the relation or permission above it keeps the engine's value and says it was not expanded.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from stonetown.engine.check import CheckRun, DepthExceeded, Rewalk
from stonetown.engine.conditions import UNKNOWN, Result, all_of, any_of, negate
from stonetown.engine.index import RelationshipIndex, RelMeta
from stonetown.engine.types import Permissionship
from stonetown.schema import ir

if TYPE_CHECKING:
    from stonetown.engine.check_plan import CompiledSchema

Subject = tuple[str, str, str]

# the engine's verdict of a result for the request: (permissionship, missing parameters)
Verdict = Callable[[Result], Awaitable[tuple[Permissionship, tuple[str, ...]]]]
MAX_NODES = 400
MAX_CHILDREN = 25
# the kind of a branch not evaluated because it cannot change its operator's value
SKIPPED = "skipped"
# A node's builder, whether it is a direct hit (shown first), and its label (for a skipped one)
Maker = tuple[Callable[[], "ExplainNode"], bool, str]


@dataclass(slots=True)
class ExplainNode:
    """One node of the resolution tree.

    ``kind``: ``permission`` / ``relation`` (an object's relation or permission), ``union``,
    ``intersection``, ``exclusion``, ``arrow``, ``nil``, ``relationship`` (one stored
    relationship), ``omitted`` (children left out past the fan-out bound), ``skipped`` (a
    branch not evaluated: it met the depth limit, and the others decide its operator's value;
    its result is no value, DENIED by convention as for ``omitted``).
    ``label``: what the node is, in schema or relationship notation. ``line``/``column``:
    where the schema says it (0 when it has no place). ``result``: ALLOWED, DENIED or
    CONDITIONAL for the request's context; ``missing``: the context a CONDITIONAL lacks.
    ``reason``: why, in words.
    """

    kind: str
    label: str
    result: Permissionship = Permissionship.DENIED
    reason: str = ""
    line: int = 0
    column: int = 0
    missing: tuple[str, ...] = ()
    children: list[ExplainNode] = field(default_factory=list)
    raw: Result = field(default=False, repr=False)
    # settled after the caveats are evaluated: the caveat of this relationship, and the part
    # of the reason that depends on the children's results
    caveat: str | None = field(default=None, repr=False)
    own: Result = field(default=True, repr=False)  # a relationship's own value (its caveat)
    later: Callable[[ExplainNode], str] | None = field(default=None, repr=False)

    @property
    def granted(self) -> bool:
        """ALLOWED or CONDITIONAL."""
        return self.result is not Permissionship.DENIED

    def to_dict(self) -> dict[str, Any]:
        """The node and its subtree as plain data (JSON-ready)."""
        return {
            "kind": self.kind,
            "label": self.label,
            "result": self.result.name,
            "reason": self.reason,
            "line": self.line,
            "column": self.column,
            "missing": list(self.missing),
            "children": [child.to_dict() for child in self.children],
        }


def granting_path(node: dict[str, Any]) -> list[str]:
    """The labels from the resource down to the subject along the first granting branch of a
    tree in its :meth:`ExplainNode.to_dict` form (relation, permission and relationship nodes
    only); empty for a denial."""
    path: list[str] = []
    current: dict[str, Any] | None = node
    while current is not None and current["result"] != "DENIED":
        if current["kind"] in ("permission", "relation", "relationship"):
            path.append(current["label"])
        current = next(
            (c for c in current["children"] if c["result"] != "DENIED" and c["kind"] != "omitted"), None
        )
    return path


def render(node: dict[str, Any], indent: str = "") -> str:
    """A tree in its :meth:`ExplainNode.to_dict` form as indented text, one node a line (a
    skipped node, which has no value, marked ``·``)."""
    marks = {"ALLOWED": "✓", "DENIED": "✗", "CONDITIONAL": "?"}
    mark = "·" if node["kind"] == SKIPPED else marks[node["result"]]
    where = f"  [{node['line']}:{node['column']}]" if node["line"] else ""
    reason = f" — {node['reason']}" if node["reason"] else ""
    lines = [f"{indent}{mark} {node['label']}{where}{reason}"]
    lines += [render(child, indent + "  ") for child in node["children"]]
    return "\n".join(lines)


class Explainer:
    """Builds the resolution tree of checks against one schema and one index."""

    def __init__(
        self,
        schema: ir.Schema,
        run: CheckRun,
        index: RelationshipIndex,
        subject: Subject,
        *,
        max_nodes: int = MAX_NODES,
        max_children: int = MAX_CHILDREN,
    ) -> None:
        self.subject = subject
        self.schema = schema
        self.run = run
        self.index = index
        self.nodes_left = max_nodes
        self.max_children = max_children
        self.now = time.time()
        self._open: set[tuple[str, str, str]] = set()

    # ---- values -----------------------------------------------------------------------

    def _finish(self, node: ExplainNode, raw: Result) -> ExplainNode:
        node.raw = raw
        if raw is True:
            node.result = Permissionship.ALLOWED
        elif raw is False or raw is UNKNOWN:
            node.result = Permissionship.DENIED
            if raw is UNKNOWN and not node.reason:
                node.reason = "a cycle in the data: it never grants here"
        else:
            node.result = Permissionship.CONDITIONAL  # until settle() evaluates the caveats
        return node

    async def settle(self, tree: ExplainNode, verdict: Verdict) -> None:
        """Evaluate the caveat conditions of the tree's nodes with `verdict` (the engine's,
        under the request's caveat budget), then the reasons that depend on them: children
        before their parents."""
        order: list[ExplainNode] = []
        stack = [tree]
        while stack:
            node = stack.pop()
            order.append(node)
            stack.extend(node.children)
        for node in reversed(order):
            if node.result is Permissionship.CONDITIONAL:
                node.result, node.missing = await verdict(node.raw)
            if node.caveat is not None and node.own is not False:
                own, missing = await verdict(node.own)
                node.reason = {
                    Permissionship.ALLOWED: f"caveat {node.caveat} holds for the context",
                    Permissionship.DENIED: f"caveat {node.caveat} is false for the context",
                    Permissionship.CONDITIONAL: f"caveat {node.caveat} needs context: " + ", ".join(missing),
                }[own]
            if node.later is not None:
                prefix = node.later(node)
                node.reason = f"{prefix}; {node.reason}" if node.reason else prefix
                node.later = None

    def _node(self, kind: str, label: str, pos: ir.Position) -> ExplainNode:
        self.nodes_left -= 1
        return ExplainNode(kind, label, line=pos.line, column=pos.column)

    # ---- objects ----------------------------------------------------------------------

    def relation(self, rtype: str, rid: str, name: str, subj: Subject) -> ExplainNode:
        """The node of `rtype:rid#name` for `subj`, with its subtree."""
        relation = self.schema.relation(rtype, name)
        label = f"{rtype}:{rid}#{name}"
        if relation is None:
            return self._finish(self._node("nil", label, ir.NOWHERE), False)
        node = self._node("permission" if relation.is_permission else "relation", label, relation.pos)
        raw = self.run.dispatch(rtype, rid, name, subj, 0)
        key = (rtype, rid, name)
        if subj == key:
            node.reason = "the subject is this subject set itself"
        elif key in self._open:
            node.reason = "met again on this path (a cycle); its value is the engine's"
        elif self.nodes_left <= 0:
            node.reason = "not expanded: the explanation's size bound was reached"
        else:
            self._open.add(key)
            try:
                if isinstance(relation.rewrite, ir.This):
                    node.children = self._direct(rtype, rid, name, subj)
                    if not node.children:
                        node.reason = f"no relationship {label}@{_subject_text(subj)}"
                else:
                    node.children = [self.rewrite(relation.rewrite, rtype, rid, subj)]
            except DepthExceeded:
                # a branch below met the limit where no other decided its value: this node's
                # value (the engine's, computed above) stands, its subtree is not shown
                node.children = []
                node.reason = (
                    f"not expanded: explaining it met the depth limit of {self.run.max_depth}; "
                    "its value is the engine's"
                )
            finally:
                self._open.discard(key)
        return self._finish(node, raw)

    def _skipped(self, label: str, pos: ir.Position, why: str) -> ExplainNode:
        """A branch not evaluated: it met the depth limit, and `why` it cannot change the value
        of the node above (its raw value False folds as no value would: see _decide)."""
        node = self._node(SKIPPED, label, pos)
        node.reason = f"not evaluated (the depth limit of {self.run.max_depth} was met there): {why}"
        return node

    def _operands(
        self, operands: tuple[ir.Rewrite, ...], rtype: str, rid: str, subj: Subject
    ) -> list[ExplainNode | DepthExceeded]:
        """The nodes of an operator's operands, each one's depth error in its place."""
        built: list[ExplainNode | DepthExceeded] = []
        for operand in operands:
            try:
                built.append(self.rewrite(operand, rtype, rid, subj))
            except DepthExceeded as error:
                built.append(error)
        return built

    def _decide(
        self,
        built: list[ExplainNode | DepthExceeded],
        operands: tuple[ir.Rewrite, ...],
        rtype: str,
        rid: str,
        deciding: bool,
        why: str,
    ) -> list[ExplainNode]:
        """`built` (see _operands) with each depth error made a skipped node, when an evaluated
        operand yields `deciding` (True in a union, False in an intersection): that value is
        the operator's whatever the skipped ones', and False folds into it as any would. Else
        the first error is raised again."""
        errors = [item for item in built if isinstance(item, DepthExceeded)]
        if errors and not any(isinstance(item, ExplainNode) and item.raw is deciding for item in built):
            raise errors[0]
        return [
            item
            if isinstance(item, ExplainNode)
            else self._skipped(_operand_text(operand, rtype, rid), operand.pos, why)
            for item, operand in zip(built, operands, strict=True)
        ]

    def _direct(self, rtype: str, rid: str, name: str, subj: Subject) -> list[ExplainNode]:
        key = (rtype, rid, name)
        stype, sid, srel = subj
        found: list[Maker] = []
        objects = self.index.objects.get(key, {})
        if not srel:
            for candidate in ((stype, sid), (stype, "*")):
                if candidate in objects:
                    meta = objects[candidate]
                    found.append((lambda c=candidate, m=meta: self._relationship(key, c, m), True, ""))
        for userset, meta in self.index.usersets.get(key, {}).items():
            if userset == subj:
                found.append((lambda u=userset, m=meta: self._relationship(key, u, m), True, ""))
            else:
                label = f"{rtype}:{rid}#{name}@{_subject_text(userset)}"
                found.append((lambda u=userset, m=meta: self._through_set(key, u, m, subj), False, label))
        # a relation's relationships are a union: one that grants decides it
        return self._bounded(found, None, "another relationship grants, so it cannot change the relation")

    def _bounded(self, found: list[Maker], decided: bool | None, why: str) -> list[ExplainNode]:
        """Build the children, direct hits first, granting ones before the rest, at most
        `max_children`; the rest summarized in one ``omitted`` node. A child whose build meets
        the depth limit is shown skipped (`why`) when the node's value is `decided` by the
        others (None: when a built child grants outright); else its error is raised again."""
        found.sort(key=lambda item: not item[1])
        built: list[ExplainNode] = []
        failed: list[tuple[str, DepthExceeded]] = []
        for make, _direct, label in found[: self.max_children]:
            try:
                built.append(make())
            except DepthExceeded as error:
                failed.append((label, error))
        if failed:
            if decided is None:
                decided = any(node.raw is True for node in built)
            if not decided:
                raise failed[0][1]
            built += [self._skipped(label, ir.NOWHERE, why) for label, _error in failed]
        built.sort(key=lambda node: not node.granted)
        if len(found) > self.max_children:
            rest = len(found) - self.max_children
            built.append(ExplainNode("omitted", f"{rest} more not shown", reason="fan-out bound"))
        return built

    def _relationship(
        self, key: tuple[str, str, str], subject: tuple[str, ...], meta: RelMeta | None
    ) -> ExplainNode:
        label = f"{key[0]}:{key[1]}#{key[2]}@{_subject_text(subject)}"
        node = self._node("relationship", label, ir.NOWHERE)
        raw = self._meta(node, meta)
        if raw is True and not node.reason:
            node.reason = "a wildcard relationship" if subject[1] == "*" else "a stored relationship"
        return self._finish(node, raw)

    def _meta(self, node: ExplainNode, meta: RelMeta | None) -> Result:
        """One relationship's own value, with its caveat or expiration in the label/reason."""
        if meta is None:
            return True
        raw = self.run.meta_result(meta)
        if meta.expires_at is not None:
            when = datetime.fromtimestamp(meta.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            node.label += f"[expiration:{when}]"
            if raw is False:
                node.reason = f"expired at {when}"
        if meta.caveat is not None:
            node.label += f"[{meta.caveat.name}]"
            node.caveat = meta.caveat.name
        node.own = raw
        return raw

    def _through_set(
        self, key: tuple[str, str, str], userset: tuple[str, ...], meta: RelMeta | None, subj: Subject
    ) -> ExplainNode:
        node = self._relationship(key, userset, meta)
        own = node.raw
        inner = self.relation(userset[0], userset[1], userset[2], subj)
        node.children = [inner]
        where = _subject_text(userset)
        node.later = lambda _n: f"the subject is {'' if inner.granted else 'not '}in {where}"
        return self._finish(node, all_of(own, inner.raw))

    # ---- rewrites ---------------------------------------------------------------------

    def rewrite(self, rewrite: ir.Rewrite, rtype: str, rid: str, subj: Subject) -> ExplainNode:
        """The node of one rewrite expression of `rtype:rid`."""
        if isinstance(rewrite, ir.ComputedUserset):
            return self.relation(rtype, rid, rewrite.relation, subj)
        if isinstance(rewrite, ir.TupleToUserset):
            return self._arrow(rewrite, rtype, rid, subj)
        if isinstance(rewrite, ir.Union):
            node = self._node("union", _text(rewrite), rewrite.pos)
            built = self._operands(rewrite.children, rtype, rid, subj)
            why = "another operand grants, so it cannot change the union"
            node.children = self._decide(built, rewrite.children, rtype, rid, True, why)
            return self._finish(node, _fold(any_of, False, node.children))
        if isinstance(rewrite, ir.Intersection):
            node = self._node("intersection", _text(rewrite), rewrite.pos)
            built = self._operands(rewrite.children, rtype, rid, subj)
            why = "another operand does not hold, so it cannot change the intersection"
            node.children = self._decide(built, rewrite.children, rtype, rid, False, why)
            node.later = _failing_operands
            return self._finish(node, _fold(all_of, True, node.children))
        if isinstance(rewrite, ir.Exclusion):
            return self._exclusion(rewrite, rtype, rid, subj)
        if isinstance(rewrite, ir.Nil):
            node = self._node("nil", "nil", rewrite.pos)
            node.reason = "nil grants nothing"
            return self._finish(node, False)
        node = self._node("relation", f"{rtype}:{rid}", ir.NOWHERE)  # a This outside a relation
        return self._finish(node, False)

    def _exclusion(self, rewrite: ir.Exclusion, rtype: str, rid: str, subj: Subject) -> ExplainNode:
        """`base - subtract`: a side that meets the depth limit is skipped where the other
        decides (a base that does not hold, a subtracted side that holds: the value is False
        either way)."""
        node = self._node("exclusion", _text(rewrite), rewrite.pos)
        operands = (rewrite.base, rewrite.subtract)
        base, subtract = self._operands(operands, rtype, rid, subj)
        if isinstance(base, DepthExceeded):
            if not isinstance(subtract, ExplainNode) or subtract.raw is not True:
                raise base
            why = "the subtracted side holds, so it cannot change the exclusion"
            base = self._skipped(_operand_text(rewrite.base, rtype, rid), rewrite.base.pos, why)
        elif isinstance(subtract, DepthExceeded):
            if base.raw is not False:
                raise subtract
            why = "the base does not hold, so it cannot change the exclusion"
            subtract = self._skipped(_operand_text(rewrite.subtract, rtype, rid), rewrite.subtract.pos, why)
        node.children = [base, subtract]
        node.later = _excluded
        # a skipped side's False gives the exclusion's value: False (see above)
        return self._finish(node, all_of(base.raw, negate(subtract.raw)))

    def _arrow(self, arrow: ir.TupleToUserset, rtype: str, rid: str, subj: Subject) -> ExplainNode:
        node = self._node("arrow", _text(arrow), arrow.pos)
        key = (rtype, rid, arrow.tupleset)
        targets = [(t, i, m) for (t, i), m in self.index.objects.get(key, {}).items() if i != "*"]
        targets += [(t, i, m) for (t, i, _r), m in self.index.usersets.get(key, {}).items()]
        if not targets:
            node.reason = f"no {rtype}:{rid}#{arrow.tupleset} relationship to follow"
            return self._finish(node, False)
        makers: list[Maker] = []
        values: list[Result] = []
        errors: list[DepthExceeded] = []
        for ttype, tid, meta in targets:

            def make(ttype: str = ttype, tid: str = tid, meta: RelMeta | None = meta) -> ExplainNode:
                hop = self._relationship(key, (ttype, tid), meta)
                own = hop.raw
                inner = self.relation(ttype, tid, arrow.computed, subj)
                hop.children = [inner]
                hop.later = lambda _n: f"leads to {inner.label}, which " + (
                    "holds" if inner.granted else "does not hold"
                )
                return self._finish(hop, all_of(own, inner.raw))

            makers.append((make, False, f"{rtype}:{rid}#{arrow.tupleset}@{ttype}:{tid}"))
            # the value covers every target, not only the ones shown; an expired edge counts
            # for nothing, in `all` too (as the engine's arrow does)
            edge = True if meta is None else self.run.meta_result(meta)
            if edge is not False:
                try:
                    values.append(all_of(edge, self.run.dispatch(ttype, tid, arrow.computed, subj, 0)))
                except DepthExceeded as error:
                    errors.append(error)
        # a target that met the limit is skipped where another decides: one that grants
        # outright (any) or one that does not hold (all)
        every = arrow.mode == "all"
        decided = any(value is (not every) for value in values)
        if errors and not decided:
            raise errors[0]
        why = f"another target {'does not hold' if every else 'grants'}, so it cannot change the arrow"
        node.children = self._bounded(makers, decided, why)
        if every:
            return self._finish(node, _fold_values(all_of, True, values) if values else False)
        return self._finish(node, _fold_values(any_of, False, values))

def build(
    compiled: CompiledSchema,
    run: CheckRun,
    index: RelationshipIndex,
    resource: tuple[str, str],
    permission: str,
    subject: Subject,
    *,
    max_nodes: int = MAX_NODES,
) -> tuple[ExplainNode, Explainer]:
    """The resolution tree of `resource#permission` for `subject` (see the module doc), its
    caveat conditions not yet evaluated, and the explainer that settles them (synchronous:
    the engine's own evaluation over one index, `run` of `compiled`). A depth error is the
    plain walk's to give, as in Check: a tree whose run met the limit is built again with the
    walk's run (check.Rewalk)."""
    explainer = Explainer(compiled.schema, run, index, subject, max_nodes=max_nodes)
    try:
        return explainer.relation(resource[0], resource[1], permission, subject), explainer
    except DepthExceeded as error:
        rewalk = Rewalk.instead(error, compiled, index, run.max_depth)
    explainer = Explainer(compiled.schema, rewalk.run, index, subject, max_nodes=max_nodes)
    return explainer.relation(resource[0], resource[1], permission, subject), explainer


async def explain(
    compiled: CompiledSchema,
    run: CheckRun,
    index: RelationshipIndex,
    verdict: Verdict,
    resource: tuple[str, str],
    permission: str,
    subject: Subject,
    *,
    max_nodes: int = MAX_NODES,
) -> ExplainNode:
    """:func:`build`, then its caveat conditions evaluated with `verdict` (which may leave the
    event loop)."""
    tree, explainer = build(compiled, run, index, resource, permission, subject, max_nodes=max_nodes)
    await explainer.settle(tree, verdict)
    return tree


def _failing_operands(node: ExplainNode) -> str:
    failing = [child.label for child in node.children if not child.granted and child.kind != SKIPPED]
    return "not every operand holds: " + ", ".join(failing) if failing else ""


def _excluded(node: ExplainNode) -> str:
    base, subtract = node.children
    if (base.granted or base.kind == SKIPPED) and subtract.result is Permissionship.ALLOWED:
        return f"excluded: {subtract.label} holds"
    return ""


def _operand_text(rewrite: ir.Rewrite, rtype: str, rid: str) -> str:
    """An operand's label as its own node would have it."""
    if isinstance(rewrite, ir.ComputedUserset):
        return f"{rtype}:{rid}#{rewrite.relation}"
    return _text(rewrite)


def _fold(combine: Callable[[Result, Result], Result], start: Result, nodes: Iterable[ExplainNode]) -> Result:
    return _fold_values(combine, start, [node.raw for node in nodes])


def _fold_values(
    combine: Callable[[Result, Result], Result], start: Result, values: Iterable[Result]
) -> Result:
    value = start
    for item in values:
        value = combine(value, item)
    return value


def _subject_text(subject: tuple[str, ...]) -> str:
    text = f"{subject[0]}:{subject[1]}"
    if len(subject) > 2 and subject[2]:
        text += f"#{subject[2]}"
    return text


def _text(rewrite: ir.Rewrite) -> str:
    from stonetown.schema.formatter import format_rewrite

    return format_rewrite(rewrite)
