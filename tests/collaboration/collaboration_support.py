"""Paths and helpers shared by the collaboration tests, on SQLite (this directory) and on
PostgreSQL (tests/postgres/test_postgres_collaboration.py); a module of its own: `conftest` is
ambiguous when several test directories are collected together."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from stonetown import Client
from stonetown.client import parse_filter
from stonetown.engine.datastore import Precondition, PreconditionOp

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "schema" / "collaboration.zed"
VALIDATION_FILE = REPO / "schema" / "collaboration.yaml"
EXAMPLE_FILE = REPO / "examples" / "platform_service.py"


def load_platform_example() -> ModuleType:
    """examples/platform_service.py, imported from its path."""
    spec = importlib.util.spec_from_file_location("platform_service", EXAMPLE_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    return module


def transfer(client: Client, app: str, old: str, new: str) -> str:
    """The transfer write: new owner in, old owner out and down to Can Manage, if `old` still owns."""
    return client.write(
        delete=[f"app:{app}#owner@user:{old}"],
        touch=[f"app:{app}#owner@user:{new}", f"app:{app}#manager@user:{old}"],
        preconditions=[Precondition(PreconditionOp.MUST_MATCH, parse_filter(f"app:{app}#owner@user:{old}"))],
    )
