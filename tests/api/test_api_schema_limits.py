"""Large and hostile schemas over gRPC: what is accepted is served and survives a restart,
what is over a limit is refused naming it, errors stay small, health answers throughout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_harness import ServerProcess, wait_healthy
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stonetown import Client
from stonetown.api.errors import MAX_DETAILS_BYTES
from stonetown.api.pb import schema as schema_pb
from stonetown.api.pb import schema_grpc
from stonetown.core.errors import ResourceExhausted
from stonetown.schema import (
    MAX_ARROW_TARGETS,
    MAX_DEFINITIONS,
    MAX_OPERANDS,
    MAX_RELATIONS_PER_DEFINITION,
    MAX_SCHEMA_BYTES,
    MAX_SUBJECT_TYPES,
)

GOOD = "definition user {}\ndefinition doc {\n    relation viewer: user\n    permission view = viewer\n}\n"


def permission_chain(count: int) -> str:
    """`perm1 = viewer`, `perm2 = perm1 + viewer`, ...: each permission one level deeper."""
    lines = ["definition pdoc {", "    relation viewer: user", "    permission perm1 = viewer"]
    lines += [f"    permission perm{i} = perm{i - 1} + viewer" for i in range(2, count + 1)]
    return "\n".join([*lines, "}"])


def intersection_chain(count: int) -> str:
    """`both1 = viewer & owner`, `both2 = both1 & viewer`, ...: nothing to flatten."""
    lines = ["definition idoc {", "    relation viewer: user", "    relation owner: user"]
    lines.append("    permission both1 = viewer & owner")
    lines += [f"    permission both{i} = both{i - 1} & viewer" for i in range(2, count + 1)]
    return "\n".join([*lines, "}"])


def arrow_chain(count: int) -> str:
    """`level{i}#upper` points at `level{i-1}`; `level{i}#see = upper->see`."""
    out = ["definition level0 {\n    relation viewer: user\n    permission see = viewer\n}"]
    out += [
        f"definition level{i} {{\n    relation upper: level{i - 1}\n    permission see = upper->see\n}}"
        for i in range(1, count + 1)
    ]
    return "\n".join(out)


def userset_chain(count: int) -> str:
    """`grp{i}#member` admits `grp{i+1}#member`."""
    return "\n".join(
        f"definition grp{i} {{\n    relation member: user"
        + (f" | grp{i + 1}#member" if i + 1 < count else "")
        + "\n}"
        for i in range(count)
    )


# The issue's shapes in one schema: 600 chained permissions, 300 definitions chained by
# arrows, a chain of 1,000 subject sets (3,000 is over the definition limit, see below).
CHAINS = "\n".join(
    [
        "definition user {}",
        permission_chain(600),
        intersection_chain(200),
        arrow_chain(300),
        userset_chain(1000),
    ]
)


def schema_stub(channel: grpc.Channel) -> schema_grpc.SchemaServiceStub:
    """A SchemaService stub on `channel`."""
    return schema_grpc.SchemaServiceStub(channel)


def write_raw(address: str, text: str) -> grpc.RpcError | None:
    """WriteSchema over a plain channel; the error, or None when it succeeded."""
    with grpc.insecure_channel(address) as channel:
        try:
            schema_stub(channel).WriteSchema(schema_pb.WriteSchemaRequest(schema=text), timeout=120)
        except grpc.RpcError as exc:
            return exc
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server holding GOOD, for the refusals (each must leave it in force)."""
    workdir = tmp_path_factory.mktemp("limits")
    (workdir / "good.zed").write_text(GOOD)
    datastore = str(workdir / "st.db")
    proc = ServerProcess(workdir, "--port", "0", "--datastore", datastore, "--schema", "good.zed")
    yield proc
    proc.stop()


def test_chained_schemas_are_served_and_load_again_at_any_max_depth(tmp_path: Path) -> None:
    # what the restart writes: the chains plus one more definition
    changed = CHAINS + "\ndefinition doc {\n    relation viewer: user\n}\n"
    (tmp_path / "changed.zed").write_text(changed)
    datastore = str(tmp_path / "st.db")
    first = ServerProcess(tmp_path, "--port", "0", "--datastore", datastore, "--max-depth", "1000")
    try:
        with Client(first.address, read_your_writes=True) as client:
            client.write_schema(CHAINS)
            client.write(
                touch=[
                    "pdoc:a#viewer@user:ana",
                    "idoc:a#viewer@user:ana",
                    "idoc:a#owner@user:ana",
                    "level0:l0#viewer@user:ana",
                    *(f"level{i}:l{i}#upper@level{i - 1}:l{i - 1}" for i in range(1, 301)),
                    "grp999:g#member@user:ana",
                    *(f"grp{i}:g#member@grp{i + 1}:g#member" for i in range(990, 999)),
                ]
            )
            assert client.check("pdoc:a", "perm600", "user:ana").allowed
            assert client.check("idoc:a", "both200", "user:ana").allowed
            assert client.check("level300:l300", "see", "user:ana").allowed  # depth 1000 allows it
            assert client.check("grp990:g", "member", "user:ana").allowed
    finally:
        first.stop()
    # the default depth (50) with --schema: the stored chains load, then the change is written
    second = ServerProcess(tmp_path, "--port", "0", "--datastore", datastore, "--schema", "changed.zed")
    try:
        with Client(second.address, read_your_writes=True) as client:
            assert client.read_schema().text.strip() == changed.strip()
            assert client.check("pdoc:a", "perm600", "user:ana").allowed
            assert client.check("idoc:a", "both200", "user:ana").allowed
            assert client.check("level5:l5", "see", "user:ana").allowed
            assert client.check("grp990:g", "member", "user:ana").allowed
            # max-depth bounds evaluation, not loading
            with pytest.raises(ResourceExhausted):
                client.check("level300:l300", "see", "user:ana")
    finally:
        assert second.stop() == 0


OVER_LIMITS = [
    pytest.param(
        userset_chain(MAX_DEFINITIONS + 1),
        f"{3 * MAX_DEFINITIONS + 1}:1: too many definitions and caveats in the schema: "
        f"the limit is {MAX_DEFINITIONS}",
        id="definitions",
    ),
    pytest.param(
        "definition user {}\ndefinition doc {\n"
        + "\n".join(f"    relation rel{i}: user" for i in range(MAX_RELATIONS_PER_DEFINITION + 1))
        + "\n}",
        f"{MAX_RELATIONS_PER_DEFINITION + 3}:5: too many relations and permissions in definition `doc`",
        id="relations-per-definition",
    ),
    pytest.param(
        "\n".join(f"definition typ{i} {{}}" for i in range(MAX_SUBJECT_TYPES + 1))
        + "\ndefinition doc {\n    relation viewer: "
        + " | ".join(f"typ{i}" for i in range(MAX_SUBJECT_TYPES + 1))
        + "\n}",
        f"too many subject types on relation `viewer`: the limit is {MAX_SUBJECT_TYPES}",
        id="subject-types",
    ),
    pytest.param(
        "definition user {}\ndefinition doc {\n    relation viewer: user\n    permission view = "
        + " + ".join(["viewer"] * (MAX_OPERANDS + 1))
        + "\n}",
        f"too many operands in permission `view`: the limit is {MAX_OPERANDS}",
        id="operands",
    ),
    pytest.param(
        "definition user {}\n"
        + "\n".join(f"definition typ{i} {{ relation ppp: user }}" for i in range(MAX_SUBJECT_TYPES))
        + "\ndefinition doc {\n    relation upp: "
        + " | ".join(f"typ{i}" for i in range(MAX_SUBJECT_TYPES))
        + "\n"
        + "\n".join(
            f"    permission all{i} = " + " + ".join(["upp->ppp"] * (MAX_OPERANDS - 1))
            for i in range(MAX_ARROW_TARGETS // MAX_SUBJECT_TYPES // (MAX_OPERANDS - 1) + 1)
        )
        + "\n}",
        f"too many arrow targets in the schema: the limit is {MAX_ARROW_TARGETS}",
        id="arrow-targets",
    ),
    pytest.param(
        "definition user {}\n" + " " * MAX_SCHEMA_BYTES,
        f"the limit is {MAX_SCHEMA_BYTES} bytes",
        id="bytes",
    ),
]


@pytest.mark.parametrize(("text", "expected"), OVER_LIMITS)
def test_a_schema_over_a_limit_is_refused_naming_it(server: ServerProcess, text: str, expected: str) -> None:
    error = write_raw(server.address, text)
    assert error is not None and error.code() is grpc.StatusCode.INVALID_ARGUMENT, error
    assert expected in error.details(), error.details()
    with Client(server.address) as client:
        assert client.read_schema().text.strip() == GOOD.strip()  # nothing changed


def test_a_bad_huge_schema_gets_a_small_invalid_argument(server: ServerProcess) -> None:
    # every one of 1,500 definitions names an unknown subject type: 1,500 errors
    text = "\n".join(f"definition def{i} {{\n    relation viewer: nowhere{i}\n}}" for i in range(1500))
    error = write_raw(server.address, text)
    assert error is not None and error.code() is grpc.StatusCode.INVALID_ARGUMENT, error
    details = error.details()
    assert "2:22: could not lookup definition `nowhere0`" in details
    assert len(details.encode()) <= MAX_DETAILS_BYTES
    assert "more" in details


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("definition user {}\ndefinition doc {\n    relation nil: user\n}", "3:14: expected a relation name"),
        (
            "definition user {}\ndefinition doc {\n    relation viewer: user\n    permission nil = viewer\n}",
            "4:16: expected a permission name",
        ),
        ("definition nil {}", "1:12: expected a definition name"),
        (
            "definition user {}\ndefinition doc {\n    relation with: user\n}",
            "3:14: expected a relation name",
        ),
    ],
)
def test_keywords_are_refused_as_names(server: ServerProcess, text: str, expected: str) -> None:
    error = write_raw(server.address, text)
    assert error is not None and error.code() is grpc.StatusCode.INVALID_ARGUMENT, error
    assert expected in error.details() and "keyword" in error.details(), error.details()


def test_nil_is_still_an_expression(server: ServerProcess) -> None:
    text = GOOD.replace("permission view = viewer", "permission view = viewer + nil")
    try:
        assert write_raw(server.address, text) is None
    finally:
        assert write_raw(server.address, GOOD) is None


def cross_referencing(count: int) -> str:
    """`count` definitions chained by subject sets and arrows, each with a few permissions."""
    blocks = ["definition user {}"]
    for i in range(count):
        parent = f"node{i + 1}" if i + 1 < count else "user"
        member = f" | node{i + 1}#member" if i + 1 < count else ""
        see = "upper->see + member" if i + 1 < count else "member"
        blocks.append(
            f"definition node{i} {{\n    relation upper: {parent}\n    relation member: user{member}\n"
            f"    relation banned: user\n    permission see = {see}\n"
            "    permission act = see - banned\n}"
        )
    return "\n".join(blocks)


def test_health_answers_while_a_large_schema_compiles(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path, "--port", "0", "--datastore", str(tmp_path / "st.db"))
    try:
        wait_healthy(proc.address)
        outcome: list[grpc.RpcError | None] = []
        # large enough to compile for a while, small enough for the request timeout anywhere
        text = cross_referencing(800)
        writer = threading.Thread(target=lambda: outcome.append(write_raw(proc.address, text)))
        latencies: list[float] = []
        # health on a connection of its own, not behind the WriteSchema call's
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(proc.address, options=options) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            writer.start()
            while writer.is_alive():
                start = time.monotonic()
                # liveness bound: generous for a loaded machine, far below the compile time
                answer = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                latencies.append(time.monotonic() - start)
                assert answer.status == health_pb2.HealthCheckResponse.SERVING
                time.sleep(0.05)
            writer.join()
        assert outcome == [None]
        assert len(latencies) >= 3  # the compile took a while and health kept answering
        print(f"health during compile: {len(latencies)} calls, max {max(latencies) * 1000:.1f} ms")
        with Client(proc.address, read_your_writes=True) as client:
            client.write(touch=["node5:n#member@user:ana"])
            assert client.check("node5:n", "act", "user:ana").allowed
    finally:
        proc.stop()
