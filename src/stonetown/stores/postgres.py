"""A multi-version datastore in PostgreSQL, through asyncpg; several Stonetown nodes may share it.

Layout (every table prefixed ``stonetown_`` so the store can live beside other tables):
`stonetown_relationships` holds one row per version of a relationship, with the revision that
created it and the one that deleted it (NULL while live); `stonetown_revisions` one row per
committed write with its commit timestamp (the database clock); `stonetown_schemas` the schema
texts by revision; `stonetown_state` one row with the head revision and the oldest readable
one; `stonetown_migrations` the applied layout versions. Text columns use the "C" collation so
the database orders keys exactly as Python compares strings.

Revisions are gap-free and in commit order: every write transaction first locks the single
`stonetown_state` row (SELECT ... FOR UPDATE), so the next writer can only read the head after
the previous one committed (or rolled back, giving its revision back). Preconditions and
validators run after the lock, against the state before the write. Each write sends
``NOTIFY stonetown_changes`` inside its transaction (delivered at commit), and
:meth:`PostgresDatastore.listen` wakes a callback on every commit from any node.

Reads run in REPEATABLE READ, read-only transactions, so the bounds check and the rows come
from one snapshot. Migrations are versioned, run under a transaction-level advisory lock (two
nodes starting together do not race), and are applied by :meth:`open` or `stonetown migrate`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from stonetown.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, StoreError
from stonetown.core.relationship import ContextualizedCaveat, Relationship
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
    PreconditionOp,
    RelationshipFilter,
    RevisionChanges,
    SchemaChangeValidator,
    StoredSchema,
    Update,
    UpdateOp,
    WriteValidator,
)
from stonetown.stores.common import (
    as_utc,
    changes_out_of_range,
    check_cursor,
    check_filter,
    check_no_duplicates,
    precondition_failed,
    revision_out_of_range,
)

T = TypeVar("T")
log = logging.getLogger("stonetown.stores.postgres")

CHANNEL = "stonetown_changes"
_KEY_COLUMNS = "resource_type, resource_id, relation, subject_type, subject_id, subject_relation"
_COLUMNS = f"{_KEY_COLUMNS}, caveat_name, caveat_context, expiration"
_KEYS_UNNEST = "unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])"
_KEY_JOIN = (
    "r.resource_type = k.rt AND r.resource_id = k.rid AND r.relation = k.rel AND r.subject_type = k.st "
    "AND r.subject_id = k.sid AND r.subject_relation = k.sr"
)

# Each migration is (version, description, statements); never edit one that has shipped.
_MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "initial layout",
        [
            """CREATE TABLE stonetown_state (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                head BIGINT NOT NULL,
                min_revision BIGINT NOT NULL
            )""",
            "INSERT INTO stonetown_state (id, head, min_revision) VALUES (1, 0, 0)",
            """CREATE TABLE stonetown_revisions (
                revision BIGINT PRIMARY KEY,
                committed_at TIMESTAMPTZ NOT NULL,
                schema_changed BOOLEAN NOT NULL DEFAULT FALSE
            )""",
            """CREATE TABLE stonetown_relationships (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                resource_type TEXT COLLATE "C" NOT NULL,
                resource_id TEXT COLLATE "C" NOT NULL,
                relation TEXT COLLATE "C" NOT NULL,
                subject_type TEXT COLLATE "C" NOT NULL,
                subject_id TEXT COLLATE "C" NOT NULL,
                subject_relation TEXT COLLATE "C" NOT NULL DEFAULT '',
                caveat_name TEXT COLLATE "C",
                caveat_context TEXT,
                expiration TIMESTAMPTZ,
                created_revision BIGINT NOT NULL,
                deleted_revision BIGINT
            )""",
            "CREATE UNIQUE INDEX stonetown_relationships_by_resource ON stonetown_relationships "
            f"({_KEY_COLUMNS}, created_revision)",
            f"CREATE UNIQUE INDEX stonetown_relationships_live ON stonetown_relationships ({_KEY_COLUMNS}) "
            "WHERE deleted_revision IS NULL",
            "CREATE INDEX stonetown_relationships_by_subject ON stonetown_relationships "
            "(subject_type, subject_id, subject_relation, resource_type, relation)",
            "CREATE INDEX stonetown_relationships_created ON stonetown_relationships (created_revision)",
            "CREATE INDEX stonetown_relationships_deleted ON stonetown_relationships (deleted_revision) "
            "WHERE deleted_revision IS NOT NULL",
            "CREATE TABLE stonetown_schemas (revision BIGINT PRIMARY KEY, text TEXT NOT NULL)",
        ],
    ),
    (
        2,
        "index expiring relationships for garbage collection",
        [
            "CREATE INDEX stonetown_relationships_expiring ON stonetown_relationships (expiration) "
            "WHERE expiration IS NOT NULL",
        ],
    ),
]
LATEST_VERSION = _MIGRATIONS[-1][0]
_OUR_TABLES = {
    "stonetown_state",
    "stonetown_revisions",
    "stonetown_relationships",
    "stonetown_schemas",
}

_UNSTORABLE = (
    asyncpg.exceptions.CharacterNotInRepertoireError,
    asyncpg.exceptions.UntranslatableCharacterError,
)
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
)


def redact(uri: str) -> str:
    """`uri` without its password, for messages and logs."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparsable URI>"
    if parts.password is None:
        return uri
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _to_relationship(row: Sequence[Any], offset: int = 0) -> Relationship:
    """A relationship from the nine columns of _COLUMNS starting at `offset`."""
    caveat = None
    if row[offset + 6] is not None:
        context = row[offset + 7]
        caveat = ContextualizedCaveat(row[offset + 6], json.loads(context) if context else {})
    return Relationship(*row[offset : offset + 6], caveat, row[offset + 8])  # type: ignore[misc]


def _key_arrays(keys: Sequence[tuple[str, ...]]) -> list[list[str]]:
    """Six parallel arrays (one per key column) for unnest()."""
    return [[key[i] for key in keys] for i in range(6)]


def _prefix_bound(prefix: str) -> str | None:
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


def _filter_sql(filter: RelationshipFilter, revision: int | None, params: list[Any], alias: str = "") -> str:
    """A WHERE clause for `filter` at `revision` (None: the head, using the partial index of live
    rows); appends its parameters to `params` ($n numbering continues from its length)."""
    column = f"{alias}." if alias else ""

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    clauses: list[str] = []
    if revision is None:
        clauses.append(f"{column}deleted_revision IS NULL")
    else:
        mark = param(revision)
        clauses.append(
            f"{column}created_revision <= {mark} AND "
            f"({column}deleted_revision IS NULL OR {column}deleted_revision > {mark})"
        )
    if filter.resource_type is not None:
        clauses.append(f"{column}resource_type = {param(filter.resource_type)}")
    if filter.resource_id is not None:
        clauses.append(f"{column}resource_id = {param(filter.resource_id)}")
    if filter.resource_id_prefix:
        clauses.append(f"{column}resource_id >= {param(filter.resource_id_prefix)}")
        bound = _prefix_bound(filter.resource_id_prefix)
        if bound is not None:
            clauses.append(f"{column}resource_id < {param(bound)}")
    if filter.relation is not None:
        clauses.append(f"{column}relation = {param(filter.relation)}")
    subject = filter.subject
    if subject is not None:
        clauses.append(f"{column}subject_type = {param(subject.type)}")
        if subject.id is not None:
            clauses.append(f"{column}subject_id = {param(subject.id)}")
        if subject.relation is not None:
            clauses.append(f"{column}subject_relation = {param(subject.relation)}")
    return " AND ".join(clauses)


def _insert_arrays(relationships: Sequence[Relationship]) -> list[list[Any]]:
    """Nine parallel arrays (one per column of _COLUMNS) for an INSERT ... SELECT unnest()."""
    columns: list[list[Any]] = [[] for _ in range(9)]
    for rel in relationships:
        caveat_name = caveat_context = None
        if rel.caveat is not None:
            caveat_name = rel.caveat.name
            try:
                caveat_context = json.dumps(rel.caveat.context, separators=(",", ":"), sort_keys=True)
            except (TypeError, ValueError) as exc:
                raise InvalidArgument(f"relationship {rel}: caveat context is not JSON: {exc}") from None
        expiration = None if rel.expiration is None else as_utc(rel.expiration)
        for position, value in enumerate((*rel.key, caveat_name, caveat_context, expiration)):
            columns[position].append(value)
    return columns


class PostgresDatastore(Datastore):
    """A multi-version datastore in one PostgreSQL database (or schema, via ``search_path``);
    several processes and machines may share it."""

    def __init__(
        self,
        uri: str,
        *,
        gc_window_seconds: float = 24 * 3600.0,
        min_connections: int = 1,
        max_connections: int = 10,
        connect_timeout: float = 10.0,
        auto_migrate: bool = True,
    ) -> None:
        """Describe the store; nothing is opened before :meth:`open`.

        `uri` is a libpq-style URI (``postgresql://user:password@host:port/database``); query
        parameters asyncpg does not know become server settings, e.g. ``?search_path=tenant1``.
        With `auto_migrate` false, :meth:`open` refuses a database whose layout is not current
        instead of migrating it.
        """
        if not uri.startswith(("postgres://", "postgresql://")):
            raise InvalidArgument(
                f"a PostgreSQL datastore URI starts with postgresql://, not {redact(uri)!r}"
            )
        if min_connections < 1 or max_connections < min_connections:
            raise InvalidArgument("need 1 <= min_connections <= max_connections")
        self.uri = uri
        self.gc_window_seconds = gc_window_seconds
        self.min_connections = min_connections
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.auto_migrate = auto_migrate
        self.applied_migrations: list[tuple[int, str]] = []  # by the last open()
        self._pool: asyncpg.Pool | None = None
        self._listeners: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        return f"PostgresDatastore({redact(self.uri)!r})"

    # ------------------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Connect and migrate (or check the layout); raise StoreError if it cannot."""
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                self.uri,
                min_size=self.min_connections,
                max_size=self.max_connections,
                timeout=self.connect_timeout,
                command_timeout=None,
            )
            if self.auto_migrate:
                self.applied_migrations = await self.migrate()
            else:
                async with self._pool.acquire() as connection:
                    version = await self._layout_version(connection)
                if version != LATEST_VERSION:
                    raise StoreError(
                        f"PostgreSQL store {redact(self.uri)}: layout version {version}, this Stonetown "
                        f"needs {LATEST_VERSION}: run `stonetown migrate`"
                    )
        except BaseException as exc:
            await self.close()
            if isinstance(exc, (asyncpg.PostgresError, *_CONNECTION_ERRORS)):
                raise self._error(exc, "opening the store") from exc
            raise

    async def close(self) -> None:
        """Stop every listener and close every connection. Safe to call twice."""
        listeners, self._listeners = self._listeners, []
        for task in listeners:
            task.cancel()
        for task in listeners:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing regardless
                pass
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=5.0)
            except (TimeoutError, Exception):  # noqa: BLE001 - a stuck connection is dropped
                pool.terminate()

    async def migrate(self) -> list[tuple[int, str]]:
        """Apply every pending layout migration (under an advisory lock, so nodes starting
        together do not race); return the (version, description) pairs applied."""
        pool = self._require_open()
        applied: list[tuple[int, str]] = []
        async with pool.acquire() as connection:
            if await self._layout_version(connection) == LATEST_VERSION:
                return applied
            async with connection.transaction():
                await connection.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.stonetown_migrations'))"
                )
                # Another node may have migrated between the check and the lock.
                version = await self._layout_version(connection)
                if version == 0:
                    await connection.execute(
                        "CREATE TABLE IF NOT EXISTS stonetown_migrations (version INTEGER PRIMARY KEY, "
                        "description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                    )
                for number, description, statements in _MIGRATIONS:
                    if number <= version:
                        continue
                    for statement in statements:
                        await connection.execute(statement)
                    await connection.execute(
                        "INSERT INTO stonetown_migrations (version, description) VALUES ($1, $2)",
                        number,
                        description,
                    )
                    applied.append((number, description))
        return applied

    async def layout_version(self) -> int:
        """The layout version of the database (0: no Stonetown tables yet)."""
        pool = self._require_open()
        async with pool.acquire() as connection:
            return await self._layout_version(connection)

    async def _layout_version(self, connection: asyncpg.Connection) -> int:
        rows = await connection.fetch(
            "SELECT tablename FROM pg_tables "
            "WHERE schemaname = current_schema() AND tablename LIKE 'stonetown%'"
        )
        tables = {row[0] for row in rows}
        if "stonetown_migrations" not in tables:
            clashing = sorted(tables & _OUR_TABLES)
            if clashing:
                raise StoreError(
                    f"PostgreSQL store {redact(self.uri)}: tables {', '.join(clashing)} exist but "
                    "stonetown_migrations does not: not a Stonetown layout"
                )
            return 0
        version = int(await connection.fetchval("SELECT COALESCE(MAX(version), 0) FROM stonetown_migrations"))
        if version > LATEST_VERSION:
            raise StoreError(
                f"PostgreSQL store {redact(self.uri)} was migrated by a newer Stonetown (layout version "
                f"{version}; this one knows up to {LATEST_VERSION})"
            )
        return version

    # ------------------------------------------------------------------------ listening

    def listen(self, callback: Callable[[], Awaitable[object]], *, retry_interval: float = 1.0) -> None:
        """Call `callback` after every commit by any node (LISTEN/NOTIFY), and once after every
        (re)connection of the listening connection. Notifications arriving while a call runs
        are coalesced into one more call. Stopped by :meth:`close`.

        A lost listening connection is re-established every `retry_interval` seconds; callers
        that cannot miss a change keep a slower poll as well.
        """
        self._require_open()
        self._listeners.append(asyncio.create_task(self._listen(callback, retry_interval)))

    async def _listen(self, callback: Callable[[], Awaitable[object]], retry_interval: float) -> None:
        wake = asyncio.Event()
        while True:
            lost = asyncio.Event()
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(self.uri, timeout=self.connect_timeout)
                connection.add_termination_listener(lambda _connection, lost=lost: lost.set())
                await connection.add_listener(CHANNEL, lambda *_args: wake.set())
                wake.set()  # changes may have been missed while not listening
                while not lost.is_set():
                    waiter = asyncio.ensure_future(wake.wait())
                    stopper = asyncio.ensure_future(lost.wait())
                    try:
                        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiter.cancel()
                        stopper.cancel()
                    if wake.is_set():
                        wake.clear()
                        try:
                            await callback()
                        except Exception as exc:  # noqa: BLE001 - the next notification retries
                            log.warning("change callback failed", extra={"error": str(exc)})
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect below
                log.warning("listening connection lost", extra={"store": redact(self.uri), "error": str(exc)})
            finally:
                if connection is not None and not connection.is_closed():
                    try:
                        await asyncio.wait_for(connection.close(), timeout=2.0)
                    except (TimeoutError, Exception):  # noqa: BLE001 - dropping it regardless
                        connection.terminate()
            await asyncio.sleep(retry_interval)

    # ------------------------------------------------------------------------ plumbing

    def _require_open(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError(f"PostgreSQL store {redact(self.uri)} is not open")
        return self._pool

    def _error(self, exc: BaseException, action: str) -> StoreError:
        if isinstance(exc, asyncpg.exceptions.InvalidCatalogNameError):
            reason = "the database does not exist"
        elif isinstance(
            exc, asyncpg.exceptions.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
        ):
            reason = f"authentication failed ({exc})"
        elif isinstance(exc, asyncpg.exceptions.InsufficientPrivilegeError):
            reason = f"permission denied ({exc})"
        elif isinstance(exc, asyncpg.exceptions.ReadOnlySQLTransactionError):
            reason = "the server is read-only (a standby?)"
        elif isinstance(exc, asyncpg.exceptions.DiskFullError):
            reason = "the disk is full"
        elif isinstance(exc, ConnectionRefusedError):
            reason = "connection refused (is the server running and listening there?)"
        elif isinstance(exc, asyncio.TimeoutError | TimeoutError):
            reason = f"timed out after {self.connect_timeout:g} s"
        elif isinstance(exc, _CONNECTION_ERRORS):
            reason = f"connection lost or unusable ({type(exc).__name__}: {exc})"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        return StoreError(f"PostgreSQL store {redact(self.uri)}: {action} failed: {reason}")

    async def _in_write(self, action: str, body: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `body` in one transaction holding the state-row lock; commit, or roll back on
        any error. Runs to its end even if the caller is cancelled, so an acknowledged outcome
        is never left ambiguous by a cancelled RPC."""
        return await _shielded(self._write_transaction(action, body))

    async def _write_transaction(self, action: str, body: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        pool = self._require_open()
        try:
            async with pool.acquire() as connection, connection.transaction():
                return await body(connection)
        except asyncpg.exceptions.UniqueViolationError as exc:
            raise AlreadyExists(
                f"a relationship being created already exists ({exc.detail or exc})"
            ) from None
        except _UNSTORABLE:
            raise InvalidArgument("a value contains a character PostgreSQL cannot store (NUL?)") from None
        except (asyncpg.PostgresError, *_CONNECTION_ERRORS) as exc:
            raise self._error(exc, action) from exc

    async def _in_read(self, action: str, body: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `body` in one REPEATABLE READ, read-only transaction (one snapshot)."""
        pool = self._require_open()
        try:
            async with (
                pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                return await body(connection)
        except _UNSTORABLE:
            raise InvalidArgument("a value contains a character PostgreSQL cannot store (NUL?)") from None
        except (asyncpg.PostgresError, *_CONNECTION_ERRORS) as exc:
            raise self._error(exc, action) from exc

    @staticmethod
    async def _bounds(connection: asyncpg.Connection, *, lock: bool = False) -> tuple[int, int]:
        """(head, min_revision) as the transaction sees them; `lock` takes the writers' lock."""
        row = await connection.fetchrow(
            "SELECT head, min_revision FROM stonetown_state WHERE id = 1" + (" FOR UPDATE" if lock else "")
        )
        if row is None:
            raise StoreError("the stonetown_state row is missing: the layout is damaged")
        return int(row[0]), int(row[1])

    async def _check_revision(self, connection: asyncpg.Connection, revision: int) -> int:
        """Raise FailedPrecondition unless `revision` is readable; return the head."""
        head, min_revision = await self._bounds(connection)
        error = revision_out_of_range(revision, min_revision, head)
        if error is not None:
            raise error
        return head

    @staticmethod
    async def _schema_at(connection: asyncpg.Connection, revision: int) -> StoredSchema | None:
        row = await connection.fetchrow(
            "SELECT text, revision FROM stonetown_schemas WHERE revision <= $1 "
            "ORDER BY revision DESC LIMIT 1",
            revision,
        )
        return None if row is None else StoredSchema(row[0], int(row[1]))

    @staticmethod
    async def _check_preconditions(
        connection: asyncpg.Connection, preconditions: Sequence[Precondition]
    ) -> None:
        for precondition in preconditions:
            params: list[Any] = []
            where = _filter_sql(precondition.filter, None, params)
            found = await connection.fetchval(
                f"SELECT EXISTS (SELECT 1 FROM stonetown_relationships WHERE {where})", *params
            )
            if bool(found) != (precondition.op is PreconditionOp.MUST_MATCH):
                raise precondition_failed(precondition)

    @staticmethod
    async def _new_revision(connection: asyncpg.Connection, head: int, schema_changed: bool) -> int:
        revision = head + 1
        # One round trip: advance the head, log the revision, and queue the notification
        # (PostgreSQL delivers it at commit, so listeners never hear of an uncommitted write).
        await connection.execute(
            "WITH state AS (UPDATE stonetown_state SET head = $1 WHERE id = 1), "
            "logged AS (INSERT INTO stonetown_revisions (revision, committed_at, schema_changed) "
            "VALUES ($1, clock_timestamp(), $2)) "
            "SELECT pg_notify($3, $1::text)",
            revision,
            schema_changed,
            CHANNEL,
        )
        return revision

    # ---------------------------------------------------------------------------- writes

    async def head_revision(self) -> int:
        """The newest committed revision (0 for an empty store)."""

        async def body(connection: asyncpg.Connection) -> int:
            return (await self._bounds(connection))[0]

        return await self._in_read("reading the head revision", body)

    async def min_revision(self) -> int:
        """The oldest revision that can still be read exactly."""

        async def body(connection: asyncpg.Connection) -> int:
            return (await self._bounds(connection))[1]

        return await self._in_read("reading the oldest revision", body)

    async def write(
        self,
        updates: Sequence[Update],
        preconditions: Sequence[Precondition] = (),
        validate: WriteValidator | None = None,
    ) -> int:
        """Apply every update in one transaction and return the new revision."""
        inserts = self._prepare_write(updates, preconditions)

        async def body(connection: asyncpg.Connection) -> int:
            head, _ = await self._bounds(connection, lock=True)
            if validate is not None:
                validate(await self._schema_at(connection, head), updates)
            return await self._write_body(connection, head, updates, preconditions, inserts)

        return await self._in_write("writing relationships", body)

    async def write_batch(
        self, items: Sequence[BatchItem], validate: WriteValidator | None = None
    ) -> list[BatchResult]:
        """Apply the items in one transaction (one commit), each in a savepoint of its own."""
        prepared: list[Any] = []  # per item: its insert arrays (writes), None (deletes) or its error
        for item in items:
            try:
                if isinstance(item, BatchedWrite):
                    prepared.append(self._prepare_write(item.updates, item.preconditions))
                else:
                    self._prepare_delete(item.filter, item.preconditions)
                    prepared.append(None)
            except InvalidArgument as exc:
                prepared.append(exc)

        async def body(connection: asyncpg.Connection) -> list[BatchResult]:
            head, _ = await self._bounds(connection, lock=True)
            schema: list[StoredSchema | None] = []  # read once, when a validator first needs it
            results: list[BatchResult] = []
            for item, prep in zip(items, prepared, strict=True):
                if isinstance(prep, Exception):
                    results.append(prep)
                    continue
                try:
                    async with connection.transaction():  # a savepoint: a failure undoes this item only
                        if isinstance(item, BatchedWrite):
                            if validate is not None:
                                if not schema:
                                    schema.append(await self._schema_at(connection, head))
                                validate(schema[0], item.updates)
                            result: BatchResult = await self._write_body(
                                connection, head, item.updates, item.preconditions, prep
                            )
                            head = result
                        else:
                            result = await self._delete_body(connection, head, item)
                            head = result.revision
                except (InvalidArgument, AlreadyExists, FailedPrecondition) as exc:
                    results.append(exc)
                    continue
                except asyncpg.exceptions.UniqueViolationError as exc:
                    results.append(
                        AlreadyExists(f"a relationship being created already exists ({exc.detail or exc})")
                    )
                    continue
                except _UNSTORABLE:
                    results.append(
                        InvalidArgument("a value contains a character PostgreSQL cannot store (NUL?)")
                    )
                    continue
                results.append(result)
            return results

        return await self._in_write("writing relationships", body)

    @staticmethod
    def _prepare_write(updates: Sequence[Update], preconditions: Sequence[Precondition]) -> Any:
        """Check a write's arguments; its insert arrays (a caveat context that is not JSON
        fails here, before any transaction)."""
        check_no_duplicates(updates)
        for precondition in preconditions:
            check_filter(precondition.filter)
        return _insert_arrays([update.relationship for update in updates if update.op is not UpdateOp.DELETE])

    async def _write_body(
        self,
        connection: asyncpg.Connection,
        head: int,
        updates: Sequence[Update],
        preconditions: Sequence[Precondition],
        inserts: Any,
    ) -> int:
        """One write inside a transaction holding the writers' lock; its revision."""
        ending = [update.relationship.key for update in updates if update.op is not UpdateOp.CREATE]
        created = [update.relationship for update in updates if update.op is UpdateOp.CREATE]
        await self._check_preconditions(connection, preconditions)
        if created:
            await self._refuse_existing(connection, created)
        revision = await self._new_revision(connection, head, False)
        if ending:
            await connection.execute(
                f"UPDATE stonetown_relationships AS r SET deleted_revision = $1 "
                f"FROM {_KEYS_UNNEST} AS k(rt, rid, rel, st, sid, sr) "
                f"WHERE {_KEY_JOIN} AND r.deleted_revision IS NULL",
                revision,
                *_key_arrays(ending),
            )
        if any(update.op is not UpdateOp.DELETE for update in updates):
            await connection.execute(
                f"INSERT INTO stonetown_relationships ({_COLUMNS}, created_revision) "
                "SELECT *, $1::bigint FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], "
                "$6::text[], $7::text[], $8::text[], $9::text[], $10::timestamptz[])",
                revision,
                *inserts,
            )
        return revision

    @staticmethod
    async def _refuse_existing(connection: asyncpg.Connection, created: Sequence[Relationship]) -> None:
        """Raise AlreadyExists for the first CREATE of a relationship that is live."""
        rows = await connection.fetch(
            f"SELECT r.resource_type, r.resource_id, r.relation, r.subject_type, r.subject_id, "
            f"r.subject_relation FROM stonetown_relationships AS r "
            f"JOIN unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) "
            f"AS k(rt, rid, rel, st, sid, sr) ON {_KEY_JOIN} WHERE r.deleted_revision IS NULL",
            *_key_arrays([rel.key for rel in created]),
        )
        if rows:
            found = {tuple(row) for row in rows}
            rel = next(rel for rel in created if rel.key in found)
            raise AlreadyExists(f"relationship {rel} already exists")

    async def delete(
        self,
        filter: RelationshipFilter,
        preconditions: Sequence[Precondition] = (),
        limit: int | None = None,
    ) -> DeleteResult:
        """Delete every live relationship matching `filter` (at most `limit`) in one transaction."""
        self._prepare_delete(filter, preconditions)
        item = BatchedDelete(filter, preconditions, limit)

        async def body(connection: asyncpg.Connection) -> DeleteResult:
            head, _ = await self._bounds(connection, lock=True)
            return await self._delete_body(connection, head, item)

        return await self._in_write("deleting relationships", body)

    @staticmethod
    def _prepare_delete(filter: RelationshipFilter, preconditions: Sequence[Precondition]) -> None:
        check_filter(filter)
        for precondition in preconditions:
            check_filter(precondition.filter)

    async def _delete_body(
        self, connection: asyncpg.Connection, head: int, item: BatchedDelete
    ) -> DeleteResult:
        """One delete-by-filter inside a transaction holding the writers' lock."""
        await self._check_preconditions(connection, item.preconditions)
        params: list[Any] = []
        where = _filter_sql(item.filter, None, params)
        sql = f"SELECT id FROM stonetown_relationships WHERE {where} ORDER BY {_KEY_COLUMNS}"
        limit = item.limit
        if limit is not None:
            params.append(limit + 1)
            sql += f" LIMIT ${len(params)}"
        ids = [row[0] for row in await connection.fetch(sql, *params)]
        limit_reached = limit is not None and len(ids) > limit
        if limit_reached:
            ids = ids[:limit]
        if not ids:
            return DeleteResult(head, 0, limit_reached)
        revision = await self._new_revision(connection, head, False)
        await connection.execute(
            "UPDATE stonetown_relationships SET deleted_revision = $1 WHERE id = ANY($2::bigint[])",
            revision,
            ids,
        )
        return DeleteResult(revision, len(ids), limit_reached)

    async def write_schema(self, text: str, validate: SchemaChangeValidator | None = None) -> int:
        """Store schema text as the schema in force; return the new revision."""

        async def body(connection: asyncpg.Connection) -> int:
            head, _ = await self._bounds(connection, lock=True)
            if validate is not None:
                rows = await connection.fetch(
                    f"SELECT DISTINCT ON (resource_type, relation, subject_type, subject_relation, "
                    f"subject_id = '*', caveat_name, expiration IS NULL) {_COLUMNS} "
                    "FROM stonetown_relationships WHERE deleted_revision IS NULL ORDER BY resource_type, "
                    "relation, subject_type, subject_relation, subject_id = '*', caveat_name, "
                    "expiration IS NULL, id"
                )
                validate([_to_relationship(row) for row in rows])
            revision = await self._new_revision(connection, head, True)
            await connection.execute(
                "INSERT INTO stonetown_schemas (revision, text) VALUES ($1, $2)", revision, text
            )
            return revision

        return await self._in_write("writing the schema", body)

    async def gc(self, older_than: datetime) -> int:
        """Drop history older than the newest revision committed before `older_than`."""
        cutoff = as_utc(older_than)

        async def body(connection: asyncpg.Connection) -> int:
            _, min_revision = await self._bounds(connection, lock=True)
            horizon = await connection.fetchval(
                "SELECT MAX(revision) FROM stonetown_revisions WHERE committed_at < $1", cutoff
            )
            horizon = int(horizon or 0)
            # Rows that expired before the cutoff: no query sees them at any revision.
            status = await connection.execute(
                "DELETE FROM stonetown_relationships WHERE expiration IS NOT NULL AND expiration < $1",
                cutoff,
            )
            expired = int(status.split()[-1])
            if horizon <= min_revision:
                return expired
            status = await connection.execute(
                "DELETE FROM stonetown_relationships WHERE deleted_revision IS NOT NULL "
                "AND deleted_revision <= $1",
                horizon,
            )
            removed = expired + int(status.split()[-1])
            await connection.execute("DELETE FROM stonetown_revisions WHERE revision < $1", horizon)
            await connection.execute(
                "DELETE FROM stonetown_schemas WHERE revision < "
                "(SELECT MAX(revision) FROM stonetown_schemas WHERE revision <= $1)",
                horizon,
            )
            await connection.execute("UPDATE stonetown_state SET min_revision = $1 WHERE id = 1", horizon)
            return removed

        return await self._in_write("garbage collection", body)

    # ----------------------------------------------------------------------------- reads

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

        async def body(connection: asyncpg.Connection) -> list[Relationship]:
            head = await self._check_revision(connection, revision)
            params: list[Any] = []
            where = _filter_sql(filter, None if revision == head else revision, params)
            if after is not None:
                start = len(params)
                params.extend(after)
                where += f" AND ({_KEY_COLUMNS}) > ({', '.join(f'${start + i + 1}' for i in range(6))})"
            sql = f"SELECT {_COLUMNS} FROM stonetown_relationships WHERE {where} ORDER BY {_KEY_COLUMNS}"
            if limit is not None:
                params.append(limit)
                sql += f" LIMIT ${len(params)}"
            return [_to_relationship(row) for row in await connection.fetch(sql, *params)]

        return await self._in_read("reading relationships", body)

    async def iter_all(self, revision: int, batch: int = 50000) -> AsyncIterator[list[Relationship]]:
        """Every relationship live at `revision`, in batches, in storage order (not key order).

        Holds one connection and one REPEATABLE READ transaction with a server-side cursor, so
        the batches form one snapshot however long the caller takes between them.
        """
        pool = self._require_open()
        try:
            async with (
                pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                head = await self._check_revision(connection, revision)
                params: list[Any] = []
                where = _filter_sql(RelationshipFilter(), None if revision == head else revision, params)
                cursor = await connection.cursor(
                    f"SELECT {_COLUMNS} FROM stonetown_relationships WHERE {where}", *params
                )
                while True:
                    rows = await cursor.fetch(batch)
                    if not rows:
                        break
                    yield [_to_relationship(row) for row in rows]
        except (asyncpg.PostgresError, *_CONNECTION_ERRORS) as exc:
            raise self._error(exc, "reading all relationships") from exc

    async def changes(self, after_revision: int, *, limit: int | None = None) -> list[RevisionChanges]:
        """The revisions after `after_revision` in order (at most `limit`), with their changes."""

        async def body(connection: asyncpg.Connection) -> list[RevisionChanges]:
            head, min_revision = await self._bounds(connection)
            error = changes_out_of_range(after_revision, min_revision)
            if error is not None:
                raise error
            if after_revision >= head:
                return []
            sql = (
                "SELECT revision, committed_at, schema_changed FROM stonetown_revisions "
                "WHERE revision > $1 ORDER BY revision"
            )
            params: list[Any] = [after_revision]
            if limit is not None:
                sql += " LIMIT $2"
                params.append(limit)
            revisions = await connection.fetch(sql, *params)
            if not revisions:
                return []
            last = int(revisions[-1][0])
            per_revision: dict[int, list[Change]] = {int(row[0]): [] for row in revisions}
            touched = await connection.fetch(
                f"SELECT created_revision, {_COLUMNS} FROM stonetown_relationships "
                "WHERE created_revision > $1 AND created_revision <= $2",
                after_revision,
                last,
            )
            for row in touched:
                per_revision[int(row[0])].append(Change(ChangeOp.TOUCH, _to_relationship(row, 1)))
            # A row ended in a revision that re-created its key was replaced, not deleted.
            deleted = await connection.fetch(
                f"SELECT r.deleted_revision, {', '.join('r.' + c for c in _COLUMNS.split(', '))} "
                "FROM stonetown_relationships AS r "
                "WHERE r.deleted_revision > $1 AND r.deleted_revision <= $2 "
                "AND NOT EXISTS (SELECT 1 FROM stonetown_relationships AS n WHERE "
                "n.resource_type = r.resource_type AND n.resource_id = r.resource_id "
                "AND n.relation = r.relation AND n.subject_type = r.subject_type "
                "AND n.subject_id = r.subject_id AND n.subject_relation = r.subject_relation "
                "AND n.created_revision = r.deleted_revision)",
                after_revision,
                last,
            )
            for row in deleted:
                per_revision[int(row[0])].append(Change(ChangeOp.DELETE, _to_relationship(row, 1)))
            result = []
            for revision, committed_at, schema_changed in revisions:
                entries = sorted(per_revision[int(revision)], key=lambda change: change.relationship.key)
                result.append(
                    RevisionChanges(int(revision), as_utc(committed_at), tuple(entries), bool(schema_changed))
                )
            return result

        return await self._in_read("reading the change log", body)

    async def read_schema(self, revision: int | None = None) -> StoredSchema | None:
        """The schema in force at `revision` (default: head), or None if none was written."""

        async def body(connection: asyncpg.Connection) -> StoredSchema | None:
            if revision is None:
                at = (await self._bounds(connection))[0]
            else:
                await self._check_revision(connection, revision)
                at = revision
            return await self._schema_at(connection, at)

        return await self._in_read("reading the schema", body)


async def _shielded(work: Coroutine[Any, Any, T]) -> T:
    """Await `work` in a task of its own that a cancellation of the caller does not stop."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return await asyncio.shield(task)
