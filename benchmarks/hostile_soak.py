"""`python -m benchmarks soak`: issue #18's hostile mix against one real `stonetown serve`.

Every attack the availability review found, at once and on a loop, with the key and without,
while a well-behaved client checks and writes and a prober asks health every 50 ms (in a
process of its own, benchmarks/health_prober.py; a second one in a thread of this process,
for comparison: its latencies include its wait for this process's GIL):

- schemas past the size and nesting limits (long permission chains, deep arrow chains);
- caveat bombs (nested ``all`` over a long list in the context, sent as a contextual
  caveated relationship);
- unauthenticated health Watch streams and half-sent HTTP/2 connections (admission slots);
- keyed calls sent without a key or with a wrong one (refused before admission);
- forged tokens at many different old revisions (``at_exact_snapshot``);
- idle keyed Watch streams;
- small pages of lookups over a large group;
- relationship imports.

It reports health latency (p50 / p99 / max and any failure), each attack's outcome codes, and
the server's RSS at start, peak and end. The figures are for the notes, not asserted here;
``tests/reliability/test_hostile_soak.py`` runs a short mix and asserts liveness only.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.health_prober import HealthProbe, ProbeProcess
from stonetown import Client
from stonetown.client import ReadConsistency
from stonetown.core.errors import StonetownError
from stonetown.core.revision import decode_token, encode_token

KEY = "soak-key"
GROUP_MEMBERS = 20_000

SCHEMA = """\
use expiration

caveat tagged(tags list<string>) {
    tags.all(x, tags.all(y, x == y || x != y))
}

definition user {}

definition group {
    relation member: user | group#member
}

definition doc {
    relation viewer: user | group#member | user with tagged
    relation banned: user
    permission view = viewer - banned
}
"""


def _chain_schema(length: int) -> str:
    """The base schema plus one definition whose permissions chain `length` deep (within the
    limits: accepted, so the server compiles it whole)."""
    lines = ["definition bomb {", "    relation viewer: user", "    permission perm1 = viewer"]
    lines += [f"    permission perm{i} = perm{i - 1} + viewer" for i in range(2, length + 1)]
    return SCHEMA + "\n" + "\n".join(lines) + "\n}\n"


def _arrow_schema(length: int) -> str:
    """The base schema plus `length` definitions chained by arrows (accepted too)."""
    parts = [SCHEMA]
    for i in range(length):
        if i + 1 < length:
            upper = f"    relation upper: def{i + 1}\n    permission perm = upper->perm\n"
        else:
            upper = "    permission perm = direct\n"
        parts.append(f"definition def{i} {{\n    relation direct: user\n{upper}}}\n")
    return "\n".join(parts)


@dataclass
class Tally:
    """Outcome codes per attack, thread-safe."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, attack: str, outcome: str) -> None:
        """Count one outcome of one attack."""
        with self.lock:
            self.counts.setdefault(attack, Counter())[outcome] += 1


def _code(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError):
        return exc.code().name  # type: ignore[attr-defined]
    if isinstance(exc, StonetownError):
        return getattr(exc, "code", type(exc).__name__)
    return type(exc).__name__


class SoakServer:
    """A `stonetown serve` on a temporary SQLite file with the key and an admission limit."""

    def __init__(self, workdir: Path, extra: list[str]) -> None:
        (workdir / "schema.zed").write_text(SCHEMA)
        self.log_path = workdir / "server.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stonetown.cli.main", "serve", "--port", "0",
             "--datastore", str(workdir / "st.db"), "--schema", str(workdir / "schema.zed"),
             "--preshared-key", KEY, "--max-concurrent-rpcs", "256", "--request-timeout", "5",
             *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.address = ""
        deadline = time.monotonic() + 60
        assert self.process.stderr is not None
        while time.monotonic() < deadline and not self.address:
            line = self.process.stderr.readline()
            if not line:
                break
            if "event=listening" in line:
                self.address = line.split("address=")[1].split()[0]
        if not self.address:
            self.process.kill()
            raise RuntimeError("the server did not start listening")
        self._drain = threading.Thread(target=self._keep_log, daemon=True)
        self._drain.start()

    def _keep_log(self) -> None:
        assert self.process.stderr is not None
        with self.log_path.open("a") as out:
            for line in self.process.stderr:
                out.write(line)

    def rss_kb(self) -> int:
        """Resident memory of the server process, in KiB."""
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            return 0
        return 0

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        """SIGTERM, then wait; the exit code."""
        self.process.terminate()
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


class Mix:
    """The attacks, each a loop run in its own thread until the stop event."""

    def __init__(self, address: str, tally: Tally, rng: random.Random) -> None:
        self.address = address
        self.tally = tally
        self.rng = rng
        self.first_token = ""
        self.last_token = ""

    def _client(self, key: str | None = KEY, timeout: float = 10.0) -> Client:
        return Client(self.address, preshared_key=key, timeout=timeout)

    def _loop(self, name: str, step: Callable[[], str], stop: threading.Event, pause: float) -> None:
        while not stop.is_set():
            try:
                outcome = step()
            except Exception as exc:  # noqa: BLE001 - every failure is an outcome to count
                outcome = _code(exc)
            self.tally.add(name, outcome)
            stop.wait(pause)

    def seed(self) -> None:
        """A large group (nested once) and a few docs; remembers the first revision."""
        with self._client(timeout=120) as client:
            rels = [f"group:big#member@user:m{i}" for i in range(GROUP_MEMBERS)]
            rels += ["group:outer#member@group:big#member", "doc:d0#viewer@group:outer#member"]
            self.first_token = client.import_relationships(rels, chunk_size=1000)
            self.last_token = self.first_token

    def legit(self) -> str:
        """A well-behaved client: a write, then checks at its token (must be answered right)."""
        with self._client() as client:
            user = f"u{self.rng.randrange(50)}"
            token = client.write(touch=[f"doc:d{self.rng.randrange(20)}#viewer@user:{user}"])
            self.last_token = token
            outcome = client.check(
                "doc:d0", "view", f"user:m{self.rng.randrange(GROUP_MEMBERS)}",
                consistency=ReadConsistency.at_least_as_fresh(token),
            )  # fmt: skip
            return "allowed" if outcome.allowed else "WRONG-denied"

    def big_schema(self) -> str:
        """Schemas past the size/nesting limits; the server must refuse them, not brick."""
        text = _chain_schema(600) if self.rng.random() < 0.5 else _arrow_schema(300)
        with self._client(timeout=30) as client:
            client.write_schema(text)
            client.write_schema(SCHEMA)  # accepted: put the base schema back
            return "accepted"

    def caveat_bomb(self) -> str:
        """A nested `all` over a 400-item list, through a contextual caveated relationship."""
        tags = [f"t{i}" for i in range(400)]
        with self._client(timeout=10) as client:
            outcome = client.check(
                "doc:bomb", "view", "user:x",
                contextual=["doc:bomb#viewer@user:x[tagged]"], context={"tags": tags},
            )  # fmt: skip
            return outcome.permissionship.name

    def old_tokens(self) -> str:
        """A check at a forged token of a random old revision."""
        first, last = decode_token(self.first_token), decode_token(self.last_token)
        token = encode_token(self.rng.randint(max(1, first - 5), max(first, last)))
        with self._client() as client:
            outcome = client.check(
                "doc:d0", "view", "user:m1", consistency=ReadConsistency.at_exact_snapshot(token)
            )
            return outcome.permissionship.name

    def paged_lookup(self) -> str:
        """One small page of LookupSubjects over the large group."""
        with self._client() as client:
            found = list(client.lookup_subjects("doc:d0", "view", "user", limit=10))
            return f"page-{len(found)}"

    def import_batch(self) -> str:
        """An import of a few thousand new relationships, deleted again (the data stays the
        same size, so the server's memory can be compared at the end)."""
        base = self.rng.randrange(10**9)
        with self._client(timeout=60) as client:
            client.import_relationships([f"doc:i{base}#viewer@user:v{i}" for i in range(5000)])
            client.delete(f"doc:i{base}#viewer")
            return "imported-and-deleted"

    def unauth_calls(self) -> str:
        """A Check and a Write without a key or with a wrong one: refused, never served."""
        key = None if self.rng.random() < 0.5 else "not-the-key"
        with self._client(key=key) as client:
            if self.rng.random() < 0.5:
                client.check("doc:d0", "view", "user:m1")
            else:
                client.write(touch=["doc:d0#banned@user:m1"])
            return "WRONG-served"

    def hold_streams(self, stop: threading.Event, keyed: bool, count: int) -> None:
        """`count` Watch streams held open: health Watch without a key, or keyed relation Watch."""
        channel = grpc.insecure_channel(self.address, options=[("grpc.use_local_subchannel_pool", 1)])
        calls = []
        try:
            if keyed:
                from stonetown.api.pb import relationship, relationship_grpc

                stub = relationship_grpc.RelationshipServiceStub(channel)
                keyed_metadata = (("authorization", f"bearer {KEY}"),)
                for _ in range(count):
                    calls.append(stub.Watch(relationship.WatchRequest(), metadata=keyed_metadata))
            else:
                health = health_pb2_grpc.HealthStub(channel)
                for _ in range(count):
                    calls.append(health.Watch(health_pb2.HealthCheckRequest()))
            self.tally.add("held_keyed_watch" if keyed else "held_unauth_watch", f"opened-{count}")
            stop.wait()
        finally:
            for call in calls:
                call.cancel()
            channel.close()

    def half_sent(self, stop: threading.Event, count: int) -> None:
        """Connections that send half a preface (or nothing) and then wait."""
        host, port = self.address.rsplit(":", 1)
        while not stop.is_set():
            sockets = []
            for i in range(count):
                try:
                    sock = socket.create_connection((host, int(port)), timeout=5)
                    if i % 2:
                        sock.sendall(b"PRI * HTTP/2.0\r\n")
                    sockets.append(sock)
                except OSError as exc:
                    self.tally.add("half_sent", type(exc).__name__)
            stop.wait(20)
            closed = sum(_closed_by_peer(sock) for sock in sockets)
            for sock in sockets:
                sock.close()
            self.tally.add("half_sent", f"closed-by-server-after-20s-{closed}/{len(sockets)}")


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server has closed this connection (what it sent first is read past)."""
    sock.settimeout(0.2)
    try:
        while chunk := sock.recv(65536):
            del chunk
        return True
    except (TimeoutError, BlockingIOError):
        return False
    except OSError:
        return True


ATTACKS = (
    "big_schema", "caveat_bomb", "old_tokens", "paged_lookup", "import_batch",
    "unauth_watch", "keyed_watch", "half_sent", "unauth_calls",
)  # fmt: skip


def _load_average() -> list[float]:
    return [float(part) for part in Path("/proc/loadavg").read_text().split()[:3]]


def _pause_summary(log_path: Path) -> dict[str, str]:
    """The server's own account of its pauses (api/pauses.py), from its last summary line."""
    found: dict[str, str] = {}
    if log_path.exists():
        for line in log_path.read_text().splitlines():
            if "event=pause_summary" in line:
                found = dict(part.split("=", 1) for part in line.split() if "=" in part)
    return {key: value for key, value in found.items() if key not in ("ts", "level", "logger", "event")}


def run(
    seconds: float,
    workdir: Path,
    extra: list[str] | None = None,
    seed: int = 1,
    only: Sequence[str] | None = None,
    settle: float = 40.0,
) -> dict[str, object]:
    """Start a server, seed it, run the mix (or only the attacks named in `only`, beside the
    honest client) for `seconds`, let it idle `settle` seconds (then its memory is measured
    again); the figures as a dict."""
    chosen = set(ATTACKS if only is None else only)
    unknown = chosen - set(ATTACKS)
    if unknown:
        raise ValueError(f"unknown attacks {sorted(unknown)}; choose among {list(ATTACKS)}")
    server = SoakServer(workdir, extra or [])
    tally = Tally()
    mix = Mix(server.address, tally, random.Random(seed))
    probe = HealthProbe(server.address)  # a thread of this process: its GIL, its collector
    prober: ProbeProcess | None = None
    stop = threading.Event()
    rss: list[int] = []
    try:
        mix.seed()
        rss_start = server.rss_kb()
        cpu_start = server.cpu_seconds()
        load_start = _load_average()
        prober = ProbeProcess(server.address, workdir / "probes.json")
        loops: list[tuple[str, Callable[[], str], float]] = [
            ("legit", mix.legit, 0.02),
            ("big_schema", mix.big_schema, 1.0),
            ("caveat_bomb", mix.caveat_bomb, 0.5),
            ("old_tokens", mix.old_tokens, 0.05),
            ("paged_lookup", mix.paged_lookup, 0.2),
            ("import_batch", mix.import_batch, 2.0),
            ("unauth_calls", mix.unauth_calls, 0.05),
        ]
        threads = [threading.Thread(target=probe.run, args=(stop,), daemon=True)]
        threads += [
            threading.Thread(target=mix._loop, args=(name, step, stop, pause), daemon=True)
            for name, step, pause in loops
            if name == "legit" or name in chosen
        ]
        if "unauth_watch" in chosen:
            threads.append(threading.Thread(target=mix.hold_streams, args=(stop, False, 8), daemon=True))
        if "keyed_watch" in chosen:
            threads.append(threading.Thread(target=mix.hold_streams, args=(stop, True, 100), daemon=True))
        if "half_sent" in chosen:
            threads.append(threading.Thread(target=mix.half_sent, args=(stop, 8), daemon=True))
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and server.process.poll() is None:
            rss.append(server.rss_kb())
            time.sleep(1.0)
        load_end = _load_average()
        cpu_mix = server.cpu_seconds() - cpu_start
        stop.set()
        health = prober.stop()
        for thread in threads:
            thread.join(timeout=30)
        time.sleep(2.0)
        rss_stopped = server.rss_kb()
        # idle caches are released after 30 s unused (engine/revision_views.py), then trimmed
        time.sleep(settle)
        rss_end = server.rss_kb()
        alive = server.process.poll() is None
    finally:
        stop.set()
        if prober is not None and prober.process.poll() is None:
            prober.stop()
        code = server.stop()
    return {
        "seconds": seconds,
        "attacks_run": sorted(chosen),
        "server_alive_at_end": alive,
        "server_exit_code": code,
        "health": health,
        "health_in_harness": probe.summary(),
        "health_failures": health.get("failed", []),
        "rss_mb": {
            "start": round(rss_start / 1024, 1),
            "peak": round(max(rss, default=0) / 1024, 1),
            "mix_stopped": round(rss_stopped / 1024, 1),
            f"end_{settle:g}s_later": round(rss_end / 1024, 1),
            "every_tenth": [round(rss[len(rss) * i // 10] / 1024) for i in range(10)] if rss else [],
        },
        "load_average": {"start": load_start, "end": load_end},
        "server_cpu_seconds_during_mix": round(cpu_mix, 1),
        "server_pauses": _pause_summary(server.log_path),
        "attacks": {name: dict(counter) for name, counter in tally.counts.items()},
    }


def main(
    seconds: float,
    only: Sequence[str] | None = None,
    keep_log: str | None = None,
    settle: float = 40.0,
    allocator: str | None = None,
) -> None:
    """Run the mix and print the figures as JSON (the server's log copied to `keep_log`;
    `allocator`: the server's ``--allocator``)."""
    extra = ["--allocator", allocator] if allocator else []
    with tempfile.TemporaryDirectory(prefix="stonetown-soak-") as tmp:
        figures = run(seconds, Path(tmp), extra, only=only, settle=settle)
        figures["allocator"] = allocator or "as started"
        if keep_log:
            shutil.copyfile(Path(tmp) / "server.log", keep_log)
        print(json.dumps(figures, indent=2))
