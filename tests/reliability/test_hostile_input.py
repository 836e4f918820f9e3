"""Hostile input against a real server: mutated protobuf messages to every RPC, garbage on the
socket, requests at each limit and one past it, 10k-deep subject-set chains, cycles, huge and
unicode ids, fuzzed schema text. Every answer has a proper status (never UNKNOWN or INTERNAL),
memory stays bounded, and the server still answers correctly afterwards."""

from __future__ import annotations

import random
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_harness import ServerProcess
from reliability_harness import SOAK_SCHEMA, Budget, alive, rss_kb, start_server

from stonetown import Client
from stonetown.api.pb import schema
from stonetown.client import ReadConsistency
from stonetown.core.errors import InvalidArgument, ResourceExhausted, StonetownError
from stonetown.core.relationship import ObjectRef, SubjectRef
from stonetown.core.revision import decode_token, encode_token
from stonetown.engine.datastore import Update, UpdateOp
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import Consistency, Permissionship
from stonetown.stores.memory import MemoryDatastore

FRESH = ReadConsistency.fully_consistent()
BAD_CODES = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
RSS_GROWTH_LIMIT_KB = 400 * 1024  # generous: a leak per request would blow far past it
STREAMING = {"LookupResources", "LookupSubjects", "ReadRelationships", "Watch"}
MAX_MESSAGE_BYTES = 256 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module, with a small message-size limit."""
    proc = start_server(
        tmp_path_factory.mktemp("hostile"), SOAK_SCHEMA, "--max-message-bytes", str(MAX_MESSAGE_BYTES)
    )
    yield proc
    assert alive(proc.process.pid), proc.log()[-3000:]
    proc.stop()


def _valid_requests() -> dict[str, tuple[str, bytes]]:
    """A valid serialized request for every RPC: method name -> (full path, bytes)."""
    c = Client("127.0.0.1:1")  # only its request builders are used; it never connects
    token = encode_token(1)
    requests: dict[str, tuple[str, Any]] = {
        "Check": (
            "/stonetown.v1.PermissionService/Check",
            c._check_request("doc:d1", "view", "user:u1", {"a": 1}, ["doc:d1#viewer@user:u2"], FRESH),
        ),
        "CheckBulk": (
            "/stonetown.v1.PermissionService/CheckBulk",
            c._check_bulk_request(["doc:d1#view@user:u1", "folder:f1#viewer@user:u2"], (), FRESH),
        ),
        "Expand": (
            "/stonetown.v1.PermissionService/Expand",
            c._expand_request("doc:d1", "view", True, ReadConsistency.at_least_as_fresh(token)),
        ),
        "LookupResources": (
            "/stonetown.v1.PermissionService/LookupResources",
            c._lookup_resources_request("doc", "view", "user:u1", None, (), FRESH, 10, None),
        ),
        "LookupSubjects": (
            "/stonetown.v1.PermissionService/LookupSubjects",
            c._lookup_subjects_request("doc:d1", "view", "user", None, (), FRESH, 10, None),
        ),
        "WriteRelationships": (
            "/stonetown.v1.RelationshipService/WriteRelationships",
            c._write_request(["doc:fz#viewer@user:u1"], (), ["doc:fz#owner@user:u2"], ()),
        ),
        "ReadRelationships": (
            "/stonetown.v1.RelationshipService/ReadRelationships",
            c._read_request("doc:d1", FRESH, 5, None),
        ),
        "DeleteRelationships": (
            "/stonetown.v1.RelationshipService/DeleteRelationships",
            c._delete_request("doc:fz", (), 3),
        ),
        "Watch": ("/stonetown.v1.RelationshipService/Watch", c._watch_request(["doc"], token)),
        "ReadSchema": ("/stonetown.v1.SchemaService/ReadSchema", schema.ReadSchemaRequest()),
    }
    c.close()
    return {name: (path, message.SerializeToString()) for name, (path, message) in requests.items()}


def _mutate(rng: random.Random, data: bytes) -> bytes:
    """One random mutation of `data`: bit flips, truncation, insertion, splice or noise."""
    buf = bytearray(data)
    kind = rng.randrange(7)
    if kind == 0 and buf:
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif kind == 1 and buf:
        del buf[rng.randrange(len(buf)) :]
    elif kind == 2:
        at = rng.randint(0, len(buf))
        buf[at:at] = rng.randbytes(rng.randint(1, 16))
    elif kind == 3 and buf:
        at = rng.randrange(len(buf))
        buf[at] = rng.choice((0x00, 0x7F, 0x80, 0xFF, 0x0A, 0x12, 0x1A))
    elif kind == 4:
        buf = bytearray(rng.randbytes(rng.randint(0, 64)))
    elif kind == 5 and buf:
        a, b = sorted(rng.sample(range(len(buf) + 1), 2))
        buf[a:a] = buf[a:b] * rng.randint(1, 8)
    else:
        buf += bytes([0x08 | (rng.randint(1, 30) << 3), 0xFF, 0xFF, 0xFF, 0xFF, 0x0F])
    return bytes(buf)


def _call(channel: grpc.Channel, name: str, path: str, data: bytes) -> grpc.StatusCode:
    identity: Callable[[bytes], bytes] = lambda raw: raw  # noqa: E731
    try:
        if name in STREAMING:
            stub = channel.unary_stream(path, request_serializer=identity, response_deserializer=identity)
            call = stub(data, timeout=0.5 if name == "Watch" else 20)
            for _ in call:
                pass
        else:
            stub = channel.unary_unary(path, request_serializer=identity, response_deserializer=identity)
            stub(data, timeout=20)
    except grpc.RpcError as exc:
        code = exc.code()
        if name == "Watch" and code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return grpc.StatusCode.OK  # an endless stream, ended by our deadline
        return code
    return grpc.StatusCode.OK


def _reference_agrees(address: str, rng: random.Random, samples: int) -> int:
    """Read everything at one token, rebuild it in the reference engine, and compare checks at
    exactly that token; returns how many were compared."""
    import asyncio

    with Client(address, timeout=60) as client:
        token = client.write(touch=["doc:ref#owner@user:u0"])
        snapshot = ReadConsistency.at_exact_snapshot(token)
        stored = [r for t in ("group", "folder", "doc") for r in client.read(t, consistency=snapshot)]
        queries = [
            (f"doc:{rng.choice(['d0', 'd1', 'd2', 'fz', 'ref', 'cyc'])}", rng.choice(["view", "edit"]),
             f"user:{rng.choice(['u0', 'u1', 'u2', 'u3', 'deep', 'inside'])}")
            for _ in range(samples)
        ]  # fmt: skip
        answers = []
        for resource, permission, subject in queries:
            try:
                outcome = client.check(resource, permission, subject, consistency=snapshot)
                assert decode_token(outcome.token) == decode_token(token)
                answers.append(outcome.permissionship)
            except ResourceExhausted:
                answers.append(None)

    async def reference() -> list[Permissionship | None]:
        system = PermissionSystem(MemoryDatastore())
        await system.start()
        await system.write_schema(SOAK_SCHEMA)
        for start in range(0, len(stored), 1000):
            await system.write_relationships(
                [Update(UpdateOp.TOUCH, r) for r in stored[start : start + 1000]]
            )
        out: list[Permissionship | None] = []
        for resource, permission, subject in queries:
            try:
                result = await system.check(
                    ObjectRef.parse(resource),
                    permission,
                    SubjectRef.parse(subject),
                    Consistency.fully_consistent(),
                )
                out.append(result.permissionship)
            except ResourceExhausted:
                out.append(None)
        await system.stop()
        return out

    expected = asyncio.run(reference())
    assert answers == expected
    return len(queries)


def test_mutated_protobuf_messages_to_every_rpc(server: ServerProcess, budget: Budget) -> None:
    rng = random.Random(1)
    requests = _valid_requests()
    rss_before = rss_kb(server.process.pid)
    codes: dict[str, int] = {}
    bad: list[str] = []
    with grpc.insecure_channel(server.address) as channel:
        for name, (path, data) in requests.items():  # the unmutated ones are accepted
            assert _call(channel, name, path, data) not in BAD_CODES
        for case in range(budget.fuzz_cases):
            name = rng.choice(sorted(requests))
            path, data = requests[name]
            mutated = data
            for _ in range(rng.randint(1, 3)):
                mutated = _mutate(rng, mutated)
            code = _call(channel, name, path, mutated)
            codes[code.name] = codes.get(code.name, 0) + 1
            if code in BAD_CODES:
                bad.append(f"case {case} {name} {mutated!r}: {code.name}")
    print(f"\n[reliability] protobuf fuzz: cases={budget.fuzz_cases} codes={codes} bad={len(bad)}")
    assert not bad, bad[:5]
    assert alive(server.process.pid)
    assert rss_kb(server.process.pid) - rss_before < RSS_GROWTH_LIMIT_KB
    assert _reference_agrees(server.address, rng, 60) == 60


def test_garbage_on_the_socket(server: ServerProcess, budget: Budget) -> None:
    rng = random.Random(2)
    host, port = server.address.rsplit(":", 1)
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    for n in range(budget.garbage_connections):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            payload = rng.randbytes(rng.randint(1, 4096))
            if n % 3 == 0:  # a valid preface, then random frames
                payload = preface + payload
            elif n % 3 == 1:  # a plausible frame header with a lying length
                payload = preface + bytes([0xFF, 0xFF, 0xFF, rng.randrange(10), 0xFF, 0, 0, 0, 1]) + payload
            try:
                sock.sendall(payload)
                sock.recv(4096)
            except OSError:
                pass  # the server may reset the connection: that is the right answer
    print(f"\n[reliability] garbage connections: {budget.garbage_connections}")
    assert alive(server.process.pid)
    with Client(server.address) as client:
        client.write(touch=["doc:d2#viewer@user:u3"])
        assert client.check("doc:d2", "view", "user:u3", consistency=FRESH).allowed


def test_requests_at_each_limit_and_one_past_it(server: ServerProcess) -> None:
    with Client(server.address, timeout=60) as client:
        at = [f"doc:lim{n}#viewer@user:u1" for n in range(1000)]
        client.write(touch=at)
        with pytest.raises(InvalidArgument, match="limit is 1000"):
            client.write(touch=[*at, "doc:lim1000#viewer@user:u1"])
        checks = [f"doc:lim{n}#view@user:u1" for n in range(1000)]
        assert all(
            not isinstance(o, Exception) and o.allowed for o in client.check_bulk(checks, consistency=FRESH)
        )
        with pytest.raises(InvalidArgument, match="limit is 1000"):
            client.check_bulk([*checks, "doc:d1#view@user:u1"])
        assert len(client.read_page("doc", limit=1000, consistency=FRESH).relationships) == 1000
        with pytest.raises(InvalidArgument, match="limit is 1000"):
            client.read_page("doc", limit=1001)
        contextual = [f"doc:ctx{n}#viewer@user:u1" for n in range(1000)]
        assert client.check("doc:ctx999", "view", "user:u1", contextual=contextual).allowed
        with pytest.raises(InvalidArgument, match="limit is 1000"):
            client.check(
                "doc:ctx0", "view", "user:u1", contextual=[*contextual, "doc:ctx1000#viewer@user:u1"]
            )
        longest = "x" * 1024
        client.write(touch=[f"doc:{longest}#viewer@user:{longest}"])
        assert client.check(f"doc:{longest}", "view", f"user:{longest}", consistency=FRESH).allowed
        for bad in (f"doc:{longest}y#viewer@user:u1", f"doc:d1#viewer@user:{longest}y"):
            with pytest.raises(InvalidArgument):
                client.write(touch=[bad])
        for bad in (
            "doc:dé#viewer@user:u1",
            "doc:d1#viewer@user:ü",
            "doc:d1#viewer@user:\u202e",
            "doc:d\x00#viewer@user:u1",
        ):
            with pytest.raises(InvalidArgument):
                client.write(touch=[bad])
        with pytest.raises(InvalidArgument):
            client.check("doc:dé", "view", "user:u1")
    # the message size limit: exactly at it is read, one byte past it is refused
    check = Client("127.0.0.1:1")._check_request("doc:d1", "view", "user:u1", None, (), FRESH)
    base = check.SerializeToString()
    path = "/stonetown.v1.PermissionService/Check"
    with grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", -1)]) as channel:
        for extra, expected in ((0, grpc.StatusCode.OK), (1, grpc.StatusCode.RESOURCE_EXHAUSTED)):
            padded = _pad(base, MAX_MESSAGE_BYTES + extra)
            assert _call(channel, "Check", path, padded) is expected


def _pad(message: bytes, size: int) -> bytes:
    """`message` plus an unknown length-delimited field (number 1000), `size` bytes in all."""
    tag = bytes([0xC2, 0x3E])  # field 1000, wire type 2
    for length in range(size - len(message) - len(tag), 0, -1):
        varint = bytearray()
        value = length
        while True:
            byte = value & 0x7F
            value >>= 7
            varint.append(byte | (0x80 if value else 0))
            if not value:
                break
        if len(message) + len(tag) + len(varint) + length == size:
            return message + tag + bytes(varint) + b"p" * length
    raise AssertionError("cannot pad to that size")


def test_deep_subject_set_chain_and_cycles(server: ServerProcess, budget: Budget) -> None:
    depth = budget.chain_depth
    rss_before = rss_kb(server.process.pid)
    with Client(server.address, timeout=60) as client:
        chain = [f"group:c{n}#member@group:c{n + 1}#member" for n in range(depth)]
        chain.append(f"group:c{depth}#member@user:deep")
        chain.append("doc:deep#viewer@group:c0#member")
        for start in range(0, len(chain), 1000):
            client.write(touch=chain[start : start + 1000])
        cycle = ["group:k0#member@group:k1#member", "group:k1#member@group:k2#member",
                 "group:k2#member@group:k0#member", "group:k1#member@user:inside",
                 "doc:cyc#viewer@group:k0#member"]  # fmt: skip
        client.write(touch=cycle)
        for _ in range(3):
            with pytest.raises(ResourceExhausted):
                client.check("doc:deep", "view", "user:deep", consistency=FRESH)
            for call in (
                lambda: client.expand("doc:deep", "view", recursive=True, consistency=FRESH),
                lambda: list(client.lookup_resources("doc", "view", "user:deep", consistency=FRESH)),
                lambda: list(client.lookup_subjects("doc:deep", "view", "user", consistency=FRESH)),
            ):
                try:
                    call()
                except StonetownError as exc:
                    assert isinstance(exc, ResourceExhausted), exc
        assert client.check("doc:cyc", "view", "user:inside", consistency=FRESH).allowed
        assert not client.check("doc:cyc", "view", "user:outside", consistency=FRESH).allowed
        assert {
            s.subject.id for s in client.lookup_subjects("doc:cyc", "view", "user", consistency=FRESH)
        } == {"inside"}
        assert [
            r.resource_id for r in client.lookup_resources("doc", "view", "user:inside", consistency=FRESH)
        ] == ["cyc"]
    assert alive(server.process.pid)
    assert rss_kb(server.process.pid) - rss_before < RSS_GROWTH_LIMIT_KB
    assert _reference_agrees(server.address, random.Random(3), 60) == 60


def _mutate_schema(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    kind = rng.randrange(8)
    if kind == 0:
        at = rng.randrange(len(text))
        return text[:at] + text[at + rng.randint(1, 20) :]
    if kind == 1:
        at = rng.randrange(len(text))
        return text[:at] + rng.choice("{}()#|&-+>:;,.=*\"'\\\n\t é\u202e\x00") * rng.randint(1, 3) + text[at:]
    if kind == 2:
        rng.shuffle(lines)
        return "\n".join(lines)
    if kind == 3:
        return "".join(chr(rng.randrange(1, 0x3000)) for _ in range(rng.randint(0, 200)))
    if kind == 4:
        return text.replace(
            rng.choice(["user", "group", "member", "viewer", "doc"]), rng.choice(["", "x", "é", "a" * 70])
        )
    if kind == 5:
        return text + "\n" + rng.choice(lines) * rng.randint(1, 4)
    if kind == 6:
        return (
            "definition user {}\n"
            + "definition g {\n relation m: user | g#m\n permission p = "
            + "(" * rng.randint(50, 3000)
            + "m"
            + ")" * rng.randint(0, 3000)
            + "\n}\n"
        )
    return text[: rng.randrange(len(text))]


def _positioned(text: str, message: str) -> bool:
    """Whether a refusal of `text` points at a line:column (an empty text has no position)."""
    if not text.strip():
        return "required" in message
    return re.search(r"\d+:\d+", message) is not None


def test_fuzzed_schema_text(tmp_path: Path, budget: Budget) -> None:
    rng = random.Random(4)
    proc = start_server(tmp_path, SOAK_SCHEMA)
    codes: dict[str, int] = {}
    bad: list[str] = []
    try:
        rss_before = rss_kb(proc.process.pid)
        with Client(proc.address, timeout=30) as client:
            client.write(touch=["doc:d1#viewer@user:u1", "group:g1#member@user:u2"])
            current = client.read_schema().text
            for case in range(budget.schema_fuzz_cases):
                text = _mutate_schema(rng, SOAK_SCHEMA if rng.random() < 0.8 else current)
                try:
                    client.write_schema(text)
                except StonetownError as exc:
                    codes[exc.code] = codes.get(exc.code, 0) + 1
                    if exc.code not in ("INVALID_ARGUMENT", "FAILED_PRECONDITION"):
                        bad.append(f"case {case}: {exc.code}: {exc} for {text!r}")
                    elif exc.code == "INVALID_ARGUMENT" and not _positioned(text, str(exc)):
                        bad.append(f"case {case}: no line:column in {exc!s} for {text!r}")
                    if client.read_schema().text != current:
                        bad.append(f"case {case}: the stored schema changed after a refused write")
                else:
                    codes["OK"] = codes.get("OK", 0) + 1
                    current = client.read_schema().text
                    assert current == text
        print(f"\n[reliability] schema fuzz: cases={budget.schema_fuzz_cases} codes={codes} bad={len(bad)}")
        assert not bad, bad[:5]
        assert alive(proc.process.pid)
        assert rss_kb(proc.process.pid) - rss_before < RSS_GROWTH_LIMIT_KB
        with Client(proc.address) as client:
            client.write_schema(SOAK_SCHEMA)
            assert client.check("doc:d1", "view", "user:u1", consistency=FRESH).allowed
    finally:
        proc.stop()
