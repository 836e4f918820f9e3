"""No collector pass over the loaded index runs while the server serves (issue #18).

A full pass of the cyclic garbage collector walks every tracked object not frozen, with the
GIL held: the event loop answers nothing meanwhile. The index is frozen once loaded, so what
a pass walks is the server's small working set; but a large schema written used to be
collected over before its compilation was frozen (70-110 ms on the loop), and once a few
frozen compilations had been dropped, the frozen objects were unfrozen and collected: the
whole heap, the index included (about a second at 1M relationships), from a schema write or
from the idle hook. The server's pause summary says how many objects its largest full pass
walked: here it must stay far below what is frozen (the index), through distinct large
schema writes and the idle hook's pass, while health keeps answering.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from grpc_harness import ServerProcess
from reliability_harness import start_server

from benchmarks.health_prober import HealthProbe
from stonetown import Client
from stonetown.api.runtime import FULL_PASS_AT_LEAST, TRIM_INTERVAL
from stonetown.engine.revision_views import IDLE_CACHE_SECONDS
from stonetown.engine.schema_cache import _COMPILED_SCHEMAS, _FROZEN_SCHEMA_TEXT

SCHEMA = """\
definition user {}

definition doc {
    relation viewer: user
}
"""
RELATIONSHIPS = 60_000


def _large_schema(n: int) -> str:
    """A distinct schema past the size from which compilations are frozen."""
    lines = ["definition bomb {", "    relation viewer: user", "    permission perm1 = viewer"]
    lines += [f"    permission perm{i} = perm{i - 1} + viewer" for i in range(2, 401)]
    text = SCHEMA + "\n".join(lines) + f"\n}}\n\ndefinition extra{n} {{}}\n"
    assert len(text) >= _FROZEN_SCHEMA_TEXT
    return text


def _pause_summary(server: ServerProcess) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in server.log().splitlines():
        if "event=pause_summary" in line:
            found = dict(part.split("=", 1) for part in line.split() if "=" in part)
    assert found, server.log()[-2000:]
    return found


def test_no_full_pass_walks_the_index_through_schema_writes_and_the_idle_hook(tmp_path: Path) -> None:
    server = start_server(tmp_path, SCHEMA)
    try:
        with Client(server.address, timeout=120) as client:
            client.import_relationships([f"doc:d{i}#viewer@user:u{i}" for i in range(RELATIONSHIPS)])
        server.stop()  # restarted: the index is loaded (and frozen) at startup
        server = start_server(tmp_path, SCHEMA)
        probe, stop = HealthProbe(server.address, interval=0.02), threading.Event()
        prober = threading.Thread(target=probe.run, args=(stop,), daemon=True)
        prober.start()
        try:
            with Client(server.address, timeout=60) as client:
                # twice the cache's size: compilations frozen, then dropped (main collected
                # the frozen objects once a cache's worth had been dropped)
                for n in range(2 * _COMPILED_SCHEMAS + 2):
                    client.write_schema(_large_schema(n))
                client.write_schema(SCHEMA)
            # idle: the cached compilations are released, and the idle hook's full pass runs
            time.sleep(max(IDLE_CACHE_SECONDS, FULL_PASS_AT_LEAST) + 2 * TRIM_INTERVAL)
        finally:
            stop.set()
            prober.join(timeout=30)
    finally:
        server.stop()
    summary = _pause_summary(server)
    walked = int(summary["gc_full_max_objects"])
    assert int(summary["gc_full_passes"]) >= 1, summary  # the idle hook's pass, at least
    # a pass over the frozen objects would walk the index: more tracked objects than
    # relationships (main: 621,112 here); the working set of this server is a few thousand
    assert walked < RELATIONSHIPS / 4, summary
    health = probe.summary()
    assert health["probes"] > 100 and health["failures"] == 0, (health, probe.failures[:5])
    # liveness only here (the machine may be shared): the walk counts above are the proof
    assert health["max_ms"] < 2_000, health
