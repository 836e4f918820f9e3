"""`stonetown playground`: write, test and understand a schema in the browser, offline.

:mod:`.document` is the validation file in four sections, :mod:`.workbench` answers every
question with the real engine, :mod:`.pictures` gives the schema graph's data, :mod:`.remote`
talks to a running server, :mod:`.app` serves the page (``static/``) and its JSON API.
"""

from __future__ import annotations

import asyncio
import sys
import webbrowser

from aiohttp import web

from stonetown.playground.app import PlaygroundState, build_app, find_examples, open_file
from stonetown.playground.document import DocumentError

__all__ = ["serve"]


def serve(
    file: str | None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    browser: bool = True,
    allow_writes: bool = False,
) -> int:
    """Serve the playground on `host:port` (0: a free port) until interrupted; print its address."""
    try:
        document = open_file(file)
    except DocumentError as exc:
        print(f"stonetown: playground: {exc}", file=sys.stderr)
        return 2
    state = PlaygroundState(document, examples=find_examples(), allow_writes=allow_writes)
    return asyncio.run(_serve(state, host, port, browser))


async def _serve(state: PlaygroundState, host: str, port: int, browser: bool) -> int:
    runner = web.AppRunner(build_app(state), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        reason = f"cannot listen on {host}:{port}: {exc.strerror} (try another --port)"
        print(f"stonetown: playground: {reason}", file=sys.stderr)
        await runner.cleanup()
        return 2
    bound = runner.addresses[0][1]
    url = f"http://{host}:{bound}/"
    print(f"playground: {url}", flush=True)
    if browser:
        webbrowser.open(url)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
    return 0
