"""`stonetown playground`: the local web app (aiohttp) serving the page and its JSON API.

The page (``static/``) sends the document's sections with every question and renders the
answers; all of the work is done in this process by :class:`Workbench` with the real engine.
Every handler answers bad input with ``{"error": message}`` (HTTP 400) and never with a stack
trace; request bodies and the engine's time per request are bounded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from stonetown.core.errors import StonetownError
from stonetown.engine.deadline import request_deadline
from stonetown.playground.document import Document, DocumentError, from_yaml
from stonetown.playground.pictures import schema_picture
from stonetown.playground.remote import RemoteServer
from stonetown.playground.workbench import (
    Workbench,
    format_text,
    relationship_rows,
    schema_diagnostics,
)
from stonetown.schema import SchemaError
from stonetown.validation.files import ValidationFileError

MAX_BODY_BYTES = 8 * 1024 * 1024
REQUEST_SECONDS = 10.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class PlaygroundState:
    """What the app holds: the document as loaded (for exact saves), the engine, the
    examples menu, and the running server it is connected to (if any)."""

    document: Document
    workbench: Workbench = field(default_factory=Workbench)
    examples: dict[str, Path] = field(default_factory=dict)
    remote: RemoteServer | None = None
    allow_writes: bool = False

    def current(self, body: dict[str, Any]) -> Document:
        """The loaded document with the sections the page sent."""
        sections = body.get("sections")
        if not isinstance(sections, dict):
            raise DocumentError("`sections` must be an object of the four sections' texts")
        return self.document.with_sections(**sections)


def find_examples() -> dict[str, Path]:
    """The example validation files shipped in the repository's schema/ (when run from it)."""
    found: dict[str, Path] = {}
    for folder in (Path.cwd() / "schema", Path(__file__).resolve().parents[3] / "schema"):
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                found.setdefault(path.name, path)
    return found


def open_file(path: str | None) -> Document:
    """The document in `path` (validation YAML or OpenFGA store file), or an empty one."""
    if path is None:
        return Document()
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DocumentError(f"{path}: cannot read: {exc}") from None
    return from_yaml(text, file.name, file.parent)


def _guarded(handler: Callable[[web.Request, dict[str, Any]], Awaitable[Any]]) -> Handler:
    """JSON in, JSON out; every known failure becomes a 400 with its message."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json() if request.can_read_body else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response({"error": "the request body is not JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "the request body must be a JSON object"}, status=400)
        token = request_deadline.set(time.monotonic() + REQUEST_SECONDS)
        try:
            result = await asyncio.wait_for(handler(request, body), REQUEST_SECONDS + 1)
        except SchemaError as exc:
            places = [{"line": d.line, "column": d.column, "message": d.message} for d in exc.diagnostics]
            return web.json_response({"error": str(exc), "places": places}, status=400)
        except (StonetownError, DocumentError, ValidationFileError, KeyError, ValueError, TypeError) as exc:
            message = str(exc) if not isinstance(exc, KeyError) else f"missing field {exc}"
            return web.json_response({"error": message[:2000]}, status=400)
        except TimeoutError:
            return web.json_response({"error": f"no answer within {REQUEST_SECONDS} s"}, status=400)
        finally:
            request_deadline.reset(token)
        return web.json_response(result)

    return wrapped


def build_app(state: PlaygroundState) -> web.Application:
    """The aiohttp application: the page, its static files and the JSON API."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app["state"] = state
    static = resources.files("stonetown.playground") / "static"

    async def index(_request: web.Request) -> web.StreamResponse:
        page = (static / "index.html").read_text(encoding="utf-8")
        return web.Response(text=page, content_type="text/html")

    async def document(_request: web.Request, _body: dict[str, Any]) -> dict[str, Any]:
        doc = state.document
        return {
            "name": doc.name, "sections": doc.sections(), "examples": sorted(state.examples),
            "connected": state.remote.endpoint if state.remote else None, "allow_writes": state.allow_writes,
        }  # fmt: skip

    async def schema(_request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        return schema_diagnostics(str(body["schema"]))

    async def fmt(_request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        return {"schema": format_text(str(body["schema"]))}

    async def rows(_request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        rows = relationship_rows(str(body["schema"]), str(body["relationships"]))
        return {"rows": rows, "schema_ok": not schema_diagnostics(str(body["schema"]))["errors"]}

    async def run(_request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        return await state.workbench.run(state.current(body))

    async def regenerate(_request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        return {"validation": await state.workbench.regenerate(state.current(body))}

    async def check(_request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        context = body.get("context") or None
        if context is not None and not isinstance(context, dict):
            raise ValueError("context must be a JSON object")
        args = (str(body["resource"]), str(body["permission"]), str(body["subject"]), context)
        if body.get("target") == "server":
            return await _remote(state).check(*args)
        return await state.workbench.check(state.current(body), *args)

    async def lookup(_request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        kind = str(body["kind"])
        if kind not in ("resources", "subjects"):
            raise ValueError("kind must be resources or subjects")
        args = {k: str(v) for k, v in (body.get("args") or {}).items()}
        return {"found": await state.workbench.lookups(state.current(body), kind, **args)}

    async def picture_schema(_request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        return schema_picture(str(body["schema"]))

    async def picture_data(_request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        hops = int(body.get("hops", 2))
        return await state.workbench.neighbourhood(state.current(body), str(body["object"]), hops)

    async def save(_request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        doc = state.current(body)
        return {"name": doc.name, "yaml": doc.to_yaml()}

    async def load(_request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        name = Path(str(body.get("name") or "untitled.yaml")).name
        state.document = from_yaml(str(body["text"]), name, state.document.base or Path.cwd())
        return await document(_request, body)

    async def example(_request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        path = state.examples.get(str(body["name"]))
        if path is None:
            raise ValueError(f"no example named {body['name']!r}")
        state.document = open_file(str(path))
        return await document(_request, body)

    async def connect(_request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        remote = RemoteServer(str(body["endpoint"]), body.get("key") or None)
        sections = await remote.read()
        state.remote = remote
        return {"connected": remote.endpoint, "sections": sections}

    async def push(_request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        if not state.allow_writes:
            raise ValueError("the playground is read-only against servers: start it with --allow-writes")
        return await _remote(state).push(state.current(body))

    async def favicon(_request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    app.router.add_get("/", index)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_static("/static", str(static))
    routes: dict[str, Callable[[web.Request, dict[str, Any]], Awaitable[Any]]] = {
        "document": document, "schema": schema, "format": fmt, "relationships": rows, "run": run,
        "regenerate": regenerate, "check": check, "lookup": lookup, "picture/schema": picture_schema,
        "picture/data": picture_data, "save": save, "load": load, "example": example,
        "connect": connect, "push": push,
    }  # fmt: skip
    for name, handler in routes.items():
        app.router.add_post(f"/api/{name}", _guarded(handler))
    app.on_cleanup.append(lambda _app: state.workbench.close())
    return app


def _remote(state: PlaygroundState) -> RemoteServer:
    if state.remote is None:
        raise ValueError("not connected to a server: connect first")
    return state.remote
