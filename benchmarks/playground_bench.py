"""`python -m benchmarks playground`: the playground's responsiveness on a 1,000-relationship file.

Issue #17's targets: keystroke to diagnostic and check to answer each under 100 ms. Measured
over real HTTP against the playground app on loopback (the page's own requests): a schema edit
posted for diagnostics and lint (each time a different text, so nothing is cached), a check
with its resolution tree (the engine loaded once for the document, as the page does), the
relationship grid's per-row validation, and for scale, an empty aiohttp handler on the same
server (the floor of an HTTP round trip here).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import aiohttp
from aiohttp import web

from benchmarks.common import percentile, write_result
from stonetown.playground.app import PlaygroundState, build_app
from stonetown.playground.document import Document

SCHEMA = """definition user {}

definition team {
    relation member: user | team#member
}

definition folder {
    relation parent: folder
    relation owner: user
    relation editor: user | team#member
    relation viewer: user | user:* | team#member
    permission edit = owner + editor + parent->edit
    permission view = viewer + edit + parent->view
}

definition document {
    relation folder: folder
    relation owner: user
    relation editor: user | team#member
    relation viewer: user | user:* | team#member
    relation banned: user
    permission edit = (owner + editor + folder->edit) - banned
    permission view = (viewer + edit + folder->view) - banned
}
"""


def document(size: int = 1000, seed: int = 7) -> Document:
    """A document of `size` relationships: nested teams, a folder tree, documents."""
    rng = random.Random(seed)
    rels: list[str] = []
    teams, folders, docs, users = 40, 60, 200, 150
    for t in range(1, teams):
        if rng.random() < 0.4:
            rels.append(f"team:t{t}#member@team:t{rng.randrange(t)}#member")
    for f in range(1, folders):
        rels.append(f"folder:f{f}#parent@folder:f{rng.randrange(f)}")
    for d in range(docs):
        rels.append(f"document:d{d}#folder@folder:f{rng.randrange(folders)}")
    while len(rels) < size:
        kind = rng.random()
        if kind < 0.35:
            rels.append(f"team:t{rng.randrange(teams)}#member@user:u{rng.randrange(users)}")
        elif kind < 0.6:
            rels.append(f"document:d{rng.randrange(docs)}#viewer@user:u{rng.randrange(users)}")
        elif kind < 0.75:
            rels.append(f"document:d{rng.randrange(docs)}#editor@team:t{rng.randrange(teams)}#member")
        elif kind < 0.85:
            rels.append(f"folder:f{rng.randrange(folders)}#viewer@team:t{rng.randrange(teams)}#member")
        elif kind < 0.95:
            rels.append(f"document:d{rng.randrange(docs)}#banned@user:u{rng.randrange(users)}")
        else:
            rels.append(f"folder:f{rng.randrange(folders)}#owner@user:u{rng.randrange(users)}")
    unique = list(dict.fromkeys(rels))[:size]
    return Document(schema=SCHEMA, relationships="\n".join(unique))


async def _timed(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    async with session.post(url, json=body) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}")
    return time.perf_counter() - started


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(percentile(ordered, 0.5) * 1000, 2),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "n": len(ordered),
    }


async def measure(rounds: int = 200, size: int = 1000) -> dict[str, Any]:
    """Every latency of the module doc, `rounds` times each."""
    doc = document(size)
    app = build_app(PlaygroundState(doc))

    async def empty(_request: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_post("/api/floor", empty)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/api"
    rng = random.Random(1)
    results: dict[str, Any] = {"relationships": len(doc.relationships.splitlines())}
    try:
        async with aiohttp.ClientSession() as session:
            floor = [await _timed(session, f"{base}/floor", {}) for _ in range(rounds)]
            keystrokes = [
                await _timed(session, f"{base}/schema", {"schema": SCHEMA + "\n" + "/" * 2 + " " * i})
                for i in range(rounds)
            ]
            grid = [
                await _timed(session, f"{base}/relationships",
                             {"schema": SCHEMA, "relationships": doc.relationships})
                for _ in range(max(10, rounds // 10))
            ]  # fmt: skip
            sections = doc.sections()
            first = await _timed(session, f"{base}/check", {
                "sections": sections, "resource": "document:d0", "permission": "view", "subject": "user:u0"})
            checks = [
                await _timed(session, f"{base}/check", {
                    "sections": sections, "resource": f"document:d{rng.randrange(200)}",
                    "permission": rng.choice(["view", "edit"]), "subject": f"user:u{rng.randrange(150)}"})
                for _ in range(rounds)
            ]  # fmt: skip
    finally:
        await runner.cleanup()
    results.update(
        http_floor=_stats(floor),
        keystroke_to_diagnostic=_stats(keystrokes),
        relationship_grid=_stats(grid),
        first_check_ms=round(first * 1000, 2),
        check_to_answer=_stats(checks),
    )
    results["targets"] = {
        "keystroke_p99_under_100ms": results["keystroke_to_diagnostic"]["p99_ms"] < 100,
        "check_p99_under_100ms": results["check_to_answer"]["p99_ms"] < 100,
    }
    return results


def run(rounds: int = 200) -> dict[str, Any]:
    """Measure, print and write benchmarks/results/playground.json."""
    results = asyncio.run(measure(rounds))
    path = write_result("playground", results)
    for key in ("http_floor", "keystroke_to_diagnostic", "relationship_grid", "check_to_answer"):
        print(f"{key:26} {results[key]}")
    print(f"{'first_check_ms':26} {results['first_check_ms']}  (loads the engine)")
    print(f"targets: {results['targets']}  -> {path}")
    return results
