"""A `stonetown serve-testing` server for test suites: each bearer token its own empty store.

As a context manager::

    from stonetown.testing import TestingServer

    with TestingServer() as server:          # a free loopback port; port=50051 like SpiceDB's
        client = authzed.api.v1.SyncClient(server.address, insecure_bearer_token_credentials(token))

or as a pytest fixture: add ``pytest_plugins = ["stonetown.testing"]`` to a conftest.py and
take ``stonetown_testing_server`` (one server per test session; give each test its own token).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

_LISTENING = re.compile(r"event=listening address=(\S+)")


class TestingServer:
    """A `stonetown serve-testing` subprocess on a loopback port (0: a free one)."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_stores: int = 1000,
        startup_timeout: float = 60.0,
    ) -> None:
        self.host = host
        self.port = port
        self.max_stores = max_stores
        self.startup_timeout = startup_timeout
        self.address = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_path: Path | None = None

    def start(self) -> str:
        """Start the server and wait until it listens; its address (host:port)."""
        fd, name = tempfile.mkstemp(prefix="stonetown-testing-", suffix=".log")
        os.close(fd)
        self._log_path = Path(name)
        self._log = open(self._log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {key: value for key, value in os.environ.items() if not key.startswith("STONETOWN_")}
        command = [sys.executable, "-m", "stonetown.cli.main", "serve-testing", "--host", self.host]
        command += ["--port", str(self.port), "--max-stores", str(self.max_stores)]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self._log, env=env)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            found = _LISTENING.search(self.log())
            if found:
                self.address = found.group(1)
                return self.address
            if self._process.poll() is not None:
                raise RuntimeError(f"serve-testing exited with {self._process.returncode}:\n{self.log()}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"serve-testing did not start within {self.startup_timeout} s:\n{self.log()}")

    def log(self) -> str:
        """What the server logged so far."""
        return self._log_path.read_text(errors="replace") if self._log_path else ""

    def stop(self) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); its exit code."""
        process, self._process = self._process, None
        code = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            code = process.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None
        return code

    def __enter__(self) -> TestingServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


try:
    import pytest
except ImportError:  # pragma: no cover - the fixture needs pytest; the class does not
    pass
else:

    @pytest.fixture(scope="session")
    def stonetown_testing_server() -> Iterator[TestingServer]:
        """A serve-testing server for the test session (each test: its own bearer token)."""
        with TestingServer() as server:
            yield server
