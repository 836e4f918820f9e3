"""A throwaway PostgreSQL cluster for the tests: initdb into a temporary directory, start it on
a free loopback port (its unix socket in the same directory), stop and delete it at exit.

PostgreSQL refuses to run as root, so when the tests run as root the cluster belongs to the
`postgres` system user (created when missing) and its commands run through `runuser`.
:func:`shared_cluster` starts one cluster per test process, lazily, and returns None when the
server binaries are not installed (callers skip).
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

_OWNER = "postgres"
_SUPERUSER = "stonetown"


def find_bin_dir() -> Path | None:
    """The directory holding initdb and pg_ctl (PATH first, then Debian's layout), or None."""
    initdb = shutil.which("initdb")
    if initdb is not None and shutil.which("pg_ctl") is not None:
        return Path(os.path.realpath(initdb)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2].split(".")[0])
    )
    for candidate in reversed(candidates):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """One running PostgreSQL server in a temporary directory; :meth:`stop` removes it all."""

    def __init__(self, bin_dir: Path) -> None:
        """Create the cluster directory and start the server (raises RuntimeError on failure)."""
        self.bin_dir = bin_dir
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="stonetown-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self._counter = itertools.count(1)
        self._stopped = False
        if self.as_root:
            _ensure_owner()
            owner = pwd.getpwnam(_OWNER)
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        try:
            self._run(
                "initdb", "-D", str(self.data), "-U", _SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-locale"
            )
            self._start()
        except BaseException:
            self.stop()
            raise

    def _command(self, tool: str, *args: str) -> list[str]:
        command = [str(self.bin_dir / tool), *args]
        return ["runuser", "-u", _OWNER, "--", *command] if self.as_root else command

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(self._command(tool, *args), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def _start(self, port: int | None = None) -> None:
        # A port can be taken between choosing it and binding it: try a few.
        for _attempt in range(5):
            self.port = port or _free_port()
            options = (
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c full_page_writes=off -c max_connections=200 -c shared_buffers=64MB"
            )
            done = subprocess.run(
                self._command(
                    "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start"
                ),
                capture_output=True,
                text=True,
                timeout=120,
            )
            if done.returncode == 0:
                return
            time.sleep(0.2)
        log = (self.root / "log").read_text(errors="replace") if (self.root / "log").exists() else ""
        raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}\n{done.stderr}\n{log}")

    def pause(self) -> None:
        """Stop the server (fast shutdown: connections are cut), keeping its data."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the server again after :meth:`pause`, on the same port."""
        self._start(self.port)

    def uri(self, database: str = "postgres") -> str:
        """A connection URI for `database` as the cluster's superuser (trust authentication)."""
        return f"postgresql://{_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database and return its URI."""
        name = f"t{os.getpid()}_{next(self._counter)}"
        self.psql(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.uri(name)

    async def new_database_async(self) -> str:
        """Create an empty database (through asyncpg, faster than psql) and return its URI."""
        import asyncpg

        name = f"t{os.getpid()}_{next(self._counter)}"
        connection = await asyncpg.connect(self.uri())
        try:
            await connection.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        finally:
            await connection.close()
        return self.uri(name)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL through psql (for set-up); its output."""
        done = subprocess.run(
            [
                str(self.bin_dir / "psql") if (self.bin_dir / "psql").exists() else "psql",
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                self.uri(database),
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr}")
        return done.stdout

    def stop(self) -> None:
        """Stop the server immediately and delete its directory. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                self._command("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.root, ignore_errors=True)


def _ensure_owner() -> None:
    """Create the `postgres` system user if it does not exist (running as root)."""
    try:
        pwd.getpwnam(_OWNER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _OWNER],
            check=True,
            capture_output=True,
        )


_SHARED: PgCluster | None = None
_FAILED: str | None = None

MISSING = "PostgreSQL server binaries (initdb, pg_ctl) are not installed"


def shared_cluster() -> PgCluster | None:
    """The cluster of this test process, started on first use and stopped at exit.

    None when the server binaries are not installed (callers skip); RuntimeError when they are
    but the cluster cannot start (callers fail: that is a real problem, not a missing tool).
    """
    global _SHARED, _FAILED
    if _SHARED is not None:
        return _SHARED
    if _FAILED is not None:
        raise RuntimeError(_FAILED)
    bin_dir = find_bin_dir()
    if bin_dir is None:
        return None
    try:
        _SHARED = PgCluster(bin_dir)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        _FAILED = f"cannot start a throwaway PostgreSQL cluster: {exc}"
        raise RuntimeError(_FAILED) from exc
    atexit.register(_SHARED.stop)
    return _SHARED
