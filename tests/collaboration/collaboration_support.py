"""Paths shared by the collaboration tests (a module of its own: `conftest` is ambiguous when
several test directories are collected together)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "schema" / "collaboration.zed"
VALIDATION_FILE = REPO / "schema" / "collaboration.yaml"
EXAMPLE_FILE = REPO / "examples" / "platform_service.py"
