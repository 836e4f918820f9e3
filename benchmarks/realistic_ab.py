"""In-process Check per kind of a realistic shape, two source trees alternating (issue #19).

    python -m benchmarks.realistic_ab --old /tmp/base --new . --shape docs --size 1M --rounds 6

Each tree runs in its own child process (``PYTHONPATH=TREE/src``) that loads the shape's
store once (it must exist: ``python -m benchmarks realistic`` builds it); the driver then asks
the children in turn for one round each: every labelled check of every kind, repeated until
about ``--seconds`` per kind, each timed (``check_core`` as :mod:`benchmarks.realistic`
times it) and its answer verified. A round's figures are per kind p50 / p99 (wall, µs) and the
mean CPU time (thread time) per check; the summary is each tree's median over its rounds, so
both trees meet the same machine load. Both children hash strings alike (``PYTHONHASHSEED=0``):
the index's dicts then have the same layouts on both sides. Nothing is written to the results
directory.

``--write-every N`` (mixed read/write loads): every N checks, a relationship changes in the
index, as the server applies a write (``RelationshipIndex.add`` / ``remove``), written where
it is not (drawn at random, the same sequence in both children) and deleted again at the next
change; ``--write-kind``: a user joining a team (``member``, the default), a team joining a
team (``team``, no cycle), every user made a viewer of a folder or a document (``wildcard``).
At most one relationship differs from the labels; a check whose answer it may change is not
verified meanwhile (the user joining, the users below the team joining, a check of a subject
set while a team is nested; the resource given a wildcard and what is below a folder). The
CPU a change costs is measured apart and left out of the per-check figure; ``write us`` is
its mean.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.dataset import SEED, parse_size
from benchmarks.realistic_data import ShapeData
from stonetown.core.relationship import Relationship
from stonetown.engine.index import RelationshipIndex

BENCH_ROOT = Path(__file__).resolve().parent.parent


class _Writes:
    """The changes of ``--write-every``: a relationship of the data's kind written where it is
    not, and deleted again at the next change (seeded: both children draw alike). A check
    whose answer the written relationship may change is not verified while it is there."""

    def __init__(self, data: ShapeData, index: RelationshipIndex, seed: int) -> None:
        self.rng = random.Random(seed)
        self.users = sorted({r.subject_id for r in data.relationships if r.subject_type == "user"})
        self.teams = sorted({r.resource_id for r in data.relationships if r.resource_type == "team"})
        self.index = index
        self.written: Relationship | None = None

    def change(self) -> None:
        """Delete the relationship written at the previous change, or write one."""
        if self.written is not None:
            self.index.remove(self.written)
            self.written = None
            return
        while self.written is None:
            self.written = self.draw()
        self.index.add(self.written)

    def draw(self) -> Relationship | None:
        """A relationship not in the index (None: draw again); notes what it changes."""
        raise NotImplementedError

    def changed(self, check: tuple[Any, ...]) -> bool:
        """Whether the answer of `check` may differ from its label now."""
        raise NotImplementedError


class _Memberships(_Writes):
    """A user of the data joins a team it is not in (``--write-kind member``)."""

    def draw(self) -> Relationship | None:
        team, user = self.rng.choice(self.teams), self.rng.choice(self.users)
        if ("user", user) in self.index.objects.get(("team", team, "member"), {}):
            return None
        return Relationship("team", team, "member", "user", user)

    def changed(self, check: tuple[Any, ...]) -> bool:
        return self.written is not None and self.written.subject_id == check[4]


class _Nestings(_Writes):
    """A team of the data joins another team it is not nested in, no cycle made
    (``--write-kind team``): the users below it are changed."""

    below: frozenset[str] = frozenset()

    def draw(self) -> Relationship | None:
        inner, outer = self.rng.choice(self.teams), self.rng.choice(self.teams)
        teams, users = self._below(inner)
        if outer in teams:
            return None
        if ("team", inner, "member") in self.index.usersets.get(("team", outer, "member"), {}):
            return None
        self.below = frozenset(users)
        return Relationship("team", outer, "member", "team", inner, "member")

    def _below(self, team: str) -> tuple[set[str], set[str]]:
        """The teams with a path to `team` (itself included) and the users stored on them."""
        teams, todo, users = {team}, [team], set()
        usersets, objects = self.index.usersets, self.index.objects
        while todo:
            current = todo.pop()
            users.update(sid for st, sid in objects.get(("team", current, "member"), {}) if st == "user")
            for st, source, srel in usersets.get(("team", current, "member"), {}):
                if st == "team" and srel == "member" and source not in teams:
                    teams.add(source)
                    todo.append(source)
        return teams, users

    def changed(self, check: tuple[Any, ...]) -> bool:
        return self.written is not None and (bool(check[5]) or check[4] in self.below)


class _Wildcards(_Writes):
    """Every user made a viewer of a folder (half of the time) or a document of the data
    that has no such wildcard (``--write-kind wildcard``): that resource, and for a folder
    the folders and documents below it, are changed."""

    resources: frozenset[tuple[str, str]] = frozenset()

    def __init__(self, data: ShapeData, index: RelationshipIndex, seed: int) -> None:
        super().__init__(data, index, seed)
        self.ids = {
            rtype: sorted({r.resource_id for r in data.relationships if r.resource_type == rtype})
            for rtype in ("folder", "document")
        }

    def draw(self) -> Relationship | None:
        rtype = self.rng.choice(("folder", "document"))
        rid = self.rng.choice(self.ids[rtype])
        if ("user", "*") in self.index.objects.get((rtype, rid, "viewer"), {}):
            return None
        below, todo = {(rtype, rid)}, [(rtype, rid)]
        while todo:
            for key in self.index.reverse.get((*todo.pop(), ""), ()):
                if (key[0], key[2]) in (("folder", "parent"), ("document", "folder")) and key[
                    :2
                ] not in below:
                    below.add(key[:2])
                    todo.append(key[:2])
        self.resources = frozenset(below)
        return Relationship(rtype, rid, "viewer", "user", "*")

    def changed(self, check: tuple[Any, ...]) -> bool:
        return self.written is not None and (check[0], check[1]) in self.resources


WRITE_KINDS: dict[str, type[_Writes]] = {"member": _Memberships, "team": _Nestings, "wildcard": _Wildcards}


def child(shape: str, size: int, seed: int, seconds: float, write_every: int, write_kind: str) -> None:
    """A tree's side: load the store, then one round per line read on stdin."""
    from benchmarks.realistic import check_core, started_system
    from benchmarks.realistic_data import generate

    data = generate(shape, size, seed)
    system = asyncio.run(started_system(shape, size, seed))
    assert system.state is not None
    compiled, index = system.state.compiled, system.index
    writes = WRITE_KINDS[write_kind](data, index, seed) if write_every else None
    gc.collect()
    gc.freeze()
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    print(json.dumps({"ready": True}), flush=True)
    kinds = {**data.checks, "mix": data.mixed_checks(20_000)}
    for _line in sys.stdin:
        out: dict[str, Any] = {}
        for kind, items in kinds.items():
            if not items:
                continue
            samples: list[int] = []
            wrong = 0
            write_ns = changes = 0
            start, cpu0 = time.perf_counter(), cpu()
            i, n = 0, len(items)
            while i < n or (time.perf_counter() - start < seconds and i < 200_000):
                if writes is not None and i % write_every == write_every - 1:
                    w0 = cpu()
                    writes.change()
                    write_ns += cpu() - w0
                    changes += 1
                c = items[i % n]
                t0 = clock()
                found = check_core(compiled, index, c)
                samples.append(clock() - t0)
                if writes is None or not writes.changed(c):
                    wrong += (found is True) != c[6]
                i += 1
            cpu_us = (cpu() - cpu0 - write_ns) / 1e3 / i
            samples.sort()
            out[kind] = {
                "p50": samples[len(samples) // 2] / 1e3,
                "p99": samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1e3,
                "cpu": cpu_us,
                "write": write_ns / 1e3 / max(changes, 1),
                "wrong": wrong,
            }
        print(json.dumps(out), flush=True)
    os._exit(0)  # the system's background threads are not waited for


def main(argv: list[str] | None = None) -> int:
    """The driver (or, with ``child``, one tree's side)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.realistic_ab")
    parser.add_argument("--old", required=True, help="the tree measured first in each round")
    parser.add_argument("--new", required=True)
    parser.add_argument("--shape", default="docs")
    parser.add_argument("--size", default="1M")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=0.5, help="per kind per round (about)")
    parser.add_argument(
        "--write-every", type=int, default=0, help="a relationship changes every N checks (0: never)"
    )
    parser.add_argument(
        "--write-kind",
        choices=sorted(WRITE_KINDS),
        default="member",
        help="what --write-every writes: a user joining a team, a team joining a team, a wildcard viewer",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    if args.child:
        child(args.shape, size, args.seed, args.seconds, args.write_every, args.write_kind)
        return 0
    procs = {}
    for label, tree in (("old", args.old), ("new", args.new)):
        # the same string hashes on both sides: the same dict layouts and collisions
        env = dict(os.environ, PYTHONPATH=f"{Path(tree).resolve() / 'src'}:{BENCH_ROOT}", PYTHONHASHSEED="0")
        command = [sys.executable, "-m", "benchmarks.realistic_ab", "--child", "--old", "-", "--new", "-"]
        command += ["--shape", args.shape, "--size", args.size, "--seed", str(args.seed)]
        command += ["--seconds", str(args.seconds), "--write-every", str(args.write_every)]
        command += ["--write-kind", args.write_kind]
        procs[label] = subprocess.Popen(
            command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert procs[label].stdout is not None
        json.loads(procs[label].stdout.readline())  # loaded (one at a time: the machine is shared)
    rounds: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    load = [os.getloadavg()[0]]
    try:
        for r in range(args.rounds):
            for label in ("old", "new") if r % 2 == 0 else ("new", "old"):
                proc = procs[label]
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write("round\n")
                proc.stdin.flush()
                rounds[label].append(json.loads(proc.stdout.readline()))
            load.append(os.getloadavg()[0])
    finally:
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=60)
    every = f", a {args.write_kind} write every {args.write_every} checks" if args.write_every else ""
    print(
        f"{args.shape} {args.size}, {args.rounds} rounds{every}; load average {min(load):.2f}-{max(load):.2f}"
    )
    # the best round's p50 too: on a shared machine the least disturbed round of each tree
    heads = ("old p50", "new p50", "old p99", "new p99", "old cpu", "new cpu", "old best", "new best")
    heads += ("old write", "new write") if args.write_every else ()
    print(f"{'kind':18} " + " ".join(f"{head:>8}" for head in heads))
    for kind in rounds["old"][0]:
        cells = []
        for stat in ("p50", "p99", "cpu"):
            for label in ("old", "new"):
                cells.append(statistics.median(row[kind][stat] for row in rounds[label]))
        best = [min(row[kind]["p50"] for row in rounds[label]) for label in ("old", "new")]
        if args.write_every:
            best += [
                statistics.median(row[kind]["write"] for row in rounds[label]) for label in ("old", "new")
            ]
        wrong = sum(row[kind]["wrong"] for label in rounds for row in rounds[label])
        p50o, p50n, p99o, p99n, cpuo, cpun = cells
        print(
            f"{kind:18} {p50o:8.1f} {p50n:8.1f} {p99o:8.1f} {p99n:8.1f} {cpuo:8.2f} {cpun:8.2f}"
            + "".join(f" {value:8.1f}" for value in best)
            + (f"  WRONG {wrong}" if wrong else "")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
