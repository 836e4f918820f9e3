"""Memory and latency of reads at many distinct old revisions (at_exact_snapshot tokens).

A token is the unauthenticated base64 of a revision, so a caller can name any revision inside
the garbage-collection window. This loads a dataset into a SQLite file, adds `--revisions`
small writes on top (one revision each), starts a real `stonetown serve` on a copy and sends
Checks and a LookupResources at every one of those old revisions, printing the server's RSS
before and after and the time of each old read.

    python -m benchmarks.old_snapshots --size 300k --revisions 40
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ensure_store, rss_bytes
from benchmarks.dataset import generate, parse_size
from stonetown import Client
from stonetown.client import ReadConsistency
from stonetown.core.revision import encode_token
from stonetown.engine.datastore import Update, UpdateOp
from stonetown.engine.system import PermissionSystem
from stonetown.stores.sqlite import SqliteDatastore


async def _add_revisions(path: Path, count: int) -> list[int]:
    """`count` one-relationship writes on top of the store at `path`; the revisions before each."""
    system = PermissionSystem(SqliteDatastore(str(path)), poll_interval=None, gc_interval=None)
    await system.start()
    try:
        before = []
        for n in range(count):
            before.append(system.index.revision)
            rel = f"user:old-snapshot-{n}"
            await system.write_relationships(
                [Update(UpdateOp.TOUCH, _parse(f"organization:old-snapshots#member@{rel}"))]
            )
        return before
    finally:
        await system.stop()


def _parse(text: str):  # noqa: ANN202 - a Relationship
    from stonetown.core.relationship import Relationship

    return Relationship.parse(text)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    """Run the measurement and print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="300k")
    parser.add_argument("--revisions", type=int, default=40)
    args = parser.parse_args()
    data = generate(parse_size(args.size))
    source, _ = ensure_store(data, progress=False)
    with tempfile.TemporaryDirectory(prefix="stonetown-old-snapshots-") as tmp:
        path = Path(tmp) / "store.db"
        shutil.copy(source, path)
        revisions = asyncio.run(_add_revisions(path, args.revisions))
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "stonetown.cli.main", "serve", "--datastore", str(path),
             "--port", str(port)],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with Client(f"127.0.0.1:{port}", timeout=600) as client:
                deadline = time.monotonic() + 300
                while True:
                    try:
                        client.read_schema()
                        break
                    except Exception:  # noqa: BLE001 - not listening yet
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.5)
                checks = [c for kind in data.checks.values() for c in kind[:2]]
                rtype, permission, subject_id = data.lookup_resources[-1]
                rss_start = rss_bytes(server.pid)
                peak = rss_start
                times = []
                for revision in revisions:
                    at = ReadConsistency.at_exact_snapshot(encode_token(revision))
                    start = time.perf_counter()
                    for rt, rid, perm, st, sid, srel, expected in checks:
                        subject = f"{st}:{sid}" + (f"#{srel}" if srel else "")
                        outcome = client.check(f"{rt}:{rid}", perm, subject, consistency=at)
                        assert outcome.allowed == expected, (rt, rid, perm, subject, revision)
                    list(client.lookup_resources(rtype, permission, f"user:{subject_id}", consistency=at))
                    times.append(time.perf_counter() - start)
                    peak = max(peak, rss_bytes(server.pid))
                rss_end = rss_bytes(server.pid)
        finally:
            server.terminate()
            server.wait(30)
    mib = 1024 * 1024
    print(
        f"{len(data.relationships)} relationships, {len(revisions)} old revisions, "
        f"{len(checks)} checks + 1 LookupResources each"
    )
    print(
        f"server RSS: {rss_start / mib:.0f} MiB before, {peak / mib:.0f} MiB peak, "
        f"{rss_end / mib:.0f} MiB after"
    )
    times.sort()
    print(
        f"per old revision: median {times[len(times) // 2] * 1000:.0f} ms, "
        f"max {times[-1] * 1000:.0f} ms, first {times[0] * 1000:.0f} ms (sorted min)"
    )


if __name__ == "__main__":
    main()
