"""Soak and crash runs against a real two-worker server.

Soak: concurrent clients do 95% checks / 5% writes; afterwards every acknowledged write is in
the store at its revision and whole, and every answered check agrees with the reference
engine at the revision the server reported. Crash: the same load while single workers and
then the whole server are killed with SIGKILL; the surviving worker keeps serving, the server
is restarted on the same file, and the same verification holds (clients retry UNAVAILABLE only).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from grpc_harness import OWN_CONNECTION, connections_by_process, listening_pids
from reliability_harness import (
    SOAK_SCHEMA,
    Attempt,
    Budget,
    alive,
    finish_load,
    kill9,
    retry_unavailable,
    start_load,
    start_server,
    verify,
    wait_until,
    worker_pids,
)

from stonetown import Client
from stonetown.client import ReadConsistency
from stonetown.core.revision import decode_token

CLIENTS = 4


def _report(name: str, **values: object) -> None:
    print(f"\n[reliability] {name}: " + " ".join(f"{k}={v}" for k, v in values.items()))


def test_soak_two_workers_every_answer_matches_the_reference(tmp_path: Path, budget: Budget) -> None:
    server = start_server(tmp_path, SOAK_SCHEMA, workers=2)
    try:
        workers = worker_pids(server.process.pid)
        assert len(workers) == 2
        port = int(server.address.rpartition(":")[2])
        record, stop, threads = start_load(
            server.address, CLIENTS, budget.soak_seconds, tolerate_unavailable=False
        )
        # which workers hold the load clients' connections (each its own), sampled throughout
        serving: set[int] = set()
        end = time.monotonic() + budget.soak_seconds
        while time.monotonic() < end:
            serving |= {pid for pid, held in connections_by_process(workers, port).items() if held}
            time.sleep(0.2)
        finish_load(stop, threads)
        assert server.process.poll() is None, server.log()[-3000:]
    finally:
        assert server.stop() == 0
    assert not record.errors, record.errors[:10]
    assert record.unavailable == 0
    assert serving == set(workers), f"only {serving} of the workers {workers} served the load"
    verdict = verify(tmp_path / "st.db", record)
    _report(
        "soak",
        seconds=budget.soak_seconds,
        operations=record.operations,
        checks=len(record.checks),
        writes_acknowledged=len(record.acknowledged),
        checks_compared=verdict.checks_compared,
        lost=verdict.acknowledged_lost,
    )
    assert len(record.checks) > 50 and len(record.acknowledged) > 3
    assert verdict.acknowledged_lost == 0
    assert verdict.unacknowledged_committed == 0  # no error, so no write of unknown outcome
    assert not verdict.problems, verdict.problems[:10]
    assert not verdict.wrong_answers, verdict.wrong_answers[:10]
    assert verdict.checks_compared == len(record.checks)


def test_kill_9_workers_and_the_server_mid_load(tmp_path: Path, budget: Budget) -> None:
    rng = random.Random(20240611)
    server = start_server(tmp_path, SOAK_SCHEMA, workers=2)
    port = server.address.rsplit(":", 1)[1]
    address = server.address
    record, stop, threads = start_load(
        address, CLIENTS, budget.crash_seconds + 120, tolerate_unavailable=True
    )
    worker_kills = server_kills = 0
    restarts: list[int] = []
    try:
        rounds = ["worker"] * budget.worker_kills + ["server"] * budget.server_kills
        rng.shuffle(rounds)
        pause = budget.crash_seconds / max(len(rounds), 1)
        for kind in rounds:
            time.sleep(rng.uniform(0.3, 1.0) * pause)
            workers = worker_pids(server.process.pid)
            assert len(workers) == 2, f"expected two workers, found {workers}\n{server.log()[-3000:]}"
            if kind == "worker":
                victim = rng.choice(workers)
                survivor = next(p for p in workers if p != victim)
                listening_before = len(listening_pids(server.log()))
                kill9(victim)
                wait_until(lambda v=victim: not alive(v), 10, "the killed worker to go")
                # The other worker kept serving: fresh connections get answers.
                for _ in range(5):
                    with Client(address, timeout=10, channel_options=OWN_CONNECTION) as probe:
                        retry_unavailable(
                            lambda p=probe: p.check(
                                "doc:d0", "view", "user:u0", consistency="fully_consistent"
                            )
                        )
                assert alive(survivor), "the surviving worker was stopped"
                assert server.process.poll() is None, f"the server exited:\n{server.log()[-3000:]}"
                # ... and the supervisor replaces the dead worker.
                wait_until(
                    lambda n=listening_before, s=server: len(listening_pids(s.log())) > n,
                    60,
                    "a replacement worker",
                )
                worker_kills += 1
            else:
                for pid in [*workers, server.process.pid]:
                    kill9(pid)
                server.process.wait()
                for pid in workers:
                    wait_until(lambda p=pid: not alive(p), 10, "the killed workers to go")
                server.stop()
                server = start_server(tmp_path, SOAK_SCHEMA, workers=2, port=int(port))
                restarts.append(server.process.pid)
                server_kills += 1
        finish_load(stop, threads)
        with Client(address, timeout=15) as client:
            newest = max((a.revision or 0) for a in record.attempts) if record.attempts else 0
            final = Attempt("final", ["doc:after#owner@user:u0"], [])
            record.attempts.append(final)
            token = retry_unavailable(
                lambda: client.write(touch=[*final.touch, "stamp:final#writer@user:u0"])
            )
            final.revision = decode_token(str(token))
            assert final.revision > newest
            fresh = ReadConsistency.fully_consistent()
            assert client.check("doc:after", "edit", "user:u0", consistency=fresh).allowed
    finally:
        stop.set()
        finish_load(stop, threads)
        server.stop()
    assert not record.errors, record.errors[:10]
    verdict = verify(tmp_path / "st.db", record)
    _report(
        "crash",
        seconds=budget.crash_seconds,
        operations=record.operations,
        worker_kills=worker_kills,
        server_kills=server_kills,
        unavailable_retried=record.unavailable,
        writes_acknowledged=len(record.acknowledged),
        unacknowledged_committed=verdict.unacknowledged_committed,
        checks_compared=verdict.checks_compared,
        lost=verdict.acknowledged_lost,
    )
    assert worker_kills == budget.worker_kills and server_kills == budget.server_kills
    assert verdict.acknowledged_lost == 0
    assert not verdict.problems, verdict.problems[:10]
    assert not verdict.wrong_answers, verdict.wrong_answers[:10]
    assert len(record.acknowledged) > 3 and verdict.checks_compared == len(record.checks)


def test_workers_do_not_outlive_a_killed_server(tmp_path: Path) -> None:
    server = start_server(tmp_path, SOAK_SCHEMA, workers=2)
    port = int(server.address.rsplit(":", 1)[1])
    workers = worker_pids(server.process.pid)
    assert len(workers) == 2
    kill9(server.process.pid)
    server.process.wait()
    try:
        # orphaned workers would keep serving on the port, beside any restarted server
        for pid in workers:
            wait_until(lambda p=pid: not alive(p), 30, f"orphaned worker {pid} to exit")
    finally:
        for pid in workers:
            kill9(pid)
        server.stop()
    restarted = start_server(tmp_path, SOAK_SCHEMA, workers=2, port=port)
    try:
        with Client(restarted.address) as client:
            assert not client.check("doc:d0", "view", "user:u0", consistency="fully_consistent").allowed
    finally:
        assert restarted.stop() == 0
