"""The asyncio client: the same calls as the sync one, against a real server."""

from __future__ import annotations

import pytest
from grpc_harness import SCHEMA, ServerProcess

from stonetown import AsyncClient
from stonetown.client import ReadConsistency
from stonetown.core.errors import AlreadyExists, InvalidArgument

FRESH = ReadConsistency.fully_consistent()


async def test_async_client_round_trip(server: ServerProcess, uid: str) -> None:
    async with AsyncClient(server.address, read_your_writes=True) as client:
        assert (await client.read_schema()).text.strip() == SCHEMA.strip()
        token = await client.write(create=[f"document:{uid}#owner@user:ana", f"document:{uid}#viewer@user:*"])
        assert client.last_write_token == token
        with pytest.raises(AlreadyExists):
            await client.write(create=[f"document:{uid}#owner@user:ana"])
        assert (await client.check(f"document:{uid}", "edit", "user:ana")).allowed
        assert (await client.check(f"document:{uid}#view@user:zed")).allowed
        bulk = await client.check_bulk([f"document:{uid}#edit@user:ana", f"document:{uid}#nosuch@user:ana"])
        assert bulk[0].allowed and isinstance(bulk[1], InvalidArgument)  # type: ignore[union-attr]
        tree = (await client.expand(f"document:{uid}", "edit")).tree
        assert tree.op is not None
        found = [r.resource_id async for r in client.lookup_resources("document", "edit", "user:ana")]
        assert uid in found
        subjects = [str(s.subject) async for s in client.lookup_subjects(f"document:{uid}", "edit", "user")]
        assert subjects == ["user:ana"]
        rels = [str(r) async for r in client.read(f"document:{uid}", consistency=FRESH)]
        assert rels == [f"document:{uid}#owner@user:ana", f"document:{uid}#viewer@user:*"]
        page = await client.read_page(f"document:{uid}", limit=1, consistency=FRESH)
        assert len(page.relationships) == 1 and page.cursor
        deleted = await client.delete(f"document:{uid}#viewer")
        assert deleted.deleted == 1
        events = client.watch(["document"], after=token)
        first = await anext(events)
        assert [str(c.relationship) for c in first.changes] == [f"document:{uid}#viewer@user:*"]
        await events.aclose()
