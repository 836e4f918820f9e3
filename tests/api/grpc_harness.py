"""Run a real `stonetown serve` in a subprocess on a free loopback port, for the API and CLI tests."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

SCHEMA = """\
use expiration

definition user {}

definition team {
    relation member: user | team#member
}

caveat on_weekday(day string) {
    day != "sat" && day != "sun"
}

definition folder {
    relation viewer: user | team#member
}

definition document {
    relation parent: folder
    relation owner: user
    relation editor: user | team#member
    relation viewer: user | user:* | team#member | user with on_weekday
    relation banned: user
    relation guest: user with expiration
    permission edit = owner + editor
    permission view = (viewer + guest + edit + parent->viewer) - banned
}
"""

_LISTENING = re.compile(r"event=listening address=(\S+)")
# grpc shares one connection among a process's channels to an address unless told otherwise
OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)
STARTUP_TIMEOUT = 60.0


def stonetown_command(*args: str) -> list[str]:
    """The command line running the `stonetown` CLI with this interpreter."""
    return [sys.executable, "-m", "stonetown.cli.main", *args]


class ServerProcess:
    """A `stonetown serve` subprocess; its stderr (the log) goes to a file."""

    def __init__(
        self, workdir: Path, *args: str, env: dict[str, str] | None = None, listeners: int = 1
    ) -> None:
        self.workdir = workdir
        self.log_path = workdir / f"server-{time.monotonic_ns()}.log"
        full_env = {key: value for key, value in os.environ.items() if not key.startswith("STONETOWN_")}
        full_env.update(env or {})
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            stonetown_command("serve", *args),
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=full_env,
        )
        self.address = self._wait_listening(listeners)

    def _wait_listening(self, listeners: int) -> str:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            found = _LISTENING.findall(self.log())
            if len(found) >= listeners:
                return found[0]
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def log(self) -> str:
        """Everything the server logged so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the server and wait for it to exit; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def wait_healthy(address: str, credentials: grpc.ChannelCredentials | None = None) -> None:
    """Block until the health service answers SERVING."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)


def self_signed_certificate(workdir: Path, name: str = "") -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 and its key (PEM files in
    `workdir`, prefixed by `name`); skips the test when the openssl command is missing."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = workdir / f"{name}cert.pem", workdir / f"{name}key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def listening_pids(log: str) -> list[int]:
    """The pids of the processes that logged `listening` (the workers of a --workers server)."""
    return [int(pid) for pid in re.findall(r"event=listening .*?pid=(\d+)", log)]


def connections_by_process(pids: list[int], port: int) -> dict[int, int]:
    """How many established TCP connections to local `port` each of `pids` holds (from
    /proc): with --workers, which worker accepted, and so answers, a client's connection."""
    established: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # ESTABLISHED
                established.add(fields[9])  # the socket's inode
    counts = {}
    for pid in pids:
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        counts[pid] = len(inodes & established)
    return counts
