"""Concurrent writes committed together (group commit) and ImportRelationships, over gRPC."""

from __future__ import annotations

import asyncio

import pytest
from grpc_harness import ServerProcess

from stonetown import AsyncClient, Client
from stonetown.client import ReadConsistency
from stonetown.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from stonetown.engine.datastore import Precondition, PreconditionOp, RelationshipFilter

FRESH = ReadConsistency.fully_consistent()


async def test_concurrent_writes_each_get_their_own_verdict(server: ServerProcess, uid: str) -> None:
    taken = f"document:{uid}taken#owner@user:ana"
    async with AsyncClient(server.address) as client:
        await client.write(create=[taken])
        missing = Precondition(PreconditionOp.MUST_MATCH, RelationshipFilter("document", f"{uid}none"))
        calls = []
        expected: list[type[Exception] | None] = []
        for n in range(60):
            rel = f"document:{uid}d{n}#viewer@user:u{n}"
            kind = n % 4
            if kind == 0:
                calls.append(client.write(create=[rel]))
                expected.append(None)
            elif kind == 1:  # a failing precondition: only this write is refused
                calls.append(client.write(create=[rel], preconditions=[missing]))
                expected.append(FailedPrecondition)
            elif kind == 2:  # one existing relationship makes the whole write fail
                calls.append(client.write(create=[rel, taken]))
                expected.append(AlreadyExists)
            else:  # a relation the schema does not have
                calls.append(client.write(touch=[rel, f"document:{uid}d{n}#nosuch@user:u{n}"]))
                expected.append(InvalidArgument)
        results = await asyncio.gather(*calls, return_exceptions=True)
        tokens = []
        for n, (result, wanted) in enumerate(zip(results, expected, strict=True)):
            if wanted is None:
                assert isinstance(result, str), (n, result)
                tokens.append((n, result))
            else:
                assert isinstance(result, wanted), (n, result)
        assert len({token for _, token in tokens}) == len(tokens)  # one revision per write
        stored = sorted([str(r) async for r in client.read(f"document:{uid}*", consistency=FRESH)])
        assert stored == sorted([taken, *(f"document:{uid}d{n}#viewer@user:u{n}" for n, _ in tokens)])
        for n, token in tokens:
            outcome = await client.check(
                f"document:{uid}d{n}",
                "view",
                f"user:u{n}",
                consistency=ReadConsistency.at_least_as_fresh(token),
            )
            assert outcome.allowed


def test_import_creates_everything_in_one_revision(client: Client, uid: str) -> None:
    rels = [f"folder:{uid}f{n}#viewer@user:u{n % 13}" for n in range(2500)]
    others = [f"folder:{uid}s#viewer@team:t{uid}#member", f"document:{uid}w#viewer@user:*"]
    rels.extend(others)
    rels.append(f'document:{uid}#viewer@user:fay[on_weekday:{{"day":"tue"}}]')
    token = client.import_relationships(rels, chunk_size=300)
    stored = [str(r) for r in client.read(f"folder:{uid}f*", consistency=FRESH)]
    assert sorted(stored) == sorted(rels[:2500])
    assert [str(r) for r in client.read(f"folder:{uid}s", consistency=FRESH)] == others[:1]
    assert [str(r) for r in client.read(f"document:{uid}w", consistency=FRESH)] == others[1:]
    [caveated] = list(client.read(f"document:{uid}", consistency=FRESH))
    assert caveated.caveat is not None and caveated.caveat.context == {"day": "tue"}
    fresh = ReadConsistency.at_least_as_fresh(token)
    assert client.check(f"folder:{uid}f1300", "viewer", "user:u0", consistency=fresh).allowed
    assert not client.check(f"folder:{uid}f1300", "viewer", "user:u1", consistency=fresh).allowed


def test_import_is_all_or_nothing(client: Client, uid: str) -> None:
    existing = f"folder:{uid}there#viewer@user:ana"
    client.write(create=[existing])
    fresh = [f"folder:{uid}n{n}#viewer@user:ana" for n in range(700)]
    with pytest.raises(AlreadyExists, match=existing):
        client.import_relationships([*fresh, existing], chunk_size=100)
    with pytest.raises(InvalidArgument, match=r"relationships\[650\].*nosuch"):
        bad = [*fresh[:650], f"folder:{uid}x#nosuch@user:ana", *fresh[650:]]
        client.import_relationships(bad, chunk_size=100)
    with pytest.raises(InvalidArgument, match=r"relationships\[700\].*more than once"):
        client.import_relationships([*fresh, fresh[5]], chunk_size=100)
    with pytest.raises(InvalidArgument, match="at least one"):
        client.import_relationships([])
    assert [str(r) for r in client.read(f"folder:{uid}*", consistency=FRESH)] == [existing]
