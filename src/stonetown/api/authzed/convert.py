"""Domain values to authzed.api.v1 messages.

Requests need no converter of their own: authzed.api.v1 names and numbers its request
fields as stonetown.v1 does, so api/convert.py's `*_from_proto` functions read both. This
module builds the responses that differ: tokens, permissionships, expand trees, debug traces.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from google.protobuf import duration_pb2

from stonetown.api import convert as cv
from stonetown.api import tokens
from stonetown.api.authzed.errors import SpiceError
from stonetown.api.authzed.pb import core, debug, permission
from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine.explain import ExplainNode
from stonetown.engine.types import ExpandNode, ExpandOp, Permissionship

LOOKUP_RESOURCES_CURSOR = "lookup_resources"

CHECK_PERMISSIONSHIP = {
    Permissionship.DENIED: permission.CheckPermissionResponse.PERMISSIONSHIP_NO_PERMISSION,
    Permissionship.ALLOWED: permission.CheckPermissionResponse.PERMISSIONSHIP_HAS_PERMISSION,
    Permissionship.CONDITIONAL: permission.CheckPermissionResponse.PERMISSIONSHIP_CONDITIONAL_PERMISSION,
}
HAS = permission.LOOKUP_PERMISSIONSHIP_HAS_PERMISSION
CONDITIONAL = permission.LOOKUP_PERMISSIONSHIP_CONDITIONAL_PERMISSION

_EXPAND_OPS = {
    ExpandOp.UNION: core.AlgebraicSubjectSet.OPERATION_UNION,
    ExpandOp.INTERSECTION: core.AlgebraicSubjectSet.OPERATION_INTERSECTION,
    ExpandOp.EXCLUSION: core.AlgebraicSubjectSet.OPERATION_EXCLUSION,
}


def token(revision: int) -> core.ZedToken:
    """The ZedToken for a revision: Stonetown's own token text, honoured by every worker and
    node as stonetown.v1's tokens are."""
    return core.ZedToken(token=tokens.token_text(revision))


def lookup_permissionship(conditional: bool) -> int:
    """HAS_PERMISSION or CONDITIONAL_PERMISSION (LookupPermissionship) for a lookup result."""
    return CONDITIONAL if conditional else HAS


def partial(missing: tuple[str, ...]) -> core.PartialCaveatInfo | None:
    """PartialCaveatInfo naming the missing caveat parameters (None when there are none)."""
    return core.PartialCaveatInfo(missing_required_context=list(missing)) if missing else None


def relationship(rel: Relationship) -> core.Relationship:
    """The authzed message for a relationship."""
    return cv.relationship_to_proto(rel, core)


def subject(ref: SubjectRef) -> core.SubjectReference:
    """The authzed message for a subject."""
    return cv.subject_to_proto(ref, core)


def fill_expand_tree(tree: core.PermissionRelationshipTree, node: ExpandNode) -> None:
    """Fill `tree` (in its response) with the authzed tree of an expand tree (leaves list
    their subjects; caveats are not carried by authzed.api.v1's DirectSubjectSet). Built in
    place: copying a finished subtree into its parent re-parses it, and protobuf refuses to
    parse more than 100 nested messages (a tree 25 arrows deep)."""
    tree.expanded_object.CopyFrom(cv.object_to_proto(node.object, core))
    tree.expanded_relation = node.relation
    if node.op is not None:
        tree.intermediate.operation = _EXPAND_OPS[node.op]
        children = tree.intermediate.children
        for child in node.children:
            fill_expand_tree(children.add(), child)
    else:
        tree.leaf.SetInParent()
        tree.leaf.subjects.extend(subject(ref) for ref in node.subjects)


def debug_trace(
    tree: ExplainNode,
    who: SubjectRef,
    schema_text: str,
    context: dict[str, Any] | None,
    started: float,
) -> debug.DebugInformation:
    """The debug information of one check from its resolution tree (engine/explain.py): one
    CheckDebugTrace per relation or permission the check resolved, each with the ones below
    it as sub-problems (as SpiceDB's dispatch records them), the schema used and, for a
    conditional answer, the caveat parameters missing."""
    subject_message = subject(who)
    root = debug.CheckDebugTrace()
    stack: list[tuple[ExplainNode, Any]] = [(tree, root)]
    while stack:
        node, trace = stack.pop()
        resource_text, _, name = node.label.partition("#")
        trace.resource.CopyFrom(cv.object_to_proto(ObjectRef.parse(resource_text), core))
        trace.permission = name
        trace.permission_type = (
            debug.CheckDebugTrace.PERMISSION_TYPE_PERMISSION
            if node.kind == "permission"
            else debug.CheckDebugTrace.PERMISSION_TYPE_RELATION
        )
        trace.subject.CopyFrom(subject_message)
        trace.result = _TRACE_RESULT[node.result]
        trace.source = "stonetown"
        if node.result is Permissionship.CONDITIONAL:
            info = trace.caveat_evaluation_info
            info.result = debug.CaveatEvalInfo.RESULT_MISSING_SOME_CONTEXT
            info.partial_caveat_info.missing_required_context.extend(node.missing)
            if context:
                info.context.update(context)
        below = _sub_problems(node)
        if below:
            trace.sub_problems.SetInParent()
        stack.extend((child, trace.sub_problems.traces.add()) for child in below)
    root.duration.CopyFrom(duration_pb2.Duration(nanos=int((time.monotonic() - started) * 1e9)))
    return debug.DebugInformation(check=root, schema_used=schema_text)


_TRACE_RESULT = {
    Permissionship.DENIED: debug.CheckDebugTrace.PERMISSIONSHIP_NO_PERMISSION,
    Permissionship.ALLOWED: debug.CheckDebugTrace.PERMISSIONSHIP_HAS_PERMISSION,
    Permissionship.CONDITIONAL: debug.CheckDebugTrace.PERMISSIONSHIP_CONDITIONAL_PERMISSION,
}


def _sub_problems(node: ExplainNode) -> list[ExplainNode]:
    """The relation and permission nodes directly below `node`, looking through operator and
    relationship nodes."""
    found: list[ExplainNode] = []
    stack = list(reversed(node.children))
    while stack:
        child = stack.pop()
        if child.kind in ("permission", "relation"):
            found.append(child)
        else:
            stack.extend(reversed(child.children))
    return found


def refuse_ellipsis(subject: Any, path: str) -> None:
    """SpiceDB's request validation: a SubjectReference's relation `...` is no relation name
    (stonetown.v1 reads it as none)."""
    if subject.optional_relation == "...":
        raise SpiceError(
            "INVALID_ARGUMENT", f"{path}.optional_relation: `...` is not a relation name (leave it empty)"
        )


def cursor_kind(kind: str, request: Any) -> str:
    """A cursor kind bound to the call's arguments (all but cursor, limit and consistency):
    SpiceDB refuses a cursor made by a call with other arguments."""
    arguments = type(request)()
    arguments.CopyFrom(request)
    for name in ("optional_cursor", "optional_limit", "consistency"):
        arguments.ClearField(name)
    digest = hashlib.sha256(arguments.SerializeToString(deterministic=True)).hexdigest()[:16]
    return f"{kind}:{digest}"


def lookup_cursor(message: Any, has: bool, kind: str) -> str | None:
    """The resource id a LookupResources cursor resumes after (None: from the start)."""
    found = tokens.cursor_from_proto(message, has, kind, 1, "optional_cursor")
    return found[0] if found else None
