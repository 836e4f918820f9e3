"""Fixtures for the PostgreSQL tests: one throwaway cluster per test process (see pgcluster),
and a fresh database per test. Every test here skips when PostgreSQL is not installed."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import pgcluster  # noqa: E402

from stonetown.stores.postgres import PostgresDatastore  # noqa: E402


@pytest.fixture(scope="session")
def pg_cluster() -> pgcluster.PgCluster:
    """The running throwaway cluster (skips the test when PostgreSQL is not installed)."""
    cluster = pgcluster.shared_cluster()
    if cluster is None:
        pytest.skip(pgcluster.MISSING)
    return cluster


@pytest.fixture
async def pg_uri(pg_cluster: pgcluster.PgCluster) -> str:
    """The URI of a fresh, empty database."""
    return await pg_cluster.new_database_async()


@pytest.fixture
async def pg_store(pg_uri: str) -> AsyncIterator[PostgresDatastore]:
    """An opened store over a fresh database; closed after the test."""
    store = PostgresDatastore(pg_uri)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
