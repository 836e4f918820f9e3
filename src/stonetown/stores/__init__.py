"""Datastore implementations: in-memory (tests, `stonetown validate`) and SQLite (one file)."""

from __future__ import annotations

from stonetown.stores.memory import MemoryDatastore
from stonetown.stores.sqlite import SqliteDatastore

__all__ = ["MemoryDatastore", "SqliteDatastore"]
