"""What both SQL stores build their statements from: the relationship columns, WHERE clauses
for relationship filters with numbered placeholders (`$1` in PostgreSQL, `?1` in SQLite), and the
connection interface the shared flow (:mod:`stonetown.stores.sql_flow`) runs over.

A connection's coroutines may complete without ever suspending (SQLite's plain connection):
:func:`run_sync` runs such a body on any thread, with no event loop."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from stonetown.engine.datastore import RelationshipFilter
from stonetown.stores.common import prefix_bound

T = TypeVar("T")
Row = Sequence[Any]

KEY_COLUMNS = "resource_type, resource_id, relation, subject_type, subject_id, subject_relation"
COLUMNS = f"{KEY_COLUMNS}, caveat_name, caveat_context, expiration"


class SqlConnection(Protocol):
    """The statements the shared flow runs, on one connection inside one transaction."""

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of a query."""
        ...

    async def fetch_decoded(self, sql: str, params: Sequence[Any], decode: Callable[[Any], T]) -> list[T]:
        """Every row of a query passed through `decode` as it is read: the raw rows of a
        large result (a tuple and a string per column each) are not all alive at once."""
        ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first row of a query, or None."""
        ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run a statement once per parameter row."""
        ...


def run_sync(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (one over a plain, blocking connection) to its
    end, on the calling thread; RuntimeError if it does suspend."""
    try:
        work.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    work.close()
    raise RuntimeError("a synchronous store body waited for something")


def add_param(params: list[Any], value: Any, mark: str) -> str:
    """Append `value` to `params`; its numbered placeholder (`$3`, `?3`)."""
    params.append(value)
    return f"{mark}{len(params)}"


def filter_sql(
    filter: RelationshipFilter, revision: int | None, params: list[Any], mark: str, alias: str = ""
) -> str:
    """A WHERE clause for `filter` at `revision` (None: the head, which lets the database use
    the partial index of live rows); appends its parameters to `params`."""
    column = f"{alias}." if alias else ""

    def param(value: Any) -> str:
        return add_param(params, value, mark)

    clauses: list[str] = []
    if revision is None:
        clauses.append(f"{column}deleted_revision IS NULL")
    else:
        clauses.append(
            f"{column}created_revision <= {param(revision)} AND "
            f"({column}deleted_revision IS NULL OR {column}deleted_revision > {param(revision)})"
        )
    if filter.resource_type is not None:
        clauses.append(f"{column}resource_type = {param(filter.resource_type)}")
    if filter.resource_id is not None:
        clauses.append(f"{column}resource_id = {param(filter.resource_id)}")
    if filter.resource_id_prefix:
        clauses.append(f"{column}resource_id >= {param(filter.resource_id_prefix)}")
        bound = prefix_bound(filter.resource_id_prefix)
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
    if filter.subject_is_set is not None:
        clauses.append(f"{column}subject_relation {'<>' if filter.subject_is_set else '='} ''")
    return " AND ".join(clauses)
