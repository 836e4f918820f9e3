"""Fixtures: a real server per module and a runner for the real `stonetown` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "api"))

from grpc_harness import SCHEMA, ServerProcess, stonetown_command  # noqa: E402

Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with the test schema, requiring a preshared key."""
    workdir = tmp_path_factory.mktemp("cli")
    (workdir / "schema.zed").write_text(SCHEMA)
    proc = ServerProcess(
        workdir,
        "--port",
        "0",
        "--datastore",
        str(workdir / "st.db"),
        "--schema",
        "schema.zed",
        "--preshared-key",
        "k",
    )
    yield proc
    proc.stop()


@pytest.fixture
def stonetown(cli_server: ServerProcess, tmp_path: Path) -> Runner:
    """Run `stonetown ARGS...` against the server (endpoint and key from the environment)."""

    def run(
        *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("STONETOWN_")}
        full_env |= {"STONETOWN_ENDPOINT": cli_server.address, "STONETOWN_PRESHARED_KEY": "k"} | (env or {})
        return subprocess.run(
            stonetown_command(*args),
            input=stdin,
            capture_output=True,
            text=True,
            env=full_env,
            cwd=tmp_path,
            timeout=120,
        )

    return run
