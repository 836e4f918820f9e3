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

The transaction flow (writes, deletes, imports, the schema, garbage collection, reads, the
change log) is :class:`stonetown.stores.sql_flow.SqlDatastore`'s, shared with SQLite; this
module holds the PostgreSQL dialect, connections, migrations and LISTEN.

Reads run in REPEATABLE READ, read-only transactions, so the bounds check and the rows come
from one snapshot. Migrations are versioned, run under a transaction-level advisory lock (two
nodes starting together do not race), and are applied by :meth:`open` or `stonetown migrate`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from stonetown.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, StoreError
from stonetown.core.relationship import ContextualizedCaveat, Relationship
from stonetown.engine.datastore import RelationshipFilter
from stonetown.stores.common import Key, as_utc, encode_caveat, shielded
from stonetown.stores.sql_common import COLUMNS as _COLUMNS
from stonetown.stores.sql_common import KEY_COLUMNS as _KEY_COLUMNS
from stonetown.stores.sql_common import SqlConnection, filter_sql
from stonetown.stores.sql_flow import SqlDatastore

T = TypeVar("T")
log = logging.getLogger("stonetown.stores.postgres")

CHANNEL = "stonetown_changes"

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
_UNSTORABLE_MESSAGE = "a value contains a character PostgreSQL cannot store (NUL?)"
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


def _to_relationship(row: Sequence[Any]) -> Relationship:
    """A relationship from the nine columns of _COLUMNS at the start of `row`."""
    caveat = None
    if row[6] is not None:
        context = row[7]
        caveat = ContextualizedCaveat(row[6], json.loads(context) if context else {})
    return Relationship.shared(*row[0:6], caveat, row[8])  # type: ignore[misc]


def _key_arrays(keys: Sequence[tuple[str, ...]]) -> list[list[str]]:
    """Six parallel arrays (one per key column) for unnest()."""
    return [[key[i] for key in keys] for i in range(6)]


def _insert_arrays(relationships: Sequence[Relationship]) -> list[list[Any]]:
    """Nine parallel arrays (one per column of _COLUMNS) for an INSERT ... SELECT unnest()."""
    columns: list[list[Any]] = [[] for _ in range(9)]
    for rel in relationships:
        expiration = None if rel.expiration is None else as_utc(rel.expiration)
        for position, value in enumerate((*rel.key, *encode_caveat(rel), expiration)):
            columns[position].append(value)
    return columns


class _Connection:
    """The shared flow's connection over an asyncpg connection."""

    __slots__ = ("connection",)

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of a query."""
        return list(await self.connection.fetch(sql, *params))

    async def fetch_decoded(self, sql: str, params: Sequence[Any], decode: Callable[[Any], T]) -> list[T]:
        """Every row of a query passed through `decode` (asyncpg reads them all first)."""
        return [decode(row) for row in await self.connection.fetch(sql, *params)]

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first row of a query, or None."""
        return await self.connection.fetchrow(sql, *params)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it changed (from its status, `DELETE 3`)."""
        status = await self.connection.execute(sql, *params)
        count = status.rsplit(" ", 1)[-1]
        return int(count) if count.isdigit() else 0

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run a statement once per parameter row."""
        await self.connection.executemany(sql, rows)


class PostgresDatastore(SqlDatastore):
    """A multi-version datastore in one PostgreSQL database (or schema, via ``search_path``);
    several processes and machines may share it."""
    _MARK = "$"
    _RELATIONSHIPS = "stonetown_relationships"
    _REVISIONS = "stonetown_revisions"
    _SCHEMAS = "stonetown_schemas"
    _REVISION_TIME = "committed_at"
    _EXPIRED_BEFORE = "expiration < $1"
    _CHECK_CREATES_FIRST = True
    _UNIQUE_VIOLATION = asyncpg.exceptions.UniqueViolationError

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

    async def _in_write(
        self, action: str, body: Callable[[SqlConnection], Awaitable[T]], *, long: bool = False
    ) -> T:
        """Run `body` in one transaction (the body takes the state-row lock first); commit, or
        roll back on any error. Runs to its end even if the caller is cancelled, so an
        acknowledged outcome is never left ambiguous by a cancelled RPC. Every body runs on the
        event loop (`long` makes no difference: the database does the work)."""
        return await shielded(self._write_transaction(action, body))

    async def _write_transaction(self, action: str, body: Callable[[SqlConnection], Awaitable[T]]) -> T:
        pool = self._require_open()
        try:
            async with pool.acquire() as connection, connection.transaction():
                return await body(_Connection(connection))
        except asyncpg.exceptions.UniqueViolationError as exc:
            raise AlreadyExists(
                f"a relationship being created already exists ({exc.detail or exc})"
            ) from None
        except _UNSTORABLE:
            raise InvalidArgument(_UNSTORABLE_MESSAGE) from None
        except (asyncpg.PostgresError, *_CONNECTION_ERRORS) as exc:
            raise self._error(exc, action) from exc

    async def _in_read(
        self, action: str, body: Callable[[SqlConnection], Awaitable[T]], *, urgent: bool = False
    ) -> T:
        """Run `body` in one REPEATABLE READ, read-only transaction (one snapshot). The pool
        has no order among waiting callers: `urgent` makes no difference."""
        pool = self._require_open()
        try:
            async with (
                pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                return await body(_Connection(connection))
        except _UNSTORABLE:
            raise InvalidArgument(_UNSTORABLE_MESSAGE) from None
        except (asyncpg.PostgresError, *_CONNECTION_ERRORS) as exc:
            raise self._error(exc, action) from exc

    # -------------------------------------------------------------------- dialect hooks

    async def _bounds(self, connection: SqlConnection, *, lock: bool = False) -> tuple[int, int]:
        """(head, min_revision) as the transaction sees them; `lock` takes the writers' lock."""
        row = await connection.fetchone(
            "SELECT head, min_revision FROM stonetown_state WHERE id = 1" + (" FOR UPDATE" if lock else "")
        )
        if row is None:
            raise StoreError("the stonetown_state row is missing: the layout is damaged")
        return int(row[0]), int(row[1])

    async def _new_revision(self, connection: SqlConnection, head: int, schema_changed: bool) -> int:
        """Advance the head, log the revision, and queue the notification, in one round trip
        (PostgreSQL delivers it at commit, so listeners never hear of an uncommitted write)."""
        revision = head + 1
        await connection.execute(
            "WITH state AS (UPDATE stonetown_state SET head = $1 WHERE id = 1), "
            "logged AS (INSERT INTO stonetown_revisions (revision, committed_at, schema_changed) "
            "VALUES ($1, clock_timestamp(), $2)) "
            "SELECT pg_notify($3, $1::text)",
            (revision, schema_changed, CHANNEL),
        )
        return revision

    async def _set_min_revision(self, connection: SqlConnection, revision: int) -> None:
        """Record `revision` as the oldest readable one."""
        await connection.execute("UPDATE stonetown_state SET min_revision = $1 WHERE id = 1", (revision,))

    _decode = staticmethod(_to_relationship)

    def _encode_inserts(self, relationships: Sequence[Relationship]) -> Any:
        """Nine parallel arrays, built before the transaction (a caveat context that is not
        JSON fails there)."""
        return _insert_arrays(relationships)

    async def _insert(self, connection: SqlConnection, encoded: Any, revision: int) -> None:
        """Insert the rows of the arrays `encoded`, created at `revision`, in one statement."""
        await connection.execute(
            f"INSERT INTO stonetown_relationships ({_COLUMNS}, created_revision) "
            "SELECT *, $1::bigint FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], "
            "$6::text[], $7::text[], $8::text[], $9::text[], $10::timestamptz[])",
            (revision, *encoded),
        )

    async def _end_keys(self, connection: SqlConnection, revision: int, keys: Sequence[Key]) -> None:
        """Mark the live rows with these keys deleted at `revision`."""
        await connection.execute(
            f"UPDATE stonetown_relationships AS r SET deleted_revision = $1 "
            f"FROM {_KEYS_UNNEST} AS k(rt, rid, rel, st, sid, sr) "
            f"WHERE {_KEY_JOIN} AND r.deleted_revision IS NULL",
            (revision, *_key_arrays(keys)),
        )

    async def _end_ids(self, connection: SqlConnection, revision: int, ids: Sequence[int]) -> None:
        """Mark the rows with these ids deleted at `revision`."""
        await connection.execute(
            "UPDATE stonetown_relationships SET deleted_revision = $1 WHERE id = ANY($2::bigint[])",
            (revision, list(ids)),
        )

    async def _first_live(
        self, connection: SqlConnection, relationships: Sequence[Relationship], before: int
    ) -> int | None:
        """The position of the first of `relationships` live before revision `before`."""
        rows = await connection.fetch(
            f"SELECT r.resource_type, r.resource_id, r.relation, r.subject_type, r.subject_id, "
            f"r.subject_relation FROM stonetown_relationships AS r JOIN {_KEYS_UNNEST} "
            f"AS k(rt, rid, rel, st, sid, sr) ON {_KEY_JOIN} "
            "WHERE r.deleted_revision IS NULL AND r.created_revision < $1",
            (before, *_key_arrays([rel.key for rel in relationships])),
        )
        if not rows:
            return None
        found = {tuple(row) for row in rows}
        return next(position for position, rel in enumerate(relationships) if rel.key in found)

    def _item_error(self, exc: Exception, action: str) -> Exception | None:
        """A refused item's own error; a database or connection failure fails the batch."""
        if isinstance(exc, InvalidArgument | AlreadyExists | FailedPrecondition):
            return exc
        if isinstance(exc, asyncpg.exceptions.UniqueViolationError):
            return AlreadyExists(f"a relationship being created already exists ({exc.detail or exc})")
        if isinstance(exc, _UNSTORABLE):
            return InvalidArgument(_UNSTORABLE_MESSAGE)
        return None

    def _revision_cutoff(self, older_than: datetime) -> Any:
        """An aware UTC datetime (committed_at is a timestamptz)."""
        return as_utc(older_than)

    def _expiration_cutoff(self, older_than: datetime) -> Any:
        """An aware UTC datetime (expiration is a timestamptz)."""
        return as_utc(older_than)

    def _revision_time(self, value: Any) -> datetime:
        """committed_at as an aware UTC datetime."""
        return as_utc(value)

    # ----------------------------------------------------------------------------- reads

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
                head = await self._check_revision(_Connection(connection), revision)
                params: list[Any] = []
                where = filter_sql(RelationshipFilter(), None if revision == head else revision, params, "$")
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
