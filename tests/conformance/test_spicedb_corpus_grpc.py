"""The SpiceDB corpus once more, through a real `stonetown serve` over gRPC.

One server (SQLite file) takes every file in turn: the previous file's relationships are
deleted, the file's schema and relationships are written through the client, and every
assertion is asked with Check and again with one CheckBulk; LookupResources and
LookupSubjects over gRPC must agree with the in-process engine on every pair. This holds the
API's conversions (tuples, contexts, wildcards, caveats, tokens) to the engine's answers.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from grpc_harness import ServerProcess  # noqa: E402

from stonetown import Client  # noqa: E402
from stonetown.client.results import ReadConsistency  # noqa: E402
from stonetown.core.errors import NotFound  # noqa: E402
from stonetown.core.relationship import SubjectRef  # noqa: E402
from stonetown.engine.system import PermissionSystem  # noqa: E402
from stonetown.engine.types import CheckRequest, Consistency  # noqa: E402
from stonetown.stores.memory import MemoryDatastore  # noqa: E402
from stonetown.validation.files import read_validation_file  # noqa: E402
from stonetown.validation.runner import load_into  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "spicedb"
FILES = sorted(CORPUS.glob("*.yaml")) if CORPUS.is_dir() else []
EXPECTED = {"assertTrue": "allowed", "assertFalse": "denied", "assertCaveated": "conditional"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    if not FILES:
        pytest.skip("../shared/conformance/spicedb is not present")
    workdir = tmp_path_factory.mktemp("corpus-grpc")
    server = ServerProcess(workdir, "--port", "0", "--datastore", str(workdir / "corpus.db"))
    try:
        with Client(server.address, read_your_writes=True) as connected:
            yield connected
    finally:
        server.stop()


def _clear(client: Client) -> None:
    try:
        types = {rel.resource_type for rel in client.read(consistency="fully_consistent")}
    except NotFound:
        return  # the first file: no schema yet
    for resource_type in sorted(types):
        client.delete(resource_type)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_corpus_file_over_grpc(path: Path, client: Client) -> None:
    parsed = read_validation_file(path)
    _clear(client)
    client.write_schema(parsed.schema)
    relationships = [str(rel) for rel, _line in parsed.relationships]
    for start in range(0, len(relationships), 500):
        token = client.write(touch=relationships[start : start + 500])
    fresh = ReadConsistency.at_least_as_fresh(token) if relationships else "fully_consistent"

    for assertion in parsed.assertions:
        rel = assertion.relationship
        outcome = client.check(
            str(rel.resource), rel.relation, str(rel.subject), context=assertion.context, consistency=fresh
        )
        assert outcome.permissionship.value == EXPECTED[assertion.kind], f"{path.name}:{assertion.line}"
    if parsed.assertions:
        bulk = client.check_bulk(
            [
                CheckRequest(
                    a.relationship.resource, a.relationship.relation, a.relationship.subject, a.context
                )
                for a in parsed.assertions
            ],
            consistency=fresh,
        )
        for assertion, outcome in zip(parsed.assertions, bulk, strict=True):
            assert not isinstance(outcome, Exception), f"{path.name}:{assertion.line}: {outcome}"
            assert outcome.permissionship.value == EXPECTED[assertion.kind], f"{path.name}:{assertion.line}"

    # Lookups over gRPC equal the in-process engine's on every (type, permission, subject).
    local = PermissionSystem(MemoryDatastore(), poll_interval=None, gc_interval=None)
    await local.start()
    try:
        assert await load_into(local, parsed) == []
        assert local.state is not None
        schema = local.state.schema
        consistency = Consistency.fully_consistent()
        subjects = sorted(
            {rel.subject for rel, _ in parsed.relationships if rel.subject_id != "*"}
            | {
                SubjectRef(rel.subject_type, rel.subject_id)
                for rel, _ in parsed.relationships
                if rel.subject_id != "*"
            },
            key=str,
        )
        resource_types = sorted({rel.resource_type for rel, _ in parsed.relationships})
        for rtype in resource_types:
            for permission in schema.definitions[rtype].relations:
                for subject in subjects:
                    if (
                        subject.relation
                        and subject.relation not in schema.definitions[subject.type].relations
                    ):
                        continue
                    expected = sorted(
                        [
                            (r.resource_id, r.conditional)
                            async for r, _ in local.lookup_resources(rtype, permission, subject, consistency)
                        ]
                    )
                    got = sorted(
                        (r.resource_id, r.conditional)
                        for r in client.lookup_resources(rtype, permission, str(subject), consistency=fresh)
                    )
                    assert got == expected, f"{path.name}: LookupResources {rtype}#{permission}@{subject}"
        subject_types = sorted({s.type for s in subjects if not s.relation})
        for resource in sorted({rel.resource for rel, _ in parsed.relationships}, key=str):
            for permission in schema.definitions[resource.type].relations:
                for stype in subject_types:
                    expected_subjects = sorted(
                        [
                            (r.subject.id, tuple(r.excluded), r.conditional)
                            async for r, _ in local.lookup_subjects(
                                resource, permission, stype, "", consistency
                            )
                        ]
                    )
                    got_subjects = sorted(
                        (r.subject.id, tuple(r.excluded), r.conditional)
                        for r in client.lookup_subjects(str(resource), permission, stype, consistency=fresh)
                    )
                    assert got_subjects == expected_subjects, (
                        f"{path.name}: LookupSubjects {resource}#{permission} {stype}"
                    )
    finally:
        await local.stop()
