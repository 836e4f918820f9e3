"""Shared machinery of the reliability tests: run sizes, server processes and their workers,
a check/write load that records everything it was told, and the verification of that record
against the store's change log and an in-process reference engine."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from grpc_harness import OWN_CONNECTION, ServerProcess

from stonetown import Client
from stonetown.client import ReadConsistency
from stonetown.core.errors import StonetownError, Unavailable
from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.core.revision import decode_token
from stonetown.engine.datastore import ChangeOp, Update, UpdateOp
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import Consistency, Permissionship
from stonetown.stores.memory import MemoryDatastore
from stonetown.stores.sqlite import SqliteDatastore


@dataclass(frozen=True, slots=True)
class Budget:
    """The size of every reliability run: the CI slice or the full run."""

    full: bool
    soak_seconds: float
    crash_seconds: float
    worker_kills: int
    server_kills: int
    fuzz_cases: int
    schema_fuzz_cases: int
    garbage_connections: int
    chain_depth: int

    @classmethod
    def make(cls, full: bool, seconds: float | None = None) -> Budget:
        """The slice (about a minute in all) or the full run (about ten minutes in all)."""
        if full:
            soak = seconds if seconds is not None else 150.0
            return cls(True, soak, soak, 6, 3, 6000, 3000, 300, 10_000)
        soak = seconds if seconds is not None else 10.0
        return cls(False, soak, soak, 2, 1, 600, 300, 30, 10_000)


# ------------------------------------------------------------------------------ processes


def start_server(
    workdir: Path,
    schema: str,
    *args: str,
    workers: int = 1,
    port: int = 0,
    db: str = "st.db",
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """A `stonetown serve` on `workdir/db` with `schema`, on loopback."""
    (workdir / "schema.zed").write_text(schema)
    return ServerProcess(
        workdir,
        "--port", str(port), "--datastore", str(workdir / db), "--schema", "schema.zed",
        "--workers", str(workers), *args,
        env=env, listeners=workers,
    )  # fmt: skip


def children(pid: int) -> list[int]:
    """The child processes of `pid` (from /proc/<pid>/task/*/children)."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                found.extend(int(p) for p in (task / "children").read_text().split())
            except OSError:
                continue
    except OSError:
        return []
    return found


def worker_pids(server_pid: int) -> list[int]:
    """The worker processes of a multi-worker server (children started by multiprocessing)."""
    pids = []
    for child in children(server_pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
            pids.append(child)
    return sorted(pids)


def alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def rss_kb(pid: int) -> int:
    """The resident set size of `pid` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def kill9(pid: int) -> None:
    """SIGKILL `pid` if it still exists."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_until(predicate: object, timeout: float, what: str) -> None:
    """Poll `predicate` until true; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def retry_unavailable(call: object, timeout: float = 30.0) -> object:
    """Run `call()`, retrying only on UNAVAILABLE, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()  # type: ignore[operator]
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# ------------------------------------------------------------------------------ the load

SOAK_SCHEMA = """\
definition user {}

definition group {
    relation member: user | group#member
}

definition folder {
    relation viewer: user | group#member
}

definition doc {
    relation parent: folder
    relation viewer: user | group#member
    relation owner: user
    relation banned: user
    permission edit = owner
    permission view = (viewer + edit + parent->viewer) - banned
}

definition stamp {
    relation writer: user
}
"""

USERS = [f"u{n}" for n in range(6)]
GROUPS = [f"g{n}" for n in range(4)]
FOLDERS = [f"f{n}" for n in range(3)]
DOCS = [f"d{n}" for n in range(6)]


def universe() -> list[str]:
    """Every relationship the load may touch or delete (group cycles included on purpose)."""
    tuples = [f"group:{g}#member@user:{u}" for g in GROUPS for u in USERS[:4]]
    tuples += [f"group:{a}#member@group:{b}#member" for a in GROUPS for b in GROUPS if a != b]
    tuples += [f"folder:{f}#viewer@user:{u}" for f in FOLDERS for u in USERS[:3]]
    tuples += [f"folder:{f}#viewer@group:{g}#member" for f in FOLDERS for g in GROUPS[:2]]
    tuples += [f"doc:{d}#parent@folder:{f}" for d in DOCS for f in FOLDERS]
    tuples += [f"doc:{d}#viewer@user:{u}" for d in DOCS for u in USERS[3:]]
    tuples += [f"doc:{d}#viewer@group:{g}#member" for d in DOCS for g in GROUPS]
    tuples += [f"doc:{d}#{r}@user:{u}" for d in DOCS for r in ("owner", "banned") for u in USERS[::2]]
    return tuples


@dataclass(slots=True)
class Attempt:
    """One write a client sent: its stamp, its updates, and the revision if acknowledged."""

    stamp: str
    touch: list[str]
    delete: list[str]
    revision: int | None = None


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """One answered check and the revision it was computed at."""

    resource: str
    permission: str
    subject: str
    revision: int
    allowed: bool


@dataclass(slots=True)
class LoadRecord:
    """Everything the load clients did; lists are appended to by several threads."""

    attempts: list[Attempt] = field(default_factory=list)
    checks: list[CheckRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unavailable: int = 0
    per_client_revisions: dict[int, list[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def acknowledged(self) -> list[Attempt]:
        """The writes the server acknowledged."""
        return [a for a in self.attempts if a.revision is not None]

    @property
    def operations(self) -> int:
        """Acknowledged writes plus answered checks."""
        return len(self.acknowledged) + len(self.checks)


def run_client(
    address: str,
    number: int,
    record: LoadRecord,
    stop: threading.Event,
    deadline: float,
    *,
    tolerate_unavailable: bool,
    write_share: float = 0.05,
) -> None:
    """95% checks / 5% writes until `stop` or `deadline`; record every answer.

    With `tolerate_unavailable`, UNAVAILABLE (a killed worker or server) is counted and the
    operation moves on; any other error is recorded as a failure.
    """
    rng = random.Random(number * 7919 + 1)
    tuples = universe()
    seq = 0
    last_token: str | None = None
    revisions = record.per_client_revisions.setdefault(number, [])
    client = Client(address, timeout=15, channel_options=OWN_CONNECTION)
    calls = 0
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            calls += 1
            if calls % 50 == 0:  # a fresh connection now and then, so both workers are used
                client.close()
                client = Client(address, timeout=15, channel_options=OWN_CONNECTION)
            try:
                if rng.random() < write_share:
                    chosen = rng.sample(tuples, rng.randint(1, 3))
                    touch = [t for t in chosen if rng.random() < 0.6]
                    delete = [t for t in chosen if t not in touch]
                    attempt = Attempt(f"c{number}s{seq}", touch, delete)
                    seq += 1
                    with record.lock:
                        record.attempts.append(attempt)
                    token = client.write(
                        touch=[*touch, f"stamp:{attempt.stamp}#writer@user:u0"], delete=delete
                    )
                    attempt.revision = decode_token(token)
                    revisions.append(attempt.revision)
                    last_token = token
                else:
                    resource = rng.choice([f"doc:{d}" for d in DOCS] + [f"folder:{f}" for f in FOLDERS])
                    permission = rng.choice(("view", "edit")) if resource.startswith("doc") else "viewer"
                    subject = f"user:{rng.choice(USERS)}"
                    mode = rng.random()
                    if mode < 0.4:
                        consistency = ReadConsistency.minimize_latency()
                    elif mode < 0.7 or last_token is None:
                        consistency = ReadConsistency.fully_consistent()
                    else:
                        consistency = ReadConsistency.at_least_as_fresh(last_token)
                    outcome = client.check(resource, permission, subject, consistency=consistency)
                    if outcome.permissionship is Permissionship.CONDITIONAL:
                        raise AssertionError(f"conditional answer without caveats: {outcome}")
                    revision = decode_token(outcome.token)
                    with record.lock:
                        record.checks.append(
                            CheckRecord(resource, permission, subject, revision, outcome.allowed)
                        )
            except Unavailable:
                if not tolerate_unavailable:
                    raise
                with record.lock:
                    record.unavailable += 1
                time.sleep(0.05)
            except StonetownError as exc:
                with record.lock:
                    record.errors.append(f"{type(exc).__name__}: {exc}")
    except BaseException as exc:  # noqa: BLE001 - reported by the test, never lost in a thread
        with record.lock:
            record.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        client.close()


def start_load(
    address: str, clients: int, seconds: float, *, tolerate_unavailable: bool
) -> tuple[LoadRecord, threading.Event, list[threading.Thread]]:
    """Start `clients` load threads for at most `seconds`."""
    record = LoadRecord()
    stop = threading.Event()
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(
            target=run_client,
            args=(address, n, record, stop, deadline),
            kwargs={"tolerate_unavailable": tolerate_unavailable},
            daemon=True,
        )
        for n in range(clients)
    ]
    for thread in threads:
        thread.start()
    return record, stop, threads


def finish_load(stop: threading.Event, threads: list[threading.Thread]) -> None:
    """Stop the load threads and wait for them (bounded)."""
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a load client hung"


# ------------------------------------------------------------------------------ verification


@dataclass(slots=True)
class Verdict:
    """What the verification found."""

    revisions: int = 0
    acknowledged_checked: int = 0
    acknowledged_lost: int = 0
    checks_compared: int = 0
    wrong_answers: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unacknowledged_committed: int = 0


def _rel(text: str) -> Relationship:
    return Relationship.parse(text)


async def _verify(db: Path, record: LoadRecord) -> Verdict:
    verdict = Verdict()
    store = SqliteDatastore(str(db))
    await store.open()
    try:
        history = await store.changes(0)
    finally:
        await store.close()
    by_stamp = {a.stamp: a for a in record.attempts}
    acked_at = {a.revision: a for a in record.acknowledged}
    reference = PermissionSystem(MemoryDatastore())
    await reference.start()
    await reference.write_schema(SOAK_SCHEMA)
    checks_at: dict[int, list[CheckRecord]] = {}
    for check in record.checks:
        checks_at.setdefault(check.revision, []).append(check)
    state: set[str] = set()
    seen: set[int] = set()
    try:
        for entry in history:
            verdict.revisions += 1
            seen.add(entry.revision)
            touched = {str(c.relationship) for c in entry.changes if c.op is ChangeOp.TOUCH}
            deleted = {str(c.relationship) for c in entry.changes if c.op is ChangeOp.DELETE}
            stamps = [t for t in touched if t.startswith("stamp:")]
            if not entry.schema_changed:
                if len(stamps) != 1:
                    verdict.problems.append(f"revision {entry.revision}: {len(stamps)} write stamps")
                else:
                    stamp = stamps[0].split("#")[0].removeprefix("stamp:")
                    attempt = by_stamp.get(stamp)
                    if attempt is None:
                        verdict.problems.append(f"revision {entry.revision}: unknown stamp {stamp}")
                    else:
                        if attempt.revision is None:
                            verdict.unacknowledged_committed += 1
                        elif attempt.revision != entry.revision:
                            verdict.problems.append(
                                f"{stamp} acknowledged at {attempt.revision} but stored at {entry.revision}"
                            )
                        # all of the write or none of it: every update shows in this revision
                        want_touch = set(attempt.touch)
                        if not want_touch <= touched:
                            verdict.problems.append(
                                f"revision {entry.revision}: partial write {stamp}, missing "
                                f"{sorted(want_touch - touched)}"
                            )
                        wrong_delete = {t for t in attempt.delete if t in state and t not in deleted}
                        if wrong_delete:
                            verdict.problems.append(
                                f"revision {entry.revision}: partial write {stamp}, not deleted "
                                f"{sorted(wrong_delete)}"
                            )
                        extra = (touched - want_touch - {stamps[0]}) | (deleted - set(attempt.delete))
                        if extra:
                            verdict.problems.append(f"revision {entry.revision}: foreign changes {extra}")
            updates = [Update(UpdateOp.DELETE, _rel(t)) for t in deleted - touched]
            updates += [Update(UpdateOp.TOUCH, _rel(t)) for t in touched if not t.startswith("stamp:")]
            if updates:
                await reference.write_relationships(updates)
            state -= deleted
            state |= touched
            for check in checks_at.pop(entry.revision, []):
                verdict.checks_compared += 1
                result = await reference.check(
                    ObjectRef.parse(check.resource),
                    check.permission,
                    SubjectRef.parse(check.subject),
                    Consistency.fully_consistent(),
                )
                expected = result.permissionship is Permissionship.ALLOWED
                if expected != check.allowed:
                    verdict.wrong_answers.append(
                        f"{check.resource}#{check.permission}@{check.subject} at {check.revision}: "
                        f"server said {check.allowed}, reference {expected}"
                    )
    finally:
        await reference.stop()
    for revision in checks_at:
        verdict.problems.append(f"checks answered at revision {revision}, which the store does not hold")
    for attempt in record.acknowledged:
        verdict.acknowledged_checked += 1
        if attempt.revision not in seen or acked_at.get(attempt.revision) is not attempt:
            verdict.acknowledged_lost += 1
    for number, revisions in record.per_client_revisions.items():
        if any(b <= a for a, b in zip(revisions, revisions[1:], strict=False)):
            verdict.problems.append(f"client {number}: revisions not strictly increasing")
    if len({a.revision for a in record.acknowledged}) != len(record.acknowledged):
        verdict.problems.append("two acknowledged writes share a revision")
    return verdict


def verify(db: Path, record: LoadRecord) -> Verdict:
    """Replay the store's change log (the server must be stopped) and hold the record to it:
    every acknowledged write is there, at its revision, whole; every check agrees with the
    reference engine at the revision the server reported."""
    return asyncio.run(_verify(db, record))


class LimitedServerProcess(ServerProcess):
    """A `stonetown serve` whose files may not grow past `max_file_bytes` (RLIMIT_FSIZE, with
    SIGXFSZ ignored so a write past it fails with EFBIG, as on a full disk)."""

    def __init__(self, workdir: Path, max_file_bytes: int, *args: str) -> None:
        import resource
        import subprocess

        from grpc_harness import stonetown_command

        def limit() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

        self.workdir = workdir
        self.log_path = workdir / f"server-{time.monotonic_ns()}.log"
        env = {key: value for key, value in os.environ.items() if not key.startswith("STONETOWN_")}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            stonetown_command("serve", *args),
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=env,
            preexec_fn=limit,
        )
        self.address = self._wait_listening(1)


def serve_with_little_room(workdir: Path, db: Path) -> LimitedServerProcess:
    """A server over `db` (schema.zed in `workdir`) whose files may grow by 256 KiB only."""
    return LimitedServerProcess(
        workdir, db.stat().st_size + 256 * 1024,
        "--port", "0", "--datastore", str(db), "--schema", "schema.zed",
    )  # fmt: skip


def fill_until_refused(client: Client) -> tuple[list[list[str]], list[str], Unavailable]:
    """Write batches of 200 relationships with long ids until the server refuses one (its
    files reached their size limit): the acknowledged batches, the refused one, its error.
    AssertionError when 200 batches all fit."""
    acknowledged: list[list[str]] = []
    for batch in range(200):
        rels = [f"doc:b{batch}x{n}{'p' * 200}#viewer@user:u{n % 6}" for n in range(200)]
        try:
            client.write(touch=rels)
        except Unavailable as exc:
            return acknowledged, rels, exc
        acknowledged.append(rels)
    raise AssertionError("the size limit was never reached")
