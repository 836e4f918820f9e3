"""Request handling both APIs share (stonetown.v1 and authzed.api.v1).

The two APIs name their request fields alike (``resource``, ``permission``, ``subject``,
``context``, ``consistency``, ``relationship_filter``, ``optional_cursor``), so one function
reads either API's request, validates it (errors name the field) and calls the engine; each
servicer only builds its own response messages.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from stonetown.api import convert as cv
from stonetown.api import tokens
from stonetown.api.errors import forget_frames
from stonetown.api.limits import Limits
from stonetown.core.errors import InvalidArgument, StonetownError
from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef, validate_type_name
from stonetown.engine.datastore import Precondition, RelationshipFilter, Update
from stonetown.engine.explain import ExplainNode
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import CheckRequest, CheckResult, Consistency

READ_CURSOR = "read_relationships"
T = TypeVar("T")
_KEY_LENGTH = 6  # Relationship.key


async def check(
    system: PermissionSystem, request: Any, contextual: Sequence[Relationship] = ()
) -> CheckResult:
    """The answer to a Check request (`resource`, `permission`, `subject`, `context`,
    `consistency` fields), with `contextual` relationships as if stored."""
    key = cv.check_key_from_proto(request)
    if key is None:  # something to report, or a rarer form: field by field
        resource = cv.object_from_proto(request.resource, request.HasField("resource"), "resource")
        name = cv.check_relation_name(request.permission, "permission")
        subject = cv.subject_from_proto(request.subject, request.HasField("subject"), "subject")
        context = cv.struct_to_dict(request.context, request.HasField("context"))
    else:
        context = cv.struct_to_dict(request.context, True) if request.HasField("context") else None
    consistency = tokens.consistency_from_proto(request.consistency, request.HasField("consistency"))
    if key is not None:
        if context is None and not contextual:
            # An answer already in the engine's whole-check cache, at a revision the
            # request accepts, is given without the engine (the same answer, a hit).
            cached = system.cached_check(key, consistency)
            if cached is not None:
                return cached
        rtype, rid, name, (stype, sid, srel) = key
        resource, subject = ObjectRef(rtype, rid), SubjectRef(stype, sid, srel)
    return await system.check(resource, name, subject, consistency, context, contextual)


async def explained_check(
    system: PermissionSystem, request: Any, contextual: Sequence[Relationship] = ()
) -> tuple[ExplainNode, CheckResult]:
    """A Check request answered with its resolution tree (engine/explain.py)."""
    resource = cv.object_from_proto(request.resource, request.HasField("resource"), "resource")
    name = cv.check_relation_name(request.permission, "permission")
    subject = cv.subject_from_proto(request.subject, request.HasField("subject"), "subject")
    context = cv.struct_to_dict(request.context, request.HasField("context"))
    consistency = tokens.consistency_from_proto(request.consistency, request.HasField("consistency"))
    return await system.explain(resource, name, subject, consistency, context, contextual)


def parse_check_items(items: Any) -> list[CheckRequest | StonetownError]:
    """Each item of a bulk check (`resource`, `permission`, `subject`, `context`), or the
    error naming what is wrong with it."""
    parsed: list[CheckRequest | StonetownError] = []
    quick = cv.check_request_from_proto
    for index, item in enumerate(items):
        asked = quick(item)
        if asked is not None:
            parsed.append(asked)
            continue
        path = f"items[{index}]"
        try:
            parsed.append(
                CheckRequest(
                    cv.object_from_proto(
                        item.resource, item.HasField("resource"), f"{path}.resource", allow_wildcard=True
                    ),
                    cv.check_relation_name(item.permission, f"{path}.permission"),
                    cv.subject_from_proto(item.subject, item.HasField("subject"), f"{path}.subject"),
                    cv.struct_to_dict(item.context, item.HasField("context")),
                )
            )
        except InvalidArgument as exc:
            parsed.append(exc)
    return parsed


async def check_bulk(
    system: PermissionSystem,
    parsed: Sequence[CheckRequest | StonetownError],
    consistency: Consistency,
    contextual: Sequence[Relationship] = (),
) -> tuple[int, list[CheckResult | Exception]]:
    """The revision and each item's answer (or error) of a parsed bulk check, in order."""
    valid = [item for item in parsed if isinstance(item, CheckRequest)]
    results: list[CheckResult | Exception] = []
    if valid:
        results = await system.check_bulk(valid, consistency, contextual)
    revisions = [result.revision for result in results if isinstance(result, CheckResult)]
    if revisions:
        revision = revisions[0]
    elif consistency.revision is not None:
        revision = consistency.revision
    else:
        revision = await system.store.head_revision()
    answers = iter(results)
    return revision, [outcome if isinstance(outcome, Exception) else next(answers) for outcome in parsed]


def write_request(request: Any, limits: Limits) -> tuple[list[Update], list[Precondition]]:
    """The updates and preconditions of a WriteRelationships request, validated and bounded."""
    count = len(request.updates) + len(request.optional_preconditions)
    if count == 0:
        raise InvalidArgument("updates: at least one update or precondition is required")
    limits.check_count("updates", count, limits.max_updates_per_write, "updates and preconditions")
    updates = [cv.update_from_proto(item, f"updates[{index}]") for index, item in enumerate(request.updates)]
    return updates, preconditions_from(request.optional_preconditions, limits)


def preconditions_from(messages: Any, limits: Limits) -> list[Precondition]:
    """Validated, bounded preconditions of a write or delete."""
    limits.check_count("optional_preconditions", len(messages), limits.max_updates_per_write, "preconditions")
    return [
        cv.precondition_from_proto(item, f"optional_preconditions[{index}]")
        for index, item in enumerate(messages)
    ]


def read_cursor(
    message: Any, has: bool, path: str = "optional_cursor", kind: str = READ_CURSOR
) -> tuple[str, ...] | None:
    """The relationship key a ReadRelationships/export cursor resumes after."""
    cursor = tokens.cursor_from_proto(message, has, kind, _KEY_LENGTH, path)
    return tuple(cursor) if cursor else None


def read_cursor_after(rel: Relationship, kind: str = READ_CURSOR) -> str:
    """The cursor token resuming after `rel`."""
    return tokens.encode_cursor(kind, list(rel.key))


async def read_pages(
    system: PermissionSystem,
    limits: Limits,
    flt: RelationshipFilter,
    consistency: Consistency,
    after: tuple[str, ...] | None,
    limit: int | None,
) -> AsyncIterator[tuple[list[Relationship], int]]:
    """Pages of relationships matching `flt` in key order after `after`, at most `limit` in
    all (None: every match), each page with its revision; every page after the first is read
    at the first page's exact revision."""
    remaining = limit
    while remaining is None or remaining > 0:
        page_size = limits.max_page_size if remaining is None else min(remaining, limits.max_page_size)
        page = await system.read_relationships(flt, consistency, after=after, limit=page_size)
        consistency = Consistency.at_exact_snapshot(page.revision)
        yield page.relationships, page.revision
        if remaining is not None:
            remaining -= len(page.relationships)
        if len(page.relationships) < page_size:
            return
        after = page.relationships[-1].key


async def import_stream(system: PermissionSystem, request_iterator: Any, limit: int) -> tuple[int, int]:
    """Create every relationship of a stream of import requests (`relationships` fields) in
    one atomic write, at most `limit` of them; how many, and the revision."""
    rels: list[Relationship] = []
    try:
        async for request in request_iterator:
            if len(rels) + len(request.relationships) > limit:
                raise InvalidArgument(
                    f"relationships: more than {limit} relationships in one import call (the limit, "
                    "--max-relationships-per-import): split the import into several calls"
                )
            for item in request.relationships:
                rel = cv.relationship_from_proto_quick(item)
                if rel is None:
                    rel = cv.relationship_from_proto(item, True, f"relationships[{len(rels)}]")
                rels.append(rel)
        if not rels:
            raise InvalidArgument("relationships: at least one relationship is required")
        return len(rels), await system.import_relationships(rels)
    except BaseException as exc:
        # A failed import frees its relationships now: the error's traceback (and the store's,
        # chained to it) holds frames that refer to them, and can live on in a reference cycle
        # until the next full collection.
        rels.clear()
        forget_frames(exc)
        raise


@dataclass(frozen=True, slots=True)
class SubjectsQuery:
    """What a LookupSubjects request asks, validated."""

    resource: ObjectRef
    permission: str
    subject_type: str
    subject_relation: str  # "" for plain objects (`...` in the request)
    consistency: Consistency
    context: dict[str, Any] | None


def subjects_query(request: Any) -> SubjectsQuery:
    """The validated question of a LookupSubjects request (either API). The resource may be
    `doc:*`, as SpiceDB accepts it (no relationship has that resource: only a subject set of
    it is found, itself)."""
    has = request.HasField("resource")
    resource = cv.object_from_proto(request.resource, has, "resource", allow_wildcard=True)
    name = cv.check_relation_name(request.permission, "permission")
    subject_type = cv.check_type_name(request.subject_object_type, "subject_object_type")
    subject_relation = request.optional_subject_relation
    if subject_relation == "...":
        subject_relation = ""
    if subject_relation:
        cv.check_relation_name(subject_relation, "optional_subject_relation")
    return SubjectsQuery(
        resource,
        name,
        subject_type,
        subject_relation,
        tokens.consistency_from_proto(request.consistency, request.HasField("consistency")),
        cv.struct_to_dict(request.context, request.HasField("context")),
    )


async def watch_start(system: PermissionSystem, request: Any) -> tuple[list[str], int]:
    """The object types a Watch request follows (validated) and the revision it starts after
    (its start token's, else the head: from now on)."""
    types = list(request.optional_object_types)
    for index, name in enumerate(types):
        try:
            validate_type_name(name, "type")
        except InvalidArgument as exc:
            raise InvalidArgument(f"optional_object_types[{index}]: {exc}") from None
    if request.HasField("optional_start_cursor"):
        return types, tokens.token_from_proto(request.optional_start_cursor, "optional_start_cursor")
    return types, await system.store.head_revision()


# Changes in a commit past which its Watch response is built on a worker thread: converting
# thousands of changes is tens of milliseconds of Python that would hold the event loop (on a
# thread it gets the GIL back every switch interval, see api/runtime.py); a small commit is
# built at once, cheaper than the hand-over.
BUILD_OFF_LOOP = 200
# Seconds a Watch response is kept after it was built: the streams it was built for have it
# by then, and an idle server gives its memory back (a 5,000-change commit: about 1 MB).
RESPONSE_KEPT_SECONDS = 10.0


class SharedResponses:
    """The last few Watch responses by (revision, what the stream asked for), built once for
    every stream that asks the same: a large commit fanned out to many streams would otherwise
    convert each change again for each of them, holding the event loop for seconds. Responses
    are never changed once built. Kept: at most `size` of them, and of responses kept
    serialized (bytes, see :mod:`.preserialized`) at most `max_bytes` in all but the latest,
    none for more than :data:`RESPONSE_KEPT_SECONDS`."""

    def __init__(self, size: int = 16, max_bytes: int = 8 * 1024 * 1024) -> None:
        self._size = size
        self._max_bytes = max_bytes
        self._bytes = 0
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._kept_at: dict[Hashable, float] = {}
        self._expiry: asyncio.TimerHandle | None = None
        self._building: dict[Hashable, asyncio.Future[Any]] = {}

    async def get(self, key: Hashable, build: Callable[[], Any], changes: int) -> Any:
        """The response for `key`, built by `build` the first time it is asked for (on a
        worker thread for a commit of more than :data:`BUILD_OFF_LOOP` `changes`; the streams
        asking meanwhile wait for that one build)."""
        found = self._items.get(key)
        if found is not None:
            return found
        if changes <= BUILD_OFF_LOOP:
            return self._keep(key, build())
        building = self._building.get(key)
        if building is None:
            building = self._building[key] = asyncio.ensure_future(asyncio.to_thread(build))
            building.add_done_callback(partial(self._built, key))
        # shielded: a stream that goes away does not cancel the build the others wait for
        return await asyncio.shield(building)

    def _built(self, key: Hashable, building: asyncio.Future[Any]) -> None:
        del self._building[key]
        if not building.cancelled() and building.exception() is None:
            self._keep(key, building.result())

    def _keep(self, key: Hashable, response: Any) -> Any:
        self._drop(key)
        loop = asyncio.get_running_loop()
        self._items[key] = response
        self._kept_at[key] = loop.time()
        self._bytes += _serialized_size(response)
        while len(self._items) > self._size or (self._bytes > self._max_bytes and len(self._items) > 1):
            self._drop(next(iter(self._items)))
        if self._expiry is None:
            self._expiry = loop.call_later(RESPONSE_KEPT_SECONDS, self._expire)
        return response

    def _drop(self, key: Hashable) -> None:
        if key in self._items:
            self._bytes -= _serialized_size(self._items.pop(key))
            del self._kept_at[key]

    def _expire(self) -> None:
        """Drop the responses kept for :data:`RESPONSE_KEPT_SECONDS` (oldest first); again
        when the next one is due, while any is kept."""
        self._expiry = None
        loop = asyncio.get_running_loop()
        cutoff = loop.time() - RESPONSE_KEPT_SECONDS
        while self._items and self._kept_at[next(iter(self._items))] <= cutoff:
            self._drop(next(iter(self._items)))
        if self._items:
            due = self._kept_at[next(iter(self._items))] + RESPONSE_KEPT_SECONDS
            self._expiry = loop.call_at(due, self._expire)


def _serialized_size(response: Any) -> int:
    return len(response) if response.__class__ is bytes else 0


async def regrouped(
    batches: AsyncIterator[tuple[list[T], int]], size: int
) -> AsyncIterator[tuple[list[T], int]]:
    """The answers of a lookup's `batches` (PermissionSystem.lookup_*_batches) regrouped
    `size` at a time (the last group may be smaller), each group of one revision: a stream
    message per group."""
    pending: list[T] = []
    held = 0  # the revision of the answers pending
    async for answers, revision in batches:
        if pending and revision != held:
            yield pending, held
            pending = []
        held = revision
        pending += answers
        if len(pending) >= size:
            full = len(pending) - len(pending) % size
            for start in range(0, full, size):
                yield pending[start : start + size], revision
            pending = pending[full:]
    if pending:
        yield pending, held
