"""The transaction flow the SQL stores (SQLite, PostgreSQL) share, written once.

:class:`SqlDatastore` implements the :class:`Datastore` operations as SQL over a small
connection interface, :class:`SqlConnection`: writes with preconditions and group commit (a
savepoint per item), deletes by filter with a limit, bulk imports, schema storage, garbage
collection, reads, and the change log. Both stores keep the same layout (one row per version
of a relationship, with the revisions that created and deleted it; one row per revision; the
schema texts by revision) under their own table names.

A store subclass supplies its connections and transactions (:meth:`SqlDatastore._in_read`,
:meth:`SqlDatastore._in_write`) and the statements its database spells differently: the head
revision and the writers' lock, revision allocation, ending and inserting rows in bulk, finding
live keys, and the conversions of times and rows. SQL written here uses numbered placeholders,
`{mark}1` (``$1`` in PostgreSQL, ``?1`` in SQLite), so one text serves both.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any, ClassVar, TypeVar

from stonetown.core.errors import AlreadyExists, InvalidArgument
from stonetown.core.relationship import Relationship
from stonetown.engine.datastore import (
    BatchedDelete,
    BatchedWrite,
    BatchItem,
    BatchResult,
    Change,
    ChangeOp,
    Datastore,
    DeleteResult,
    ImportValidator,
    Precondition,
    PreconditionOp,
    RelationshipFilter,
    RevisionChanges,
    SchemaChangeValidator,
    StoredSchema,
    Update,
    UpdateOp,
    WriteValidator,
    check_import_duplicates,
)
from stonetown.stores.common import (
    Key,
    changes_out_of_range,
    check_cursor,
    check_filter,
    check_no_duplicates,
    precondition_failed,
    revision_out_of_range,
)
from stonetown.stores.sql_common import COLUMNS, KEY_COLUMNS, Row, SqlConnection, add_param, filter_sql

T = TypeVar("T")

# A revision of more change-log rows than this gives the event loop a turn before they are
# sorted (the rows themselves are decoded in the connection's batches, see fetch_decoded).
DECODE_CHUNK = 1000

# what tells the shapes of relationships apart (see SchemaChangeValidator)
_SHAPE = (
    "resource_type, relation, subject_type, subject_relation, subject_id = '*', caveat_name, "
    "expiration IS NULL"
)


class SqlDatastore(Datastore):
    """The Datastore operations over SQL; subclasses supply connections and dialect hooks."""

    _MARK: ClassVar[str]  # the placeholder prefix: "$" or "?"
    _RELATIONSHIPS: ClassVar[str]
    _REVISIONS: ClassVar[str]
    _SCHEMAS: ClassVar[str]
    _REVISION_TIME: ClassVar[str]  # the revisions column holding the commit time
    _EXPIRED_BEFORE: ClassVar[str]  # expiration earlier than the parameter {mark}1
    # True: look for live relationships before inserting (a failed INSERT aborts the whole
    # transaction); False: only after an INSERT failed (writes that succeed do not pay for it).
    _CHECK_CREATES_FIRST: ClassVar[bool]
    _UNIQUE_VIOLATION: ClassVar[type[Exception]]

    # ----------------------------------------------------------------- the store's part

    @abc.abstractmethod
    async def _in_read(
        self, action: str, body: Callable[[SqlConnection], Awaitable[T]], *, urgent: bool = False
    ) -> T:
        """Run `body` in one read transaction (one snapshot); errors become StoreError naming
        `action`. An `urgent` read is served before other reads waiting for a connection."""

    @abc.abstractmethod
    async def _in_write(
        self, action: str, body: Callable[[SqlConnection], Awaitable[T]], *, long: bool = False
    ) -> T:
        """Run `body` in one write transaction, serialized with every other writer; commit, or
        roll back on any error; to its end even if the caller is cancelled. `long` bodies
        (imports, schema checks, garbage collection) keep off the event loop where they can."""

    @abc.abstractmethod
    async def _bounds(self, connection: SqlConnection, *, lock: bool = False) -> tuple[int, int]:
        """(head, min_revision) as the transaction sees them; `lock`: a write transaction's
        read, taking the writers' lock where the store needs one."""

    @abc.abstractmethod
    async def _new_revision(self, connection: SqlConnection, head: int, schema_changed: bool) -> int:
        """Allocate and log revision head + 1."""

    @abc.abstractmethod
    async def _set_min_revision(self, connection: SqlConnection, revision: int) -> None:
        """Record `revision` as the oldest readable one."""

    @abc.abstractmethod
    def _decode(self, row: Row) -> Relationship:
        """A relationship from the nine columns of COLUMNS at the start of `row`."""

    @abc.abstractmethod
    def _encode_inserts(self, relationships: Sequence[Relationship]) -> Any:
        """The rows to insert for `relationships`, as :meth:`_insert` takes them (checked before
        the write's transaction where the store encodes them early)."""

    @abc.abstractmethod
    async def _insert(self, connection: SqlConnection, encoded: Any, revision: int) -> None:
        """Insert rows from :meth:`_encode_inserts`, created at `revision`."""

    @abc.abstractmethod
    async def _end_keys(self, connection: SqlConnection, revision: int, keys: Sequence[Key]) -> None:
        """Mark the live rows with these keys deleted at `revision`."""

    @abc.abstractmethod
    async def _end_ids(self, connection: SqlConnection, revision: int, ids: Sequence[int]) -> None:
        """Mark the rows with these ids deleted at `revision`."""

    @abc.abstractmethod
    async def _first_live(
        self, connection: SqlConnection, relationships: Sequence[Relationship], before: int
    ) -> int | None:
        """The position of the first of `relationships` live in a row created before revision
        `before`, or None."""

    @abc.abstractmethod
    def _item_error(self, exc: Exception, action: str) -> Exception | None:
        """What a failed item of a group commit reports, or None when its error must fail the
        whole batch (the transaction cannot go on)."""

    @abc.abstractmethod
    def _revision_cutoff(self, older_than: datetime) -> Any:
        """`older_than` as a value of the _REVISION_TIME column."""

    @abc.abstractmethod
    def _expiration_cutoff(self, older_than: datetime) -> Any:
        """`older_than` as the parameter of _EXPIRED_BEFORE."""

    @abc.abstractmethod
    def _revision_time(self, value: Any) -> datetime:
        """A _REVISION_TIME value as an aware UTC datetime."""

    async def _import_rows(
        self, connection: SqlConnection, relationships: Sequence[Relationship], revision: int
    ) -> None:
        """Insert an import's relationships, created at `revision` (stores with a faster bulk
        path override this)."""
        await self._insert(connection, self._encode_inserts(relationships), revision)

    # -------------------------------------------------------------------------- helpers

    def _where(self, filter: RelationshipFilter, revision: int | None, params: list[Any]) -> str:
        return filter_sql(filter, revision, params, self._MARK)

    async def _check_revision(self, connection: SqlConnection, revision: int) -> int:
        """Raise FailedPrecondition unless `revision` is readable; return the head."""
        head, min_revision = await self._bounds(connection)
        error = revision_out_of_range(revision, min_revision, head)
        if error is not None:
            raise error
        return head

    async def _schema_at(self, connection: SqlConnection, revision: int) -> StoredSchema | None:
        row = await connection.fetchone(
            f"SELECT text, revision FROM {self._SCHEMAS} WHERE revision <= {self._MARK}1 "
            "ORDER BY revision DESC LIMIT 1",
            (revision,),
        )
        return None if row is None else StoredSchema(row[0], int(row[1]))

    async def _check_preconditions(
        self, connection: SqlConnection, preconditions: Sequence[Precondition]
    ) -> None:
        for precondition in preconditions:
            params: list[Any] = []
            where = self._where(precondition.filter, None, params)
            row = await connection.fetchone(
                f"SELECT 1 FROM {self._RELATIONSHIPS} WHERE {where} LIMIT 1", params
            )
            if (row is not None) != (precondition.op is PreconditionOp.MUST_MATCH):
                raise precondition_failed(precondition)

    async def _refuse_live(
        self,
        connection: SqlConnection,
        relationships: Sequence[Relationship],
        before: int,
        *,
        numbered: bool = False,
    ) -> None:
        """Raise AlreadyExists for the first of `relationships` live before revision `before`;
        with `numbered`, the message starts with its position (`relationships[i]: ...`)."""
        position = await self._first_live(connection, relationships, before)
        if position is not None:
            where = f"relationships[{position}]: " if numbered else ""
            raise AlreadyExists(f"{where}relationship {relationships[position]} already exists")

    # --------------------------------------------------------------------------- writes

    async def head_revision(self) -> int:
        """The newest committed revision (0 for an empty store)."""

        async def body(connection: SqlConnection) -> int:
            return (await self._bounds(connection))[0]

        return await self._in_read("reading the head revision", body)

    async def min_revision(self) -> int:
        """The oldest revision that can still be read exactly."""

        async def body(connection: SqlConnection) -> int:
            return (await self._bounds(connection))[1]

        return await self._in_read("reading the oldest revision", body)

    async def write(
        self,
        updates: Sequence[Update],
        preconditions: Sequence[Precondition] = (),
        validate: WriteValidator | None = None,
    ) -> int:
        """Apply every update in one transaction and return the new revision."""
        result = (
            await self._batch([BatchedWrite(updates, preconditions)], validate, "writing relationships")
        )[0]
        if isinstance(result, Exception):
            raise result
        assert isinstance(result, int)
        return result

    async def delete(
        self,
        filter: RelationshipFilter,
        preconditions: Sequence[Precondition] = (),
        limit: int | None = None,
    ) -> DeleteResult:
        """Delete every live relationship matching `filter` (at most `limit`) in one transaction."""
        result = (
            await self._batch([BatchedDelete(filter, preconditions, limit)], None, "deleting relationships")
        )[0]
        if isinstance(result, Exception):
            raise result
        assert isinstance(result, DeleteResult)
        return result

    async def write_batch(
        self, items: Sequence[BatchItem], validate: WriteValidator | None = None
    ) -> list[BatchResult]:
        """Apply the items in one transaction (one commit), each in a savepoint of its own."""
        return await self._batch(items, validate, "writing relationships")

    def _prepare(self, item: BatchItem) -> Any:
        """Check an item's arguments before its transaction; a write's encoded inserts (None
        when it inserts nothing), None for a delete."""
        if isinstance(item, BatchedDelete):
            check_filter(item.filter)
        else:
            check_no_duplicates(item.updates)
        for precondition in item.preconditions:
            check_filter(precondition.filter)
        if isinstance(item, BatchedDelete):
            return None
        inserted = [update.relationship for update in item.updates if update.op is not UpdateOp.DELETE]
        return self._encode_inserts(inserted) if inserted else None

    async def _batch(
        self, items: Sequence[BatchItem], validate: WriteValidator | None, action: str
    ) -> list[BatchResult]:
        prepared: list[Any] = []
        for item in items:
            try:
                prepared.append(self._prepare(item))
            except InvalidArgument as exc:
                prepared.append(exc)
        single = len(items) == 1
        if single and isinstance(prepared[0], Exception):
            return [prepared[0]]

        async def body(connection: SqlConnection) -> list[BatchResult]:
            head = (await self._bounds(connection, lock=True))[0]
            schema: list[StoredSchema | None] = []  # read once, when a validator first needs it
            results: list[BatchResult] = []
            for item, encoded in zip(items, prepared, strict=True):
                if isinstance(encoded, Exception):
                    results.append(encoded)
                    continue
                if not single:
                    await connection.execute("SAVEPOINT item")
                try:
                    if isinstance(item, BatchedWrite):
                        if validate is not None:
                            if not schema:
                                schema.append(await self._schema_at(connection, head))
                            validate(schema[0], item.updates)
                        result: BatchResult = await self._write_item(connection, head, item, encoded)
                        head = result
                    else:
                        result = await self._delete_item(connection, head, item)
                        head = result.revision
                except Exception as exc:
                    if single:
                        raise
                    error = self._item_error(exc, action)
                    if error is None:
                        raise
                    await connection.execute("ROLLBACK TO SAVEPOINT item")
                    await connection.execute("RELEASE SAVEPOINT item")
                    results.append(error)
                    continue
                if not single:
                    await connection.execute("RELEASE SAVEPOINT item")
                results.append(result)
            return results

        if single:
            # One item: its error rolls back the whole transaction and is its result.
            try:
                return await self._in_write(action, body)
            except Exception as exc:  # noqa: BLE001 - the item's result
                return [exc]
        return await self._in_write(action, body)

    async def _write_item(
        self, connection: SqlConnection, head: int, item: BatchedWrite, encoded: Any
    ) -> int:
        """One write inside a write transaction; its revision."""
        updates = item.updates
        if item.preconditions:
            await self._check_preconditions(connection, item.preconditions)
        if self._CHECK_CREATES_FIRST:
            created = [update.relationship for update in updates if update.op is UpdateOp.CREATE]
            if created:
                await self._refuse_live(connection, created, head + 1)
        ending = [update.relationship.key for update in updates if update.op is not UpdateOp.CREATE]
        revision = await self._new_revision(connection, head, False)
        if ending:
            await self._end_keys(connection, revision, ending)
        if encoded is not None:
            try:
                await self._insert(connection, encoded, revision)
            except self._UNIQUE_VIOLATION:
                if not self._CHECK_CREATES_FIRST:
                    created = [update.relationship for update in updates if update.op is UpdateOp.CREATE]
                    await self._refuse_live(connection, created, revision)
                raise
        return revision

    async def _delete_item(self, connection: SqlConnection, head: int, item: BatchedDelete) -> DeleteResult:
        """One delete-by-filter inside a write transaction."""
        if item.preconditions:
            await self._check_preconditions(connection, item.preconditions)
        params: list[Any] = []
        where = self._where(item.filter, None, params)
        sql = f"SELECT id FROM {self._RELATIONSHIPS} WHERE {where} ORDER BY {KEY_COLUMNS}"
        limit = item.limit
        if limit is not None:
            sql += f" LIMIT {add_param(params, limit + 1, self._MARK)}"
        ids = [row[0] for row in await connection.fetch(sql, params)]
        limit_reached = limit is not None and len(ids) > limit
        if limit_reached:
            ids = ids[:limit]
        if not ids:
            return DeleteResult(head, 0, limit_reached)
        revision = await self._new_revision(connection, head, False)
        await self._end_ids(connection, revision, ids)
        return DeleteResult(revision, len(ids), limit_reached)

    async def import_relationships(
        self, relationships: Sequence[Relationship], validate: ImportValidator | None = None
    ) -> int:
        """Create every relationship in one transaction and one revision; all or nothing."""
        if self._CHECK_CREATES_FIRST:
            check_import_duplicates(relationships)

        async def body(connection: SqlConnection) -> int:
            head = (await self._bounds(connection, lock=True))[0]
            if validate is not None:
                validate(await self._schema_at(connection, head), relationships)
            if self._CHECK_CREATES_FIRST:
                await self._refuse_live(connection, relationships, head + 1, numbered=True)
            revision = await self._new_revision(connection, head, False)
            try:
                await self._import_rows(connection, relationships, revision)
            except self._UNIQUE_VIOLATION:
                if not self._CHECK_CREATES_FIRST:
                    await self._refuse_live(connection, relationships, revision, numbered=True)
                    # Not stored before: the import names one relationship twice (checked only
                    # now, so a good import does not pay for it).
                    check_import_duplicates(relationships)
                raise
            return revision

        return await self._in_write("importing relationships", body, long=True)

    async def write_schema(self, text: str, validate: SchemaChangeValidator | None = None) -> int:
        """Store schema text as the schema in force; return the new revision."""

        async def body(connection: SqlConnection) -> int:
            head = (await self._bounds(connection, lock=True))[0]
            if validate is not None:
                rows = await connection.fetch(
                    f"SELECT {COLUMNS} FROM {self._RELATIONSHIPS} WHERE id IN (SELECT MIN(id) FROM "
                    f"{self._RELATIONSHIPS} WHERE deleted_revision IS NULL GROUP BY {_SHAPE}) ORDER BY id"
                )
                validate([self._decode(row) for row in rows])
            revision = await self._new_revision(connection, head, True)
            await connection.execute(
                f"INSERT INTO {self._SCHEMAS} (revision, text) VALUES ({self._MARK}1, {self._MARK}2)",
                (revision, text),
            )
            return revision

        return await self._in_write("writing the schema", body, long=True)

    async def gc(self, older_than: datetime) -> int:
        """Drop history older than the newest revision committed before `older_than`."""
        cutoff = self._revision_cutoff(older_than)
        expired_before = self._expiration_cutoff(older_than)
        mark, relationships = self._MARK, self._RELATIONSHIPS

        async def body(connection: SqlConnection) -> int:
            _, min_revision = await self._bounds(connection, lock=True)
            row = await connection.fetchone(
                f"SELECT MAX(revision) FROM {self._REVISIONS} WHERE {self._REVISION_TIME} < {mark}1",
                (cutoff,),
            )
            horizon = int(row[0]) if row is not None and row[0] is not None else 0
            # Rows that expired before the cutoff: no query sees them at any revision.
            expired = await connection.execute(
                f"DELETE FROM {relationships} WHERE expiration IS NOT NULL AND {self._EXPIRED_BEFORE}",
                (expired_before,),
            )
            if horizon <= min_revision:
                return expired
            removed = expired + await connection.execute(
                f"DELETE FROM {relationships} "
                f"WHERE deleted_revision IS NOT NULL AND deleted_revision <= {mark}1",
                (horizon,),
            )
            await connection.execute(f"DELETE FROM {self._REVISIONS} WHERE revision < {mark}1", (horizon,))
            await connection.execute(
                f"DELETE FROM {self._SCHEMAS} WHERE revision < "
                f"(SELECT MAX(revision) FROM {self._SCHEMAS} WHERE revision <= {mark}1)",
                (horizon,),
            )
            await self._set_min_revision(connection, horizon)
            return removed

        return await self._in_write("garbage collection", body, long=True)

    # ---------------------------------------------------------------------------- reads

    async def read(
        self,
        filter: RelationshipFilter,
        revision: int,
        *,
        after: tuple[str, ...] | None = None,
        limit: int | None = None,
    ) -> list[Relationship]:
        """Relationships live at `revision` matching `filter`, in key order, after `after`."""
        check_filter(filter)
        check_cursor(after)
        if limit is not None and limit <= 0:
            limit = 0

        async def body(connection: SqlConnection) -> list[Relationship]:
            head = await self._check_revision(connection, revision)
            params: list[Any] = []
            where = self._where(filter, None if revision == head else revision, params)
            if after is not None:
                marks = ", ".join(add_param(params, part, self._MARK) for part in after)
                where += f" AND ({KEY_COLUMNS}) > ({marks})"
            sql = f"SELECT {COLUMNS} FROM {self._RELATIONSHIPS} WHERE {where} ORDER BY {KEY_COLUMNS}"
            if limit is not None:
                sql += f" LIMIT {add_param(params, limit, self._MARK)}"
            return await connection.fetch_decoded(sql, params, self._decode)

        return await self._in_read("reading relationships", body)

    async def changes(
        self, after_revision: int, *, limit: int | None = None, urgent: bool = False
    ) -> list[RevisionChanges]:
        """The revisions after `after_revision` in order (at most `limit`), with their changes
        (`urgent`: before other reads waiting for a connection)."""
        mark, relationships = self._MARK, self._RELATIONSHIPS

        async def body(connection: SqlConnection) -> list[RevisionChanges]:
            head, min_revision = await self._bounds(connection)
            error = changes_out_of_range(after_revision, min_revision)
            if error is not None:
                raise error
            if after_revision >= head:
                return []
            sql = (
                f"SELECT revision, {self._REVISION_TIME}, schema_changed FROM {self._REVISIONS} "
                f"WHERE revision > {mark}1 ORDER BY revision"
            )
            params: list[Any] = [after_revision]
            if limit is not None:
                sql += f" LIMIT {add_param(params, limit, mark)}"
            revisions = await connection.fetch(sql, params)
            if not revisions:
                return []
            bounds = (after_revision, int(revisions[-1][0]))
            per_revision: dict[int, list[Change]] = {int(row[0]): [] for row in revisions}
            touched = await connection.fetch_decoded(
                f"SELECT {COLUMNS}, created_revision FROM {relationships} "
                f"WHERE created_revision > {mark}1 AND created_revision <= {mark}2",
                bounds,
                partial(self._change_of, ChangeOp.TOUCH),
            )
            _add_changes(per_revision, touched)
            # A row ended in a revision that re-created its key was replaced, not deleted.
            replaced = " AND ".join(f"n.{column} = r.{column}" for column in KEY_COLUMNS.split(", "))
            deleted = await connection.fetch_decoded(
                f"SELECT {', '.join('r.' + c for c in COLUMNS.split(', '))}, r.deleted_revision "
                f"FROM {relationships} AS r "
                f"WHERE r.deleted_revision > {mark}1 AND r.deleted_revision <= {mark}2 "
                f"AND NOT EXISTS (SELECT 1 FROM {relationships} AS n WHERE {replaced} "
                "AND n.created_revision = r.deleted_revision)",
                bounds,
                partial(self._change_of, ChangeOp.DELETE),
            )
            _add_changes(per_revision, deleted)
            ordered: list[RevisionChanges] = []
            for revision, committed, schema_changed in revisions:
                changes = per_revision[int(revision)]
                if len(changes) > DECODE_CHUNK:
                    await asyncio.sleep(0)  # sorting thousands (a 5,000-row import): a turn before
                ordered.append(
                    RevisionChanges(
                        int(revision),
                        self._revision_time(committed),
                        tuple(sorted(changes, key=_change_key)),
                        bool(schema_changed),
                    )
                )
            return ordered

        return await self._in_read("reading the change log", body, urgent=urgent)

    def _change_of(self, op: ChangeOp, row: Row) -> tuple[int, Change]:
        """A change-log row (its last column the revision) decoded: its revision and change."""
        return int(row[9]), Change(op, self._decode(row))

    async def read_schema(self, revision: int | None = None, *, urgent: bool = False) -> StoredSchema | None:
        """The schema in force at `revision` (default: head), or None if none was written
        (`urgent`: before other reads waiting for a connection)."""

        async def body(connection: SqlConnection) -> StoredSchema | None:
            if revision is None:
                at = (await self._bounds(connection))[0]
            else:
                await self._check_revision(connection, revision)
                at = revision
            return await self._schema_at(connection, at)

        return await self._in_read("reading the schema", body, urgent=urgent)


def _add_changes(per_revision: dict[int, list[Change]], changes: list[tuple[int, Change]]) -> None:
    """Put decoded change-log rows into `per_revision`: an append each, no turn of the event
    loop needed (the rows were decoded by the connection's fetch_decoded, which gives the loop
    its turns between batches where it reads them in batches)."""
    for revision, change in changes:
        per_revision[revision].append(change)


def _change_key(change: Change) -> Key:
    return change.relationship.key
