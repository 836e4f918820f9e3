"""Domain values to authzed.api.v1 messages.

Requests need no converter of their own: authzed.api.v1 names and numbers its request
fields as stonetown.v1 does, so api/convert.py's `*_from_proto` functions read both. This
module builds the responses that differ: tokens, permissionships, expand trees, debug traces.
"""

from __future__ import annotations

import time
from typing import Any

from google.protobuf import duration_pb2

from stonetown.api import convert as cv
from stonetown.api.authzed.pb import core, debug, permission
from stonetown.core.errors import InvalidArgument
from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine.types import CheckResult, ExpandNode, ExpandOp, Permissionship

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
    return core.ZedToken(token=cv.token_text(revision))


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


def expand_tree(node: ExpandNode) -> core.PermissionRelationshipTree:
    """The authzed tree for an expand tree (leaves list their subjects; caveats are not
    carried by authzed.api.v1's DirectSubjectSet)."""
    tree = core.PermissionRelationshipTree(
        expanded_object=cv.object_to_proto(node.object, core), expanded_relation=node.relation
    )
    if node.op is not None:
        tree.intermediate.operation = _EXPAND_OPS[node.op]
        tree.intermediate.children.extend(expand_tree(child) for child in node.children)
    else:
        tree.leaf.SetInParent()
        tree.leaf.subjects.extend(subject(ref) for ref in node.subjects)
    return tree


def debug_trace(
    resource: ObjectRef,
    name: str,
    who: SubjectRef,
    result: CheckResult,
    is_permission: bool,
    schema_text: str,
    context: dict[str, Any] | None,
    started: float,
) -> debug.DebugInformation:
    """The debug information of one check: the check asked and its exact answer (Stonetown's
    engine does not record sub-problems, so none are listed), the schema used and, for a
    conditional answer, the caveat parameters missing."""
    trace = debug.CheckDebugTrace(
        resource=cv.object_to_proto(resource, core),
        permission=name,
        permission_type=(
            debug.CheckDebugTrace.PERMISSION_TYPE_PERMISSION
            if is_permission
            else debug.CheckDebugTrace.PERMISSION_TYPE_RELATION
        ),
        subject=subject(who),
        result=CHECK_PERMISSIONSHIP[result.permissionship],
        source="stonetown",
    )
    if result.permissionship is Permissionship.CONDITIONAL:
        info = trace.caveat_evaluation_info
        info.result = debug.CaveatEvalInfo.RESULT_MISSING_SOME_CONTEXT
        info.partial_caveat_info.missing_required_context.extend(result.missing_parameters)
        if context:
            info.context.update(context)
    trace.duration.CopyFrom(duration_pb2.Duration(nanos=int((time.monotonic() - started) * 1e9)))
    return debug.DebugInformation(check=trace, schema_used=schema_text)


def lookup_cursor(message: Any, has: bool) -> str | None:
    """The resource id a LookupResources cursor resumes after (None: from the start)."""
    found = cv.cursor_from_proto(message, has, LOOKUP_RESOURCES_CURSOR, 1, "optional_cursor")
    return found[0] if found else None


def require_known(value: int, allowed: tuple[int, ...], path: str) -> int:
    """`value` if it is one of `allowed` enum values, else InvalidArgument naming `path`."""
    if value not in allowed:
        raise InvalidArgument(f"{path}: value must be one of the defined enum values ({value} is not)")
    return value
