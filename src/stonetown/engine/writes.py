"""Writes of a PermissionSystem (schema, relationships, imports) and how its head index
advances: past its own commits directly, past everything else from the store's change log.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence
from dataclasses import replace

from stonetown.core.errors import FailedPrecondition, InvalidArgument
from stonetown.core.glibc import trim
from stonetown.core.relationship import WILDCARD, Relationship, validate_object_id
from stonetown.engine import bulk_import
from stonetown.engine.admission import admission_error, require_admitted, require_kept
from stonetown.engine.change_feed import ChangeFeed
from stonetown.engine.closure import Closures
from stonetown.engine.datastore import (
    BatchedDelete,
    BatchedWrite,
    BatchItem,
    BatchResult,
    Change,
    ChangeOp,
    Datastore,
    DeleteResult,
    Precondition,
    RelationshipFilter,
    StoredSchema,
    Update,
    UpdateOp,
)
from stonetown.engine.index import RelationshipIndex
from stonetown.engine.schema_cache import SchemaCache, SchemaState, cyclic_gc_paused
from stonetown.engine.write_batcher import WriteBatcher


class Writes(SchemaCache):
    """Schema and relationship writes, and the head index kept up with the store (a layer of
    PermissionSystem, see engine/system.py)."""

    # set by PermissionSystem.__init__
    store: Datastore
    index: RelationshipIndex
    state: SchemaState | None
    feed: ChangeFeed
    _advance_lock: asyncio.Lock
    _batcher: WriteBatcher
    _imports_in_flight: int
    _indexing: asyncio.Event | None

    async def _reload(self) -> None:
        head = await self.store.head_revision()
        stored = await self.store.read_schema(head)
        state = await self._state_for(stored) if stored is not None else None
        index = await _load_index(self.store, head)
        self.index, self.state = index, state
        if state is not None and index.closure is not None:
            index.closure.prepare(state.compiled.closure_graphs)  # not on the first checks
            trim()  # what building them freed, as the load's (RelationshipIndex.loaded)

    async def catch_up(self) -> int:
        """Apply every committed change the index has not seen; return the index revision."""
        async with self._advance_lock:
            while True:
                try:
                    batches = await self.store.changes(self.index.revision, limit=1000, urgent=True)
                except FailedPrecondition:
                    await self._reload()  # fell behind the garbage-collection window
                    break
                if not batches:
                    break
                for batch in batches:
                    state = self.state
                    if batch.schema_changed:
                        stored = await self.store.read_schema(batch.revision, urgent=True)
                        state = await self._state_for(stored) if stored is not None else None
                    self.index.apply(batch.changes, batch.revision)
                    self.state = state
            self.feed.announce(self.index.revision)
        return self.index.revision

    # ---- schema -------------------------------------------------------------------------

    async def write_schema(self, text: str) -> int:
        """Parse, check and store a schema; refuse (FailedPrecondition) one that would orphan
        stored relationships. Returns the new revision.

        Everything the engine derives from the schema is compiled before the commit, in a
        thread (the event loop stays free): a schema that cannot be served is never stored.
        """
        known = self._compiled.get(text)  # the same text written before: compiled already
        state = known if known is not None and known.checked_limits else await self._compile_new(text)
        schema = state.schema
        revision = await self.store.write_schema(text, lambda examples: require_kept(schema, list(examples)))
        self._remember(replace(state, stored=StoredSchema(text, revision)))
        await self.catch_up()
        return revision

    # ---- relationships ------------------------------------------------------------------

    def _validate_updates(self, stored: StoredSchema | None, updates: Sequence[Update]) -> None:
        if stored is None:
            raise FailedPrecondition("no schema has been written yet: write a schema before relationships")
        schema = self._schema_of(stored)
        for position, update in enumerate(updates):
            rel = update.relationship
            if update.op is UpdateOp.DELETE:
                definition = schema.definitions.get(rel.resource_type)
                if definition is None or rel.relation not in definition.relations:
                    require_admitted(schema, rel, f"updates[{position}]")
                continue
            require_admitted(schema, rel, f"updates[{position}]")

    async def write_relationships(
        self, updates: Sequence[Update], preconditions: Sequence[Precondition] = ()
    ) -> int:
        """Validate every relationship against the schema and write atomically; new revision.

        Concurrent calls are committed together (one store transaction, one revision each);
        the answer comes once the write is durable and in this process's index.
        """
        for position, update in enumerate(updates):
            try:
                update.relationship.validate_syntax()
            except InvalidArgument as exc:
                raise InvalidArgument(f"updates[{position}]: {exc}") from None
        revision = await self._batcher.submit(BatchedWrite(updates, preconditions))
        assert isinstance(revision, int)
        return revision

    async def delete_relationships(
        self,
        filter: RelationshipFilter,
        preconditions: Sequence[Precondition] = (),
        limit: int | None = None,
    ) -> DeleteResult:
        """Delete by filter atomically (committed together with concurrent writes)."""
        result = await self._batcher.submit(BatchedDelete(filter, preconditions, limit))
        assert isinstance(result, DeleteResult)
        return result

    async def _after_batch(self, items: Sequence[BatchItem], results: Sequence[BatchResult]) -> None:
        """Advance the index past a committed batch before its callers are answered."""
        writes: list[tuple[BatchedWrite, int]] = []
        other_change = False
        for item, result in zip(items, results, strict=True):
            if isinstance(result, int) and isinstance(item, BatchedWrite):
                writes.append((item, result))
            elif isinstance(result, DeleteResult) and result.deleted:
                other_change = True
        if not writes and not other_change:
            return
        async with self._advance_lock:
            if not other_change and self.index.revision == writes[0][1] - 1:
                # Nothing else committed in between: the writes' own updates are the whole
                # change (their revisions are consecutive), no need to read them back.
                for item, revision in writes:
                    self.index.apply(
                        [
                            Change(
                                ChangeOp.DELETE if u.op is UpdateOp.DELETE else ChangeOp.TOUCH, u.relationship
                            )
                            for u in item.updates
                        ],
                        revision,
                    )
                self.feed.announce(revision)
                return
        await self.catch_up()

    async def import_relationships(self, relationships: Sequence[Relationship]) -> int:
        """Create every relationship in one atomic write (one revision; all or nothing), by the
        store's bulk path; the new revision. An error names the relationship's position."""
        checked: set[tuple[str, str, str, str]] = set()  # names already found valid
        for position, rel in enumerate(relationships):
            if position % bulk_import.CHUNK == bulk_import.CHUNK - 1:
                await asyncio.sleep(0)  # a large import must not hold up health checks
            try:
                names = (rel.resource_type, rel.relation, rel.subject_type, rel.subject_relation)
                if names not in checked or (rel.subject_relation and rel.subject_id == WILDCARD):
                    rel.validate_syntax()
                    checked.add(names)
                else:
                    validate_object_id(rel.resource_id, "resource id", allow_wildcard=False)
                    validate_object_id(rel.subject_id, "subject id", allow_wildcard=True)
            except InvalidArgument as exc:
                raise InvalidArgument(f"relationships[{position}]: {exc}") from None
        # The background poll would read the whole import back from the change log.
        self._imports_in_flight += 1
        try:
            revision = await self.store.import_relationships(relationships, self._validate_import)
        finally:
            self._imports_in_flight -= 1
        # Shielded: once started, the index update runs to its end even if the caller goes.
        if not await asyncio.shield(asyncio.ensure_future(self._index_import(relationships, revision))):
            await self.catch_up()
        return revision

    async def _index_import(self, relationships: Sequence[Relationship], revision: int) -> bool:
        """Put a committed import into the index, chunk by chunk with readers held off, when
        nothing else committed before it; False otherwise (then the change log has it)."""
        async with self._advance_lock:
            if self.index.revision != revision - 1:
                return False
            self._indexing = indexed = asyncio.Event()
            try:
                await bulk_import.add_to_index_yielding(self.index, relationships)
                self.index.apply((), revision)
            finally:
                self._indexing = None
                indexed.set()
            self.feed.announce(revision)
            return True

    def _validate_import(self, stored: StoredSchema | None, relationships: Sequence[Relationship]) -> None:
        """The schema check of an import, decided once per relationship shape."""
        if stored is None:
            raise FailedPrecondition("no schema has been written yet: write a schema before relationships")
        # Runs on the store's writer thread (SQLite): read the cache, never change it from here.
        schema = self._schema_of(stored)
        admitted: dict[tuple[str, str, str, str, bool, bool], bool] = {}
        for position, rel in enumerate(relationships):
            if rel.caveat is None:
                # Without a caveat the verdict depends on these fields only.
                shape = (
                    rel.resource_type,
                    rel.relation,
                    rel.subject_type,
                    rel.subject_relation,
                    rel.subject_id == WILDCARD,
                    rel.expiration is not None,
                )
                verdict = admitted.get(shape)
                if verdict is None:
                    verdict = admitted[shape] = admission_error(schema, rel) is None
                if verdict:
                    continue
            require_admitted(schema, rel, f"relationships[{position}]")


async def _load_index(store: Datastore, revision: int) -> RelationshipIndex:
    """A fresh index of every relationship live at `revision` in `store`.

    The cyclic garbage collector is paused while the index grows (its millions of new
    containers would trigger full collections that find nothing), and the index is moved to
    the permanent generation before it resumes: so neither the first allocation after the
    load (a full collection was pending) nor later collections traverse it.
    """
    index = RelationshipIndex(revision)
    with cyclic_gc_paused():
        async for batch in store.iter_fields(revision):
            index.add_all(batch)
        index.loaded()
        gc.freeze()
    index.closure = Closures(index)  # the head index keeps closures of recursive sets
    return index
