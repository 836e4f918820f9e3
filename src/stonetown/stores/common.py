"""Helpers shared by the datastore implementations: argument checks, messages, shapes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from stonetown.core.errors import FailedPrecondition, InvalidArgument
from stonetown.core.relationship import WILDCARD, Relationship
from stonetown.engine.datastore import (
    Precondition,
    PreconditionOp,
    RelationshipFilter,
    Update,
)

T = TypeVar("T")
Key = tuple[str, str, str, str, str, str]

# (resource_type, relation, subject_type, subject_relation, wildcard, caveat name, has expiration)
Shape = tuple[str, str, str, str, bool, str | None, bool]

KEY_LENGTH = 6


def shape_of(rel: Relationship) -> Shape:
    """The shape of a relationship, as the schema-change validator distinguishes them."""
    return (
        rel.resource_type,
        rel.relation,
        rel.subject_type,
        rel.subject_relation,
        rel.subject_id == WILDCARD,
        rel.caveat.name if rel.caveat is not None else None,
        rel.expiration is not None,
    )


def check_filter(filter: RelationshipFilter) -> None:
    """Raise InvalidArgument for a filter no store can answer."""
    if filter.resource_id is not None and filter.resource_id_prefix is not None:
        raise InvalidArgument("a relationship filter cannot have both resource_id and resource_id_prefix")


def check_cursor(after: tuple[str, ...] | None) -> None:
    """Raise InvalidArgument unless `after` is None or a full relationship key."""
    if after is not None and (len(after) != KEY_LENGTH or not all(isinstance(part, str) for part in after)):
        raise InvalidArgument(f"cursor {after!r} is not a relationship key (six strings)")


def check_no_duplicates(updates: Sequence[Update]) -> None:
    """Raise InvalidArgument if one relationship appears twice among `updates`."""
    seen: set[Key] = set()
    for update in updates:
        key = update.relationship.key
        if key in seen:
            raise InvalidArgument(
                f"relationship {update.relationship} appears more than once in the same write"
            )
        seen.add(key)


def describe_filter(filter: RelationshipFilter) -> str:
    """A readable rendering of a filter for error messages: `document:readme#viewer@user:*`."""
    resource_type = filter.resource_type or "*"
    if filter.resource_id is not None:
        resource = f"{resource_type}:{filter.resource_id}"
    elif filter.resource_id_prefix is not None:
        resource = f"{resource_type}:{filter.resource_id_prefix}*"
    else:
        resource = f"{resource_type}:*"
    text = f"{resource}#{filter.relation or '*'}"
    subject = filter.subject
    if subject is not None:
        text += f"@{subject.type}:{subject.id if subject.id is not None else '*'}"
        if subject.relation:
            text += f"#{subject.relation}"
        elif subject.relation == "":
            text += "#..."
    return text


def precondition_failed(precondition: Precondition) -> FailedPrecondition:
    """The error for a precondition that did not hold."""
    if precondition.op is PreconditionOp.MUST_MATCH:
        what = "must match a relationship but none matched"
    else:
        what = "must not match any relationship but one did"
    return FailedPrecondition(f"precondition failed: filter {describe_filter(precondition.filter)} {what}")


def revision_out_of_range(revision: int, min_revision: int, head: int) -> FailedPrecondition | None:
    """The error for reading at `revision`, or None when it is readable."""
    if revision > head:
        return FailedPrecondition(f"revision {revision} is newer than the head revision {head}")
    if revision < min_revision:
        return FailedPrecondition(
            f"revision {revision} is older than the oldest readable revision {min_revision} "
            "(its history was garbage collected)"
        )
    return None


def changes_out_of_range(after_revision: int, min_revision: int) -> FailedPrecondition | None:
    """The error for asking for changes after `after_revision`, or None when the log reaches it."""
    if after_revision < min_revision:
        return FailedPrecondition(
            f"the change log no longer reaches back to revision {after_revision}: the oldest revision "
            f"it can follow on from is {min_revision} (older entries were garbage collected)"
        )
    return None


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be in UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def prefix_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None if none)."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code == 0xD800:  # skip surrogates, which cannot be encoded
            code = 0xE000
        if code <= 0x10FFFF:
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


def encode_caveat(rel: Relationship) -> tuple[str | None, str | None]:
    """(caveat name, caveat context as compact JSON) of `rel`, both None without a caveat;
    InvalidArgument when the context is not JSON."""
    if rel.caveat is None:
        return None, None
    try:
        context = json.dumps(rel.caveat.context, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"relationship {rel}: caveat context is not JSON: {exc}") from None
    return rel.caveat.name, context


async def shielded(work: Coroutine[Any, Any, T]) -> T:
    """Await `work` in a task of its own that a cancellation of the caller does not stop."""
    task = asyncio.ensure_future(work)
    # Retrieve the outcome even when nobody awaits it any more (the caller was cancelled).
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return await asyncio.shield(task)
