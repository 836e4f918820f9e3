"""A running Stonetown server seen from the playground: read its schema and relationships,
run checks against it (with the resolution tree, through the API's ``with_tracing``), and
only when the playground was started with ``--allow-writes``, push the document to it."""

from __future__ import annotations

from typing import Any

from stonetown.client import ReadConsistency
from stonetown.client.aio import AsyncClient
from stonetown.core.errors import StonetownError
from stonetown.core.relationship import Relationship
from stonetown.engine.explain import granting_path
from stonetown.playground.document import Document

MAX_READ = 50_000
PAGE = 1_000


class RemoteServer:
    """One server endpoint (and key); a fresh client per call keeps no connection idle."""

    def __init__(self, endpoint: str, key: str | None) -> None:
        if not endpoint or len(endpoint) > 300:
            raise ValueError("endpoint: expected HOST:PORT")
        self.endpoint = endpoint
        self.key = key

    def _client(self) -> AsyncClient:
        return AsyncClient(self.endpoint, preshared_key=self.key, timeout=10.0)

    async def read(self) -> dict[str, str]:
        """The server's schema and (at most MAX_READ) relationships as document sections."""
        async with self._client() as client:
            schema = await client.read_schema()
            rels: list[str] = []
            cursor: str | None = None
            consistency: Any = "fully_consistent"
            while len(rels) <= MAX_READ:
                page = await client.read_page(limit=PAGE, cursor=cursor, consistency=consistency)
                rels += [str(rel) for rel in page.relationships]
                if len(page.relationships) < PAGE or not page.cursor:
                    break
                # every further page at the first page's revision: one consistent picture
                cursor, consistency = page.cursor, ReadConsistency.at_exact_snapshot(page.token)
        if len(rels) > MAX_READ:
            raise StonetownError(f"the server holds more than {MAX_READ} relationships: too many to show")
        return {"schema": schema.text, "relationships": "\n".join(rels), "assertions": "", "validation": ""}

    async def check(
        self, resource: str, permission: str, subject: str, context: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The server's answer and resolution tree, fully consistent."""
        async with self._client() as client:
            outcome = await client.check(
                resource, permission, subject, context=context, consistency="fully_consistent", explain=True
            )
        tree = outcome.trace or {}
        return {
            "result": outcome.permissionship.name,
            "missing": list(outcome.missing_parameters),
            "path": granting_path(tree) if tree else [],
            "tree": tree,
        }

    async def push(self, doc: Document) -> dict[str, Any]:
        """Write the document's schema, then touch its relationships (one write per 1,000)."""
        rels = [Relationship.parse(line.strip()) for line in doc.relationships.splitlines()
                if line.strip() and not line.strip().startswith("//")]  # fmt: skip
        async with self._client() as client:
            token = await client.write_schema(doc.schema)
            for start in range(0, len(rels), 1000):
                token = await client.write(touch=rels[start : start + 1000])
        return {"written": len(rels), "token": token}
